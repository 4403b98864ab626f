// Package sandboxcli is the airut-sandbox command: run one command in the
// same sandbox the gateway gives its agents, for CI pipelines that execute
// agent-written build and test commands (S11).
package sandboxcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of airut-sandbox itself. Everything else is the command's own.
const (
	ExitTimeout = 124 // like timeout(1)
	ExitInfra   = 125 // the sandbox failed (like docker run)
	ExitUsage   = 125 // bad flags or configuration: nothing ran
)

// exitError carries an exit code and a one-line reason out of a command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Main runs airut-sandbox with args (without the program name) and returns
// the process exit code; stdin is what `run` forwards to the command. SIGINT
// and SIGTERM cancel the run, which tears the sandbox down; the exit code is
// then 128+signal.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if s, ok := <-sigs; ok {
			cancel(signalError{s.(syscall.Signal)})
		}
	}()
	return Run(ctx, args, stdin, stdout, stderr)
}

type signalError struct{ sig syscall.Signal }

func (s signalError) Error() string { return "received " + s.sig.String() }

// Run is Main without the process-global signal handling, for tests.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(ctx, stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "airut-sandbox: %s\n", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "airut-sandbox: %s\n", err)
	return ExitUsage
}

func newRoot(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "airut-sandbox",
		Short:         "Run commands inside the Airut sandbox",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	root.AddCommand(newRunCmd(stdin, stdout, stderr), newImageCmd(stdout, stderr), newTeardownCmd(stderr))
	return root
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
