package sandboxcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/sandbox"
)

// TeardownCommand is the hidden command a run hands the end of its network
// sandbox's teardown to: by then the command has exited, its container is
// removed and the proxy has stopped with its network log read to the
// end; what is left is the engine's removal of the stopped proxy's
// container and of the task network, about a third of a run, which this
// process does after airut-sandbox has returned the command's status.
const TeardownCommand = "internal-teardown"

func newTeardownCmd(stderr io.Writer) *cobra.Command {
	var engine string
	cmd := &cobra.Command{
		Use:    TeardownCommand + " FILE",
		Short:  "Finish a run's teardown (started by airut-sandbox run)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := sandbox.NewRuntime(engine, newLogger(stderr, false))
			if err != nil {
				return fail(ExitInfra, "%v", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			if err := rt.FinishHandOff(ctx, args[0]); err != nil {
				return fail(ExitInfra, "%v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&engine, "container-command", "podman", "container engine")
	return cmd
}

// handOffTeardown starts the process that finishes a run's teardown from
// file: in a session of its own, so that neither the end of this process
// nor a signal to its process group (a CI step's cancellation) stops it.
// Its output goes nowhere: a failure leaves the run's marker for the next
// run's sweep.
func handOffTeardown(engine string) func(file string) error {
	return func(file string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("hand-off: %w", err)
		}
		cmd := exec.Command(exe, TeardownCommand, "--container-command", engine, file)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("hand-off: %w", err)
		}
		return cmd.Process.Release()
	}
}
