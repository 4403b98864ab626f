package email

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// loadCAFile reads a PEM file of CA certificates; "" is nil (system roots).
// Every block must be a certificate that parses, so a truncated or wrong
// file is an error here rather than an "unknown authority" at first login.
func loadCAFile(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.New("no PEM certificate in the file"))
	}
	return pool, nil
}

// tlsConfig is the client TLS setting of one side: the caller's override
// or TLS 1.2+, the private roots when there are some, server as the name.
func tlsConfig(override *tls.Config, roots *x509.CertPool, server string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if override != nil {
		cfg = override.Clone()
	}
	if roots != nil && cfg.RootCAs == nil {
		cfg.RootCAs = roots
	}
	if cfg.ServerName == "" {
		cfg.ServerName = server
	}
	return cfg
}
