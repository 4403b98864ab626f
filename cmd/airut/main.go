// Command airut is the Airut gateway and its operator tools (see
// internal/cli).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/airut/airut/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
