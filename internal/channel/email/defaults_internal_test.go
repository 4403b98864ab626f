package email

import (
	"testing"
	"time"
)

// TestDefaults pins the defaults that decide how long mail can wait: a
// reconnect backoff that stops at a minute (it was five), a bounded
// in-flight batch, and sends retried for about half a minute.
func TestDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"ReconnectMin", c.ReconnectMin, time.Second},
		{"ReconnectMax", c.ReconnectMax, time.Minute},
		{"MaxInflight", c.MaxInflight, 20},
		{"SendAttempts", c.SendAttempts, 5},
		{"SendRetryDelay", c.SendRetryDelay, 2 * time.Second},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestByeWatch: only an untagged BYE at the start of a line counts; the
// same bytes inside a line (a quoted mail body, a command) do not.
func TestByeWatch(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   bool
	}{
		{"bye", []string{"+ idling\r\n* BYE Server shutting down.\r\n"}, true},
		{"bye split over reads", []string{"+ idling\r\n* B", "YE Server shutting down.\r\n"}, true},
		{"first line", []string{"* BYE Logging out\r\n"}, true},
		{"inside a line", []string{"* 1 FETCH (BODY[] {20}\r\nhello * BYE there\r\n)\r\n"}, false},
		{"other untagged", []string{"* OK still here\r\n* 3 EXISTS\r\n"}, false},
	}
	for _, tt := range tests {
		var b byeWatch
		for _, c := range tt.chunks {
			if _, err := b.Write([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		if got := b.seen(); got != tt.want {
			t.Errorf("%s: seen = %v; want %v", tt.name, got, tt.want)
		}
	}
}
