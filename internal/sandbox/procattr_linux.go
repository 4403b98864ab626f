package sandbox

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the engine client when this
// process dies. A client outliving a SIGKILLed gateway goes on creating
// what it was asked to (a spare's proxy container) after the next start's
// sweep has run, and nobody removes it; dead at once, whatever it created
// is there for the sweep. The signal follows the OS thread that started
// the client, which the Go runtime keeps for the process's life (only a
// goroutine locked to its thread ends one, and nothing here locks).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
