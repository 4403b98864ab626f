package agent

// Outcome is how a task ended. The values are stored in conversation.json
// and shown on the dashboard.
type Outcome string

// Outcomes. Classify decides the first five; the gateway sets
// OutcomeInfrastructure and OutcomeCancelled itself because they happen
// around the agent, not in it.
const (
	OutcomeSuccess        Outcome = "success"
	OutcomeTimeout        Outcome = "timeout"
	OutcomePromptTooLong  Outcome = "prompt_too_long"
	OutcomeSessionLost    Outcome = "session_lost"
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
// timeout; exit 0; the output says the prompt is too long; a resumed run
// shows an API 4xx error or an unknown session; anything else is an error.
// r may be nil when the agent produced no output at all.
func Classify(timedOut bool, exitCode int, r *Reader, stderrTail []string, resumed bool) Outcome {
	if timedOut {
		return OutcomeTimeout
	}
	if exitCode == 0 {
		return OutcomeSuccess
	}
	var promptTooLong, sessionLost bool
	if r != nil {
		r.mu.Lock()
		promptTooLong, sessionLost = r.promptTooLong, r.sessionLost
		r.mu.Unlock()
	}
	for _, line := range stderrTail {
		pt, sl := errorMarkers(line)
		promptTooLong = promptTooLong || pt
		sessionLost = sessionLost || sl
	}
	switch {
	case promptTooLong:
		return OutcomePromptTooLong
	case sessionLost && resumed:
		return OutcomeSessionLost
	default:
		return OutcomeError
	}
}
