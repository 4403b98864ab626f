package agent

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Channel names understood by Prompt. Any other name gets a neutral
// preamble.
const (
	ChannelEmail = "email"
	ChannelSlack = "slack"
)

// PromptInput is everything the preamble and body of a prompt are built from.
type PromptInput struct {
	// Channel is the channel kind, ChannelEmail or ChannelSlack.
	Channel string
	// Subject is set by the caller only for the first message of a new email
	// conversation, so the agent knows what the thread is about.
	Subject string
	// Attachments are the names under which this task's attachments were
	// saved to /inbox (after de-duplication), in order.
	Attachments []string
	// Messages are the user's messages, oldest first. More than one means
	// messages were coalesced while the conversation was busy.
	Messages []PromptMessage
}

// PromptMessage is one user message of a task.
type PromptMessage struct {
	SenderName    string // Alice; may be empty
	SenderAddress string // alice@example.com, U123ABC
	Time          time.Time
	Body          string
}

// recoveryQuoteRunes bounds how much of the last reply a recovery prompt
// quotes: enough to remind the agent where it was, small enough that the
// recovery prompt itself cannot be the reason a fresh session overflows.
const recoveryQuoteRunes = 2000

// Prompt returns the full prompt for a task: a preamble about the
// environment, then the message or messages.
func Prompt(p PromptInput) string {
	var b strings.Builder
	writePreamble(&b, p)
	writeMessages(&b, p.Messages)
	return b.String()
}

// RecoveryPrompt is the prompt for the one retry with a fresh session after
// the conversation's session could not be resumed (prompt too long or
// session lost). lastReply is the reply the user last received, if any.
func RecoveryPrompt(p PromptInput, lastReply string) string {
	var b strings.Builder
	writePreamble(&b, p)
	b.WriteString("## Note: fresh session\n\n")
	b.WriteString("This conversation already had earlier messages, but its previous " +
		"Claude session could not be resumed, so you start without its history. " +
		"The files in /workspace, /inbox and /storage are still there and may " +
		"hold work in progress from before.\n\n")
	if quote := strings.TrimSpace(lastReply); quote != "" {
		truncated := false
		if utf8.RuneCountInString(quote) > recoveryQuoteRunes {
			quote = string([]rune(quote)[:recoveryQuoteRunes])
			truncated = true
		}
		b.WriteString("The start of your last reply to the user was:\n\n")
		for line := range strings.SplitSeq(quote, "\n") {
			b.WriteString("> ")
			b.WriteString(line)
			b.WriteString("\n")
		}
		if truncated {
			b.WriteString("> […]\n")
		}
		b.WriteString("\n")
	}
	b.WriteString("Tell the user plainly that the earlier context was lost. Check the " +
		"workspace (git status, git log, recent files) to find out what was " +
		"already done before you continue, and ask the user if anything is " +
		"unclear.\n\n")
	writeMessages(&b, p.Messages)
	return b.String()
}

func writePreamble(b *strings.Builder, p PromptInput) {
	b.WriteString("## How this session works\n\n")
	switch p.Channel {
	case ChannelEmail:
		b.WriteString("You are working on a task sent by email. ")
	case ChannelSlack:
		b.WriteString("You are working on a task sent in a Slack thread. ")
	default:
		fmt.Fprintf(b, "You are working on a task sent through the %q channel. ", p.Channel)
	}
	b.WriteString("Nobody watches you work: your last message is sent back as the " +
		"reply in the same thread, so make it a complete answer.\n\n")

	b.WriteString("- Only /workspace (the git repository), /inbox and /storage are kept " +
		"between messages of this conversation; everything else in the container is " +
		"discarded when you finish. Keep notes and scratch files you need later in /storage.\n")
	if p.Channel == ChannelSlack {
		b.WriteString("- Your reply is Markdown and is rendered for Slack, which has no " +
			"tables: use lists instead.\n")
	} else {
		b.WriteString("- Your reply is Markdown and is rendered for the reader.\n")
	}
	b.WriteString("- To send files to the user, write them directly into /outbox " +
		"(not into a subfolder); they are attached to your reply.\n")
	b.WriteString("- Interactive tools that ask the user a question or wait for plan " +
		"approval do not work here. If you need something from the user, ask in your " +
		"reply; their answer arrives as the next message.\n")
	if p.Subject != "" {
		fmt.Fprintf(b, "- This is a new email conversation. Its subject is: %s\n", oneLine(p.Subject))
	}
	if len(p.Attachments) > 0 {
		b.WriteString("- The user attached files, saved in /inbox as:\n")
		for _, name := range p.Attachments {
			fmt.Fprintf(b, "  - /inbox/%s\n", name)
		}
	}
	b.WriteString("\n")
}

func writeMessages(b *strings.Builder, msgs []PromptMessage) {
	switch len(msgs) {
	case 0:
		return
	case 1:
		b.WriteString("## Message\n\n")
		b.WriteString(msgs[0].Body)
	default:
		b.WriteString("## Messages\n\nSeveral messages arrived while you were busy; " +
			"answer them together.\n")
		for _, m := range msgs {
			b.WriteString("\n")
			b.WriteString(MessageHeader(m))
			b.WriteString("\n")
			b.WriteString(m.Body)
			b.WriteString("\n")
		}
	}
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
}

// MessageHeader is the line that introduces one of several coalesced
// messages: [Alice <alice@example.com> 2026-11-22 10:31:05 UTC].
func MessageHeader(m PromptMessage) string {
	sender := m.SenderAddress
	if name := oneLine(m.SenderName); name != "" {
		sender = fmt.Sprintf("%s <%s>", name, m.SenderAddress)
	}
	return fmt.Sprintf("[%s %s]", sender, m.Time.UTC().Format("2006-01-02 15:04:05 UTC"))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
