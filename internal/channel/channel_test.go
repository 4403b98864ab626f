package channel_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/airut/airut/internal/channel"
)

func TestPermanent(t *testing.T) {
	cause := errors.New("554 5.7.1 relaying denied")
	tests := []struct {
		name      string
		err       error
		permanent bool
		is        error // must still match through the wrapper
	}{
		{name: "nil", err: channel.Permanent(nil)},
		{name: "plain", err: io.ErrUnexpectedEOF, is: io.ErrUnexpectedEOF},
		{name: "permanent", err: channel.Permanent(cause), permanent: true, is: cause},
		{name: "wrapped permanent", err: fmt.Errorf("send mail: %w", channel.Permanent(cause)), permanent: true, is: cause},
		{name: "permanent of wrapped", err: channel.Permanent(fmt.Errorf("smtp: %w", io.EOF)), permanent: true, is: io.EOF},
		{name: "sentinel itself", err: fmt.Errorf("gone: %w", channel.ErrPermanent), permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := channel.IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent(%v): got %v; want %v", tt.err, got, tt.permanent)
			}
			if tt.is != nil && !errors.Is(tt.err, tt.is) {
				t.Errorf("errors.Is(%v, %v): got false; want the cause kept", tt.err, tt.is)
			}
		})
	}
	if got := channel.Permanent(cause).Error(); got != cause.Error() {
		t.Errorf("text: got %q; want the cause's %q", got, cause.Error())
	}
	if channel.Permanent(nil) != nil {
		t.Errorf("Permanent(nil): want nil")
	}
}

func TestOutcomeSuccess(t *testing.T) {
	for o, want := range map[channel.Outcome]bool{"success": true, "error": false, "timeout": false, "": false} {
		if got := o.Success(); got != want {
			t.Errorf("Outcome(%q).Success(): got %v; want %v", o, got, want)
		}
	}
}
