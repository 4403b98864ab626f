package agent

// Outcome is how a task ended. The values are stored in conversation.json
// and shown on the dashboard.
type Outcome string

// Outcomes. Classify decides the first six; the gateway sets
// OutcomeInfrastructure and OutcomeCancelled itself because they happen
// around the agent, not in it.
const (
	OutcomeSuccess       Outcome = "success"
	OutcomeTimeout       Outcome = "timeout"
	OutcomePromptTooLong Outcome = "prompt_too_long"
	OutcomeSessionLost   Outcome = "session_lost"
	// OutcomeAuthFailed: the API refused the Claude credential (401/403).
	// Never retried with a fresh session: it would lose the context and
	// fail the same way.
	OutcomeAuthFailed     Outcome = "auth_failed"
	OutcomeError          Outcome = "error"
	OutcomeInfrastructure Outcome = "infrastructure"
	OutcomeCancelled      Outcome = "cancelled"
)

// Retryable reports whether a fresh session may fix the outcome: the gateway
// retries these once, with RecoveryPrompt, when the run was a resume.
func (o Outcome) Retryable() bool {
	return o == OutcomePromptTooLong || o == OutcomeSessionLost
}

// Classify decides a finished run's outcome, in this order: killed by the
// timeout; exit 0; the prompt is too long; a resumed run whose session
// could not be continued (an unknown session id, or the API rejecting the
// request, typically its history); the API refused the credential;
// anything else is an error. The CLI's structured fields decide first
// (terminal_reason, api_error_status, the <synthetic> message's error);
// its words (result text, errors, stderr) only when those are silent.
// r may be nil when the agent produced no output at all.
func Classify(timedOut bool, exitCode int, r *Reader, stderrTail []string, resumed bool) Outcome {
	if timedOut {
		return OutcomeTimeout
	}
	if exitCode == 0 {
		return OutcomeSuccess
	}
	if r == nil {
		r = NewReader(0)
	}
	r.mu.Lock()
	d := r.diagnose(stderrTail)
	r.mu.Unlock()
	switch {
	case d.promptTooLong:
		return OutcomePromptTooLong
	case resumed && (d.noSession || d.rejected):
		return OutcomeSessionLost
	case d.auth:
		return OutcomeAuthFailed
	default:
		return OutcomeError
	}
}

// Unavailable reports whether a failed run's cause was the model service:
// rate-limited or failing (HTTP 429, 5xx, "overloaded") after the CLI's
// own retries. The reply then says to try again later.
func Unavailable(r *Reader, stderrTail []string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.diagnose(stderrTail).unavailable
}
