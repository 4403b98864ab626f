package sandbox

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// engineProcess is an engine client whose standard output and error are
// streamed line by line while it runs.
//
// Its exit is noticed when the client process returns, not when its output
// ends: a rootless podman client runs its work in a re-executed child that
// holds the pipes, and when the parent is killed the output stays open
// while the container runs on. Waiting for the end of the output would
// never notice the death.
type engineProcess struct {
	cmd *exec.Cmd
	// exited is closed when the client process has returned; err is then
	// its exit status.
	exited chan struct{}
	err    error
	// drained is closed when both output streams have ended.
	drained chan struct{}
	readers []*os.File
}

// start runs cmd with its output streamed to stdout and stderr (either may
// be nil), each line also kept in tail when given, lines capped at maxLine.
func startStreaming(cmd *exec.Cmd, stdout, stderr func([]byte), tail *tailBuf, maxLine int) (*engineProcess, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	// Stdin is copied by a goroutine that Wait waits for: a client that
	// died without reading it must not hold Wait.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	// The child has its copies; ours must go, or the output never ends.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &engineProcess{cmd: cmd, exited: make(chan struct{}), drained: make(chan struct{}), readers: []*os.File{outR, errR}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); streamLines(outR, stdout, nil, maxLine) }()
	go func() { defer wg.Done(); streamLines(errR, stderr, tail, maxLine) }()
	go func() {
		wg.Wait()
		close(p.drained)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// drain waits for the rest of the output after the client has returned,
// for at most d (or until ctx ends); then it stops reading, so a stream
// held open by another process cannot hold the caller.
func (p *engineProcess) drain(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.drained:
	case <-t.C:
	case <-ctx.Done():
	}
	for _, r := range p.readers {
		r.Close()
	}
	<-p.drained
}

// streamLines hands every line to fn as it arrives. A line longer than max
// (0: DefaultMaxLine) is delivered cut at max with TruncatedMarker, the
// rest up to its newline dropped: memory stays bounded whatever the
// command prints. The tail, when given, keeps the lines' beginnings.
func streamLines(rd io.Reader, fn func([]byte), tail *tailBuf, max int) {
	if max <= 0 {
		max = DefaultMaxLine
	}
	br := bufio.NewReaderSize(rd, 64*1024)
	var line []byte
	truncated := false
	deliver := func() {
		if truncated {
			line = append(line, TruncatedMarker...)
		} else {
			line = trimEOL(line)
		}
		if tail != nil {
			tail.add(line)
		}
		if fn != nil {
			fn(line)
		}
		// Callers may keep the line: the next one gets a buffer of its own.
		line, truncated = nil, false
	}
	for {
		chunk, err := br.ReadSlice('\n')
		if !truncated {
			n := len(chunk)
			if err == nil {
				n = len(trimEOL(chunk))
			}
			if len(line)+n > max {
				line = append(line, chunk[:max-len(line)]...)
				truncated = true
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(line) > 0 || truncated || err == nil {
			deliver()
		}
		if err != nil {
			return
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytesTrimSuffix(b, '\n')
	return bytesTrimSuffix(b, '\r')
}

func bytesTrimSuffix(b []byte, c byte) []byte {
	if len(b) > 0 && b[len(b)-1] == c {
		return b[:len(b)-1]
	}
	return b
}

type tailBuf struct {
	mu  sync.Mutex
	n   int
	buf []string
}

func newTail(n int) *tailBuf { return &tailBuf{n: n} }

// tailLineMax is how much of each line a tail keeps: it explains failures
// in one-line reasons.
const tailLineMax = 1024

func (t *tailBuf) add(line []byte) {
	if len(line) > tailLineMax {
		line = line[:tailLineMax]
	}
	s := string(line)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, s)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
}

func (t *tailBuf) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.buf...)
}
