package sandboxcli_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStdinForwarded: airut-sandbox passes its standard input to the
// command (S11), from a real pipe as a shell gives it, with EOF; a command
// that does not read its input is not held up by an input that never
// ends; and no input (/dev/null, a terminal) reads as empty.
func TestStdinForwarded(t *testing.T) {
	_, base := setup(t)
	repo(t, base, nil)
	bin := binary(t)
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB, more than any pipe buffer

	cases := []struct {
		name    string
		stdin   func(t *testing.T) *os.File // nil: a pipe fed from input
		input   string
		command []string
		want    string
	}{
		{"echo hi piped to cat", nil, "hi\n", []string{"cat"}, "hi\n"},
		{"EOF reaches the command", nil, "a\nb\n", []string{"sh", "-c", "wc -l; echo done"}, "2\ndone\n"},
		{"large input", nil, big, []string{"wc", "-c"}, fmt.Sprintf("%d\n", len(big))},
		{"command that does not read", openEndlessPipe, "", []string{"echo", "ok"}, "ok\n"},
		{"/dev/null", openDevNull, "", []string{"sh", "-c", "cat; echo done"}, "done\n"},
		{"terminal", openTerminal, "", []string{"sh", "-c", "cat; echo done"}, "done\n"},
	}
	t.Run("shell pipeline", func(t *testing.T) {
		sh := exec.Command("sh", "-c", `echo hi | "$BIN" run -- cat`)
		sh.Env = append(os.Environ(), "BIN="+bin, "XDG_STATE_HOME="+t.TempDir())
		if out, err := sh.Output(); err != nil || string(out) != "hi\n" {
			t.Errorf("echo hi | airut-sandbox run -- cat: %q, %v", out, err)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"run", "--"}, tc.command...)...)
			cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
			if tc.stdin != nil {
				cmd.Stdin = tc.stdin(t)
			} else {
				cmd.Stdin = strings.NewReader(tc.input) // exec feeds it through a pipe
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("airut-sandbox: %v (stderr %q)", err, stderr.String())
				}
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-done
				t.Fatalf("airut-sandbox did not return: the command was left waiting on its input (stderr %q)", stderr.String())
			}
			if got := stdout.String(); got != tc.want {
				t.Errorf("stdout %q; want %q", truncate(got), truncate(tc.want))
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// openEndlessPipe is a pipe whose writer stays open until the test ends.
func openEndlessPipe(t *testing.T) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r
}

func openDevNull(t *testing.T) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// openTerminal is the follower side of a new pseudo-terminal, nobody
// typing on it: were it forwarded, cat would wait on it for ever.
func openTerminal(t *testing.T) *os.File {
	leader, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { leader.Close() })
	fd := int(leader.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	follower, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal's follower: %v", err)
	}
	t.Cleanup(func() { follower.Close() })
	if _, err := unix.IoctlGetTermios(int(follower.Fd()), unix.TCGETS); err != nil {
		t.Fatalf("the follower is not a terminal: %v", err)
	}
	return follower
}
