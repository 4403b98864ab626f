package slack_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
	slackch "github.com/airut/airut/internal/channel/slack"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/slacktest"
)

func parseThreads(t *testing.T, data []byte) map[string]string {
	t.Helper()
	var f struct {
		Threads map[string]struct {
			Conversation string `json:"conversation"`
		} `json:"threads"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("thread store: %v", err)
	}
	out := map[string]string{}
	for k, v := range f.Threads {
		out[k] = v.Conversation
	}
	return out
}

func TestNewDMThread(t *testing.T) {
	h := newHarness(t)
	thread := h.fake.NewTS()
	h.event(slacktest.AssistantThreadStarted(dmChan, alice, thread))
	h.waitCalls("chat.postMessage", 1)
	if got := h.fake.BotMessages(dmChan, thread); len(got) != 1 || !strings.Contains(got[0].Text, "Send me a task") {
		t.Fatalf("greeting: got %+v", got)
	}

	ts := h.fake.NewTS()
	h.event(dmEvent(alice, "Fix the *flaky* test\nin pkg/foo, please", ts, thread))
	m := h.next()
	want := channel.Message{
		SourceID: dmChan + ":" + ts, MessageID: dmChan + ":" + ts, SenderAddress: alice, SenderName: "Alice",
		Body: "Fix the *flaky* test\nin pkg/foo, please",
	}
	if diff := cmp.Diff(want, *m, cmpMessage); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	status := h.waitCalls("assistant.threads.setStatus", 1)
	if got := status[0].Params.Get("status"); got != "is working on this…" {
		t.Errorf("status %q; want the working status", got)
	}
	titles := h.waitCalls("assistant.threads.setTitle", 1)
	if got := titles[0].Params.Get("title"); got != "Fix the *flaky* test" {
		t.Errorf("title %q; want the first line", got)
	}
	if len(h.fake.Calls("reactions.add")) != 0 {
		t.Errorf("DM got reactions; want the status only")
	}

	if err := h.ch.Acknowledge(h.ctx, m, "c0ffee01"); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	if got := h.threads(); got[dmChan+":"+thread] != "c0ffee01" {
		t.Errorf("thread store %v; want the thread mapped to c0ffee01", got)
	}
	if err := h.ch.Started(h.ctx, m); err != nil {
		t.Fatalf("Started: %v", err)
	}
	status = h.waitCalls("assistant.threads.setStatus", 2)
	if got := status[1].Params.Get("status"); got != "" {
		t.Errorf("status after start %q; want it cleared", got)
	}
	if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee01", Markdown: "Done: **fixed** it."}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	got := h.fake.BotMessages(dmChan, thread)
	if last := got[len(got)-1]; last.Text != "Done: *fixed* it." || last.ThreadTS != thread {
		t.Errorf("reply %+v; want mrkdwn in the thread", last)
	}
	if err := h.ch.Done(h.ctx, m, channel.OutcomeSuccess); err != nil {
		t.Fatalf("Done: %v", err)
	}
	checkTokens(t, h.fake)
}

var cmpMessage = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".Time", ".Thread", ".Attachments":
		return true
	}
	return false
}, cmp.Ignore())

// checkTokens: Slack takes the app token only on apps.connections.open
// and the bot token everywhere else; the fake refuses anything else, and
// this says so plainly.
func checkTokens(t *testing.T, f *slacktest.Server) {
	t.Helper()
	for _, c := range f.Calls("") {
		want := slacktest.BotToken
		if c.Method == "apps.connections.open" {
			want = slacktest.AppToken
		}
		if c.Token != want {
			t.Errorf("%s called with token %q; want %q", c.Method, c.Token, want)
		}
	}
}

func TestResumeSameThread(t *testing.T) {
	h := newHarness(t)
	thread := h.fake.NewTS()
	h.event(dmEvent(alice, "first", thread, ""))
	first := h.next()
	if first.ConversationID != "" {
		t.Fatalf("first message conversation %q; want new", first.ConversationID)
	}
	if err := h.ch.Acknowledge(h.ctx, first, "c0ffee02"); err != nil {
		t.Fatal(err)
	}
	h.event(dmEvent(alice, "second", h.fake.NewTS(), thread))
	second := h.next()
	if second.ConversationID != "c0ffee02" || second.Body != "second" {
		t.Errorf("second message %q in %q; want it in c0ffee02", second.Body, second.ConversationID)
	}
	for _, m := range []*channel.Message{first, second} {
		if err := h.ch.Done(h.ctx, m, channel.OutcomeSuccess); err != nil {
			t.Fatal(err)
		}
	}

	// A restarted channel reads the mapping back.
	h.stop()
	h2 := startHarness(t, h.fake, h.cfg)
	h2.event(dmEvent(alice, "after restart", h.fake.NewTS(), thread))
	if m := h2.next(); m.ConversationID != "c0ffee02" || m.Body != "after restart" {
		t.Errorf("after restart: %q in %q; want the new message in c0ffee02", m.Body, m.ConversationID)
	}
}

// TestRestartHandsOverUnfinished: envelopes are acknowledged on receipt,
// so Slack will not send them again; a message accepted but not Done when
// the process stopped is handed over again by the channel itself, once.
func TestRestartHandsOverUnfinished(t *testing.T) {
	h := newHarness(t)
	doneTS, openTS := h.fake.NewTS(), h.fake.NewTS()
	h.event(mentionEvent(general, alice, "finished", doneTS, ""))
	h.event(mentionEvent(general, alice, "interrupted", openTS, ""))
	finished, interrupted := h.next(), h.next()
	if finished.Body != "finished" {
		finished, interrupted = interrupted, finished
	}
	if err := h.ch.Acknowledge(h.ctx, interrupted, "c0ffee09"); err != nil {
		t.Fatal(err)
	}
	if err := h.ch.Done(h.ctx, finished, channel.OutcomeSuccess); err != nil {
		t.Fatal(err)
	}
	h.stop()

	h2 := startHarness(t, h.fake, h.cfg)
	m := h2.next()
	if m.SourceID != interrupted.SourceID || m.ConversationID != "c0ffee09" || m.Body != "interrupted" {
		t.Errorf("after restart got %s %q in %q; want the interrupted message again in c0ffee09", m.SourceID, m.Body, m.ConversationID)
	}
	h2.none()
	if err := h2.ch.Done(h2.ctx, m, channel.OutcomeSuccess); err != nil {
		t.Fatal(err)
	}
	h2.stop()
	h3 := startHarness(t, h.fake, h.cfg)
	// Only the sentinels of h2 (never Done) come back.
	for i := 0; i < 1; i++ {
		if m := h3.next(); m.Body != "sentinel" {
			t.Errorf("after the second restart got %q; want only unfinished messages", m.Body)
		}
	}
	h3.none()
}

func TestChannelMentionThenReply(t *testing.T) {
	h := newHarness(t)
	root := h.fake.NewTS()
	h.event(mentionEvent(general, alice, "please look at <#"+secret+"|secret> with <@"+bob+">", root, ""))
	m := h.next()
	if m.Body != "please look at #secret with @bobby" {
		t.Errorf("body %q; want mentions resolved", m.Body)
	}
	if m.Thread["thread_ts"] != root {
		t.Errorf("thread %v; want the post itself as root", m.Thread)
	}
	if got := h.fake.Reactions(general, root); len(got) != 1 || got[0] != "eyes" {
		t.Errorf("reactions %v; want eyes", got)
	}
	if err := h.ch.Acknowledge(h.ctx, m, "c0ffee03"); err != nil {
		t.Fatal(err)
	}

	// A reply in the engaged thread needs no mention.
	reply := h.fake.NewTS()
	h.event(channelMessage(general, bob, "also check the docs", reply, root))
	r := h.next()
	if r.ConversationID != "c0ffee03" || r.SenderName != "bobby" {
		t.Errorf("reply: conversation %q sender %q; want c0ffee03 from bobby", r.ConversationID, r.SenderName)
	}
	// A post outside the thread without a mention is not for the app.
	h.event(channelMessage(general, alice, "lunch?", h.fake.NewTS(), ""))
	h.event(channelMessage(general, alice, "unrelated thread", h.fake.NewTS(), h.fake.NewTS()))
	h.none()

	if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee03", Markdown: "Hi @bobby and @Alice, see #general."}); err != nil {
		t.Fatal(err)
	}
	msgs := h.fake.BotMessages(general, root)
	if got, want := msgs[len(msgs)-1].Text, "Hi <@"+bob+"> and <@"+alice+">, see <#"+general+">."; got != want {
		t.Errorf("reply %q; want %q", got, want)
	}
	if err := h.ch.DoneOutcome(h.ctx, m, true); err != nil {
		t.Fatal(err)
	}
	if got := h.fake.Reactions(general, root); len(got) != 1 || got[0] != "white_check_mark" {
		t.Errorf("reactions %v; want only the check mark", got)
	}
	// The gateway retries a Done whose answer it did not see: a repeat
	// is no error.
	if err := h.ch.DoneOutcome(h.ctx, m, true); err != nil {
		t.Errorf("repeated Done: %v", err)
	}
	if err := h.ch.DoneOutcome(h.ctx, r, false); err != nil {
		t.Fatal(err)
	}
	if got := h.fake.Reactions(general, reply); len(got) != 1 || got[0] != "x" {
		t.Errorf("reactions on a failed task %v; want only x", got)
	}
}

func TestRejections(t *testing.T) {
	tests := []struct {
		name   string
		rules  []slackch.Rule
		event  func(f *slacktest.Server) map[string]any
		reason string // "" when dropped before authorization
	}{
		{"bot user", nil, func(f *slacktest.Server) map[string]any { return mentionEvent(general, botUser, "hi", f.NewTS(), "") }, "bot user"},
		{"bot-written mention", nil, func(f *slacktest.Server) map[string]any {
			ev := mentionEvent(general, alice, "hi", f.NewTS(), "")
			ev["bot_id"] = "B0OTHER"
			return ev
		}, ""},
		{"bot message in a DM", nil, func(f *slacktest.Server) map[string]any {
			ev := dmEvent(alice, "hi", f.NewTS(), "")
			ev["subtype"], ev["bot_id"] = "bot_message", "B0OTHER"
			return ev
		}, ""},
		{"deactivated", nil, func(f *slacktest.Server) map[string]any { return dmEvent(gone, "hi", f.NewTS(), "") }, "deactivated user"},
		{"other team by user_team", nil, func(f *slacktest.Server) map[string]any {
			ev := mentionEvent(general, alice, "hi", f.NewTS(), "")
			ev["user_team"] = "T0OTHER"
			return ev
		}, "user of another team T0OTHER"},
		{"other team by profile", nil, func(f *slacktest.Server) map[string]any { return dmEvent(foreign, "hi", f.NewTS(), "") }, "user of another team T0OTHER"},
		{"guest is not a workspace member", nil, func(f *slacktest.Server) map[string]any { return dmEvent(guest, "hi", f.NewTS(), "") }, "no authorized rule matches"},
		{"no rule matches", []slackch.Rule{{UserID: alice}}, func(f *slacktest.Server) map[string]any { return dmEvent(bob, "hi", f.NewTS(), "") }, "no authorized rule matches"},
		{"channel not allowed", nil, func(f *slacktest.Server) map[string]any { return mentionEvent(secret, alice, "hi", f.NewTS(), "") }, "channel not in allowed_channels"},
		{"edit is not a new message", nil, func(f *slacktest.Server) map[string]any {
			ev := dmEvent(alice, "hi", f.NewTS(), "")
			ev["subtype"] = "message_changed"
			return ev
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []option{func(c *slackch.Config) { c.AllowedChannels = []string{general} }}
			rules := tt.rules
			if rules == nil {
				rules = []slackch.Rule{{WorkspaceMembers: true}}
			}
			// The sentinel comes from alice, who every rule set admits.
			opts = append(opts, withRules(append(rules, slackch.Rule{UserID: alice})...))
			h := newHarness(t, opts...)
			ev := tt.event(h.fake)
			h.event(ev)
			if tt.reason != "" {
				// Rejection happens in the thread's own lane: wait for its
				// record before checking that nothing came out.
				if got := h.waitLog("slack message rejected", "ts", ev["ts"].(string)); got.attrs["reason"] != tt.reason {
					t.Errorf("rejection reason %q; want %q", got.attrs["reason"], tt.reason)
				}
			}
			h.none()
			for _, c := range h.fake.Calls("chat.postMessage") {
				t.Errorf("rejection answered in Slack: %v", c.Params)
			}
			if got := h.fake.Reactions(ev["channel"].(string), ev["ts"].(string)); len(got) != 0 {
				t.Errorf("rejected message got reactions %v", got)
			}
		})
	}
}

func TestUserGroupRule(t *testing.T) {
	h := newHarness(t, withRules(slackch.Rule{UserGroup: "eng"}))
	h.fake.AddUserGroup("S0ENG", "eng", bob)
	h.event(dmEvent(alice, "not in eng", h.fake.NewTS(), ""))
	h.event(dmEvent(bob, "in eng", h.fake.NewTS(), ""))
	if m := h.next(); m.Body != "in eng" {
		t.Errorf("got %q; want only bob's message", m.Body)
	}
}

func TestDoubleDeliveryIsOneMessage(t *testing.T) {
	h := newHarness(t)
	ts := h.fake.NewTS()
	mention := mentionEvent(general, alice, "do it", ts, "")
	msg := channelMessage(general, alice, mention["text"].(string), ts, "")
	h.event(msg)
	h.event(mention)
	m := h.next()
	if m.SourceID != general+":"+ts {
		t.Fatalf("got %s", m.SourceID)
	}
	// A second copy would wait behind the first for its conversation;
	// once that is known, nothing more may come out.
	if err := h.ch.Acknowledge(h.ctx, m, "c0ffee0a"); err != nil {
		t.Fatal(err)
	}
	h.none()
	if n := len(h.fake.Calls("reactions.add")); n != 1 {
		t.Errorf("reactions.add called %d times; want once", n)
	}
}

func TestTwoQuickMessagesOneConversation(t *testing.T) {
	for _, surface := range []string{"channel", "dm"} {
		t.Run(surface, func(t *testing.T) {
			h := newHarness(t)
			root, second := h.fake.NewTS(), h.fake.NewTS()
			if surface == "dm" {
				h.event(dmEvent(alice, "first", root, root))
				h.event(dmEvent(alice, "second", second, root))
			} else {
				h.event(mentionEvent(general, alice, "first", root, ""))
				h.event(channelMessage(general, alice, "second", second, root))
			}
			first := h.next()
			if first.Body != "first" || first.ConversationID != "" {
				t.Fatalf("got %q in %q; want the first as a new conversation", first.Body, first.ConversationID)
			}
			select {
			case m := <-h.msgs:
				t.Fatalf("second message %q handed over before the first had a conversation", m.Body)
			case <-time.After(300 * time.Millisecond):
			}
			if err := h.ch.Acknowledge(h.ctx, first, "c0ffee04"); err != nil {
				t.Fatal(err)
			}
			if m := h.next(); m.Body != "second" || m.ConversationID != "c0ffee04" {
				t.Errorf("got %q in %q; want the second in c0ffee04", m.Body, m.ConversationID)
			}
		})
	}
}

func TestMidThreadMentionGetsHistory(t *testing.T) {
	h := newHarness(t)
	root := h.fake.Seed(general, "", alice, "the deploy failed")
	h.fake.Seed(general, root, bob, "log says <https://ci.example/1|build 1> timed out")
	ts := h.fake.NewTS()
	h.event(mentionEvent(general, bob, "can you fix it?", ts, root))
	m := h.next()
	for _, want := range []string{"Earlier messages in this Slack thread", "] the deploy failed", "[bobby ", "build 1 (https://ci.example/1) timed out", "---\n\ncan you fix it?"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	if strings.Contains(m.Body, "] can you fix it?") {
		t.Errorf("the mention itself is in the background:\n%s", m.Body)
	}
}

func TestReplySplitAndUploaded(t *testing.T) {
	para := strings.Repeat("word ", 1999) + "end\n\n" // 10,000 characters
	tests := []struct {
		name       string
		paragraphs int
		wantMsgs   int
		wantFile   bool
	}{
		{"split in four", 10, 4, false},
		{"more than five parts as response.md", 26, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			root := h.fake.NewTS()
			h.event(mentionEvent(general, alice, "write a lot", root, ""))
			m := h.next()
			md := strings.Repeat(para, tt.paragraphs)
			if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee05", Markdown: md}); err != nil {
				t.Fatal(err)
			}
			msgs := h.fake.BotMessages(general, root)
			ups := h.fake.Uploads()
			if tt.wantFile {
				if len(ups) != 1 || ups[0].Name != "response.md" || string(ups[0].Data) != md || ups[0].ThreadTS != root {
					t.Fatalf("uploads %d; want response.md with the whole reply in the thread", len(ups))
				}
				if len(msgs) != 1 || !strings.Contains(msgs[0].Text, "response.md") {
					t.Errorf("messages %d; want one note about response.md", len(msgs))
				}
				return
			}
			if len(msgs) != tt.wantMsgs || len(ups) != 0 {
				t.Fatalf("got %d messages, %d uploads; want %d messages", len(msgs), len(ups), tt.wantMsgs)
			}
			var total int
			for _, msg := range msgs {
				if n := len([]rune(msg.Text)); n > 40000 {
					t.Errorf("message of %d characters", n)
				}
				total += strings.Count(msg.Text, "word")
			}
			if want := strings.Count(md, "word"); total != want {
				t.Errorf("%d words arrived; want %d", total, want)
			}
		})
	}
}

func TestReplyRetryPostsNothingTwice(t *testing.T) {
	h := newHarness(t)
	root := h.fake.NewTS()
	h.event(mentionEvent(general, alice, "go", root, ""))
	m := h.next()
	md := strings.Repeat(strings.Repeat("x", 99)+"\n\n", 700) // 70,000 characters: two parts
	// The first part goes out, the second fails: the reply fails.
	h.fake.Fail("chat.postMessage", "", "internal_error")
	err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee06", Markdown: md})
	if err == nil {
		t.Fatal("Reply succeeded with a failing chat.postMessage")
	}
	if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee06", Markdown: md}); err != nil {
		t.Fatalf("retried Reply: %v", err)
	}
	if got := len(h.fake.BotMessages(general, root)); got != 2 {
		t.Errorf("%d messages in the thread; want the two parts once each", got)
	}
}

func TestAttachmentsBothWays(t *testing.T) {
	h := newHarness(t, func(c *slackch.Config) { c.MaxFileSize = 1 << 10 })
	idA, urlA := h.fake.HostFile("notes.txt", []byte("alpha"))
	idB, urlB := h.fake.HostFile("notes.txt", []byte("beta"))
	idBig, urlBig := h.fake.HostFile("big.bin", make([]byte, 2<<10))
	idLying, urlLying := h.fake.HostFile("lying.bin", make([]byte, 4<<10))
	file := func(id, name, u string, size int) map[string]any {
		return map[string]any{"id": id, "name": name, "size": size, "url_private": u, "url_private_download": u, "mode": "hosted"}
	}
	ts := h.fake.NewTS()
	ev := dmEvent(alice, "see attached", ts, "")
	ev["subtype"] = "file_share"
	ev["files"] = []any{
		file(idA, "notes.txt", urlA, 5),
		file(idB, "../notes.txt", urlB, 4),
		file(idBig, "big.bin", urlBig, 2<<10),
		file(idLying, "lying.bin", urlLying, 10), // claims 10 bytes, has 4 KiB
		file("F0EVIL", "evil.txt", "https://attacker.example/steal", 5),
	}
	h.event(ev)
	m := h.next()
	var names, data []string
	for _, a := range m.Attachments {
		names, data = append(names, a.Name), append(data, string(a.Data))
	}
	if diff := cmp.Diff([]string{"notes.txt", "notes.txt"}, names); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"alpha", "beta"}, data); diff != "" {
		t.Errorf("attachment data (-want +got):\n%s", diff)
	}
	for _, want := range []string{`"big.bin" was not downloaded: larger than`, `"lying.bin" was not downloaded: larger than`, `"evil.txt" was not downloaded`} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}

	// Outbound: two files, the second's upload refused.
	h.fake.Fail("files.getUploadURLExternal", "", "file_uploads_disabled")
	err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee07", Markdown: "here you go", Attachments: []channel.Attachment{
		{Name: "report.csv", Data: []byte("a,b\n1,2\n")},
		{Name: "chart.png", Data: []byte("\x89PNG")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ups := h.fake.Uploads()
	if len(ups) != 1 || ups[0].Name != "report.csv" || string(ups[0].Data) != "a,b\n1,2\n" || ups[0].ThreadTS != ts || ups[0].Channel != dmChan {
		t.Fatalf("uploads %+v; want report.csv in the thread", ups)
	}
	msgs := h.fake.BotMessages(dmChan, ts)
	if last := msgs[len(msgs)-1].Text; !strings.Contains(last, "chart.png") || !strings.Contains(last, "could not be uploaded") {
		t.Errorf("last message %q; want the failed upload named", last)
	}
}

func TestPlanUpdatesThrottled(t *testing.T) {
	fc := newFakeClock()
	h := newHarness(t, withClock(fc))
	root := h.fake.NewTS()
	h.event(mentionEvent(general, alice, "plan it", root, ""))
	m := h.next()
	items := func(done int) []slackch.PlanItem {
		var out []slackch.PlanItem
		for i := 0; i < 4; i++ {
			st := slackch.PlanPending
			switch {
			case i < done:
				st = slackch.PlanCompleted
			case i == done:
				st = slackch.PlanInProgress
			}
			out = append(out, slackch.PlanItem{Text: "step " + string(rune('A'+i)), Status: st})
		}
		return out
	}
	for done := 0; done < 4; done++ {
		if err := h.ch.Plan(h.ctx, m, items(done)); err != nil {
			t.Fatal(err)
		}
	}
	if n, u := len(h.fake.BotMessages(general, root)), len(h.fake.Calls("chat.update")); n != 1 || u != 0 {
		t.Fatalf("after 4 changes at once: %d messages, %d updates; want one message, no update", n, u)
	}
	fc.Advance(500 * time.Millisecond)
	if u := len(h.fake.Calls("chat.update")); u != 0 {
		t.Fatalf("%d updates after half a second; want none", u)
	}
	fc.Advance(500 * time.Millisecond)
	updates := h.waitCalls("chat.update", 1)
	if blocks := updates[0].Params.Get("blocks"); !strings.Contains(blocks, "3 of 4 done") || !strings.Contains(blocks, "▶️ *step D*") {
		t.Errorf("update %s; want the latest list", blocks)
	}
	// A change a second later goes out at once; the final state before
	// the reply too, throttle or not.
	fc.Advance(time.Second)
	if err := h.ch.Plan(h.ctx, m, items(4)); err != nil {
		t.Fatal(err)
	}
	h.waitCalls("chat.update", 2)
	if err := h.ch.Plan(h.ctx, m, items(2)); err != nil {
		t.Fatal(err)
	}
	if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee08", Markdown: "ok"}); err != nil {
		t.Fatal(err)
	}
	if u := len(h.fake.Calls("chat.update")); u != 3 {
		t.Errorf("%d updates; want the pending one flushed before the reply", u)
	}
	plan := h.fake.BotMessages(general, root)[0]
	if plan.Edits != 3 {
		t.Errorf("plan message edited %d times; want 3", plan.Edits)
	}
}

func TestRenderPlanSections(t *testing.T) {
	var items []slackch.PlanItem
	for i := 0; i < 600; i++ {
		items = append(items, slackch.PlanItem{Text: strings.Repeat("long step text ", 20), Status: slackch.PlanPending})
	}
	_, blocks := slackch.RenderPlanForTest(items)
	if len(blocks) > 50 {
		t.Errorf("%d blocks; Slack takes 50", len(blocks))
	}
	for i, b := range blocks {
		if n := len([]rune(b)); n >= 3000 {
			t.Errorf("section %d has %d characters; want under 3000", i, n)
		}
	}
	if !strings.Contains(blocks[len(blocks)-1], "more") {
		t.Errorf("last section %q; want the overflow counted", blocks[len(blocks)-1])
	}
}

func TestReconnectClearsDegraded(t *testing.T) {
	h := newHarness(t)
	h.fake.FailConnectionsOpen(2)
	h.fake.DropConnections()
	got := h.waitHealth(slackch.StateDegraded)
	if got.Reason == "" {
		t.Errorf("degraded without a reason")
	}
	h.waitHealth(slackch.StateHealthy)
	if n := h.fake.Connections(); n < 2 {
		t.Errorf("%d connections; want a reconnection", n)
	}
	// Events flow again, and a disconnect request is followed too.
	h.event(dmEvent(alice, "after reconnect", h.fake.NewTS(), ""))
	if m := h.next(); m.Body != "after reconnect" {
		t.Errorf("got %q", m.Body)
	}
	if err := h.fake.RequestDisconnect(h.ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 15*time.Second)
	defer cancel()
	if err := h.fake.WaitConnected(ctx, 3); err != nil {
		t.Fatal(err)
	}
	h.event(dmEvent(alice, "after refresh", h.fake.NewTS(), ""))
	if m := h.next(); m.Body != "after refresh" {
		t.Errorf("got %q", m.Body)
	}
	if n := len(h.fake.Calls("auth.test")); n != 1 {
		t.Errorf("auth.test called %d times; want once", n)
	}
}

func TestAuthorizationCacheTTL(t *testing.T) {
	fc := newFakeClock()
	h := newHarness(t, withClock(fc))
	h.event(dmEvent(alice, "one", h.fake.NewTS(), ""))
	h.next()
	h.event(dmEvent(alice, "two", h.fake.NewTS(), ""))
	h.next()
	if n := len(h.fake.Calls("users.info")); n != 1 {
		t.Errorf("users.info called %d times for two messages; want a cached lookup", n)
	}
	// Deactivated meanwhile: honoured once the cache entry expires.
	h.fake.AddUser(slacktest.User{ID: alice, Name: "alice", Deleted: true})
	fc.Advance(6 * time.Minute)
	ts := h.fake.NewTS()
	h.event(dmEvent(alice, "three", ts, ""))
	h.event(dmEvent(bob, "sentinel", h.fake.NewTS(), ""))
	if m := h.next(); m.Body != "sentinel" {
		t.Errorf("got %q from a deactivated user", m.Body)
	}
}

func TestProbe(t *testing.T) {
	fake := slacktest.New(t)
	cfg := slackch.Config{BotToken: slacktest.BotToken, AppToken: slacktest.AppToken, APIURL: fake.APIURL,
		Authorized: []slackch.Rule{{WorkspaceMembers: true}}, StateDir: t.TempDir()}
	tests := []struct {
		name    string
		bot     string
		app     string
		wantErr string
	}{
		{"tokens accepted", slacktest.BotToken, slacktest.AppToken, ""},
		{"bot token refused", "xoxb-wrong", slacktest.AppToken, "auth.test (bot token): invalid_auth"},
		{"app token refused", slacktest.BotToken, "xapp-wrong", "apps.connections.open (app token): invalid_auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.BotToken, c.AppToken = tt.bot, tt.app
			ch, err := slackch.New(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = ch.Probe(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Probe: %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDisplayName(t *testing.T) {
	h := newHarness(t)
	for id, want := range map[string]string{alice: "Alice", guest: "Guest"} {
		got, err := h.ch.DisplayName(h.ctx, id)
		if err != nil || got != want {
			t.Errorf("DisplayName(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := h.ch.DisplayName(h.ctx, "UNOBODY"); err == nil {
		t.Errorf("DisplayName of an unknown user succeeded")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  slackch.Config
		want string
	}{
		{"tokens swapped", slackch.Config{BotToken: "xapp-1", AppToken: "xoxb-1", Authorized: []slackch.Rule{{UserID: "U1"}}, StateDir: "x"}, "bot_token"},
		{"no rules", slackch.Config{BotToken: "xoxb-1", AppToken: "xapp-1", StateDir: "x"}, "authorized"},
		{"rule with two keys", slackch.Config{BotToken: "xoxb-1", AppToken: "xapp-1", Authorized: []slackch.Rule{{UserID: "U1", UserGroup: "g"}}, StateDir: "x"}, "authorized[0]"},
		{"bad api url", slackch.Config{BotToken: "xoxb-1", AppToken: "xapp-1", Authorized: []slackch.Rule{{UserID: "U1"}}, StateDir: "x", APIURL: "ftp://x/"}, "api_url"},
		{"no state dir", slackch.Config{BotToken: "xoxb-1", AppToken: "xapp-1", Authorized: []slackch.Rule{{UserID: "U1"}}}, "state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := slackch.New(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v; want an error about %s", err, tt.want)
			}
		})
	}
}

// TestManifest checks that the shipped app manifest asks for what the
// channel uses: Socket Mode, the assistant view, its events and scopes.
func TestManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testkit.ModuleRoot(), "contrib", "slack-app-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Features struct {
			AssistantView *struct{} `json:"assistant_view"`
		} `json:"features"`
		OAuth struct {
			Scopes struct {
				Bot []string `json:"bot"`
			} `json:"scopes"`
		} `json:"oauth_config"`
		Settings struct {
			Events struct {
				Bot []string `json:"bot_events"`
			} `json:"event_subscriptions"`
			SocketMode bool `json:"socket_mode_enabled"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Settings.SocketMode || m.Features.AssistantView == nil {
		t.Errorf("manifest: socket mode %v, assistant view %v; want both", m.Settings.SocketMode, m.Features.AssistantView != nil)
	}
	need := map[string][]string{
		"event": {"app_mention", "assistant_thread_started", "message.channels", "message.groups", "message.im"},
		"scope": {"app_mentions:read", "chat:write", "channels:history", "channels:read", "groups:history", "im:history",
			"files:read", "files:write", "reactions:write", "users:read", "usergroups:read", "assistant:write"},
	}
	have := map[string][]string{"event": m.Settings.Events.Bot, "scope": m.OAuth.Scopes.Bot}
	for kind, names := range need {
		for _, n := range names {
			if !slices.Contains(have[kind], n) {
				t.Errorf("manifest lacks %s %s", kind, n)
			}
		}
	}
}

// BenchmarkDMToHandler measures one direct message from the fake's socket
// write to the gateway's handler: envelope, ack, slack-go's parsing and
// routing, authorization (cached), the status and title calls.
func BenchmarkDMToHandler(b *testing.B) {
	fake := slacktest.New(b)
	fake.SeedWorkspace()
	cfg := slackch.Config{BotToken: slacktest.BotToken, AppToken: slacktest.AppToken, APIURL: fake.APIURL,
		Authorized: []slackch.Rule{{WorkspaceMembers: true}}, StateDir: b.TempDir()}
	ch, err := slackch.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *channel.Message, 1)
	go func() { _ = ch.Run(ctx, func(_ context.Context, m *channel.Message) error { got <- m; return nil }) }()
	if err := fake.WaitConnected(ctx, 1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := fake.Event(ctx, dmEvent(alice, "task", fake.NewTS(), "")); err != nil {
			b.Fatal(err)
		}
		m := <-got
		if err := ch.Done(ctx, m, channel.OutcomeSuccess); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRateLimitedReplyWaitsAndSucceeds(t *testing.T) {
	h := newHarness(t)
	root := h.fake.NewTS()
	h.event(mentionEvent(general, alice, "go", root, ""))
	m := h.next()
	h.fake.RateLimit("chat.postMessage", 1)
	if err := h.ch.Reply(h.ctx, m, channel.Reply{ConversationID: "c0ffee0b", Markdown: "done"}); err != nil {
		t.Fatalf("Reply after a 429: %v", err)
	}
	if n := len(h.fake.Calls("chat.postMessage")); n != 2 {
		t.Errorf("chat.postMessage called %d times; want the 429 and one retry", n)
	}
	if got := h.fake.BotMessages(general, root); len(got) != 1 {
		t.Errorf("%d messages; want one", len(got))
	}
}
