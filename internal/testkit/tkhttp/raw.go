package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/websocket"
)

// Subcommands for requests no ordinary client sends, so that tests can show
// what the proxy does with them:
//
//	tkhttp raw [--tls NAME] HOST:PORT 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
//	tkhttp h2 [--method M] [--path P] [--protocol P] [-H 'k: v']... URL
//	tkhttp ws [-H 'k: v']... [--send MSG] URL
//	tkhttp slow [--tls NAME] HOST:PORT N
var subcommands = map[string]func(args []string){
	"raw":  rawCmd,
	"h2":   h2Cmd,
	"ws":   wsCmd,
	"slow": slowCmd,
}

// unescape turns \r \n \t \\ and \xNN in a shell argument into bytes.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'x':
			if v, err := strconv.ParseUint(s[i+1:min(i+3, len(s))], 16, 8); err == nil && i+2 < len(s) {
				b.WriteByte(byte(v))
				i += 2
			}
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func dial(addr, sni string, alpn ...string) net.Conn {
	var c net.Conn
	var err error
	if sni != "" {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, NextProtos: alpn})
	} else {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		fmt.Println("CONNECT FAILED", err)
		os.Exit(7)
	}
	return c
}

// rawCmd writes a request byte for byte and prints what comes back.
func rawCmd(args []string) {
	fs := flag.NewFlagSet("tkhttp raw", flag.ExitOnError)
	sni := fs.String("tls", "", "TLS server name (plain TCP when empty)")
	_ = fs.Parse(args)
	if fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: tkhttp raw [--tls NAME] HOST:PORT REQUEST")
		os.Exit(2)
	}
	c := dial(fs.Arg(0), *sni, "http/1.1")
	defer c.Close()
	if _, err := io.WriteString(c, unescape(fs.Arg(1))); err != nil {
		fmt.Println("WRITE FAILED", err)
		os.Exit(7)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	os.Stdout.Write(out)
	fmt.Println()
}

// h2Cmd sends one HTTP/2 request with pseudo-headers written by hand (a
// :path with spaces, an extended CONNECT) and prints the server's
// SETTINGS, then STATUS or RESET, then the body.
func h2Cmd(args []string) {
	fs := flag.NewFlagSet("tkhttp h2", flag.ExitOnError)
	method := fs.String("method", "GET", ":method")
	path := fs.String("path", "", ":path (default: the URL's)")
	protocol := fs.String("protocol", "", ":protocol (extended CONNECT)")
	var hs headers
	fs.Var(&hs, "H", "header (repeatable)")
	_ = fs.Parse(args)
	if fs.NArg() != 1 || !strings.HasPrefix(fs.Arg(0), "https://") {
		fmt.Fprintln(os.Stderr, "usage: tkhttp h2 [flags] https://HOST/PATH")
		os.Exit(2)
	}
	host, urlPath, _ := strings.Cut(strings.TrimPrefix(fs.Arg(0), "https://"), "/")
	if *path == "" {
		*path = "/" + urlPath
	}
	c := dial(net.JoinHostPort(host, "443"), host, "h2")
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: *method})
	if *protocol != "" {
		_ = enc.WriteField(hpack.HeaderField{Name: ":protocol", Value: *protocol})
	}
	_ = enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "https"})
	_ = enc.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	_ = enc.WriteField(hpack.HeaderField{Name: ":path", Value: unescape(*path)})
	for _, h := range hs {
		k, v := splitHeader(h)
		_ = enc.WriteField(hpack.HeaderField{Name: strings.ToLower(k), Value: v})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: *protocol == ""})
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			fmt.Println("STATUS", f.Value)
		}
	})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			fmt.Println("CLOSED", err)
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			var s []string
			_ = f.ForeachSetting(func(st http2.Setting) error { s = append(s, st.ID.String()+"="+strconv.Itoa(int(st.Val))); return nil })
			fmt.Println("SETTINGS", strings.Join(s, " "))
			_ = fr.WriteSettingsAck()
		case *http2.HeadersFrame:
			_, _ = dec.Write(f.HeaderBlockFragment())
			if f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			os.Stdout.Write(f.Data())
			if f.StreamEnded() {
				fmt.Println()
				return
			}
		case *http2.RSTStreamFrame:
			fmt.Println("RESET", f.ErrCode)
			return
		case *http2.GoAwayFrame:
			fmt.Println("GOAWAY", f.ErrCode)
			return
		}
	}
}

// wsCmd opens a WebSocket over HTTP/1.1, prints a greeting if the server
// sends one, sends a message and prints the echo.
func wsCmd(args []string) {
	fs := flag.NewFlagSet("tkhttp ws", flag.ExitOnError)
	var hs headers
	fs.Var(&hs, "H", "header (repeatable)")
	send := fs.String("send", "", "message to send")
	greeting := fs.Bool("greeting", false, "read one message before sending")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tkhttp ws [flags] wss://HOST/PATH")
		os.Exit(2)
	}
	cfg, err := websocket.NewConfig(fs.Arg(0), strings.Replace(fs.Arg(0), "wss://", "https://", 1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, h := range hs {
		cfg.Header.Add(splitHeader(h))
	}
	cfg.TlsConfig = &tls.Config{ServerName: cfg.Location.Hostname(), NextProtos: []string{"http/1.1"}}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		fmt.Println("WS FAILED", err)
		os.Exit(7)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Println("WS CONNECTED")
	if *greeting {
		var msg string
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			fmt.Println("WS RECV FAILED", err)
			return
		}
		fmt.Println("WS RECV", msg)
	}
	if *send != "" {
		if err := websocket.Message.Send(ws, *send); err != nil {
			fmt.Println("WS SEND FAILED", err)
			return
		}
		var msg string
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			fmt.Println("WS RECV FAILED", err)
			return
		}
		fmt.Println("WS RECV", msg)
	}
}

// slowCmd opens n connections that send request headers a byte a second
// and reports how long the server let each live.
func slowCmd(args []string) {
	fs := flag.NewFlagSet("tkhttp slow", flag.ExitOnError)
	sni := fs.String("tls", "", "TLS server name (plain TCP when empty)")
	_ = fs.Parse(args)
	if fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: tkhttp slow [--tls NAME] HOST:PORT N")
		os.Exit(2)
	}
	n, _ := strconv.Atoi(fs.Arg(1))
	start := time.Now()
	done := make(chan time.Duration, n)
	for range n {
		go func() {
			c := dial(fs.Arg(0), *sni, "http/1.1")
			defer c.Close()
			go func() {
				req := "GET / HTTP/1.1\r\nHost: " + *sni + "\r\nX-Slow: " + strings.Repeat("a", 200)
				for i := 0; i < len(req); i++ {
					if _, err := c.Write([]byte{req[i]}); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			done <- time.Since(start)
		}()
	}
	var longest time.Duration
	for range n {
		longest = max(longest, <-done)
	}
	fmt.Printf("SLOW %d closed, the last after %ds\n", n, int(longest.Seconds()))
}
