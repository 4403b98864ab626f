package markdown

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestToMrkdwn(t *testing.T) {
	tests := []struct {
		name string
		md   string
		want string
	}{
		{"bold and italics", "Hello **world** and _you_ and *me*.", "Hello *world* and _you_ and _me_.\n"},
		{"bold italics", "***both***", "_*both*_\n"},
		{"strikethrough", "~~gone~~ here", "~gone~ here\n"},
		{"inline code escaped", "run `a < b && c`", "run `a &lt; b &amp;&amp; c`\n"},
		{"link", "See [the PR](https://example.com/pr/1).", "See <https://example.com/pr/1|the PR>.\n"},
		{"link with pipe in label", "[a|b](https://x.test/)", "<https://x.test/|a¦b>\n"},
		{"link with pipe in url", "[x](https://x.test/a|b)", "<https://x.test/a%7Cb|x>\n"},
		{"autolink", "see https://example.com/pr/1 now", "see <https://example.com/pr/1> now\n"},
		{"email autolink", "mail <alice@example.com>", "mail <mailto:alice@example.com|alice@example.com>\n"},
		{"javascript link dropped", "[click](javascript:alert(1))", "click\n"},
		{"heading", "# Title\n\ntext", "*Title*\n\ntext\n"},
		{"bullet list", "- one\n- two\n  - nested", "• one\n• two\n    • nested\n"},
		{"ordered list", "3. a\n4. b", "3. a\n4. b\n"},
		{"task list", "- [x] done\n- [ ] todo", "• ☑ done\n• ☐ todo\n"},
		{"quote", "> quoted\n> more\n>\n> second", "> quoted\n> more\n>\n> second\n"},
		{"code block", "```go\nif a < b {\n}\n```", "```\nif a &lt; b {\n}\n```\n"},
		{"mention-like text escaped", "ping <!channel> and <@U123>", "ping &lt;!channel&gt; and &lt;@U123&gt;\n"},
		{"html block escaped", "<div>x</div>\n\ny", "&lt;div&gt;x&lt;/div&gt;\n\ny\n"},
		{"soft break kept", "line one\nline two", "line one\nline two\n"},
		{"thematic break", "a\n\n---\n\nb", "a\n\n──────────\n\nb\n"},
		{
			"table aligned in code block",
			"| name | n |\n|---|---|\n| alpha | 1 |\n| b | 22 |\n",
			"```\nname  | n\n------+---\nalpha | 1\nb     | 22\n```\n",
		},
		{
			"table with east asian widths",
			"| 名前 | n |\n|---|---|\n| ab | 1 |\n| 日本語 | 2 |\n",
			"```\n名前   | n\n-------+--\nab     | 1\n日本語 | 2\n```\n",
		},
		{"image as link", "![diagram](https://x.test/d.png)", "<https://x.test/d.png|diagram>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ToMrkdwn(tt.md); got != tt.want {
				t.Errorf("ToMrkdwn(%q) =\n%q; want\n%q", tt.md, got, tt.want)
			}
		})
	}
}

func TestDisplayWidth(t *testing.T) {
	tests := []struct {
		s    string
		want int
	}{
		{"abc", 3},
		{"日本語", 6},
		{"ＡＢ", 4},      // fullwidth forms
		{"e\u0301", 1}, // combining acute accent
		{"ｶﾅ", 2},      // halfwidth katakana
		{"a\u200bb", 2},
	}
	for _, tt := range tests {
		if got := DisplayWidth(tt.s); got != tt.want {
			t.Errorf("DisplayWidth(%q) = %d; want %d", tt.s, got, tt.want)
		}
	}
}

func TestSplitMrkdwn(t *testing.T) {
	para := func(n int, c string) string { return strings.Repeat(c, n) }
	tests := []struct {
		name  string
		in    string
		limit int
		want  []string
	}{
		{"short stays whole", "hello\n", 100, []string{"hello"}},
		{"empty", "", 100, nil},
		{
			"cut between blocks",
			para(60, "a") + "\n\n" + para(60, "b") + "\n\n" + para(30, "c"),
			100,
			[]string{para(60, "a"), para(60, "b") + "\n\n" + para(30, "c")},
		},
		{
			"code block closed and reopened",
			"```\n" + strings.Repeat(para(40, "x")+"\n", 3) + "```",
			100,
			[]string{"```\n" + para(40, "x") + "\n" + para(40, "x") + "\n```", "```\n" + para(40, "x") + "\n```"},
		},
		{
			"long line cut at spaces",
			strings.Repeat("word ", 30),
			100,
			[]string{strings.TrimSpace(strings.Repeat("word ", 18)), strings.TrimSpace(strings.Repeat("word ", 12))},
		},
		{
			"link never cut",
			para(80, "a") + "<https://example.com/a/long/path|label>",
			100,
			[]string{para(80, "a"), "<https://example.com/a/long/path|label>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitMrkdwn(tt.in, tt.limit)
			if strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") {
				t.Errorf("SplitMrkdwn =\n%q; want\n%q", got, tt.want)
			}
			for i, c := range got {
				if n := utf8.RuneCountInString(c); n > tt.limit {
					t.Errorf("chunk %d has %d runes; limit %d", i, n, tt.limit)
				}
				if strings.Count(c, "```")%2 != 0 {
					t.Errorf("chunk %d has an unbalanced code fence: %q", i, c)
				}
			}
		})
	}
}

// TestSplitMrkdwnKeepsEverything checks on a large rendered reply that no
// text is lost or invented, apart from the fences added at cuts.
func TestSplitMrkdwnKeepsEverything(t *testing.T) {
	var md strings.Builder
	for i := 0; i < 400; i++ {
		md.WriteString("## Section\n\nSome **bold** text with a [link](https://example.com/x) and more words to fill the line.\n\n")
		if i%7 == 0 {
			md.WriteString("```\n" + strings.Repeat("code line here\n", 40) + "```\n\n")
		}
	}
	out := ToMrkdwn(md.String())
	chunks := SplitMrkdwn(out, 40000)
	if len(chunks) < 2 {
		t.Fatalf("got %d chunks; want a split", len(chunks))
	}
	strip := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "```", "")), " ") }
	if got, want := strip(strings.Join(chunks, "\n")), strip(out); got != want {
		t.Errorf("split lost or added text (got %d chars, want %d)", len(got), len(want))
	}
	for i, c := range chunks {
		if n := utf8.RuneCountInString(c); n > 40000 {
			t.Errorf("chunk %d: %d runes", i, n)
		}
		if strings.Count(c, "```")%2 != 0 {
			t.Errorf("chunk %d: unbalanced fence", i)
		}
	}
}

// BenchmarkToMrkdwnAndSplit renders and splits a 120 KB reply, the path of
// every long Slack reply.
func BenchmarkToMrkdwnAndSplit(b *testing.B) {
	var md strings.Builder
	for md.Len() < 120_000 {
		md.WriteString("## Step\n\nSome **bold** text, a [link](https://example.com/x) and `code`.\n\n| a | b |\n|---|---|\n| 日本 | 2 |\n\n```\nline\n```\n\n")
	}
	src := md.String()
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		_ = SplitMrkdwn(ToMrkdwn(src), 40000)
	}
}
