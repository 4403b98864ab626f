// Command tkhttp is the test suite's curl: a static HTTP client that goes
// into the offline base image, so container tests can make real HTTPS
// requests through the proxy with the CA bundle the entrypoint sets up
// (Go's TLS stack honours SSL_CERT_FILE, like curl does).
//
//	tkhttp [-X METHOD] [-H 'Name: value']... [-u user:pass] [-d body] [--host HOST] [--sni NAME] [-i] [--h1] URL
//	tkhttp tcp HOST:PORT
//	tkhttp raw|h2|ws|slow … (raw.go)
//
// It prints "STATUS <code>" and then the body, exiting 0 whenever an HTTP
// response arrived; 7 when no connection could be made; 35 on a TLS
// failure (curl's codes, so scripts read the same).
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	if len(os.Args) > 1 {
		if cmd, ok := subcommands[os.Args[1]]; ok {
			cmd(os.Args[2:])
			return
		}
	}
	if len(os.Args) == 3 && os.Args[1] == "tcp" {
		c, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fmt.Println("CONNECT FAILED", err)
			os.Exit(7)
		}
		c.Close()
		fmt.Println("CONNECTED")
		return
	}
	fs := flag.NewFlagSet("tkhttp", flag.ExitOnError)
	method := fs.String("X", "GET", "method")
	var hs headers
	fs.Var(&hs, "H", "header (repeatable)")
	user := fs.String("u", "", "basic auth user:pass")
	data := fs.String("d", "", "request body")
	host := fs.String("host", "", "Host header to send instead of the URL's")
	sni := fs.String("sni", "", "TLS server name to send instead of the URL's")
	include := fs.Bool("i", false, "print response headers and trailers (HEADER/TRAILER lines)")
	h1 := fs.Bool("h1", false, "HTTP/1.1 only")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tkhttp [flags] URL | tkhttp tcp HOST:PORT")
		os.Exit(2)
	}
	var body io.Reader
	if *data != "" {
		body = strings.NewReader(*data)
	}
	req, err := http.NewRequest(*method, fs.Arg(0), body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, h := range hs {
		k, v := splitHeader(h)
		req.Header.Add(k, v)
	}
	if *user != "" {
		u, p, _ := strings.Cut(*user, ":")
		req.SetBasicAuth(u, p)
	}
	if *host != "" {
		req.Host = *host
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *sni != "" {
		tr.TLSClientConfig = &tls.Config{ServerName: *sni}
	}
	if *h1 {
		// Protocols alone still offers h2 in ALPN when TLSClientConfig is
		// nil (the server then speaks HTTP/2 to an HTTP/1 client).
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		var p http.Protocols
		p.SetHTTP1(true)
		tr.Protocols = &p
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println("REQUEST FAILED", err)
		var tlsErr *tls.CertificateVerificationError
		if errors.As(err, &tlsErr) || strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
			os.Exit(35)
		}
		os.Exit(7)
	}
	defer resp.Body.Close()
	fmt.Printf("STATUS %d %s\n", resp.StatusCode, resp.Proto)
	if *include {
		printHeaders("HEADER", resp.Header)
	}
	_, _ = io.Copy(os.Stdout, resp.Body)
	fmt.Println()
	if *include {
		printHeaders("TRAILER", resp.Trailer)
	}
}

func printHeaders(kind string, h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			fmt.Printf("%s %s: %s\n", kind, k, v)
		}
	}
}

// splitHeader reads a -H argument, "Name: value".
func splitHeader(h string) (string, string) {
	k, v, _ := strings.Cut(h, ":")
	return strings.TrimSpace(k), strings.TrimSpace(v)
}
