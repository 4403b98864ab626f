package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The proxy's overhead is measured against the same local upstream reached
// directly, in the same run: compare Proxy* with Direct*.

const size64MiB = 64 << 20

func directClient(e *env) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.upCA.pem)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.tlsUp.addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
}

func benchThroughput(b *testing.B, c *http.Client, e *env) {
	url := "https://api.example.com/big?n=" + strconv.Itoa(size64MiB)
	b.SetBytes(size64MiB)
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size64MiB {
			b.Fatalf("read %d bytes, err %v; want %d", n, err, size64MiB)
		}
		e.px.log.take()
	}
}

func BenchmarkProxyThroughput64MiB(b *testing.B) {
	e := newEnv(b, nil)
	benchThroughput(b, e.px.client(false), e)
}

func BenchmarkDirectThroughput64MiB(b *testing.B) {
	e := newEnv(b, nil)
	benchThroughput(b, directClient(e), e)
}

// benchSmall measures one small keep-alive request per iteration and
// reports its latency percentiles.
func benchSmall(b *testing.B, c *http.Client, e *env) {
	const url = "https://api.example.com/big?n=16"
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if len(lat)%1024 == 0 {
			e.px.log.take()
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

func BenchmarkProxySmallRequest(b *testing.B) {
	e := newEnv(b, nil)
	benchSmall(b, e.px.client(false), e)
}

func BenchmarkDirectSmallRequest(b *testing.B) {
	e := newEnv(b, nil)
	benchSmall(b, directClient(e), e)
}
