package cli

import "testing"

// The trial container of airut check is made of airut itself, which only
// works for a static binary; a dynamic one must be recognised so the check
// says so instead of blaming the host.
func TestIsStatic(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/bin/busybox", true}, // Debian's busybox-static, installed for the tests
		{"/bin/ls", false},     // coreutils: dynamically linked everywhere Debian
		{"/etc/passwd", false}, // not ELF at all
		{"/nonexistent", false},
	}
	for _, tc := range tests {
		if got := isStatic(tc.path); got != tc.want {
			t.Errorf("isStatic(%s) = %v; want %v", tc.path, got, tc.want)
		}
	}
}
