// Command airut-sandbox runs a command in the Airut sandbox (see
// internal/sandboxcli).
package main

import (
	"os"

	"github.com/airut/airut/internal/sandboxcli"
)

func main() {
	os.Exit(sandboxcli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
