package slack

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// slackToken matches Slack's markup in message text: <@U…>, <#C…|name>,
// <!here>, <url|label>.
var slackToken = regexp.MustCompile(`<([^<>\n]*)>`)

var unescapeText = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// inboundText turns Slack's markup into what a person reads: mentions of
// users and channels as @name and #name (the app's own mention removed),
// links as "label (url)", entities unescaped.
func (c *Channel) inboundText(ctx context.Context, text string) string {
	self := c.identity()
	out := slackToken.ReplaceAllStringFunc(text, func(tok string) string {
		inner := tok[1 : len(tok)-1]
		target, label, hasLabel := strings.Cut(inner, "|")
		switch {
		case strings.HasPrefix(target, "@U") || strings.HasPrefix(target, "@W"):
			id := target[1:]
			if id == self.userID {
				return ""
			}
			if u, err := c.users.get(ctx, id); err == nil {
				return "@" + u.displayName()
			}
			if hasLabel {
				return "@" + label
			}
			return "@" + id
		case strings.HasPrefix(target, "#C") || strings.HasPrefix(target, "#G"):
			if !hasLabel || label == "" {
				label = c.channels.name(ctx, c.api, target[1:])
			} else {
				c.channels.remember(target[1:], label)
			}
			return "#" + label
		case strings.HasPrefix(target, "!subteam^"):
			if hasLabel {
				return label
			}
			return "@group"
		case strings.HasPrefix(target, "!"):
			if hasLabel {
				return label
			}
			name, _, _ := strings.Cut(target[1:], "^")
			return "@" + name
		default:
			if hasLabel && label != "" && label != target && "mailto:"+label != target {
				return label + " (" + target + ")"
			}
			if hasLabel && label != "" {
				return label
			}
			return target
		}
	})
	return strings.TrimSpace(unescapeText.Replace(out))
}

// channelNames caches channel id → name, learnt from conversations.info
// and from <#C…|name> references.
type channelNames struct {
	mu    sync.Mutex
	names map[string]string
}

func (n *channelNames) remember(id, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names == nil {
		n.names = map[string]string{}
	}
	n.names[id] = name
}

func (n *channelNames) name(ctx context.Context, api *slack.Client, id string) string {
	n.mu.Lock()
	name, ok := n.names[id]
	n.mu.Unlock()
	if ok {
		if name == "" {
			return id
		}
		return name
	}
	ch, err := api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: id})
	if err != nil || ch.Name == "" {
		// Remembered as unnamed, so a channel the app cannot read is
		// not asked about on every message.
		n.remember(id, "")
		return id
	}
	n.remember(id, ch.Name)
	return ch.Name
}

func (n *channelNames) all() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]string, len(n.names))
	for id, name := range n.names {
		out[id] = name
	}
	return out
}

// candidate is a name that @name or #name in a reply may refer to.
type candidate struct {
	name string // lower case
	repl string // <@U…> or <#C…>
}

// mentionCandidates are the users and channels the channel has seen: a
// reply can only mention someone the conversation has met, never guess.
func (c *Channel) mentionCandidates() (users, chans []candidate) {
	seen := map[string]bool{}
	for _, u := range c.users.cached() {
		if u.Deleted || u.IsBot {
			continue
		}
		for _, n := range []string{u.Profile.DisplayName, u.Name, u.RealName, u.Profile.RealName} {
			n = strings.ToLower(strings.TrimSpace(n))
			if n != "" && !seen["@"+n] {
				seen["@"+n] = true
				users = append(users, candidate{name: n, repl: "<@" + u.ID + ">"})
			}
		}
	}
	for id, n := range c.channels.all() {
		n = strings.ToLower(n)
		if n != "" && !seen["#"+n] {
			seen["#"+n] = true
			chans = append(chans, candidate{name: n, repl: "<#" + id + ">"})
		}
	}
	longestFirst := func(cs []candidate) {
		sort.Slice(cs, func(i, j int) bool {
			if len(cs[i].name) != len(cs[j].name) {
				return len(cs[i].name) > len(cs[j].name)
			}
			return cs[i].name < cs[j].name
		})
	}
	longestFirst(users)
	longestFirst(chans)
	return users, chans
}

// rewriteMentions turns @name and #name in rendered mrkdwn into real
// mentions where name is a known user or channel. Code and links are left
// alone, and so is an @ inside a word (an e-mail address).
func rewriteMentions(text string, users, chans []candidate) string {
	if len(users) == 0 && len(chans) == 0 {
		return text
	}
	var b strings.Builder
	inFence := false
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			b.WriteString(line)
			continue
		}
		if inFence {
			b.WriteString(line)
			continue
		}
		b.WriteString(rewriteLine(line, users, chans))
	}
	return b.String()
}

func rewriteLine(line string, users, chans []candidate) string {
	var b strings.Builder
	inCode := false
	for i := 0; i < len(line); {
		ch := line[i]
		switch {
		case ch == '`':
			inCode = !inCode
		case inCode:
		case ch == '<':
			if j := strings.IndexByte(line[i:], '>'); j > 0 {
				b.WriteString(line[i : i+j+1])
				i += j + 1
				continue
			}
		case (ch == '@' || ch == '#') && boundaryBefore(line, i):
			cands := users
			if ch == '#' {
				cands = chans
			}
			if c, n := matchCandidate(line[i+1:], cands); n > 0 {
				b.WriteString(c.repl)
				i += 1 + n
				continue
			}
		}
		b.WriteByte(ch)
		i++
	}
	return b.String()
}

func boundaryBefore(s string, i int) bool {
	if i == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-' || r == '@' || r == '#' || r == '/' || r == '&')
}

// matchCandidate returns the longest candidate that s starts with (case
// folded) and that ends at a word boundary, and its length in s.
func matchCandidate(s string, cands []candidate) (candidate, int) {
	for _, c := range cands {
		n := len(c.name)
		if len(s) < n || !strings.EqualFold(s[:n], c.name) {
			continue
		}
		if n < len(s) {
			r, _ := utf8.DecodeRuneInString(s[n:])
			if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' {
				continue
			}
		}
		return c, n
	}
	return candidate{}, 0
}
