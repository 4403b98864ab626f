package gateway

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/awsfake"
)

// TestAWSSigningCredentials: a repo's signing_credentials reach the task
// as surrogates; the AWS SDK for Go in the real sandbox (tkaws, under
// fakeclaude) calls STS through the real proxy, which re-signs with the
// real key for an upstream that accepts nothing else, and the
// conversation's network log says [signed: aws].
func TestAWSSigningCredentials(t *testing.T) {
	f := newFixture(t, fixtureOpts{podman: true})
	realKeyID := "AKIA" + strings.ToUpper(testkit.RandomHex(8))
	realSecret := testkit.RandomHex(20)
	const host = "sts.us-east-1.amazonaws.com"

	fake := awsfake.New(realKeyID, realSecret, "")
	ca := testkit.NewTestCA(t)
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, host)}}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	f.origin = testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   testkit.DefaultDockerfile(testkit.BaseImage(t, f.engine)),
		".airut/network-allowlist.yaml": "domains:\n  - \"*.amazonaws.com\"\n",
	})
	cfg := f.config()
	cfg.Network = config.Network{UpstreamCA: caFile, Resolve: map[string]string{host: net.JoinHostPort(testkit.HostIP(t), port)}}
	cfg.Repos["app"].SigningCredentials = map[string]config.SigningCredential{"AWS": {Type: "aws-sigv4",
		AccessKeyID:     config.SigningField{Name: "AWS_ACCESS_KEY_ID", Value: redact.Secret(realKeyID)},
		SecretAccessKey: config.SigningField{Name: "AWS_SECRET_ACCESS_KEY", Value: redact.Secret(realSecret)},
		Scopes:          []string{"*.amazonaws.com"}}}
	f.startWith(cfg)
	ch := f.chans["app"]
	if err := ch.hand(t, msg("1:1", "@@run env > ../outbox/env.txt\n@@run tkaws whoami > ../outbox/who.txt 2>&1\n@@reply done")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply", func() bool { _, n := replyOf(ch.replies, "1:1"); return n == 1 })
	r, _ := replyOf(ch.replies, "1:1")
	files := map[string]string{}
	for _, a := range r.R.Attachments {
		files[a.Name] = string(a.Data)
	}
	if !strings.HasPrefix(files["who.txt"], "account "+awsfake.Account) {
		t.Errorf("tkaws whoami in the sandbox: %q; want the account", files["who.txt"])
	}
	env := files["env.txt"]
	if !strings.Contains(env, "AWS_ACCESS_KEY_ID=AKIA") || !strings.Contains(env, "AWS_SECRET_ACCESS_KEY=") {
		t.Errorf("container environment lacks the AWS surrogates:\n%s", env)
	}
	if strings.Contains(env, realKeyID) || strings.Contains(env, realSecret) {
		t.Error("a real AWS key is in the container's environment")
	}
	seen := fake.Seen()
	if len(seen) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	for _, s := range seen {
		if s.Code != "" || s.KeyID != realKeyID {
			t.Errorf("upstream: %+v; want every request signed with the real key", s)
		}
	}
	data, err := os.ReadFile(filepath.Join(f.convDir("app", f.taskFor("1:1").Conversation), conversation.NetworkLogFile))
	if err != nil {
		t.Fatal(err)
	}
	signed := 0
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if rec, err := proxy.ParseRecord(l); err == nil && rec.Signed == "aws" && rec.SignError == "" {
			signed++
		}
	}
	if signed != len(seen) {
		t.Errorf("%d [signed: aws] records for %d upstream requests:\n%s", signed, len(seen), data)
	}
}
