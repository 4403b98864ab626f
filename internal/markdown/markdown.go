// Package markdown renders the agent's Markdown replies for each channel:
// HTML (with a plain-text alternative) for email, and mrkdwn for Slack.
//
// The agent's output is untrusted: raw HTML in it is shown as text, never
// passed through, so a reply cannot inject markup or scripts into a mail
// client.
package markdown

import (
	"bytes"
	"fmt"
	"html"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
	"github.com/yuin/goldmark/renderer"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"
)

// parse is shared by every output format so that all channels agree on what
// the agent wrote (GFM: tables, strikethrough, autolinks, task lists).
func parse(source []byte) ast.Node {
	p := goldmark.New(goldmark.WithExtensions(extension.GFM)).Parser()
	return p.Parse(text.NewReader(source), parser.WithContext(parser.NewContext()))
}

var htmlConverter = goldmark.New(
	goldmark.WithExtensions(extension.GFM),
	goldmark.WithRendererOptions(
		// Priority below the HTML renderer's 1000 so these win.
		renderer.WithNodeRenderers(util.Prioritized(escapedRawHTML{}, 100)),
	),
)

// ToHTML renders md as an HTML fragment. Raw HTML in md is escaped and shown
// literally; link URLs with dangerous schemes (javascript:, data: other than
// images) are dropped by goldmark's safe mode.
func ToHTML(md string) (string, error) {
	var buf bytes.Buffer
	if err := htmlConverter.Convert([]byte(md), &buf); err != nil {
		return "", fmt.Errorf("render markdown to html: %w", err)
	}
	return buf.String(), nil
}

// escapedRawHTML renders inline raw HTML and HTML blocks as escaped text.
// Goldmark's default safe mode drops them ("raw HTML omitted"), which would
// hide part of the agent's answer from the user; escaping keeps it readable
// and just as inert.
type escapedRawHTML struct{}

func (escapedRawHTML) RegisterFuncs(reg renderer.NodeRendererFuncRegisterer) {
	reg.Register(ast.KindRawHTML, renderRawHTML)
	reg.Register(ast.KindHTMLBlock, renderHTMLBlock)
}

func renderRawHTML(w util.BufWriter, source []byte, node ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		return ast.WalkSkipChildren, nil
	}
	n := node.(*ast.RawHTML)
	for i := 0; i < n.Segments.Len(); i++ {
		seg := n.Segments.At(i)
		_, _ = w.WriteString(html.EscapeString(string(seg.Value(source))))
	}
	return ast.WalkSkipChildren, nil
}

func renderHTMLBlock(w util.BufWriter, source []byte, node ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		return ast.WalkContinue, nil
	}
	n := node.(*ast.HTMLBlock)
	var b bytes.Buffer
	for i := 0; i < n.Lines().Len(); i++ {
		line := n.Lines().At(i)
		b.Write(line.Value(source))
	}
	if n.HasClosure() {
		b.Write(n.ClosureLine.Value(source))
	}
	_, _ = w.WriteString("<p>")
	_, _ = w.WriteString(html.EscapeString(string(bytes.TrimRight(b.Bytes(), "\n"))))
	_, _ = w.WriteString("</p>\n")
	return ast.WalkSkipChildren, nil
}
