package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/scheduler"
)

func newScheduleCmd(configPath *string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "List the scheduled tasks or run one now",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return &ExitError{Code: 2, Msg: "schedule: missing subcommand (list or run)"}
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every repo's schedules with their next run and last result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var infos []scheduler.Info
			c, err := newScheduleClient()
			if err == nil {
				err = c.get(cmd.Context(), "/api/schedules", &infos)
			}
			offline := errors.Is(err, errGatewayDown)
			if offline {
				// Without a gateway, the config says what would run when.
				if infos, err = schedulesFromConfig(*configPath, time.Now()); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			if offline {
				fmt.Fprintln(stdout, "The gateway is not running: next runs are from the config, last results unknown.")
			}
			printSchedules(stdout, infos)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var wait bool
	run := &cobra.Command{
		Use:   "run REPO NAME",
		Short: "Run a schedule now in the running gateway (also one with enable: false)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newScheduleClient()
			if err != nil {
				return err
			}
			path := "/api/schedules/" + url.PathEscape(args[0]) + "/" + url.PathEscape(args[1])
			var in scheduler.Info
			if err := c.post(cmd.Context(), path+"/run", &in); err != nil {
				if errors.Is(err, errGatewayDown) {
					return &ExitError{Code: 1, Msg: err.Error()}
				}
				return &ExitError{Code: 1, Msg: fmt.Sprintf("schedule %s/%s: %v", args[0], args[1], err)}
			}
			fmt.Fprintf(stdout, "%s/%s started\n", args[0], args[1])
			if !wait {
				return nil
			}
			for in.Running {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
				if err := c.get(cmd.Context(), path, &in); err != nil {
					return err
				}
			}
			if in.Last == nil {
				return &ExitError{Code: 1, Msg: "the run left no result"}
			}
			fmt.Fprintln(stdout, describeResult(in.Last))
			if in.Last.Status == scheduler.StatusFailed || in.Last.Status == scheduler.StatusNotDelivered {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	run.Flags().BoolVar(&wait, "wait", false, "wait for the run to end and print its result")
	cmd.AddCommand(list, run)
	return cmd
}

// errGatewayDown: nothing answers on the control socket.
var errGatewayDown = errors.New("the gateway is not running")

type scheduleClient struct {
	socket string
	http   *http.Client
}

func newScheduleClient() (*scheduleClient, error) {
	state, err := config.StateDir(lookupEnv)
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(state, scheduler.SocketName)
	return &scheduleClient{socket: socket, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}, nil
}

func (c *scheduleClient) get(ctx context.Context, path string, v any) error {
	return c.do(ctx, http.MethodGet, path, v)
}

func (c *scheduleClient) post(ctx context.Context, path string, v any) error {
	return c.do(ctx, http.MethodPost, path, v)
}

func (c *scheduleClient) do(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://airut"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w (nothing answers on %s): start it with `airut run`", errGatewayDown, c.socket)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(data, v)
}

// schedulesFromConfig lists the config's schedules with their next run
// after now.
func schedulesFromConfig(configPath string, now time.Time) ([]scheduler.Info, error) {
	path, err := resolveConfigPath(configPath)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, lookupEnv, redact.NewRegistry())
	if err != nil {
		return nil, &ExitError{Code: 1, Msg: "config " + path + ":\n" + err.Error()}
	}
	var out []scheduler.Info
	for repo, rc := range cfg.Repos {
		for name, sc := range rc.Schedules {
			out = append(out, scheduler.Describe(repo, name, sc, now))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func printSchedules(w io.Writer, infos []scheduler.Info) {
	if len(infos) == 0 {
		fmt.Fprintln(w, "No schedules are configured.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPO\tNAME\tMODE\tCRON\tTIMEZONE\tDELIVER\tNEXT\tLAST")
	for _, in := range infos {
		next := "disabled"
		if in.Enabled && !in.Next.IsZero() {
			next = in.Next.In(time.Local).Format("2006-01-02 15:04 MST")
		}
		last := "-"
		if in.Last != nil {
			last = describeResult(in.Last)
		}
		if in.Skipped > 0 {
			last += fmt.Sprintf(" (%d skipped)", in.Skipped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\n", in.Repo, in.Name, in.Mode, in.Cron, in.Timezone,
			in.Channel, strings.Join(in.To, ","), next, last)
	}
	tw.Flush()
}

func describeResult(r *scheduler.Result) string {
	s := r.Started.In(time.Local).Format("2006-01-02 15:04") + " " + r.Status
	if r.Outcome != "" && r.Outcome != "success" {
		s += " (" + r.Outcome + ")"
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	if r.Conversation != "" {
		s += " [" + r.Conversation + "]"
	}
	return s
}
