package markdown

import (
	"net/url"
	"strings"
	"unicode"

	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
	"golang.org/x/text/width"
)

// ToMrkdwn renders md as Slack mrkdwn: *bold*, _italics_, ~strike~,
// <url|label> links, bullet and numbered lists, > quotes and ``` code
// blocks. Headings become bold lines. Slack has no tables, so a table becomes
// a code block with its columns aligned (East-Asian wide characters count as
// two columns, as a monospace font draws them).
//
// &, < and > are escaped everywhere, as Slack requires: the agent's text can
// never produce a mention (<!channel>, <@U…>) or a link of its own through
// raw angle brackets. Links keep only http, https and mailto URLs.
func ToMrkdwn(md string) string {
	src := []byte(md)
	doc := parse(src)
	r := mrkdwnRenderer{src: src}
	out := strings.Join(r.blocks(doc), "\n\n")
	return strings.Trim(out, "\n") + "\n"
}

type mrkdwnRenderer struct{ src []byte }

func (r mrkdwnRenderer) blocks(n ast.Node) []string {
	var out []string
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		if b := r.block(c); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func (r mrkdwnRenderer) block(n ast.Node) string {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		return strings.TrimSpace(r.inline(n))
	case *ast.Heading:
		t := strings.TrimSpace(r.inline(n))
		if t == "" {
			return ""
		}
		return "*" + t + "*"
	case *ast.ThematicBreak:
		return "──────────"
	case *ast.CodeBlock, *ast.FencedCodeBlock:
		var b strings.Builder
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.WriteString(strings.TrimRight(string(seg.Value(r.src)), "\r\n"))
			b.WriteString("\n")
		}
		return codeFence(escapeMrkdwn(strings.TrimRight(b.String(), "\n")))
	case *ast.HTMLBlock:
		var b strings.Builder
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.Write(seg.Value(r.src))
		}
		if n.HasClosure() {
			b.Write(n.ClosureLine.Value(r.src))
		}
		return escapeMrkdwn(strings.TrimSpace(b.String()))
	case *ast.Blockquote:
		inner := strings.Join(r.blocks(n), "\n\n")
		return prefixLines(inner, "> ", "> ")
	case *ast.List:
		return r.list(n)
	case *east.Table:
		return codeFence(escapeMrkdwn(alignTable(tableCells(n, r.src), DisplayWidth)))
	default:
		if n.Type() == ast.TypeBlock {
			return strings.Join(r.blocks(n), "\n\n")
		}
		return strings.TrimSpace(r.inline(n))
	}
}

func codeFence(body string) string { return "```\n" + body + "\n```" }

// list indents an item's further lines by four spaces whatever its
// marker: in Slack's proportional font two spaces look like one.
func (r mrkdwnRenderer) list(n *ast.List) string {
	return layoutList(n, "• ", func(string) string { return "    " }, r.blocks)
}

func (r mrkdwnRenderer) inline(n ast.Node) string {
	var b strings.Builder
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		r.writeInline(&b, c)
	}
	return b.String()
}

func (r mrkdwnRenderer) writeInline(b *strings.Builder, n ast.Node) {
	switch n := n.(type) {
	case *ast.Text:
		b.WriteString(escapeMrkdwn(string(n.Segment.Value(r.src))))
		if n.HardLineBreak() || n.SoftLineBreak() {
			b.WriteString("\n")
		}
	case *ast.String:
		b.WriteString(escapeMrkdwn(string(n.Value)))
	case *ast.CodeSpan:
		var code strings.Builder
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			if t, ok := c.(*ast.Text); ok {
				code.Write(t.Segment.Value(r.src))
			}
		}
		b.WriteString("`" + escapeMrkdwn(code.String()) + "`")
	case *ast.Emphasis:
		mark := "_"
		if n.Level >= 2 {
			mark = "*"
		}
		r.wrap(b, n, mark)
	case *east.Strikethrough:
		r.wrap(b, n, "~")
	case *ast.Link:
		label := strings.TrimSpace(r.inline(n))
		writeLink(b, string(n.Destination), label)
	case *ast.AutoLink:
		u := string(n.URL(r.src))
		if n.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(strings.ToLower(u), "mailto:") {
			writeLink(b, "mailto:"+u, escapeMrkdwn(u))
			return
		}
		writeLink(b, u, "")
	case *ast.Image:
		alt := strings.TrimSpace(r.inline(n))
		if alt == "" {
			alt = "image"
		}
		writeLink(b, string(n.Destination), alt)
	case *ast.RawHTML:
		for i := 0; i < n.Segments.Len(); i++ {
			seg := n.Segments.At(i)
			b.WriteString(escapeMrkdwn(string(seg.Value(r.src))))
		}
	case *east.TaskCheckBox:
		if n.IsChecked {
			b.WriteString("☑ ")
		} else {
			b.WriteString("☐ ")
		}
	default:
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			r.writeInline(b, c)
		}
	}
}

