// Package cli is the airut command: one file per subcommand, writing to
// injected writers; only main calls os.Exit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X ...cli.Version=…".
var Version = "dev"

// ExitError carries a process exit code out of a subcommand.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Run executes the airut command line and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "airut",
		Short:         "Sandboxed Claude Code over email and Slack",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	var configPath string
	root.PersistentFlags().StringVar(&configPath, "config", "", "server config (default $XDG_CONFIG_HOME/airut/airut.yaml)")
	root.AddCommand(
		newCheckCmd(&configPath, stdout),
		newConfigCmd(&configPath, stdout),
		newRunCmd(&configPath, stderr),
		newInstallServiceCmd(&configPath, stdout),
		newUninstallServiceCmd(stdout),
		newScheduleCmd(&configPath, stdout),
		newVersionCmd(stdout),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintf(stderr, "airut: %s\n", ee.Msg)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "airut: %s\n", err)
	return 2
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintf(stdout, "airut %s\n", Version) },
	}
}

func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
