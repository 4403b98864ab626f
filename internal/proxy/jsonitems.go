package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// member is one member of a JSON object, its value's bytes and their
// offsets in the object's bytes.
type member struct {
	key        string
	val        []byte
	start, end int
}

// members reads a JSON object's members in order, duplicates included.
func members(data []byte) ([]member, error) { return jsonItems(data, '{') }

// elements reads a JSON array's elements in order, like members.
func elements(data []byte) ([]member, error) { return jsonItems(data, '[') }

// jsonItems reads the members of an object or the elements of an array,
// each with the offsets of its value, and nothing after them.
func jsonItems(data []byte, open json.Delim) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != open {
		return nil, fmt.Errorf("not a JSON %s", map[json.Delim]string{'{': "object", '[': "array"}[open])
	}
	var out []member
	for dec.More() {
		var key string
		if open == '{' {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ = tok.(string)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		out = append(out, member{key: key, val: raw, start: end - len(raw), end: end})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the value")
	}
	return out, nil
}
