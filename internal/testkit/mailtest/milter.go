package mailtest

import (
	"bytes"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
)

// dmarcMilter is the receiving side's authentication, as OpenDKIM plus
// OpenDMARC (or rspamd) do it at a real MX, in a milter Postfix calls:
// verify every DKIM signature, look up the From domain's DMARC policy,
// check alignment, write one Authentication-Results header at the top and
// remove every Authentication-Results header the message arrived with
// (forged ones above all). DNS is a table here (the only part that is
// not real): each domain of DomainKey gets a DKIM key record and a
// "p=reject" DMARC record; SPF is not evaluated (loopback has no
// meaningful sender IP), so a pass needs an aligned DKIM signature.
type dmarcMilter struct {
	authservID string
	port       int
	mu         sync.Mutex
	keys       map[string]*DomainKey
	txt        map[string][]string
}

func startMilter(t testing.TB, authservID string) *dmarcMilter {
	t.Helper()
	m := &dmarcMilter{authservID: authservID, keys: map[string]*DomainKey{}, txt: map[string][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = ln.Addr().(*net.TCPAddr).Port
	srv := &milter.Server{
		NewMilter: func() milter.Milter { return &authSession{m: m} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m
}

// key returns domain's signing key, publishing its records on first use.
func (m *dmarcMilter) key(domain string) *DomainKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.keys[domain]; k != nil {
		return k
	}
	k, record := newDomainKey(domain)
	m.keys[domain] = k
	m.txt[k.Selector+"._domainkey."+domain] = []string{record}
	m.txt["_dmarc."+domain] = []string{"v=DMARC1; p=reject"}
	return k
}

func (m *dmarcMilter) lookupTXT(name string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.txt[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
		return r, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// authSession collects one message.
type authSession struct {
	milter.NoOpMilter
	m       *dmarcMilter
	head    bytes.Buffer
	body    bytes.Buffer
	from    []string
	arCount int
}

func (s *authSession) Header(name, value string, _ *milter.Modifier) (milter.Response, error) {
	// Postfix hands the value as it was, folding included, with LF line
	// ends; DKIM wants CRLF.
	fmt.Fprintf(&s.head, "%s: %s\r\n", name, strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n"))
	switch strings.ToLower(name) {
	case "from":
		s.from = append(s.from, value)
	case "authentication-results":
		s.arCount++
	}
	return milter.RespContinue, nil
}

func (s *authSession) BodyChunk(chunk []byte, _ *milter.Modifier) (milter.Response, error) {
	s.body.Write(chunk)
	return milter.RespContinue, nil
}

func (s *authSession) Headers(textproto.MIMEHeader, *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *authSession) Body(mod *milter.Modifier) (milter.Response, error) {
	results := s.evaluate()
	// Highest index first: each deletion leaves the lower ones in place.
	for i := s.arCount; i >= 1; i-- {
		if err := mod.ChangeHeader(i, "Authentication-Results", ""); err != nil {
			return nil, err
		}
	}
	value := authres.Format(s.m.authservID, results)
	if err := mod.InsertHeader(0, "Authentication-Results", strings.TrimSpace(value)); err != nil {
		return nil, err
	}
	s.head.Reset()
	s.body.Reset()
	s.from, s.arCount = nil, 0
	return milter.RespAccept, nil
}

func (s *authSession) evaluate() []authres.Result {
	raw := append(append(s.head.Bytes(), "\r\n"...), s.body.Bytes()...)
	verifs, _ := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: s.m.lookupTXT})
	var results []authres.Result
	var passed []string
	for _, v := range verifs {
		r := &authres.DKIMResult{Value: authres.ResultPass, Domain: v.Domain}
		if v.Err != nil {
			r.Value, r.Reason = authres.ResultFail, v.Err.Error()
			if dkim.IsTempFail(v.Err) {
				r.Value = authres.ResultTempError
			}
		} else {
			passed = append(passed, strings.ToLower(v.Domain))
		}
		results = append(results, r)
	}
	if len(verifs) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}

	// DMARC needs exactly one From with one address (RFC 7489 6.6.1).
	fromDomain := ""
	if len(s.from) == 1 {
		if list, err := mail.ParseAddressList(s.from[0]); err == nil && len(list) == 1 {
			fromDomain = strings.ToLower(list[0].Address[strings.LastIndexByte(list[0].Address, '@')+1:])
		}
	}
	if fromDomain == "" {
		return append(results, &authres.DMARCResult{Value: authres.ResultPermError, Reason: "not exactly one From address"})
	}
	rec, err := dmarc.LookupWithOptions(fromDomain, &dmarc.LookupOptions{LookupTXT: s.m.lookupTXT})
	if err != nil {
		return append(results, &authres.DMARCResult{Value: authres.ResultNone, From: fromDomain})
	}
	var value authres.ResultValue = authres.ResultFail
	for _, d := range passed {
		if aligned(d, fromDomain, rec.DKIMAlignment) {
			value = authres.ResultPass
		}
	}
	return append(results, &authres.DMARCResult{Value: value, From: fromDomain})
}

// aligned is DMARC identifier alignment; relaxed compares organizational
// domains, approximated here by the last two labels (no public suffix
// list on loopback test domains).
func aligned(d, from string, mode dmarc.AlignmentMode) bool {
	if d == from {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	return orgDomain(d) == orgDomain(from)
}

func orgDomain(d string) string {
	labels := strings.Split(d, ".")
	if len(labels) <= 2 {
		return d
	}
	return strings.Join(labels[len(labels)-2:], ".")
}
