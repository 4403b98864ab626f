package slack

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/slack-go/slack"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"channel gone", fmt.Errorf("post: %w", slack.SlackErrorResponse{Err: "channel_not_found"}), true},
		{"token revoked", slack.SlackErrorResponse{Err: "token_revoked"}, true},
		{"internal error", slack.SlackErrorResponse{Err: "internal_error"}, false},
		{"rate limited", &slack.RateLimitedError{}, false},
		{"network", errors.New("dial tcp: connection refused"), false},
		{"timeout", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := Permanent(tt.err); got != tt.want {
			t.Errorf("%s: Permanent = %v; want %v", tt.name, got, tt.want)
		}
	}
}
