package scheduler_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/scheduler"
	"github.com/airut/airut/internal/testkit/slacktest"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestPromptScheduleAcrossDST: a prompt-mode schedule at 09:00
// Europe/Helsinki runs at 07:00 UTC on the last day of winter time and at
// 06:00 UTC on the first day of summer time; each run arrives as a new
// email thread from the repo's address, with [ID:…] in its subject and
// the outbox attached; and a reply to it resumes that conversation
// through the normal email flow.
func TestPromptScheduleAcrossDST(t *testing.T) {
	h := newHarness(t, harnessOpts{now: utc("2026-03-28 06:30")})
	h.start(`      daily:
        cron: "0 9 * * *"
        timezone: Europe/Helsinki
        subject: Daily report
        prompt: |
          Write the daily report.
          @@run echo report-body > /outbox/report.txt
          @@reply Nightly report: **all good**.
        deliver:
          to: bob@example.com
`)
	winter := utc("2026-03-28 07:00") // 09:00 EET (UTC+2)
	h.waitNext("daily", winter)
	h.clock.Set(winter.Add(-time.Second))
	if in := h.info("daily"); in.Last != nil {
		t.Fatalf("ran before its time: %+v", in.Last)
	}
	h.clock.Set(winter)
	first := h.waitMail(1)
	res := h.waitResult("daily")
	if res.Status != scheduler.StatusDelivered || res.Outcome != "success" {
		t.Fatalf("first run: %+v; want delivered, success", res)
	}
	if !res.Started.Equal(winter) {
		t.Errorf("first run started %v; want %v", res.Started, winter)
	}
	conv := res.Conversation
	if want := "[ID:" + conv + "] Daily report"; first.Subject != want {
		t.Errorf("subject: got %q; want %q", first.Subject, want)
	}
	if first.InReplyTo != "" || first.References != "" {
		t.Errorf("a new thread has In-Reply-To %q, References %q", first.InReplyTo, first.References)
	}
	if !strings.Contains(first.From, "airut@example.com") || !strings.Contains(first.To, "bob@example.com") {
		t.Errorf("from %q to %q; want from the repo's address to bob", first.From, first.To)
	}
	if !strings.Contains(first.Text, "Nightly report: all good.") {
		t.Errorf("text: %q", first.Text)
	}
	if got := strings.TrimSpace(first.Attachments["report.txt"]); got != "report-body" {
		t.Errorf("attachment report.txt: %q (all %v)", got, first.Attachments)
	}

	summer := utc("2026-03-29 06:00") // 09:00 EEST (UTC+3): DST began at 01:00 UTC
	h.waitNext("daily", summer)
	h.clock.Set(summer)
	second := h.waitMail(2)
	waitFor(t, "the second run to finish", func() bool {
		in := h.info("daily")
		return in.Last != nil && in.Last.Started.Equal(summer) && in.Last.Status != scheduler.StatusRunning
	})
	conv2 := h.info("daily").Last.Conversation
	if conv2 == conv || !strings.HasPrefix(second.Subject, "[ID:"+conv2+"]") {
		t.Errorf("second run: conversation %s, subject %q; want a new conversation and thread", conv2, second.Subject)
	}
	h.waitNext("daily", utc("2026-03-30 06:00"))

	// Alice answers the first report: the conversation goes on.
	h.reply(first, "Thanks. Anything else?\n@@reply Nothing else today.")
	third := h.waitMail(3)
	if want := "Re: [ID:" + conv + "] Daily report"; third.Subject != want {
		t.Errorf("answer subject: got %q; want %q", third.Subject, want)
	}
	if third.InReplyTo == "" || !strings.Contains(third.Text, "Nothing else today.") {
		t.Errorf("answer: in-reply-to %q, text %q", third.InReplyTo, third.Text)
	}
	sess := h.sessions(conv)
	if len(sess) != 1 || len(sess[0].Runs) != 2 || !sess[0].Runs[1].Resumed {
		t.Fatalf("sessions of %s: %+v; want one session resumed by the reply", conv, sess)
	}
}

