package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airut/airut/internal/secrets"
)

const (
	fuzzReal = "ghp_R3alT0kenR3alT0kenR3alT0kenR3al+/9"
	fuzzSur  = "ghp_S8rrG8teS8rrG8teS8rrG8teS8rrG8+/1"
)

func testRedactor(t testing.TB) *redactor {
	t.Helper()
	rd := newRedactor([]secrets.Pair{
		{Real: secrets.NewValue(fuzzReal), Surrogate: fuzzSur + "x"},
		{Real: secrets.NewValue("sk-ant-api03-SECRETSECRET"), Surrogate: "sk-ant-api03-SURROGATESU"},
	})
	if rd == nil {
		t.Fatal("no redactor")
	}
	return rd
}

// chunkReader returns its data in the given chunk sizes.
type chunkReader struct {
	data  []byte
	sizes []int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = max(1, min(c.sizes[0], n))
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func streamRedact(rd *redactor, body []byte, sizes []int, readSize int) ([]byte, int) {
	var count atomic.Int64
	r := newRedactReader(rd, &chunkReader{data: body, sizes: sizes}, &count)
	var out bytes.Buffer
	buf := make([]byte, readSize)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return out.Bytes(), int(count.Load())
}

// forms are the ways a real value comes back that must be caught.
func forms(real string) map[string]string {
	b64 := func(enc *base64.Encoding, pre string) string { return enc.EncodeToString([]byte(pre + real + "\r\n")) }
	return map[string]string{
		"raw":             "token=" + real + ";",
		"bearer":          "Authorization: Bearer " + real + "\n",
		"basic":           "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+real)),
		"basic user":      "Basic " + base64.StdEncoding.EncodeToString([]byte(real+":x-oauth-basic")),
		"base64 align 0":  b64(base64.StdEncoding, ""),
		"base64 align 1":  b64(base64.StdEncoding, "a"),
		"base64 align 2":  b64(base64.StdEncoding, "ab"),
		"base64url 1":     b64(base64.RawURLEncoding, "a"),
		"base64url 2":     b64(base64.URLEncoding, "xy"),
		"query escaped":   "?t=" + url.QueryEscape(real),
		"path escaped":    "/t/" + url.PathEscape(real),
		"lower hex":       escapedHexLower(url.QueryEscape(real)),
		"cut short":       "Authorization: Bearer " + real[:20] + "…\n",
		"tail only":       "…" + real[len(real)-18:] + "\n",
		"json":            func() string { b, _ := json.Marshal(map[string]string{"t": real}); return string(b) }(),
		"json slash":      `{"t":"` + strings.ReplaceAll(real, "/", `\/`) + `"}`,
		"truncated tail":  "echo: " + real[:len(real)-5],
		"twice adjacent":  real + real,
		"inside html":     "<pre>" + real + "</pre>",
		"base64 in basic": "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+real)) + "\r\n",
	}
}

// leaks reports a real value, or its base64 core at any alignment, in out.
func leaks(out []byte, real string) string {
	if bytes.Contains(out, []byte(real)) {
		return "raw"
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for align := range 3 {
			if core := base64Core(enc, real, align); len(core) >= 8 && bytes.Contains(out, []byte(core)) {
				return "base64"
			}
		}
	}
	if q := url.QueryEscape(real); bytes.Contains(out, []byte(q)) || bytes.Contains(out, []byte(escapedHexLower(q))) {
		return "escaped"
	}
	if bytes.Contains(out, []byte(real[:partialLen])) {
		return "prefix"
	}
	if bytes.Contains(out, []byte(real[len(real)-partialLen:])) {
		return "suffix"
	}
	return ""
}

func TestRedactForms(t *testing.T) {
	rd := testRedactor(t)
	for name, body := range forms(fuzzReal) {
		t.Run(name, func(t *testing.T) {
			whole := []byte(body)
			n := rd.redact(whole)
			if n == 0 {
				t.Errorf("nothing redacted in %q", body)
			}
			if l := leaks(whole, fuzzReal); l != "" {
				t.Errorf("redact(%q) = %q; leaks %s", body, whole, l)
			}
			if len(whole) != len(body) {
				t.Errorf("length %d; want %d", len(whole), len(body))
			}
			for _, size := range []int{1, 2, 3, 7, 64} {
				got, gn := streamRedact(rd, []byte(body), []int{size, size, size, size, size, size, size, size, size, size, size, size, size}, 4096)
				if !bytes.Equal(got, whole) || gn != n {
					t.Errorf("chunks of %d: %q (%d); want %q (%d)", size, got, gn, whole, n)
				}
			}
		})
	}
}

func TestRedactKeepsOtherBytes(t *testing.T) {
	rd := testRedactor(t)
	for _, body := range []string{"", "hello", strings.Repeat("ghp_", 100), "ghp_R3alT0kenR3\n", "data: {}\n\n", strings.Repeat("A", 100000)} {
		b := []byte(body)
		if n := rd.redact(b); n != 0 || string(b) != body {
			t.Errorf("redact(%.40q) = %.40q, %d; want it unchanged", body, b, n)
		}
	}
}

// A stream must not wait for more data after bytes that cannot begin a
// secret: an event stream stays live.
func TestRedactReaderDoesNotHoldEvents(t *testing.T) {
	rd := testRedactor(t)
	pr, pw := io.Pipe()
	var count atomic.Int64
	r := newRedactReader(rd, pr, &count)
	go func() { _, _ = pw.Write([]byte("event: ping\ndata: {}\n\n")) }()
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "event: ping\ndata: {}\n\n" {
		t.Fatalf("Read = %q, %v; want the whole event at once", buf[:n], err)
	}
	go func() { _, _ = pw.Write([]byte("data: ghp_R3")) }()
	n, _ = r.Read(buf)
	if string(buf[:n]) != "data: " {
		t.Errorf("Read = %q; want the bytes before a possible secret only", buf[:n])
	}
	go func() { _, _ = pw.Write([]byte("XX\n")); pw.Close() }()
	rest, _ := io.ReadAll(r)
	if string(rest) != "ghp_R3XX\n" {
		t.Errorf("rest = %q; want the held bytes once they cannot be a secret", rest)
	}
}

func TestBase64Core(t *testing.T) {
	for _, s := range []string{"abcdef", fuzzReal, "x-access-token:" + fuzzReal} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for align := range 3 {
				core := base64Core(enc, s, align)
				for _, pre := range []string{"", "a", "ab", "abc", "abcd", "abcde"} {
					if len(pre)%3 != align {
						continue
					}
					for _, post := range []string{"", "z", "zz", ":zz"} {
						full := enc.EncodeToString([]byte(pre + s + post))
						if !strings.Contains(full, core) {
							t.Errorf("core %q of %q at %d not in %q", core, s, align, full)
						}
					}
				}
			}
		}
	}
}

