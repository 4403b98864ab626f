package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/scheduler"
)

// runScheduler starts the scheduler beside g until ctx ends, and serves
// its control socket (<state>/scheduler.sock) for `airut schedule`. The
// returned stop (called once the gateway's Run returned) ends the
// scheduler, waits for it and closes the socket.
// The scheduler is returned for the dashboard (List, RunNow).
func runScheduler(ctx context.Context, g *gateway.Gateway, state string, logger *slog.Logger) (*scheduler.Scheduler, func()) {
	s := scheduler.New(g, scheduler.Options{Logger: logger})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			logger.Error("scheduler stopped", "error", err)
		}
	}()
	srv, err := serveControlSocket(filepath.Join(state, scheduler.SocketName), s.Handler())
	if err != nil {
		logger.Error("scheduler control socket not served: `airut schedule` cannot reach this gateway", "error", err)
	}
	return s, func() {
		cancel()
		<-done
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}
	}
}

// serveControlSocket listens on a unix socket only the user can reach. A
// socket that answers belongs to a gateway still running: it is left
// alone. One that does not is a leftover of a crash and is replaced.
func serveControlSocket(path string, h http.Handler) (*http.Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, errors.New(path + " answers: another gateway runs with this state directory")
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
