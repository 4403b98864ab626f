package scheduler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
)

// execute runs one schedule to its end: the trigger (script mode), the
// agent task and its delivery. progress publishes what is known so far.
func (s *Scheduler) execute(ctx context.Context, k key, sc config.Schedule, res Result, progress func(Result)) Result {
	fail := func(format string, args ...any) Result {
		res.Status, res.Detail = StatusFailed, fmt.Sprintf(format, args...)
		return res
	}
	subject := sc.Subject
	if subject == "" {
		subject = k.name
	}
	body, conv := sc.Prompt, ""
	if sc.TriggerCommand != "" {
		argv, err := config.SplitCommand(sc.TriggerCommand)
		if err != nil {
			return fail("trigger_command: %v", err)
		}
		cr, err := s.g.RunCommand(ctx, gateway.Command{Repo: k.repo, Channel: sc.Deliver.Channel, Argv: argv,
			Timeout: time.Duration(sc.TriggerTimeout) * time.Second, OutputLimit: sc.OutputLimit})
		if err != nil {
			return fail("trigger command not run: %v", err)
		}
		res.Detail = triggerSummary(cr)
		if cr.ExitCode == 0 && !cr.TimedOut && strings.TrimSpace(cr.Output) == "" {
			if err := s.g.DiscardConversation(k.repo, cr.Conversation); err != nil {
				s.log.Warn("conversation of a quiet trigger not removed", "repo", k.repo, "schedule", k.name,
					"conversation", cr.Conversation, "error", err)
			}
			res.Status = StatusNothing
			return res
		}
		conv = cr.Conversation
		res.Conversation = conv
		body = triggerPrompt(k.name, sc, cr)
	}

	var sub gateway.Submission
	sub.Repo, sub.Conversation, sub.Channel, sub.Effort = k.repo, conv, sc.Deliver.Channel, sc.Effort
	sub.Deliver = &gateway.Delivery{To: append([]string(nil), sc.Deliver.To...), Subject: subject}
	// The message is built field by field: the scheduler uses the Submit
	// API, not the channel contract its Message type comes from.
	sub.Message.SenderAddress = "schedule:" + k.name
	sub.Message.SenderName = "Scheduled task " + k.name
	sub.Message.Subject = subject
	sub.Message.Body = body
	sub.Message.Model = sc.Model
	// One run, one identity: a second Submit of the same run (there is
	// none today) would be refused rather than run twice.
	sub.Message.MessageID = fmt.Sprintf("<schedule.%s.%s.%d@airut>", k.repo, k.name, res.Started.UnixNano())
	st, err := s.g.Submit(ctx, sub)
	if err != nil {
		if conv != "" {
			_ = s.g.DiscardConversation(k.repo, conv)
		}
		return fail("task not submitted: %v", err)
	}
	res.Conversation, res.Task = st.Conversation, st.Task
	progress(res)

	ti, err := s.waitTask(ctx, st.Task)
	if err != nil {
		return fail("%v (the gateway still has the task; it runs after a restart)", err)
	}
	res.Outcome = string(ti.Outcome)
	switch {
	case ti.State == gateway.StateAbandoned:
		return fail("interrupted by a shutdown; the task runs again after the restart")
	case ti.ReplyFailed:
		res.Status, res.Detail = StatusNotDelivered, ti.ReplyError
	default:
		res.Status = StatusDelivered
		if ti.Reason != "" {
			res.Detail = ti.Reason
		}
	}
	return res
}

// waitTask waits until the task is done (replied, or its reply refused
// for good) or abandoned, following a coalesced task into the one that
// ran it.
func (s *Scheduler) waitTask(ctx context.Context, id string) (gateway.TaskInfo, error) {
	filter := gateway.Filter{Kinds: []gateway.EventKind{gateway.EventTask}}
	for {
		filter.Task = id
		sub := s.g.Events().Subscribe(filter)
		ti, ok := s.g.Task(id)
		if !ok {
			sub.Close()
			return ti, fmt.Errorf("task %s: unknown to the gateway", id)
		}
		for !finished(ti) {
			select {
			case <-ctx.Done():
				sub.Close()
				return ti, fmt.Errorf("task %s: the scheduler stopped before it finished: %w", id, context.Cause(ctx))
			case ev, open := <-sub.Events():
				if !open {
					// Dropped: read the state afresh and subscribe again.
					ti, _ = s.g.Task(id)
					sub = s.g.Events().Subscribe(filter)
					continue
				}
				if ev.Info != nil {
					ti = *ev.Info
				}
			}
		}
		sub.Close()
		if ti.State == gateway.StateCoalesced && ti.CoalescedInto != "" {
			id = ti.CoalescedInto
			continue
		}
		return ti, nil
	}
}

func finished(ti gateway.TaskInfo) bool {
	switch ti.State {
	case gateway.StateDone, gateway.StateAbandoned, gateway.StateCoalesced:
		return true
	}
	return false
}

// triggerSummary says in one line how the trigger ended.
func triggerSummary(cr gateway.CommandResult) string {
	switch {
	case cr.TimedOut:
		return fmt.Sprintf("trigger timed out after %s", cr.Duration.Round(time.Second))
	case cr.ExitCode != 0:
		return fmt.Sprintf("trigger exited %d", cr.ExitCode)
	case strings.TrimSpace(cr.Output) == "":
		return "trigger exited 0 with no output"
	}
	return fmt.Sprintf("trigger exited 0 with %d bytes of output", len(cr.Output))
}

// triggerPrompt is the agent's prompt after a trigger that has something
// to say: its output, and how it ended when that was not exit 0.
func triggerPrompt(name string, sc config.Schedule, cr gateway.CommandResult) string {
	var b strings.Builder
	switch {
	case cr.TimedOut:
		fmt.Fprintf(&b, "The trigger command of the scheduled task %q did not finish within %d seconds and was stopped.\n",
			name, sc.TriggerTimeout)
	case cr.ExitCode != 0:
		fmt.Fprintf(&b, "The trigger command of the scheduled task %q failed with exit code %d.\n", name, cr.ExitCode)
	default:
		fmt.Fprintf(&b, "The trigger command of the scheduled task %q found something to report.\n", name)
	}
	fmt.Fprintf(&b, "Command: %s\n", sc.TriggerCommand)
	fmt.Fprintf(&b, "It ran in /workspace, a fresh clone of the repository; you are in the same workspace.\n")
	if cr.Output == "" {
		b.WriteString("It printed nothing.\n")
	} else {
		note := ""
		if cr.Truncated {
			note = fmt.Sprintf(" (truncated to %d bytes)", sc.OutputLimit)
		}
		fence := fenceFor(cr.Output)
		fmt.Fprintf(&b, "Its output (stdout and stderr)%s:\n\n%s\n%s\n%s\n", note, fence, strings.TrimRight(cr.Output, "\n"), fence)
	}
	if cr.ExitCode != 0 || cr.TimedOut {
		b.WriteString("\nInvestigate why it failed, fix what you can, and reply with what you found and did.\n")
	} else {
		b.WriteString("\nAct on it as this scheduled task intends, and reply with what you found and did.\n")
	}
	return b.String()
}

// fenceFor is a code fence longer than any run of backticks in s.
func fenceFor(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}
