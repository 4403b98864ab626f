package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fault makes the engine shim fail one kind of engine command.
type Fault struct {
	// Match is a substring of the command's arguments joined by spaces
	// ("network create --internal", "network rm").
	Match string
	// Times is how many matching calls fail, the first ones; -1 means all.
	Times int
	// Message is written to standard error; default "Error: injected
	// failure".
	Message string
	// Exit is the exit status; default 125 (an engine error).
	Exit int
	// Delay, when set, makes matching calls wait this long and then run
	// the real engine instead of failing.
	Delay time.Duration
	// Detach, with Delay, runs the delayed real engine out of the
	// client's reach: killing the client (the shim) does not stop it, as
	// the engine completes a request whose client was killed.
	Detach bool
}

// EngineShim returns the path of a script named after engine (so it is
// recognised as podman or docker) that runs the real engine for every
// command except those matching a fault, which fail as podman does (a
// message on standard error and status 125) or are delayed. Faults are injected on the
// real engine rather than by stubbing our own code.
func EngineShim(t testing.TB, engine string, faults ...Fault) string {
	t.Helper()
	real, err := exec.LookPath(engine)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("#!/bin/sh\nargs=\"$*\"\n")
	for i, f := range faults {
		msg, code := f.Message, f.Exit
		if msg == "" {
			msg = "Error: injected failure"
		}
		if code == 0 {
			code = 125
		}
		count := filepath.Join(dir, fmt.Sprintf("fault%d.count", i))
		fmt.Fprintf(&b, "case \"$args\" in *%s*)\n", shQuote(f.Match))
		if f.Delay > 0 && f.Detach {
			fmt.Fprintf(&b, "  ( sleep %.3f; exec %s \"$@\" ) & wait $!; exit $?;;\nesac\n", f.Delay.Seconds(), shQuote(real))
			continue
		}
		if f.Delay > 0 {
			fmt.Fprintf(&b, "  sleep %.3f;;\nesac\n", f.Delay.Seconds())
			continue
		}
		if f.Times >= 0 {
			// One byte per injected failure: a counter that needs no locking
			// beyond O_APPEND.
			fmt.Fprintf(&b, "  n=$(cat %s 2>/dev/null | wc -c)\n  if [ \"$n\" -lt %d ]; then printf x >> %s; echo %s >&2; exit %d; fi;;\n",
				shQuote(count), f.Times, shQuote(count), shQuote(msg), code)
		} else {
			fmt.Fprintf(&b, "  echo %s >&2; exit %d;;\n", shQuote(msg), code)
		}
		b.WriteString("esac\n")
	}
	fmt.Fprintf(&b, "exec %s \"$@\"\n", shQuote(real))
	p := filepath.Join(dir, filepath.Base(engine))
	if err := os.WriteFile(p, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
