package slack

import (
	"sync"
	"time"
)

// State is the channel's connection state, for the dashboard.
type State string

const (
	// StateConnecting: not connected yet since the start.
	StateConnecting State = "connecting"
	// StateHealthy: the socket is open and events flow.
	StateHealthy State = "healthy"
	// StateDegraded: the socket was lost and Socket Mode is reconnecting;
	// it clears once connected again.
	StateDegraded State = "degraded"
	// StateFailed: Slack refused a token or auth.test failed; retried
	// with backoff.
	StateFailed State = "failed"
)

// Health is the channel's state, why, and since when.
type Health struct {
	State  State
	Reason string
	Since  time.Time
}

// Health returns the current connection state.
func (c *Channel) Health() Health { return c.health.get() }

type healthTracker struct {
	mu  sync.Mutex
	cur Health
	// everConnected tells a first connection from a reconnection.
	everConnected bool
}

func (h *healthTracker) get() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur
}

func (h *healthTracker) set(now time.Time, s State, reason string) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s == StateHealthy {
		h.everConnected = true
	}
	if h.cur.State == s && h.cur.Reason == reason {
		return false
	}
	h.cur = Health{State: s, Reason: reason, Since: now}
	return true
}

// lost marks the socket lost: degraded once it had been connected, else
// still connecting.
func (h *healthTracker) lost(now time.Time, reason string) {
	h.mu.Lock()
	s := StateConnecting
	if h.everConnected {
		s = StateDegraded
	}
	h.mu.Unlock()
	h.set(now, s, reason)
}
