package yamlwalk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse reads the single YAML document in data and returns its root node:
// nil for an empty file (or one with only comments). A syntax error, a
// second document or a parser failure is returned as Errors with one
// Error naming file and, where known, the line.
//
// A second document is an error rather than ignored: a file whose second
// half silently does nothing is the kind of surprise a security config
// must not have.
func Parse(file string, data []byte) (root *yaml.Node, err error) {
	// yaml.v3 has panicked on hostile input before; a bad file must be an
	// error, never a crash of the gateway.
	defer func() {
		if r := recover(); r != nil {
			root = nil
			err = Errors{{File: file, Message: fmt.Sprintf("YAML parser failed: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(file, err)
	default:
		return nil, Errors{{File: file, Line: extra.Line, Message: "only one YAML document is allowed"}}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func syntaxError(file string, err error) Errors {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Errors{{File: file, Line: line, Message: "YAML syntax error: " + m[2]}}
	}
	return Errors{{File: file, Message: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}}
}
