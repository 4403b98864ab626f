//go:build race

package gateway_test

// raceBuild is true in `go test -race`. The real-mail suite drives an
// `airut run` subprocess built without the race detector, so the race
// pass would only run the same containers again.
const raceBuild = true
