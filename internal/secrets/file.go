package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/airut/airut/internal/atomicfile"
)

// replacementFileVersion changes when the file's meaning changes, so a proxy
// never silently misreads a newer gateway's file. Version 2 names a kind
// per entry.
const replacementFileVersion = 2

// The replacement file is a tagged union, like tokenizer's secrets: each
// entry names its kind and carries that kind's object, and nothing else.
//
//	{"version": 2, "credentials": [
//	  {"kind": "masked", "name": "GH_TOKEN", "masked": {"surrogate": …, "value": …, …}},
//	  {"kind": "github-app", "name": "GH_TOKEN", "github_app": {"surrogate": …, "app_id": …, "private_key": …, …}},
//	  {"kind": "aws-sigv4", "name": "AWS", "aws": {"access_key_id": {"surrogate": …, "value": …}, …}}]}
type replacementFile struct {
	Version     int               `json:"version"`
	Credentials []json.RawMessage `json:"credentials"`
}

type fileCredential struct {
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Masked    *fileMasked    `json:"masked,omitempty"`
	GitHubApp *fileGitHubApp `json:"github_app,omitempty"`
	AWS       *fileAWS       `json:"aws,omitempty"`
}

// knownKinds are the kinds this proxy can inject.
var knownKinds = []string{KindMasked, KindGitHubApp, KindAWS}

// fileMasked is the wire form of one masked secret. It carries the real
// value in clear: the file is written 0600 and read only by the proxy.
type fileMasked struct {
	Surrogate               string   `json:"surrogate"`
	Value                   string   `json:"value"`
	Scopes                  []string `json:"scopes"`
	Headers                 []string `json:"headers"`
	AllowForeignCredentials bool     `json:"allow_foreign_credentials"`
}

// WriteReplacementFile writes the proxy's replacement map to path, mode
// 0600, atomically (temporary file in the same directory, then rename), so
// the proxy never reads a half-written file.
func (m *Map) WriteReplacementFile(path string) error {
	f := struct {
		Version     int              `json:"version"`
		Credentials []fileCredential `json:"credentials"`
	}{Version: replacementFileVersion, Credentials: []fileCredential{}}
	for _, e := range m.masked {
		f.Credentials = append(f.Credentials, fileCredential{Kind: KindMasked, Name: e.name, Masked: &fileMasked{
			Surrogate:               e.surrogate,
			Value:                   e.real.Reveal(),
			Scopes:                  e.scopes,
			Headers:                 e.headers,
			AllowForeignCredentials: e.allowForeign,
		}})
	}
	for _, e := range m.apps {
		f.Credentials = append(f.Credentials, fileCredential{Kind: KindGitHubApp, Name: e.name, GitHubApp: e.fileGitHubApp()})
	}
	for i := range m.aws {
		e := &m.aws[i]
		f.Credentials = append(f.Credentials, fileCredential{Kind: KindAWS, Name: e.name, AWS: e.file()})
	}
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("write replacement file %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write replacement file %s: %w", path, err)
	}
	return nil
}

// LoadReplacementFile reads a file written by WriteReplacementFile. It
// fails closed: another version, an unknown kind, unknown fields, or an
// entry that could replace nothing are errors, never skipped.
func LoadReplacementFile(path string) (*Replacements, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read replacement file: %w", err)
	}
	r, err := parseReplacements(data)
	if err != nil {
		return nil, fmt.Errorf("read replacement file %s: %w", path, err)
	}
	return r, nil
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func parseReplacements(data []byte) (*Replacements, error) {
	// The version is read first, on its own, so that a file of another
	// version is reported as such and not as an unknown field.
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.Version != replacementFileVersion {
		return nil, fmt.Errorf("version %d, want %d", v.Version, replacementFileVersion)
	}
	var f replacementFile
	if err := strictDecode(data, &f); err != nil {
		return nil, err
	}
	r := &Replacements{}
	var errs []error
	for i, raw := range f.Credentials {
		var head struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			errs = append(errs, fmt.Errorf("credentials[%d]: %w", i, err))
			continue
		}
		where := fmt.Sprintf("credentials[%d] (%s)", i, head.Name)
		var fc fileCredential
		if err := strictDecode(raw, &fc); err != nil {
			if !slices.Contains(knownKinds, head.Kind) {
				err = fmt.Errorf("unknown kind %q", head.Kind)
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if err := r.add(fc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// add takes one decoded entry: exactly its kind's object, nothing else.
func (r *Replacements) add(fc fileCredential) error {
	if fc.Name == "" {
		return errors.New("name is empty")
	}
	objects := 0
	for _, set := range []bool{fc.Masked != nil, fc.GitHubApp != nil, fc.AWS != nil} {
		if set {
			objects++
		}
	}
	if objects > 1 {
		return fmt.Errorf("kind %s with more than one kind's object", fc.Kind)
	}
	switch fc.Kind {
	case KindMasked:
		if fc.Masked == nil {
			return errors.New("kind masked without a masked object")
		}
		e, err := fc.Masked.entry(fc.Name)
		if err != nil {
			return err
		}
		r.masked = append(r.masked, e)
	case KindGitHubApp:
		if fc.GitHubApp == nil {
			return errors.New("kind github-app without a github_app object")
		}
		e, err := fc.GitHubApp.entry(fc.Name)
		if err != nil {
			return err
		}
		r.apps = append(r.apps, e)
	case KindAWS:
		if fc.AWS == nil {
			return fmt.Errorf("kind %s without an aws object", KindAWS)
		}
		e, err := fc.AWS.entry(fc.Name)
		if err != nil {
			return err
		}
		r.aws = append(r.aws, e)
	default:
		return fmt.Errorf("unknown kind %q", fc.Kind)
	}
	return nil
}

func (fm *fileMasked) entry(name string) (entry, error) {
	if err := checkMasked(Masked{Value: fm.Value, Scopes: fm.Scopes, Headers: fm.Headers}); err != nil {
		return entry{}, err
	}
	switch {
	case fm.Surrogate == "":
		return entry{}, errors.New("surrogate is empty")
	case fm.Surrogate == fm.Value:
		return entry{}, errors.New("surrogate equals the real value")
	}
	return entry{
		name:         name,
		real:         NewValue(fm.Value),
		surrogate:    fm.Surrogate,
		scopes:       fm.Scopes,
		headers:      fm.Headers,
		allowForeign: fm.AllowForeignCredentials,
	}, nil
}
