package markdown

import (
	"strings"
	"testing"
)

func TestToHTML(t *testing.T) {
	tests := []struct {
		name        string
		md          string
		contains    []string
		notContains []string
	}{
		{
			name:     "emphasis and code",
			md:       "Hello **world** and `code`.",
			contains: []string{"<strong>world</strong>", "<code>code</code>"},
		},
		{
			name:     "gfm table",
			md:       "| a | b |\n|---|---|\n| 1 | 2 |\n",
			contains: []string{"<table>", "<th>a</th>", "<td>2</td>"},
		},
		{
			name:        "inline raw html escaped",
			md:          "click <a href=\"http://evil\">here</a> now",
			contains:    []string{"&lt;a href=&#34;http://evil&#34;&gt;"},
			notContains: []string{"<a href=\"http://evil\">"},
		},
		{
			name:        "html block escaped",
			md:          "<script>alert(1)</script>\n\ntext",
			contains:    []string{"&lt;script&gt;alert(1)&lt;/script&gt;"},
			notContains: []string{"<script>"},
		},
		{
			name:        "javascript link dropped",
			md:          "[x](javascript:alert(1))",
			notContains: []string{"javascript:"},
		},
		{
			name:     "autolink",
			md:       "see https://example.com/pr/1",
			contains: []string{`<a href="https://example.com/pr/1">`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToHTML(tt.md)
			if err != nil {
				t.Fatalf("ToHTML: %v", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got, s) {
					t.Errorf("got %q; want it to contain %q", got, s)
				}
			}
			for _, s := range tt.notContains {
				if strings.Contains(got, s) {
					t.Errorf("got %q; want it not to contain %q", got, s)
				}
			}
		})
	}
}

func TestToText(t *testing.T) {
	tests := []struct {
		name string
		md   string
		want string
	}{
		{
			name: "emphasis stripped",
			md:   "Hello **world** and _you_.",
			want: "Hello world and you.\n",
		},
		{
			name: "heading and paragraphs",
			md:   "# Title\n\nfirst line\nsecond line\n",
			want: "Title\n\nfirst line\nsecond line\n",
		},
		{
			name: "link shows url",
			md:   "See [the PR](https://example.com/pr/1).",
			want: "See the PR (https://example.com/pr/1).\n",
		},
		{
			name: "lists",
			md:   "- one\n- two\n\n1. a\n2. b\n",
			want: "- one\n- two\n\n1. a\n2. b\n",
		},
		{
			name: "code block indented",
			md:   "```go\nfmt.Println(1)\n```\n",
			want: "    fmt.Println(1)\n",
		},
		{
			name: "quote",
			md:   "> quoted\n> more\n",
			want: "> quoted\n> more\n",
		},
		{
			name: "table aligned",
			md:   "| name | n |\n|---|---|\n| alpha | 1 |\n| b | 22 |\n",
			want: "name  | n\n------+---\nalpha | 1\nb     | 22\n",
		},
		{
			name: "raw html kept literally",
			md:   "a <b>bold</b> word",
			want: "a <b>bold</b> word\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ToText(tt.md); got != tt.want {
				t.Errorf("ToText(%q) = %q; want %q", tt.md, got, tt.want)
			}
		})
	}
}
