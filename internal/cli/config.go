package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
)

func newConfigCmd(configPath *string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Write or check the server config",
		Args:  cobra.NoArgs,
		// Without RunE cobra prints help and exits 0 on a mistyped
		// subcommand; an operator's script should see it fail.
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &ExitError{Code: 2, Msg: "config: missing subcommand (init or validate)"}
		},
	}
	var force bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented starter airut.yaml",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path, err := resolveConfigPath(*configPath)
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); err == nil && !force {
				return &ExitError{Code: 1, Msg: fmt.Sprintf("%s exists; not overwriting it (use --force)", path)}
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(path, config.StarterConfig(), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			// WriteFile keeps the mode of a file it overwrites.
			if err := os.Chmod(path, 0o600); err != nil {
				return fmt.Errorf("chmod %s: %w", path, err)
			}
			fmt.Fprintf(stdout, "wrote %s\nedit it, put secrets in %s beside it, then run: airut config validate\n",
				path, filepath.Join(filepath.Dir(path), config.DotEnvName))
			return nil
		},
	}
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the server config and report every problem with file, line and key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path, err := resolveConfigPath(*configPath)
			if err != nil {
				return err
			}
			cfg, err := config.Load(path, lookupEnv, redact.NewRegistry())
			if errors.Is(err, fs.ErrNotExist) {
				return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: not found (create one with: airut config init)", path)}
			}
			if err != nil {
				return &ExitError{Code: 1, Msg: err.Error()}
			}
			ids := make([]string, 0, len(cfg.Repos))
			for id := range cfg.Repos {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				fmt.Fprintf(stdout, "repo %s: ok\n", id)
			}
			if err := cfg.Err(); err != nil {
				return &ExitError{Code: 1, Msg: err.Error()}
			}
			fmt.Fprintf(stdout, "%s: valid\n", path)
			return nil
		},
	}
	cmd.AddCommand(initCmd, validate)
	return cmd
}

func resolveConfigPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return config.DefaultPath(lookupEnv)
}
