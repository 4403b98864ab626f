// Command airut-proxy is the network sandbox's proxy process: the DNS
// responder, the intercepting HTTP/HTTPS proxy and the network log of one
// task (SPEC S4). It runs in its own container on the task's internal
// network; see internal/proxy.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/airut/airut/internal/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := proxy.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "airut-proxy:", err)
		if errors.Is(err, proxy.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
