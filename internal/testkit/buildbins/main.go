// Command buildbins compiles the static test binaries of the offline base
// image into a directory, for test runs whose user has no Go toolchain
// caches (the rootless CI suite sets AIRUT_TESTBIN_DIR to it).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/airut/airut/internal/testkit"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: buildbins DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := testkit.BuildInto(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