func FuzzRedact(f *testing.F) {
	for name, body := range forms(fuzzReal) {
		f.Add([]byte(body), []byte{1, 5, 3}, uint16(4096), name == "raw")
	}
	f.Add([]byte("plain body"), []byte{}, uint16(1), false)
	f.Fuzz(func(t *testing.T, body []byte, splits []byte, readSize uint16, insert bool) {
		rd := testRedactor(t)
		if insert {
			// Put the secret in the middle of whatever the fuzzer wrote.
			mid := len(body) / 2
			body = append(append(append([]byte{}, body[:mid]...), fuzzReal...), body[mid:]...)
		}
		want := append([]byte(nil), body...)
		wantN := rd.redact(want)
		sizes := make([]int, len(splits))
		for i, s := range splits {
			sizes[i] = int(s)
		}
		got, gotN := streamRedact(rd, body, sizes, int(readSize%8192)+1)
		if !bytes.Equal(got, want) || gotN != wantN {
			t.Fatalf("streamed %q (%d) differs from whole-body %q (%d)", got, gotN, want, wantN)
		}
		if len(got) != len(body) {
			t.Fatalf("length %d; want %d", len(got), len(body))
		}
		if bytes.Contains(got, []byte(fuzzReal)) {
			t.Fatalf("real value in output %q", got)
		}
		if insert && wantN == 0 {
			t.Fatalf("inserted secret not redacted in %q", body)
		}
	})
}
