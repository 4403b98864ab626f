package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/redact"
)

// TestMailCAFile: email.imap.ca_file and email.smtp.ca_file are checked at
// load and reported at their line.
func TestMailCAFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	writeCA(t, good)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, imapCA, smtpCA string
		want                 string // "" = valid
	}{
		{name: "both set", imapCA: good, smtpCA: good},
		{name: "unset", imapCA: "", smtpCA: ""},
		{name: "missing file", imapCA: filepath.Join(dir, "nope.pem"),
			want: "airut.yaml:12: repos.app.email.imap.ca_file: cannot read " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{name: "not PEM", smtpCA: junk,
			want: "airut.yaml:16: repos.app.email.smtp.ca_file: " + junk + " holds no PEM certificate"},
		{name: "a key, not a certificate", imapCA: key,
			want: "airut.yaml:12: repos.app.email.imap.ca_file: " + key + " holds no PEM certificate"},
		{name: "relative", imapCA: "ca.pem",
			want: `airut.yaml:12: repos.app.email.imap.ca_file: must be an absolute path, not "ca.pem"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "config_version: 5\nrepos:\n  app:\n    repo_url: https://example.org/app.git\n    email:\n" +
				"      account:\n        username: airut\n        from: airut@example.org\n        password: pw\n" +
				"      imap:\n        server: imap.example.org\n        ca_file: " + quote(tt.imapCA) + "\n" +
				"      smtp:\n        server: smtp.example.org\n" +
				"        starttls: true\n        ca_file: " + quote(tt.smtpCA) + "\n" +
				"      auth:\n        authorized_senders: [boss@example.org]\n        trusted_authserv_id: mx.example.org\n"
			cfg, err := Parse("airut.yaml", []byte(yaml), MapEnv(nil), redact.NewRegistry())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := ""
			if cfg.Err() != nil {
				got = cfg.Err().Error()
			}
			switch {
			case tt.want == "" && got != "":
				t.Fatalf("got errors %q; want none", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Fatalf("got errors %q; want %q", got, tt.want)
			case tt.want == "":
				e := cfg.Repos["app"].Email
				if e.IMAP.CAFile != tt.imapCA || e.SMTP.CAFile != tt.smtpCA {
					t.Errorf("ca_file = %q, %q; want %q, %q", e.IMAP.CAFile, e.SMTP.CAFile, tt.imapCA, tt.smtpCA)
				}
			}
		})
	}
}

func quote(s string) string { return `"` + s + `"` }

func writeCA(t *testing.T, path string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