// TestScriptTriggers: a trigger that exits 0 and prints nothing sends
// nothing and leaves no conversation; one that fails runs the agent with
// its exit code and its output cut at output_limit, in the workspace the
// trigger ran in; one that prints runs the agent with the output.
func TestScriptTriggers(t *testing.T) {
	h := newHarness(t, harnessOpts{now: utc("2026-06-01 08:00")})
	h.start(`      quiet:
        cron: "0 9 * * *"
        timezone: UTC
        trigger_command: sh -c 'test -f README.md && touch /workspace/trigger-was-here'
        deliver: {to: bob@example.com}
      failing:
        cron: "0 10 * * *"
        timezone: UTC
        trigger_command: sh -c 'echo @@echo-prompt; tkhttp https://blocked.example.test/leak || true; echo broken build >&2; head -c 3000 /dev/zero | tr "\0" x; exit 3'
        output_limit: 400
        subject: Build check
        deliver: {to: bob@example.com}
      talking:
        cron: "0 11 * * *"
        timezone: UTC
        trigger_command: "printf '%s\\n' 'new issue #42' '@@reply Looked at issue 42.'"
        deliver: {to: bob@example.com}
      hanging:
        cron: "0 12 * * *"
        timezone: UTC
        trigger_command: sh -c 'echo @@echo-prompt; echo waiting; sleep 120'
        trigger_timeout: 3
        deliver: {to: bob@example.com}
`)
	at := utc("2026-06-01 09:00")
	h.waitNext("quiet", at)
	h.clock.Set(at)
	res := h.waitResult("quiet")
	if res.Status != scheduler.StatusNothing {
		t.Fatalf("quiet trigger: %+v; want nothing to send", res)
	}
	if convs := h.conversations(); len(convs) != 0 {
		t.Errorf("conversations after a quiet trigger: %v; want none", convs)
	}
	if n := len(h.gw.Tasks()); n != 0 {
		t.Errorf("tasks after a quiet trigger: %d; want none", n)
	}

	at = utc("2026-06-01 10:00")
	h.waitNext("failing", at)
	h.clock.Set(at)
	m := h.waitMail(1)
	if n := len(h.smtp.Messages()); n != 1 {
		t.Errorf("mails sent: %d; want only the failing trigger's (the quiet one sends none)", n)
	}
	res = h.waitResult("failing")
	if res.Status != scheduler.StatusDelivered {
		t.Fatalf("failing trigger: %+v", res)
	}
	if !strings.HasPrefix(m.Subject, "[ID:"+res.Conversation+"] Build check") {
		t.Errorf("subject %q", m.Subject)
	}
	for _, want := range []string{"failed with exit code 3", "broken build", "truncated to 400 bytes", "Command: sh -c"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("agent's prompt (echoed) lacks %q:\n%s", want, m.Text)
		}
	}
	if strings.Count(m.Text, "x") > 450 {
		t.Errorf("output not cut at output_limit: %d x's in the prompt", strings.Count(m.Text, "x"))
	}
	// The trigger ran behind the repo's allowlist, logged in its
	// conversation, which the agent then continued.
	netLog, _ := os.ReadFile(filepath.Join(h.convDir(res.Conversation), "network-sandbox.log"))
	if !strings.Contains(string(netLog), "BLOCKED GET https://blocked.example.test/leak") {
		t.Errorf("network-sandbox.log of the trigger: %q; want the blocked request", netLog)
	}

	at = utc("2026-06-01 11:00")
	h.waitNext("talking", at)
	h.clock.Set(at)
	m = h.waitMail(2)
	if !strings.Contains(m.Text, "Looked at issue 42.") {
		t.Errorf("talking trigger's reply: %q", m.Text)
	}
	res = h.waitResult("talking")
	sess := h.sessions(res.Conversation)
	if len(sess) != 1 || !strings.Contains(sess[0].Runs[0].Prompt, "new issue #42") || strings.Contains(sess[0].Runs[0].Prompt, "exit code") {
		t.Errorf("talking trigger's agent prompt: %+v", sess)
	}
	if convs := h.conversations(); len(convs) != 2 {
		t.Errorf("conversations: %v; want the failing and the talking trigger's", convs)
	}

	at = utc("2026-06-01 12:00")
	h.waitNext("hanging", at)
	h.clock.Set(at)
	m = h.waitMail(3)
	for _, want := range []string{"did not finish within 3 seconds", "waiting"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("timed-out trigger's prompt lacks %q:\n%s", want, m.Text)
		}
	}
	if res := h.waitResult("hanging"); !strings.Contains(res.Detail, "trigger timed out") {
		t.Errorf("timed-out trigger: %+v", res)
	}
}

