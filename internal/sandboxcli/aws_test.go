package sandboxcli_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/awsfake"
)

// serveFake serves the verifying S3/STS fake on the host's address, over
// TLS with a certificate for names or, with ca nil, plain HTTP.
func serveFake(t *testing.T, fake *awsfake.Server, hostIP string, ca *testkit.TestCA, names ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	if ca != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}}
		go func() { _ = srv.ServeTLS(l, "", "") }()
	} else {
		go func() { _ = srv.Serve(l) }()
	}
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return net.JoinHostPort(hostIP, port)
}

// TestAWSSigningInSandbox runs the AWS SDK for Go (tkaws) under
// airut-sandbox with signing_credentials from sandbox.yaml, against an S3
// and STS that accept only the real keys: the container holds surrogates
// only, and every request leaves the proxy signed with the real key.
func TestAWSSigningInSandbox(t *testing.T) {
	_, base := setup(t)
	const (
		bucket = "airut-test"
		key    = "dir/a key ä日本.txt"
	)
	realKeyID := "ASIA" + strings.ToUpper(testkit.RandomHex(8))
	realSecret := testkit.RandomHex(20)
	realToken := "IQoJb3JpZ2luX2Vj" + testkit.RandomHex(150) + "=="
	t.Setenv("AWS_ACCESS_KEY_ID", realKeyID)
	t.Setenv("CI_AWS_SECRET", realSecret)
	t.Setenv("CI_AWS_TOKEN", realToken)

	hostIP := testkit.HostIP(t)
	ca := testkit.NewTestCA(t)
	fake := awsfake.New(realKeyID, realSecret, realToken)
	hosts := []string{"sts.us-east-1.amazonaws.com", bucket + ".s3.us-east-1.amazonaws.com"}
	tlsAddr := serveFake(t, fake, hostIP, ca, hosts...)
	plainAddr := serveFake(t, fake, hostIP, nil)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// The short form names the container variable after the !env
	// variable (AWS_ACCESS_KEY_ID); {name, value} names it explicitly.
	repo(t, base, map[string]string{
		".airut/network-allowlist.yaml": "domains:\n  - \"*.amazonaws.com\"\n",
		".airut/sandbox.yaml": `signing_credentials:
  AWS:
    type: aws-sigv4
    access_key_id: !env AWS_ACCESS_KEY_ID
    secret_access_key: {name: AWS_SECRET_ACCESS_KEY, value: !env CI_AWS_SECRET}
    session_token: {name: AWS_SESSION_TOKEN, value: !env CI_AWS_TOKEN}
    scopes: ["*.amazonaws.com"]
`,
	})
	logFile := filepath.Join(t.TempDir(), "net.log")
	script := `set -e
echo "=== env"; env | grep '^AWS_' | sort
echo "=== whoami"; tkaws whoami
echo "=== put small"; tkaws put ` + bucket + ` small.txt 5
echo "=== put big"; tkaws put ` + bucket + ` '` + key + `' 12582912
echo "=== get"; tkaws get ` + bucket + ` '` + key + `'
echo "=== sum"; tkaws sum 12582912
url=$(tkaws presign ` + bucket + ` small.txt)
echo "=== presigned https"; tkaws fetch "$url"
plain=$(tkaws presign plain small.txt | sed 's|^https://|http://|')
echo "=== presigned http"; tkaws fetch "$plain"
echo "=== sigv4a"; tkaws get-v4a ` + bucket + `.s3.us-east-1.amazonaws.com /small.txt
echo "=== chunked"; tkaws put-chunked ` + bucket + `.s3.us-east-1.amazonaws.com /chunked.bin 1048576
`
	code, stdout, stderr := run("run", "--network-log", logFile, "--upstream-ca", caFile,
		"--resolve", hosts[0]+"="+tlsAddr, "--resolve", hosts[1]+"="+tlsAddr,
		"--resolve", "plain.s3.us-east-1.amazonaws.com="+plainAddr,
		"--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	sections := map[string]string{}
	cur := ""
	for _, l := range strings.Split(stdout, "\n") {
		if name, ok := strings.CutPrefix(l, "=== "); ok {
			cur = name
			continue
		}
		sections[cur] += l + "\n"
	}
	env := sections["env"]
	for _, real := range []string{realKeyID, realSecret, realToken} {
		if strings.Contains(stdout+stderr, real) {
			t.Errorf("a real key is visible in the container's output")
		}
	}
	for _, v := range []string{"AWS_ACCESS_KEY_ID=ASIA", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN="} {
		if !strings.Contains(env, v) {
			t.Errorf("container environment %q lacks %s", env, v)
		}
	}
	want := map[string]string{
		"whoami":          "account " + awsfake.Account,
		"put small":       "put 5",
		"put big":         "put 12582912",
		"get":             strings.TrimSpace(sections["sum"]),
		"presigned https": "200 abcde",
		"presigned http":  "403 ",
		"chunked":         "200 ",
	}
	for name, w := range want {
		if !strings.HasPrefix(sections[name], w) {
			t.Errorf("%s: %q; want %q…", name, sections[name], w)
		}
	}
	if !strings.Contains(sections["presigned http"], "InvalidAccessKeyId") {
		t.Errorf("presigned GET over http: %q; want the upstream to reject the surrogate", sections["presigned http"])
	}
	if got, _ := fake.Object(bucket, key); len(got) != 12582912 {
		t.Errorf("stored %d bytes under %q", len(got), key)
	}
	for _, s := range fake.Seen() {
		switch {
		case s.Host == "plain.s3.us-east-1.amazonaws.com":
			if s.KeyID == realKeyID {
				t.Errorf("the real key went over plain http: %+v", s)
			}
		case s.Code != "" || s.KeyID != realKeyID:
			t.Errorf("upstream: %+v", s)
		}
	}

	data, _ := os.ReadFile(logFile)
	signed, notSigned := 0, 0
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	// The run's header (which rules the proxy enforced), then the records.
	if !strings.HasPrefix(lines[0], "# airut-sandbox run ") {
		t.Errorf("network log starts %q; want the run's header", lines[0])
	}
	for _, l := range lines[1:] {
		r, err := proxy.ParseRecord(l)
		if err != nil {
			t.Errorf("network log line %q: %v", l, err)
			continue
		}
		switch {
		case r.Verdict == proxy.VerdictDNS:
		case r.Signed == "aws" && r.SignError == "":
			signed++
		case r.SignError == "plain http":
			notSigned++
		default:
			t.Errorf("unexpected record %q", l)
		}
	}
	if signed != 7 || notSigned != 1 {
		t.Errorf("%d [signed: aws] and %d [not signed: aws: plain http] records; want 7 and 1:\n%s", signed, notSigned, data)
	}
}
