package config

import (
	"cmp"
	"slices"
	"strings"

	"github.com/airut/airut/internal/fileerr"
)

// FieldError is one problem in the config file, located by file, line and
// key path, e.g. "airut.yaml:42: repos.app.email.imap.server: required".
type FieldError struct {
	File string // base name of the config file
	Line int    // 1-based; 0 when unknown
	Path string // dotted key path; "" for the document itself
	Msg  string

	repo string // repo id the error belongs to, "" for global errors
}

func (e *FieldError) Error() string { return fileerr.Format(e.File, e.Line, e.Path, e.Msg) }

// Errors is every problem found in one load, in file order. Validation
// collects them all so an operator can fix a file in one pass.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *FieldError) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Path, b.Path)
	})
	return out
}
