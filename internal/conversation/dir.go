package conversation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/airut/airut/internal/atomicfile"
)

// Dir is one conversation's directory.
type Dir struct {
	ID    string
	Path  string
	store *Store
}

// Paths of the parts of the directory. Only Workspace, Claude, Inbox,
// Outbox and Storage are for mounting into a container.
func (d *Dir) Workspace() string  { return filepath.Join(d.Path, WorkspaceDir) }
func (d *Dir) Claude() string     { return filepath.Join(d.Path, ClaudeDir) }
func (d *Dir) Inbox() string      { return filepath.Join(d.Path, InboxDir) }
func (d *Dir) Outbox() string     { return filepath.Join(d.Path, OutboxDir) }
func (d *Dir) Storage() string    { return filepath.Join(d.Path, StorageDir) }
func (d *Dir) NetworkLog() string { return filepath.Join(d.Path, NetworkLogFile) }
func (d *Dir) EventsPath() string { return filepath.Join(d.Path, EventsFile) }
func (d *Dir) MetaPath() string   { return filepath.Join(d.Path, MetaFile) }

// Load reads conversation.json.
func (d *Dir) Load() (*Record, error) {
	return readRecord(d.MetaPath())
}

// Save writes conversation.json atomically, stamping Updated with the
// store's clock.
func (d *Dir) Save(r *Record) error {
	e := d.store.entry(d.ID)
	e.meta.Lock()
	defer e.meta.Unlock()
	return d.write(r)
}

// Update loads the record, applies fn and saves the result, serialised
// against other updates of the same conversation in this process. Nothing
// is written when fn fails.
func (d *Dir) Update(fn func(*Record) error) (*Record, error) {
	e := d.store.entry(d.ID)
	e.meta.Lock()
	defer e.meta.Unlock()
	r, err := d.Load()
	if err != nil {
		return nil, err
	}
	if err := fn(r); err != nil {
		return nil, err
	}
	if err := d.write(r); err != nil {
		return nil, err
	}
	return r, nil
}

func (d *Dir) write(r *Record) error {
	r.Updated = d.store.now()
	if r.Tasks == nil {
		r.Tasks = []Task{}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", d.MetaPath(), err)
	}
	return atomicfile.Write(d.MetaPath(), append(data, '\n'), 0o644)
}

