package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

const healthTimeout = 3 * time.Second

// runHealth exits 0 when the HTTPS listener accepts a connection: the
// container health check the sandbox waits on before starting the agent.
func runHealth(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("airut-proxy health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ip := fs.String("listen-ip", "127.0.0.1", "address the proxy listens on")
	port := fs.Int("https-port", 443, "HTTPS port")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(*ip, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	return c.Close()
}
