"""Regenerates python.jsonl: fnmatch.fnmatchcase verdicts from real Python.

Run: python3 gen.py > python.jsonl (last generated with Python 3.11.7)
Each line is [pattern, name, matched]. TestFnmatchPython replays them.
"""

import fnmatch
import json
import sys

PATTERNS = [
    "", "*", "**", "?", "??", "a", "a*", "*a", "*a*", "a?c", "a*c", "a**c",
    "*.github.com", "api.github.com", "*github.com", "github.*", "*.*",
    "/v1/messages*", "/graphql", "/api", "/api/*", "/repos/*/pulls",
    "/repos/acme/app*", "*/..*", "?*?",
    "[abc]", "[!abc]", "[a-c]", "[!a-c]", "[z-a]", "[!z-a]", "[a-c-e]",
    "[a-cd-f]", "[a--z]", "[!--z]", "[-a]", "[a-]", "[!-a]", "[]a]", "[!]a]",
    "[]]", "[!]]", "[]-a]", "[a-]]", "[", "[a", "a[", "[!", "[!]", "[]",
    "[^a]", "[\\]", "[\\-a]", "[a&&b]", "[a~~b]", "[a||b]", "[[]", "[[:a:]]",
    "[*]", "[?]", "x[*]y", "*[.]com", "[a-c]*", "*[!/]", "[b-a-c]",
    "[c-ab-d]", "[a-b-c-d]", "[-]", "[--]", "[---]", "[!-]", "[!--]",
    "[a-c-]", "[é-ü]", "é*", "?é", "[.-/]", "[/]", "[\\-]",
    "[0- !]", "[0- !a]", "[0- !-z]", "[]- !]", "[b-a!]", "[b-a!-z]",
    "[b-a^]", "[b-a[]", "[!b-a]", "[!b-ac-d]", "[0- !]]", "[a-\\]",
    "*\n*", "?\n", "a*b*c*d", "*aaa*aab", "[%]2e*", "*.", ".*",
]

NAMES = [
    "", "a", "b", "c", "d", "e", "z", "-", "]", "[", "!", "^", "\\", "&", "~",
    "|", ":", "*", "?", ".", "/", "aa", "abc", "ac", "abbc", "a/c", "a.c",
    "github.com", "api.github.com", "x.api.github.com", "githubxcom",
    "/v1/messages", "/v1/messages?beta=true", "/graphql", "/graphql?x",
    "/api", "/api/", "/api/x/y", "/repos/acme/pulls", "/repos/a/b/pulls",
    "/repos/acme/app", "/repos/acme/app/../x", "x]y", "x*y", "é", "ü", "ö",
    "a\nb", "\n", "abcd", "aXbYcZd", "aaaaaab", "aaab", "%2e", "x.com", ".x",
    "[a]", "[]", "ab", "0", " ", "m",
]

out = sys.stdout
for p in PATTERNS:
    for n in NAMES:
        out.write(json.dumps([p, n, fnmatch.fnmatchcase(n, p)]) + "\n")
