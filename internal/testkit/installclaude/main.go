// Command installclaude installs the Claude Code version the tests pin
// (testkit.ClaudeVersion) from the npm registry into the test cache, with
// the gateway's own installer, and prints the executable's path. `make
// test` runs it before the suite, so no test spends its time downloading.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/airut/airut/internal/testkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p, err := testkit.InstallClaude(ctx, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "installclaude: Claude Code %s: %v\n", testkit.ClaudeVersion, err)
		os.Exit(1)
	}
	fmt.Println(p)
}
