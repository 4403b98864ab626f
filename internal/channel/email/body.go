package email

import (
	"regexp"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// quoteRemoved replaces quoted history at the end of an HTML message.
const quoteRemoved = "[quoted text removed]"

var (
	// "On Mon, 1 Jan 2026 at 10:00, Alice <a@b> wrote:" — the attribution
	// line mail clients put above a quote.
	attributionLine = regexp.MustCompile(`(?i)^\s*(on\b.*\bwrote|.*\bwrote)\s*:\s*$`)
	outlookOriginal = regexp.MustCompile(`(?i)^\s*-{2,}\s*original message\s*-{2,}\s*$`)
	underscoreRule  = regexp.MustCompile(`^\s*_{8,}\s*$`)
	dashRule        = regexp.MustCompile(`^\s*(-{3,}|_{3,}|\*{3,})\s*$`)
)

// htmlBody converts an HTML message body to Markdown-like text. Quoted
// history is recognised by the containers mail clients put it in: quotes
// between pieces of reply text (an inline reply) are kept as "> " lines, and
// a quote at the end is replaced by quoteRemoved.
func htmlBody(src string) string {
	doc, err := html.Parse(strings.NewReader(src))
	if err != nil {
		// x/net/html recovers from any malformed input; an error here means
		// the reader failed, which a strings.Reader does not.
		return ""
	}
	w := &htmlWalker{}
	w.walk(doc)
	w.flush()
	return joinSegments(w.segs)
}

type segment struct {
	quote bool
	text  string
}

type htmlWalker struct {
	segs    []segment
	buf     []byte
	inQuote bool
	// restQuoted is set at an Outlook reply header: Outlook puts the
	// quoted message after it as siblings, not inside a container, so
	// everything from there to the end is history.
	restQuoted bool
	prefix     []string // generic <blockquote> and list indentation
	pre        int
	lists      []int // item counters; -1 for unordered
}

func (w *htmlWalker) flush() {
	text := normalizeText(string(w.buf))
	w.buf = w.buf[:0]
	if text == "" {
		return
	}
	if n := len(w.segs); n > 0 && w.segs[n-1].quote == w.inQuote {
		w.segs[n-1].text += "\n\n" + text
		return
	}
	w.segs = append(w.segs, segment{quote: w.inQuote, text: text})
}

func (w *htmlWalker) startQuote() {
	w.flush()
	w.inQuote = true
}

func (w *htmlWalker) endQuote() {
	if w.restQuoted {
		return
	}
	w.flush()
	w.inQuote = false
}

func (w *htmlWalker) newline() {
	w.buf = append(w.buf, '\n')
	w.buf = append(w.buf, strings.Join(w.prefix, "")...)
}

func (w *htmlWalker) atLineStart() bool {
	if len(w.buf) == 0 {
		return true
	}
	s := strings.TrimRight(string(w.buf), " >")
	return s == "" || strings.HasSuffix(s, "\n")
}

// block separates block elements with a blank line, once.
func (w *htmlWalker) block() {
	if len(w.buf) == 0 {
		return
	}
	s := string(w.buf)
	trimmed := strings.TrimRight(s, " >")
	if strings.HasSuffix(trimmed, "\n\n") || trimmed == "" {
		return
	}
	if !strings.HasSuffix(trimmed, "\n") {
		w.newline()
	}
	w.newline()
}

func (w *htmlWalker) text(s string) {
	if w.pre > 0 {
		for i, line := range strings.Split(s, "\n") {
			if i > 0 {
				w.newline()
			}
			w.buf = append(w.buf, line...)
		}
		return
	}
	collapsed := strings.Join(strings.Fields(s), " ")
	space := func() {
		if len(w.buf) > 0 && !w.atLineStart() && w.buf[len(w.buf)-1] != ' ' {
			w.buf = append(w.buf, ' ')
		}
	}
	if collapsed == "" {
		space()
		return
	}
	if isSpace(s[0]) {
		space()
	}
	w.buf = append(w.buf, collapsed...)
	if isSpace(s[len(s)-1]) {
		w.buf = append(w.buf, ' ')
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' }

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	for _, c := range strings.Fields(attr(n, "class")) {
		if strings.EqualFold(c, class) {
			return true
		}
	}
	return false
}

// isQuote reports a container that holds quoted history (and is closed
// again: a reply may follow it).
func isQuote(n *html.Node) bool {
	switch n.DataAtom {
	case atom.Blockquote:
		return hasClass(n, "gmail_quote") || strings.EqualFold(attr(n, "type"), "cite")
	case atom.Div:
		// Attribution lines ("On ..., Alice wrote:") of Gmail and
		// Thunderbird, and Yahoo's quote container.
		return hasClass(n, "gmail_attr") || hasClass(n, "moz-cite-prefix") || hasClass(n, "yahoo_quoted")
	}
	return false
}

// isOutlookMarker reports where Outlook's quoted message starts.
func isOutlookMarker(n *html.Node) bool {
	id := strings.ToLower(attr(n, "id"))
	switch id {
	case "divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container":
		return true
	}
	if n.DataAtom == atom.Hr && id == "stopspelling" {
		return true
	}
	if n.DataAtom == atom.Div {
		style := strings.ToLower(strings.ReplaceAll(attr(n, "style"), " ", ""))
		if strings.Contains(style, "border-top:solid") {
			return true
		}
	}
	return false
}

func (w *htmlWalker) walk(n *html.Node) {
	switch n.Type {
	case html.TextNode:
		w.text(n.Data)
		return
	case html.DocumentNode:
		w.children(n)
		return
	case html.ElementNode:
	default:
		return
	}

	switch n.DataAtom {
	case atom.Head, atom.Script, atom.Style, atom.Title, atom.Template, atom.Meta, atom.Link:
		return
	}
	if !w.inQuote && isOutlookMarker(n) {
		w.startQuote()
		w.restQuoted = true
	}
	if !w.inQuote && isQuote(n) {
		w.startQuote()
		if n.DataAtom == atom.Blockquote {
			// The segment is marked as quoted already; a "> " prefix
			// here would quote it twice.
			w.block()
			w.children(n)
			w.block()
		} else {
			w.element(n)
		}
		w.endQuote()
		return
	}
	w.element(n)
}

func (w *htmlWalker) children(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		w.walk(c)
	}
}

func (w *htmlWalker) element(n *html.Node) {
	switch n.DataAtom {
	case atom.Br:
		w.newline()
	case atom.P, atom.Div, atom.Section, atom.Article, atom.Header, atom.Footer, atom.Table, atom.Center:
		w.block()
		w.children(n)
		w.block()
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		w.block()
		level := int(n.Data[1] - '0')
		w.buf = append(w.buf, strings.Repeat("#", level)+" "...)
		w.children(n)
		w.block()
	case atom.Hr:
		w.block()
		w.buf = append(w.buf, "---"...)
		w.block()
	case atom.Pre:
		w.block()
		w.buf = append(w.buf, "```"...)
		w.newline()
		w.pre++
		w.children(n)
		w.pre--
		if !w.atLineStart() {
			w.newline()
		}
		w.buf = append(w.buf, "```"...)
		w.block()
	case atom.Blockquote:
		w.block()
		w.prefix = append(w.prefix, "> ")
		w.buf = append(w.buf, "> "...)
		w.children(n)
		w.prefix = w.prefix[:len(w.prefix)-1]
		w.block()
	case atom.Ul, atom.Ol:
		w.block()
		counter := -1
		if n.DataAtom == atom.Ol {
			counter = 1
		}
		w.lists = append(w.lists, counter)
		w.children(n)
		w.lists = w.lists[:len(w.lists)-1]
		w.block()
	case atom.Li:
		if !w.atLineStart() {
			w.newline()
		}
		marker := "- "
		if k := len(w.lists); k > 0 && w.lists[k-1] > 0 {
			marker = itoa(w.lists[k-1]) + ". "
			w.lists[k-1]++
		}
		w.buf = append(w.buf, marker...)
		w.prefix = append(w.prefix, strings.Repeat(" ", len(marker)))
		w.children(n)
		w.prefix = w.prefix[:len(w.prefix)-1]
		if !w.atLineStart() {
			w.newline()
		}
	case atom.Tr:
		if !w.atLineStart() {
			w.newline()
		}
		first := true
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			if !first {
				w.buf = append(w.buf, " | "...)
			}
			first = false
			w.children(c)
		}
		w.newline()
	case atom.B, atom.Strong:
		w.wrap(n, "**")
	case atom.I, atom.Em:
		w.wrap(n, "*")
	case atom.Code:
		if w.pre > 0 {
			w.children(n)
			return
		}
		w.wrap(n, "`")
	case atom.A:
		start := len(w.buf)
		w.children(n)
		label := strings.TrimSpace(string(w.buf[start:]))
		href := attr(n, "href")
		if href != "" && !strings.HasPrefix(strings.ToLower(href), "mailto:") && label != href && label != "" {
			w.buf = append(w.buf, " ("+href+")"...)
		} else if label == "" && href != "" {
			w.buf = append(w.buf, href...)
		}
	case atom.Img:
		if alt := strings.TrimSpace(attr(n, "alt")); alt != "" {
			w.text("[image: " + alt + "]")
		}
	default:
		w.children(n)
	}
}