// TestOverlapSkipped: a run that comes while the previous one still goes
// is skipped and counted, not queued; the previous one finishes and is
// delivered; missed runs are not replayed after a long gap.
func TestOverlapSkipped(t *testing.T) {
	h := newHarness(t, harnessOpts{now: utc("2026-06-01 08:59")})
	h.start(`      slow:
        cron: "* * * * *"
        timezone: UTC
        prompt: |
          @@run date > /storage/started; while [ ! -e /storage/go ]; do sleep 0.1; done
          @@reply slow one done
        deliver: {to: bob@example.com}
`)
	at := utc("2026-06-01 09:00")
	h.waitNext("slow", at)
	h.clock.Set(at)
	var conv string
	waitFor(t, "the agent to start", func() bool {
		in := h.info("slow")
		if in.Last == nil || in.Last.Conversation == "" {
			return false
		}
		conv = in.Last.Conversation
		_, err := os.Stat(filepath.Join(h.convDir(conv), "storage", "started"))
		return err == nil
	})
	h.waitNext("slow", at.Add(time.Minute))
	h.clock.Set(at.Add(time.Minute))
	waitFor(t, "the second run to be skipped", func() bool { return h.info("slow").Skipped == 1 })
	if err := h.sched.RunNow("app", "slow"); !errors.Is(err, scheduler.ErrRunning) {
		t.Errorf("RunNow while running: %v; want ErrRunning", err)
	}
	if n := len(h.gw.Tasks()); n != 1 {
		t.Errorf("tasks: %d; want 1 (the skipped run is not queued)", n)
	}
	if err := os.WriteFile(filepath.Join(h.convDir(conv), "storage", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m := h.waitMail(1)
	res := h.waitResult("slow")
	if res.Status != scheduler.StatusDelivered || !strings.Contains(m.Text, "slow one done") || !res.Started.Equal(at) {
		t.Errorf("run: %+v, mail %q", res, m.Text)
	}
	in := h.info("slow")
	if in.Skipped != 2 { // the clock's and RunNow's
		t.Errorf("skipped: %d; want 2", in.Skipped)
	}
	// Hours later (the host slept): one run, then the next minute.
	late := at.Add(5 * time.Hour)
	h.clock.Set(late)
	waitFor(t, "the late run", func() bool {
		in := h.info("slow")
		return in.Last != nil && in.Last.Started.Equal(late)
	})
	h.waitNext("slow", late.Add(time.Minute))
	// The run is recorded as started before its task is queued.
	waitFor(t, "the late run's task", func() bool { return len(h.gw.Tasks()) >= 2 })
	if n := len(h.gw.Tasks()); n != 2 {
		t.Errorf("tasks after a 5-hour gap: %d; want 2 (no catch-up)", n)
	}
	// Let the late run finish before the gateway stops.
	waitFor(t, "the late run's agent", func() bool {
		c := h.info("slow").Last.Conversation
		if c == "" {
			return false
		}
		_, err := os.Stat(filepath.Join(h.convDir(c), "storage", "started"))
		if err == nil {
			_ = os.WriteFile(filepath.Join(h.convDir(c), "storage", "go"), nil, 0o644)
		}
		return err == nil
	})
	h.waitMail(2)
	h.waitResult("slow")
}

// TestHotReload: a schedule edited by ApplyConfig fires at its new time
// and not at its old one; a removed schedule is gone; a disabled one is
// not scheduled but runs by RunNow.
func TestHotReload(t *testing.T) {
	h := newHarness(t, harnessOpts{now: utc("2026-06-01 08:00")})
	h.start(`      edited:
        cron: "0 9 * * *"
        timezone: UTC
        prompt: "@@reply edited ran"
        deliver: {to: bob@example.com}
      removed:
        cron: "0 9 * * *"
        timezone: UTC
        prompt: "@@reply removed ran"
        deliver: {to: bob@example.com}
`)
	h.waitNext("edited", utc("2026-06-01 09:00"))
	if err := h.gw.ApplyConfig(h.config(`      edited:
        cron: "30 10 * * *"
        timezone: UTC
        prompt: "@@reply edited ran"
        deliver: {to: bob@example.com}
      off:
        cron: "0 9 * * *"
        timezone: UTC
        enable: false
        subject: Off but runnable
        prompt: "@@reply off ran by hand"
        deliver: {to: bob@example.com}
`)); err != nil {
		t.Fatal(err)
	}
	newTime := utc("2026-06-01 10:30")
	h.waitNext("edited", newTime)
	if _, ok := h.sched.Schedule("app", "removed"); ok {
		t.Error("removed schedule still listed")
	}
	off := h.info("off")
	if !off.Next.IsZero() || off.Enabled {
		t.Errorf("disabled schedule: %+v; want no next run", off)
	}
	h.clock.Set(utc("2026-06-01 09:00"))
	if in := h.info("edited"); in.Last != nil {
		t.Errorf("edited schedule ran at its old time: %+v", in.Last)
	}
	h.clock.Set(newTime)
	m := h.waitMail(1)
	if !strings.Contains(m.Text, "edited ran") {
		t.Errorf("mail: %q", m.Text)
	}
	if res := h.waitResult("edited"); !res.Started.Equal(newTime) {
		t.Errorf("edited ran at %v; want %v", res.Started, newTime)
	}

	if err := h.sched.RunNow("app", "off"); err != nil {
		t.Fatal(err)
	}
	m = h.waitMail(2)
	if !strings.Contains(m.Subject, "Off but runnable") || !strings.Contains(m.Text, "off ran by hand") {
		t.Errorf("RunNow of a disabled schedule: %q %q", m.Subject, m.Text)
	}
	if res := h.waitResult("off"); !res.Manual || res.Status != scheduler.StatusDelivered {
		t.Errorf("RunNow result: %+v", res)
	}
	// A reply the mail server refuses for good: the run says so.
	h.smtp.FailNextWith(1, 554)
	if err := h.sched.RunNow("app", "edited"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused run", func() bool {
		in := h.info("edited")
		return in.Last != nil && in.Last.Manual && in.Last.Status != scheduler.StatusRunning
	})
	if res := h.info("edited").Last; res.Status != scheduler.StatusNotDelivered || !strings.Contains(res.Detail, "554") {
		t.Errorf("run whose mail was refused: %+v; want not delivered, with the server's answer", res)
	}
	if err := h.sched.RunNow("app", "nope"); !errors.Is(err, scheduler.ErrUnknownSchedule) {
		t.Errorf("RunNow of an unknown schedule: %v", err)
	}
	names := []string{}
	for _, in := range h.sched.List() {
		names = append(names, in.Name)
	}
	if !slices.Equal(names, []string{"edited", "off"}) {
		t.Errorf("List: %v", names)
	}
}

// TestSlackDelivery: a schedule delivered on Slack starts a new message in
// the channel given by to, the result in its thread; an answer in that
// thread resumes the conversation.
func TestSlackDelivery(t *testing.T) {
	h := newHarness(t, harnessOpts{slack: true, now: utc("2026-06-01 08:00")})
	h.start(`      standup:
        cron: "0 9 * * 1-5"
        timezone: America/New_York
        subject: Standup notes
        prompt: "@@reply Standup: **nothing blocked**."
        deliver: {channel: slack, to: C0GENERAL}
`)
	at := utc("2026-06-01 13:00") // 09:00 EDT, a Monday
	h.waitNext("standup", at)
	h.clock.Set(at)
	res := h.waitResult("standup")
	if res.Status != scheduler.StatusDelivered || res.Outcome != "success" {
		t.Fatalf("run: %+v", res)
	}
	var root slacktest.Message
	for _, m := range h.slack.BotMessages(slacktest.General, "") {
		if m.ThreadTS == "" {
			root = m
		}
	}
	if root.Text != "*Standup notes*" {
		t.Fatalf("no new message in #general: %+v", h.slack.BotMessages(slacktest.General, ""))
	}
	var replied bool
	for _, m := range h.slack.BotMessages(slacktest.General, root.TS) {
		replied = replied || (m.ThreadTS == root.TS && strings.Contains(m.Text, "Standup: *nothing blocked*."))
	}
	if !replied {
		t.Fatalf("result not in the thread: %+v", h.slack.BotMessages(slacktest.General, root.TS))
	}
	if len(h.smtp.Messages()) != 0 {
		t.Errorf("an email was sent for a Slack delivery")
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.slack.Event(ctx, slacktest.ChannelMessage(slacktest.General, slacktest.Alice,
		"thanks\n@@reply You are welcome.", h.slack.NewTS(), root.TS)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer in the thread", func() bool {
		for _, m := range h.slack.BotMessages(slacktest.General, root.TS) {
			if strings.Contains(m.Text, "You are welcome.") {
				return true
			}
		}
		return false
	})
	sess := h.sessions(res.Conversation)
	if len(sess) != 1 || len(sess[0].Runs) != 2 || !sess[0].Runs[1].Resumed {
		t.Errorf("sessions: %+v; want the scheduled session resumed by the answer", sess)
	}
}