// AppendEvent adds one stream-json line to events.jsonl. A trailing line
// break is dropped; a line break inside would split the event and is an
// error. Blank lines are ignored.
func (d *Dir) AppendEvent(raw []byte) error {
	raw = bytes.TrimRight(raw, "\r\n")
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if bytes.IndexByte(raw, '\n') >= 0 {
		return fmt.Errorf("append event to %s: event contains a line break", d.EventsPath())
	}
	e := d.store.entry(d.ID)
	e.events.Lock()
	defer e.events.Unlock()
	f, err := os.OpenFile(d.EventsPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	// One write per line so a reader tailing the file never sees half an
	// event followed by another writer's.
	line := make([]byte, 0, len(raw)+1)
	line = append(append(line, raw...), '\n')
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("append event to %s: %w", d.EventsPath(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append event to %s: %w", d.EventsPath(), err)
	}
	return nil
}

// maxNameBytes keeps attachment names well under common filesystem limits
// (255 bytes) after a -N suffix.
const maxNameBytes = 200

// SanitizeName turns an attachment's name as sent into a safe base name:
// no directories, no control characters, not hidden, never empty.
func SanitizeName(name string) string {
	name = strings.ReplaceAll(name, `\`, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, name)
	// Leading dots would hide the file or, as "." and "..", name a folder.
	name = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(name), "."))
	if len(name) > maxNameBytes {
		ext := filepath.Ext(name)
		if len(ext) > 20 {
			ext = ""
		}
		cut := maxNameBytes - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	if name == "" {
		return "attachment"
	}
	return name
}

// SaveAttachment stores data in inbox/ under the sanitised base name of
// name, adding -1, -2, … before the extension when the name is taken. An
// existing file is never overwritten. It returns the name used.
func (d *Dir) SaveAttachment(name string, data []byte) (string, error) {
	return d.SaveAttachmentFrom(name, bytes.NewReader(data))
}

// SaveAttachmentFrom is SaveAttachment with the content read from r, so a
// large attachment is copied, not held in memory.
func (d *Dir) SaveAttachmentFrom(name string, r io.Reader) (string, error) {
	clean := SanitizeName(name)
	ext := filepath.Ext(clean)
	stem := strings.TrimSuffix(clean, ext)
	for n := 0; n < 10000; n++ {
		candidate := clean
		if n > 0 {
			candidate = stem + "-" + strconv.Itoa(n) + ext
		}
		path := filepath.Join(d.Inbox(), candidate)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("save attachment %q: %w", name, err)
		}
		_, werr := io.Copy(f, r)
		cerr := f.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(path)
			return "", fmt.Errorf("save attachment %q: %w", name, err)
		}
		return candidate, nil
	}
	return "", fmt.Errorf("save attachment %q: too many files with that name", name)
}

// OutboxFiles lists the regular files in the root of outbox/, sorted.
// Folders and symlinks are ignored: a symlink could point the gateway at
// any host file.
func (d *Dir) OutboxFiles() ([]string, error) {
	entries, err := os.ReadDir(d.Outbox())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// ErrTooLarge is returned by ReadOutboxFile for a file over the size
// limit; the file is left where it is.
var ErrTooLarge = errors.New("file too large")

// OutboxFile is one file in the outbox root.
type OutboxFile struct {
	Name string
	Size int64
}

// StatOutbox lists the regular files in the root of outbox/ with their
// sizes, sorted by name (as OutboxFiles).
func (d *Dir) StatOutbox() ([]OutboxFile, error) {
	names, err := d.OutboxFiles()
	if err != nil {
		return nil, err
	}
	var out []OutboxFile
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(d.Outbox(), n))
		if err != nil || !fi.Mode().IsRegular() {
			continue // gone or replaced since the listing
		}
		out = append(out, OutboxFile{Name: n, Size: fi.Size()})
	}
	return out, nil
}

// ReadOutboxFile reads one file listed by OutboxFiles, refusing anything
// that is not (or no longer) a regular file in the outbox root, and a file
// larger than max bytes (ErrTooLarge; a negative max means no limit). The limit
// holds while reading too: a file that grows past it is refused.
func (d *Dir) ReadOutboxFile(name string, max int64) ([]byte, error) {
	if !isBaseName(name) {
		return nil, fmt.Errorf("read outbox file %q: not a plain file name", name)
	}
	f, err := os.OpenFile(filepath.Join(d.Outbox(), name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read outbox file %q: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read outbox file %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read outbox file %q: not a regular file", name)
	}
	if max >= 0 && fi.Size() > max {
		return nil, fmt.Errorf("read outbox file %q: %d bytes, over %d: %w", name, fi.Size(), max, ErrTooLarge)
	}
	var rd io.Reader = f
	if max >= 0 {
		rd = io.LimitReader(f, max+1)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read outbox file %q: %w", name, err)
	}
	if max >= 0 && int64(len(data)) > max {
		return nil, fmt.Errorf("read outbox file %q: grew over %d bytes: %w", name, max, ErrTooLarge)
	}
	return data, nil
}

// ClearOutbox removes the named files from outbox/ after they were sent.
// Files already gone are not an error.
func (d *Dir) ClearOutbox(names []string) error {
	var errs []error
	for _, name := range names {
		if !isBaseName(name) {
			errs = append(errs, fmt.Errorf("clear outbox: %q is not a plain file name", name))
			continue
		}
		if err := os.Remove(filepath.Join(d.Outbox(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("clear outbox: %w", err))
		}
	}
	return errors.Join(errs...)
}

func isBaseName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`+"\x00")
}
