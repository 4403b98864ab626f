package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/airut/airut/internal/atomicfile"
	"github.com/airut/airut/internal/channel"
)

// spool keeps the attachments of accepted messages on disk from intake
// until the message is done at its source, so that messages waiting for a
// worker hold no attachment data in memory. One directory per message key:
// the files 0, 1, … and manifest.json with their names, written last.
type spool struct{ dir string }

// spooled is one attachment on disk.
type spooled struct {
	Name string
	Path string
}

const spoolManifest = "manifest.json"

func (s *spool) path(key string) string { return filepath.Join(s.dir, fileKey(key)) }

// put stores atts under key, replacing what was there, and returns them as
// files. With no attachments it returns what is already spooled under key:
// a Submit message replayed after a restart has only its spool.
func (s *spool) put(key string, atts []channel.Attachment) ([]spooled, error) {
	if len(atts) == 0 {
		return s.list(key)
	}
	dir := s.path(key)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	names := make([]string, len(atts))
	out := make([]spooled, len(atts))
	for i, a := range atts {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, a.Data, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("attachment spool: %w", err)
		}
		names[i] = a.Name
		out[i] = spooled{Name: a.Name, Path: p}
	}
	data, _ := json.Marshal(names)
	if err := atomicfile.Write(filepath.Join(dir, spoolManifest), data, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	return out, nil
}

// list returns the attachments spooled under key; none when there is no
// complete spool (a crash before the manifest was written).
func (s *spool) list(key string) ([]spooled, error) {
	dir := s.path(key)
	data, err := os.ReadFile(filepath.Join(dir, spoolManifest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, fmt.Errorf("attachment spool %s: %w", dir, err)
	}
	out := make([]spooled, len(names))
	for i, n := range names {
		out[i] = spooled{Name: n, Path: filepath.Join(dir, strconv.Itoa(i))}
	}
	return out, nil
}

func (s *spool) remove(key string) error {
	if err := os.RemoveAll(s.path(key)); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}
