package gateway

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/conversation"
)

// quoteLines is how many output lines an error reply quotes.
const quoteLines = 12

// maxQuotedLine caps one quoted line: stream-json lines can be huge.
const maxQuotedLine = 400

// replyText is the one place where a task's outcome becomes what the user
// reads. The caller redacts it.
func replyText(tr taskResult) string {
	var b strings.Builder
	if tr.recovered {
		b.WriteString("_Note: the earlier session of this conversation could not be resumed, so " +
			"this task ran in a fresh session without the previous context. The files in the " +
			"workspace were kept._\n\n")
	}
	switch tr.outcome {
	case agent.OutcomeSuccess:
		reply := strings.TrimSpace(tr.res.Reply)
		if reply == "" {
			reply = agent.NoOutputReply
		}
		b.WriteString(reply)
		if f := agent.Footer(tr.res, tr.subscription); f != "" {
			b.WriteString("\n\n---\n")
			b.WriteString(f)
		}
	case agent.OutcomeTimeout:
		limit := "its time limit"
		if tr.timeout > 0 {
			limit = fmt.Sprintf("its time limit of %s", tr.timeout)
		}
		fmt.Fprintf(&b, "The task reached %s and was stopped before it finished.\n\n"+
			"The work so far is saved in this conversation's workspace. Reply to this message "+
			"to continue where it left off (for example, ask for a smaller step).", limit)
	case agent.OutcomeCancelled:
		b.WriteString("The task was stopped before it finished. The work so far is saved in this " +
			"conversation's workspace; reply to this message to continue.")
	case agent.OutcomeInfrastructure:
		b.WriteString("This task could not run because of a problem with the sandbox or the " +
			"repository's configuration, not with the agent or your request:\n\n")
		fmt.Fprintf(&b, "> %s\n\n", oneLine(tr.reason))
		b.WriteString("Reply to this message to try again once the problem is fixed; if it " +
			"persists, the operator can find the details in the gateway's log.")
	case agent.OutcomePromptTooLong:
		b.WriteString("The conversation has grown too long for the model's context, and the task " +
			"could not finish. Start a new conversation (a new email thread) to continue; the " +
			"repository's state is in its pushed branches.")
		quoteTail(&b, tr)
	case agent.OutcomeSessionLost:
		b.WriteString("The agent's session for this conversation could not be resumed, and the task " +
			"could not finish. Reply to this message to try again in a fresh session.")
		quoteTail(&b, tr)
	case agent.OutcomeAuthFailed:
		status := ""
		if s := tr.res.APIErrorStatus; s != 0 {
			status = fmt.Sprintf(" (HTTP %d)", s)
		}
		fmt.Fprintf(&b, "The Claude API refused the agent's credential%s, so the task could not run. ", status)
		if tr.credential != "" {
			fmt.Fprintf(&b, "The operator should check this repository's %s in airut.yaml: the key or "+
				"token must be valid, not revoked or expired, and scoped to api.anthropic.com.", tr.credential)
		} else {
			b.WriteString("This repository has no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in its " +
				"masked_secrets: the operator should add one, scoped to api.anthropic.com.")
		}
		b.WriteString("\n\nThe conversation is kept: reply to this message to continue once the credential is fixed.")
		quoteTail(&b, tr)
	case agent.OutcomeError:
		if tr.unavailable {
			status := ""
			if s := tr.res.APIErrorStatus; s != 0 {
				status = fmt.Sprintf(" (HTTP %d)", s)
			}
			fmt.Fprintf(&b, "The model service is unavailable or rate-limited%s, and the agent gave up "+
				"after retrying. This is not a problem with your request: the conversation is kept, so "+
				"reply to this message later to continue.", status)
			quoteTail(&b, tr)
			break
		}
		fallthrough
	default:
		fmt.Fprintf(&b, "The agent stopped with an error (exit code %d) before finishing.", tr.exitCode)
		if r := strings.TrimSpace(tr.res.Reply); r != "" && r != agent.NoOutputReply {
			b.WriteString("\n\nIts last message was:\n\n")
			for line := range strings.SplitSeq(r, "\n") {
				b.WriteString("> " + line + "\n")
			}
		}
		quoteTail(&b, tr)
		b.WriteString("\n\nReply to this message to try again or to give more guidance.")
	}
	return b.String()
}

// quoteTail quotes the last lines of the agent's output: stderr when it
// said something; else, for a run the CLI reported as failed, its own
// words (the result's errors or text), which read better than the JSON
// they came in; else the raw stdout lines.
func quoteTail(b *strings.Builder, tr taskResult) {
	lines := tr.stderr
	if len(lines) == 0 && tr.res.IsError {
		if len(tr.res.Errors) > 0 {
			lines = tr.res.Errors
		} else if r := strings.TrimSpace(tr.res.Reply); r != "" && r != agent.NoOutputReply {
			lines = strings.Split(r, "\n")
		}
	}
	if len(lines) == 0 {
		lines = tr.res.Tail
	}
	if len(lines) > quoteLines {
		lines = lines[len(lines)-quoteLines:]
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\n\nThe last lines of its output:\n\n```\n")
	for _, l := range lines {
		if len(l) > maxQuotedLine {
			l = l[:maxQuotedLine] + "…"
		}
		b.WriteString(strings.ReplaceAll(l, "```", "'''"))
		b.WriteString("\n")
	}
	b.WriteString("```")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// outboxNames lists the regular files in the outbox root: what the reply
// attaches and, once it is sent, clears.
func outboxNames(dir *conversation.Dir, log *slog.Logger) []string {
	names, err := dir.OutboxFiles()
	if err != nil {
		log.Warn("outbox unreadable", logError, err)
		return nil
	}
	return names
}

// readOutbox reads the named outbox files; sent names those read, which
// are the ones to clear once the reply is out.
func readOutbox(dir *conversation.Dir, names []string, log *slog.Logger) ([]channel.Attachment, []string) {
	var atts []channel.Attachment
	var sent []string
	for _, n := range names {
		data, err := dir.ReadOutboxFile(n)
		if err != nil {
			log.Warn("outbox file skipped", "file", n, logError, err)
			continue
		}
		atts = append(atts, channel.Attachment{Name: n, Data: data})
		sent = append(sent, n)
	}
	return atts, sent
}
