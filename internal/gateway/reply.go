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

// DefaultAttachmentLimit is the total size of the files one reply
// attaches when its channel names no limit of its own: 25 MiB, what
// common mail servers take in one message (base64 adds a third on the
// wire). A file that does not fit is left in the outbox and named in the
// reply.
const DefaultAttachmentLimit = 25 << 20

func attachmentLimit(ch channel.Channel) int64 {
	if l, ok := ch.(channel.AttachmentLimiter); ok {
		if n := l.MaxAttachmentBytes(); n > 0 {
			return n
		}
	}
	return DefaultAttachmentLimit
}

// outboxPlan splits the regular files in the outbox root into those the
// reply attaches (in name order, while they fit in limit in all) and those
// too big to go with it, which stay in the outbox.
func outboxPlan(dir *conversation.Dir, limit int64, log *slog.Logger) (attach, tooBig []string) {
	files, err := dir.StatOutbox()
	if err != nil {
		log.Warn("outbox unreadable", logError, err)
		return nil, nil
	}
	var total int64
	for _, f := range files {
		if total+f.Size > limit {
			tooBig = append(tooBig, fmt.Sprintf("%s (%s)", f.Name, humanBytes(f.Size)))
			continue
		}
		total += f.Size
		attach = append(attach, f.Name)
	}
	if len(tooBig) > 0 {
		log.Warn("outbox files too big to attach; left in the outbox", "files", strings.Join(tooBig, ", "), "limit", limit)
	}
	return attach, tooBig
}

// tooBigNote tells the user which files did not go with the reply.
func tooBigNote(tooBig []string) string {
	if len(tooBig) == 0 {
		return ""
	}
	return "\n\n---\nThese files were too big to attach to this reply and are still in the outbox: " +
		strings.Join(tooBig, ", ") + ". Ask for them in smaller pieces (for example compressed or split)."
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// readOutbox reads the named outbox files, at most limit bytes in all;
// sent names those read, which are the ones to clear once the reply is
// out. A file that grew past the limit since the plan is left.
func readOutbox(dir *conversation.Dir, names []string, limit int64, log *slog.Logger) ([]channel.Attachment, []string) {
	var atts []channel.Attachment
	var sent []string
	left := limit
	for _, n := range names {
		data, err := dir.ReadOutboxFile(n, left)
		if err != nil {
			log.Warn("outbox file skipped", "file", n, logError, err)
			continue
		}
		left -= int64(len(data))
		atts = append(atts, channel.Attachment{Name: n, Data: data})
		sent = append(sent, n)
	}
	return atts, sent
}
