package config

// WarmSandboxCount is how many warm network sandboxes the gateway keeps:
// warm_sandboxes, by default max_concurrent, and never more than
// max_concurrent (no more tasks can claim one at once).
func (e Execution) WarmSandboxCount() int {
	n := e.MaxConcurrent
	if e.WarmSandboxes != nil {
		n = min(*e.WarmSandboxes, e.MaxConcurrent)
	}
	return max(n, 0)
}
