package email

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func TestAuthenticate(t *testing.T) {
	strict := authPolicy{trustedAuthservID: "mx.example.com"}
	tests := []struct {
		name       string
		fixture    string
		policy     authPolicy
		wantSender string // "" means rejected
		wantReason string // substring of the rejection
	}{
		{name: "dmarc pass", fixture: "auth_pass.eml", policy: strict, wantSender: "alice@example.com"},
		{name: "authserv-id case-insensitive", fixture: "auth_uppercase.eml", policy: strict, wantSender: "ALICE@EXAMPLE.COM"},
		{name: "forged pass below real fail", fixture: "auth_forged_below.eml", policy: strict, wantReason: "no dmarc=pass"},
		{name: "wrong authserv-id", fixture: "auth_wrong_authserv.eml", policy: strict, wantReason: "authserv-id"},
		{name: "dmarc=passthrough is not pass", fixture: "auth_passthrough.eml", policy: strict, wantReason: "no dmarc=pass"},
		{name: "pass inside a comment", fixture: "auth_comment_pass.eml", policy: strict, wantReason: "no dmarc=pass"},
		{name: "two From headers", fixture: "auth_two_from.eml", policy: strict, wantReason: "exactly one From"},
		{name: "two angle-bracket addresses", fixture: "auth_from_brackets.eml", policy: strict, wantReason: "multiple angle brackets"},
		{name: "misordered angle brackets", fixture: "auth_from_misordered.eml", policy: strict, wantReason: "misordered"},
		{name: "address list in From", fixture: "auth_from_list.eml", policy: strict, wantReason: "more than one address"},
		{name: "pass for another domain", fixture: "auth_other_domain.eml", policy: strict, wantReason: "not the From domain"},
		{name: "no Authentication-Results", fixture: "auth_none.eml", policy: strict, wantReason: "no Authentication-Results"},
		{name: "microsoft 365 without authserv-id, check skipped", fixture: "auth_ms365.eml", policy: authPolicy{}, wantSender: "alice@example.com"},
		{name: "microsoft 365 without authserv-id, id required", fixture: "auth_ms365.eml", policy: strict, wantReason: "authserv-id"},
		{name: "exchange internal with fallback", fixture: "auth_ms_internal.eml", policy: authPolicy{msInternalFallback: true}, wantSender: "alice@example.com"},
		{name: "exchange internal without fallback", fixture: "auth_ms_internal.eml", policy: authPolicy{}, wantReason: "no Authentication-Results"},
		{name: "exchange internal ignored when results exist", fixture: "auth_ms_internal_with_ar.eml", policy: authPolicy{msInternalFallback: true}, wantReason: "no dmarc=pass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := readHeader(readFixture(t, tt.fixture))
			if err != nil {
				t.Fatalf("readHeader: %v", err)
			}
			sender, err := authenticate(in.header, tt.policy)
			if tt.wantSender != "" {
				if err != nil {
					t.Fatalf("authenticate: got error %v; want sender %s", err, tt.wantSender)
				}
				if sender.Address != tt.wantSender {
					t.Errorf("got sender %q; want %q", sender.Address, tt.wantSender)
				}
				return
			}
			if err == nil {
				t.Fatalf("got sender %q; want rejection %q", sender.Address, tt.wantReason)
			}
			if _, ok := err.(*rejectError); !ok {
				t.Errorf("got error type %T; want *rejectError", err)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("got reason %q; want it to contain %q", err, tt.wantReason)
			}
		})
	}
}

func TestParseStrictAddress(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{name: "bare", raw: "alice@example.com", want: "alice@example.com"},
		{name: "display name", raw: "Alice <alice@example.com>", want: "alice@example.com"},
		{name: "quoted name with brackets", raw: `"Alice <boss@corp>" <alice@example.com>`, want: "alice@example.com"},
		{name: "comment after", raw: "<alice@example.com> (work)", want: "alice@example.com"},
		{name: "two bracketed", raw: "a <b@x.example> <c@y.example>", wantErr: true},
		{name: "nested brackets", raw: "<<alice@example.com>>", wantErr: true},
		{name: "text after address", raw: "<alice@example.com> mallory@attacker.example", wantErr: true},
		{name: "unclosed", raw: "Alice <alice@example.com", wantErr: true},
		{name: "group", raw: "team: alice@example.com;", wantErr: true},
		{name: "no domain", raw: "alice", wantErr: true},
		{name: "empty", raw: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStrictAddress(tt.raw)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStrictAddress(%q) = %q; want error", tt.raw, got.Address)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStrictAddress(%q): %v", tt.raw, err)
			}
			if got.Address != tt.want {
				t.Errorf("got %q; want %q", got.Address, tt.want)
			}
		})
	}
}

func TestAuthorized(t *testing.T) {
	patterns := []string{"alice@example.com", "*@trusted.example", "  Bob@Example.org "}
	tests := []struct {
		addr string
		want bool
	}{
		{"alice@example.com", true},
		{"ALICE@EXAMPLE.COM", true},
		{"mallory@example.com", false},
		{"anyone@trusted.example", true},
		{"anyone@TRUSTED.example", true},
		{"anyone@sub.trusted.example", false},
		{"anyone@nottrusted.example", false},
		{"bob@example.org", true},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := authorized(tt.addr, patterns); got != tt.want {
				t.Errorf("authorized(%q) = %v; want %v", tt.addr, got, tt.want)
			}
		})
	}
	if authorized("alice@example.com", nil) {
		t.Error("authorized with no patterns = true; want false")
	}
}