// wrap puts Markdown emphasis around n's text, unless it is blank: mail
// clients wrap whitespace in <b> often enough to make "** **" noise.
func (w *htmlWalker) wrap(n *html.Node, mark string) {
	start := len(w.buf)
	w.children(n)
	inner := string(w.buf[start:])
	if strings.TrimSpace(inner) == "" || strings.Contains(inner, "\n") {
		return
	}
	lead := inner[:len(inner)-len(strings.TrimLeft(inner, " "))]
	trimmed := strings.TrimSpace(inner)
	w.buf = append(w.buf[:start], lead+mark+trimmed+mark...)
	if strings.HasSuffix(inner, " ") {
		w.buf = append(w.buf, ' ')
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// normalizeText trims trailing space on every line and collapses runs of
// blank lines to one.
func normalizeText(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\u00a0", " "), "\n")
	var out []string
	blank := 0
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) == "" {
			blank++
			continue
		}
		if blank > 0 && len(out) > 0 {
			out = append(out, "")
		}
		blank = 0
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// joinSegments renders the reply: inline quotes as "> " lines, a trailing
// quote as quoteRemoved. A message that is nothing but a quote (a forward
// without a note) keeps it, so the agent sees what it was sent.
func joinSegments(segs []segment) string {
	last := -1
	for i, s := range segs {
		if !s.quote {
			last = i
		}
	}
	if last < 0 {
		var parts []string
		for _, s := range segs {
			parts = append(parts, quoteLines(s.text))
		}
		return strings.Join(parts, "\n\n")
	}
	var parts []string
	for i, s := range segs {
		switch {
		case !s.quote:
			text := s.text
			if i+1 < len(segs) && i == last {
				text = trimAttribution(text)
			}
			if text != "" {
				parts = append(parts, text)
			}
		case i < last:
			parts = append(parts, quoteLines(s.text))
		default:
			parts = append(parts, quoteRemoved)
			return strings.Join(parts, "\n\n")
		}
	}
	return strings.Join(parts, "\n\n")
}

func quoteLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l == "" {
			lines[i] = ">"
		} else {
			lines[i] = "> " + l
		}
	}
	return strings.Join(lines, "\n")
}

