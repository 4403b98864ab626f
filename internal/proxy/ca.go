package proxy

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/airut/airut/internal/allowlist"
)

// caValidity bounds the damage of a leaked per-task CA certificate: a task
// never outlives it, and a new task gets a new CA.
const caValidity = 7 * 24 * time.Hour

// maxLeaves bounds the leaf cache, least recently used out first: an
// agent asking for ever new names (a flood of handshakes with fresh SNI)
// must not grow it without limit, and must not evict the names in use.
const maxLeaves = 1024

// authority is the per-task CA. Its private key exists only in this
// process's memory. Every leaf shares one key pair, generated with the CA:
// a fresh name then costs one signature, not a key generation.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey
	certPEM []byte

	mu     sync.Mutex
	leaves map[string]*list.Element // of *leaf
	lru    list.List                // front: most recently used
	max    int
}

type leaf struct {
	host string
	once sync.Once
	cert *tls.Certificate
	err  error
}

func newAuthority(now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Airut sandbox per-task CA", Organization: []string{"Airut"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate leaf key: %w", err)
	}
	return &authority{
		cert:    cert,
		key:     key,
		leafKey: leafKey,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		leaves:  make(map[string]*list.Element),
		max:     maxLeaves,
	}, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n, nil
}

// getCertificate mints (once per name) a leaf for the SNI name. A client
// that sends no SNI (it dialled an IP literal) gets a leaf for the address
// it reached.
func (a *authority) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" {
		if hello.Conn == nil {
			return nil, errors.New("no SNI and no local address")
		}
		ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String())
		if err != nil {
			return nil, fmt.Errorf("no SNI: %w", err)
		}
		name = ap.Addr().Unmap().String()
	}
	host, err := allowlist.NormalizeHost(name)
	if err != nil {
		return nil, fmt.Errorf("mint certificate: %w", err)
	}
	l := a.leaf(host)
	l.once.Do(func() { l.cert, l.err = a.mint(host, time.Now()) })
	return l.cert, l.err
}

// leaf returns the cache entry for host, marking it most recently used and
// evicting the least recently used entry past the cap.
func (a *authority) leaf(host string) *leaf {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.leaves[host]; ok {
		a.lru.MoveToFront(e)
		return e.Value.(*leaf)
	}
	l := &leaf{host: host}
	a.leaves[host] = a.lru.PushFront(l)
	for a.lru.Len() > a.max {
		old := a.lru.Back()
		a.lru.Remove(old)
		delete(a.leaves, old.Value.(*leaf).host)
	}
	return l
}

// cached is the number of leaves in the cache.
func (a *authority) cached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func (a *authority) mint(host string, now time.Time) (*tls.Certificate, error) {
	key := a.leafKey
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     a.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	leafCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, a.cert.Raw},
		PrivateKey:  key,
		Leaf:        leafCert,
	}, nil
}
