package gateway

import "github.com/airut/airut/internal/config"

// EventConfig: a config was put in force (ApplyConfig, a hot reload);
// Config returns it. Followers of the config (the scheduler) re-read it.
const EventConfig EventKind = "config"

// Config returns the config in force. It is shared: callers must not
// change it.
func (g *Gateway) Config() *config.Config { return g.config() }