// trimAttribution drops an "On … wrote:" line and separator rules left at
// the end of reply text just above a removed quote.
func trimAttribution(s string) string {
	lines := strings.Split(s, "\n")
	for len(lines) > 0 {
		l := lines[len(lines)-1]
		switch {
		case strings.TrimSpace(l) == "":
		case len(lines) >= 2 && strings.HasPrefix(strings.TrimSpace(lines[len(lines)-2]), "On ") &&
			strings.HasSuffix(strings.TrimSpace(l), "wrote:"):
			// An attribution the sender's client wrapped onto two lines.
			lines = lines[:len(lines)-1]
		case attributionLine.MatchString(l), dashRule.MatchString(l):
		default:
			return strings.TrimRight(strings.Join(lines, "\n"), "\n ")
		}
		lines = lines[:len(lines)-1]
	}
	return ""
}

// textBody strips a trailing quoted block from a text/plain body: the "> "
// lines at the end and the attribution line above them, or an Outlook
// "Original Message" block. Quotes with reply text after them stay.
func textBody(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")

	// Outlook's plain-text reply header.
	for i, l := range lines {
		if outlookOriginal.MatchString(l) || (underscoreRule.MatchString(l) && nextNonBlankHasPrefix(lines, i+1, "From:")) {
			if strings.TrimSpace(strings.Join(lines[:i], "\n")) != "" {
				lines = lines[:i]
				break
			}
		}
	}

	end := len(lines)
	for end > 0 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	q := end
	for q > 0 && (strings.HasPrefix(lines[q-1], ">") || strings.TrimSpace(lines[q-1]) == "") {
		q--
	}
	if q < end && strings.HasPrefix(lines[end-1], ">") {
		head := strings.Join(lines[:q], "\n")
		head = trimAttribution(head)
		if strings.TrimSpace(head) != "" {
			return strings.TrimSpace(head)
		}
	}
	return strings.TrimSpace(strings.Join(lines[:end], "\n"))
}

func nextNonBlankHasPrefix(lines []string, from int, prefix string) bool {
	for _, l := range lines[from:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		return strings.HasPrefix(strings.TrimSpace(l), prefix)
	}
	return false
}
