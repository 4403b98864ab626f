package dashboard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wantsSSE: the same paths serve Server-Sent Events to a client that asks
// for them.
func wantsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// acquireStream takes one of the open-stream slots, or answers 429.
func (s *Server) acquireStream(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case s.streams <- struct{}{}:
		return func() { <-s.streams }, true
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many open streams; retry later", http.StatusTooManyRequests)
		return nil, false
	}
}

// sseWriter writes Server-Sent Events, every byte redacted; safe for
// concurrent use (a stream's tail and its bus watcher both write).
type sseWriter struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	rc  *http.ResponseController
	red func(string) string
}

func (s *Server) newSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), red: s.opts.Registry.Redact}
	sw.flush()
	return sw
}

// event sends one event; data may hold several lines.
func (sw *sseWriter) event(name, id, data string) error {
	var b strings.Builder
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	for _, l := range strings.Split(sw.red(data), "\n") {
		b.WriteString("data: " + strings.TrimRight(l, "\r") + "\n")
	}
	b.WriteString("\n")
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if _, err := io.WriteString(sw.w, b.String()); err != nil {
		return err
	}
	return sw.flush()
}

func (sw *sseWriter) heartbeat() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if _, err := io.WriteString(sw.w, ": heartbeat\n\n"); err != nil {
		return err
	}
	return sw.flush()
}

func (sw *sseWriter) flush() error { return sw.rc.Flush() }

// lastEventID is the resume point a client sends (Last-Event-ID on a
// reconnect, else the "after" query parameter the page wrote into its
// sse-connect URL).
func lastEventID(r *http.Request) (int64, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// maxLine bounds one line read from events.jsonl or the network log; the
// rest of a longer line is skipped (the NDJSON API says so in a stub).
const maxLine = 16 << 20

// tail reads the complete lines of path from byte offset from up to to
// (to < 0: to the end), calling emit with each line and the offset just
// after it. With follow set, it then waits for more (woken by wake or a
// poll) until done reports true and the file is read to its end, or ctx
// ends. A line still being written (no newline yet) is left for later.
func tail(ctx context.Context, path string, from, to int64, follow bool, wake <-chan struct{}, done func() bool,
	emit func(line []byte, end int64) error) error {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	off := from
	read := func() error {
		if f == nil {
			var err error
			if f, err = os.Open(path); err != nil {
				f = nil
				if errors.Is(err, os.ErrNotExist) {
					return nil // nothing recorded yet
				}
				return err
			}
		}
		var err error
		off, err = readLines(f, off, to, emit)
		return err
	}
	for {
		if err := read(); err != nil {
			return err
		}
		if !follow || (to >= 0 && off >= to) {
			return nil
		}
		if done() {
			// One more read after the end was seen: lines written just
			// before it.
			return read()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-poll.C:
		}
	}
}

// readLines emits the complete lines of f from off (up to to when to >=
// 0) and returns the offset after the last one.
func readLines(f *os.File, off, to int64, emit func([]byte, int64) error) (int64, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	var rd io.Reader = f
	if to >= 0 {
		rd = io.LimitReader(f, to-off)
	}
	br := bufio.NewReaderSize(rd, 64<<10)
	for {
		line, n, err := readLine(br)
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
			if n-1 > maxLine {
				line = []byte(fmt.Sprintf(`{"type":"airut_truncated","airut_truncated_bytes":%d}`, n-1))
			}
			if len(line) > 0 {
				if err := emit(line, off+n); err != nil {
					return off, err
				}
			}
			off += n
			continue
		}
		if err == io.EOF || err == nil {
			return off, nil // a partial line waits for its end
		}
		return off, err
	}
}

// readLine reads through the next newline, keeping at most about maxLine
// bytes of a longer line (and its newline) while counting all of it in n.
func readLine(br *bufio.Reader) (out []byte, n int64, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if len(out) <= maxLine {
			out = append(out, chunk...)
		} else if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			out = append(out, '\n')
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return out, n, err
	}
}
