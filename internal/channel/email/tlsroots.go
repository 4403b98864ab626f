package email

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// loadCAFile reads a PEM file of CA certificates; "" is nil (system roots).
// A file without one is an error here rather than an "unknown authority"
// at the first login.
func loadCAFile(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in the file", path)
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
