package markdown

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
)

// ToText renders md as readable plain text: the text/plain alternative of an
// email reply. Emphasis markers are dropped, links show their URL, lists and
// quotes keep their markers, code blocks are indented and tables are aligned.
func ToText(md string) string {
	src := []byte(md)
	doc := parse(src)
	out := strings.Join(textBlocks(doc, src), "\n\n")
	return strings.TrimRight(strings.TrimLeft(out, "\n"), " \n") + "\n"
}

// textBlocks renders the block children of n, one string per block.
func textBlocks(n ast.Node, src []byte) []string {
	var out []string
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		if b := textBlock(c, src); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func textBlock(n ast.Node, src []byte) string {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		return strings.TrimSpace(inlineText(n, src))
	case *ast.Heading:
		return strings.TrimSpace(inlineText(n, src))
	case *ast.ThematicBreak:
		return "----"
	case *ast.CodeBlock, *ast.FencedCodeBlock:
		var b strings.Builder
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.WriteString("    ")
			b.WriteString(strings.TrimRight(string(seg.Value(src)), "\r\n"))
			b.WriteString("\n")
		}
		return strings.TrimRight(b.String(), "\n")
	case *ast.HTMLBlock:
		var b strings.Builder
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.Write(seg.Value(src))
		}
		if n.HasClosure() {
			b.Write(n.ClosureLine.Value(src))
		}
		return strings.TrimSpace(b.String())
	case *ast.Blockquote:
		inner := strings.Join(textBlocks(n, src), "\n\n")
		return prefixLines(inner, "> ", "> ")
	case *ast.List:
		return layoutList(n, "- ", func(m string) string { return strings.Repeat(" ", len(m)) },
			func(c ast.Node) []string { return textBlocks(c, src) })
	case *east.Table:
		return tableText(n, src)
	default:
		if n.Type() == ast.TypeBlock {
			return strings.Join(textBlocks(n, src), "\n\n")
		}
		return strings.TrimSpace(inlineText(n, src))
	}
}

// layoutList lays out a list's items behind their markers (bullet, or the
// item's number for an ordered list); indent gives the prefix of an item's
// further lines for its marker, and blocks renders an item's blocks.
func layoutList(n *ast.List, bullet string, indent func(marker string) string, blocks func(ast.Node) []string) string {
	var items []string
	num := n.Start
	sep := "\n"
	if !n.IsTight {
		sep = "\n\n"
	}
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		marker := bullet
		if n.IsOrdered() {
			marker = fmt.Sprintf("%d. ", num)
			num++
		}
		items = append(items, prefixLines(strings.Join(blocks(c), sep), marker, indent(marker)))
	}
	return strings.Join(items, sep)
}

func prefixLines(s, first, rest string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		p := rest
		if i == 0 {
			p = first
		}
		if l == "" {
			lines[i] = strings.TrimRight(p, " ")
		} else {
			lines[i] = p + l
		}
	}
	return strings.Join(lines, "\n")
}

func inlineText(n ast.Node, src []byte) string {
	var b strings.Builder
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		writeInline(&b, c, src)
	}
	return b.String()
}

func writeInline(b *strings.Builder, n ast.Node, src []byte) {
	switch n := n.(type) {
	case *ast.Text:
		b.Write(n.Segment.Value(src))
		if n.HardLineBreak() || n.SoftLineBreak() {
			b.WriteString("\n")
		}
	case *ast.String:
		b.Write(n.Value)
	case *ast.CodeSpan:
		b.WriteString("`")
		b.WriteString(inlineText(n, src))
		b.WriteString("`")
	case *ast.Link:
		label := inlineText(n, src)
		dest := string(n.Destination)
		if label == "" || label == dest {
			b.WriteString(dest)
		} else {
			fmt.Fprintf(b, "%s (%s)", label, dest)
		}
	case *ast.AutoLink:
		b.Write(n.URL(src))
	case *ast.Image:
		alt := inlineText(n, src)
		fmt.Fprintf(b, "[image: %s]", alt)
	case *ast.RawHTML:
		for i := 0; i < n.Segments.Len(); i++ {
			seg := n.Segments.At(i)
			b.Write(seg.Value(src))
		}
	case *east.TaskCheckBox:
		if n.IsChecked {
			b.WriteString("[x] ")
		} else {
			b.WriteString("[ ] ")
		}
	default:
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			writeInline(b, c, src)
		}
	}
}

// tableText aligns the columns with spaces: a plain-text reader sees a grid,
// not a run of pipes.
func tableText(t *east.Table, src []byte) string {
	return alignTable(tableCells(t, src), utf8.RuneCountInString)
}