// wrap encloses n's content in mark. Slack only sees a mark that touches
// a word, so spaces inside the span are moved outside it.
func (r mrkdwnRenderer) wrap(b *strings.Builder, n ast.Node, mark string) {
	inner := r.inline(n)
	trimmed := strings.TrimSpace(inner)
	if trimmed == "" {
		b.WriteString(inner)
		return
	}
	lead := inner[:len(inner)-len(strings.TrimLeftFunc(inner, unicode.IsSpace))]
	trail := inner[len(strings.TrimRightFunc(inner, unicode.IsSpace)):]
	b.WriteString(lead + mark + trimmed + mark + trail)
}

// writeLink writes <url|label>, or the label alone when the URL's scheme is
// not one a reader should be sent to.
func writeLink(b *strings.Builder, dest, label string) {
	u, err := url.Parse(strings.TrimSpace(dest))
	if err != nil || !safeScheme(u.Scheme) {
		b.WriteString(label)
		return
	}
	s := linkURLEscaper.Replace(u.String())
	label = strings.ReplaceAll(label, "|", "¦")
	if label == "" || label == escapeMrkdwn(dest) {
		b.WriteString("<" + s + ">")
		return
	}
	b.WriteString("<" + s + "|" + label + ">")
}

func safeScheme(s string) bool {
	switch strings.ToLower(s) {
	case "http", "https", "mailto":
		return true
	}
	return false
}

var (
	mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	// | and > end a Slack link; they must not appear raw in its URL.
	linkURLEscaper = strings.NewReplacer("|", "%7C", ">", "%3E", "<", "%3C", " ", "%20")
)

// EscapeMrkdwn escapes the three characters Slack gives meaning to, for
// plain text put into mrkdwn.
func EscapeMrkdwn(s string) string { return mrkdwnEscaper.Replace(s) }

func escapeMrkdwn(s string) string { return mrkdwnEscaper.Replace(s) }

// tableCells returns a table's rows as plain text cells: inside a code
// block nothing is formatted.
func tableCells(t *east.Table, src []byte) [][]string {
	var rows [][]string
	for row := t.FirstChild(); row != nil; row = row.NextSibling() {
		var cells []string
		for c := row.FirstChild(); c != nil; c = c.NextSibling() {
			cells = append(cells, strings.TrimSpace(strings.ReplaceAll(inlineText(c, src), "\n", " ")))
		}
		rows = append(rows, cells)
	}
	return rows
}

// alignTable lays rows out in columns, a rule under the header row; width
// measures a cell.
func alignTable(rows [][]string, width func(string) int) string {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(c))
		}
	}
	var b strings.Builder
	for ri, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString(" | ")
			}
			line.WriteString(c)
			line.WriteString(strings.Repeat(" ", widths[i]-width(c)))
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
		if ri == 0 {
			var sep []string
			for _, w := range widths {
				sep = append(sep, strings.Repeat("-", max(w, 1)))
			}
			b.WriteString(strings.Join(sep, "-+-"))
			b.WriteString("\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// DisplayWidth is the number of monospace columns s takes: East-Asian wide
// and fullwidth characters take two, combining marks and zero-width
// characters none.
func DisplayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Mn, r), unicode.Is(unicode.Me, r), unicode.Is(unicode.Cf, r):
		case r == '\u200b':
		default:
			switch width.LookupRune(r).Kind() {
			case width.EastAsianWide, width.EastAsianFullwidth:
				n += 2
			default:
				n++
			}
		}
	}
	return n
}
