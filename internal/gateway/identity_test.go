package gateway

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airut/airut/internal/channel"
)

func doneSources(ds []doneCall) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.SourceID)
	}
	slices.Sort(out)
	return out
}

// TestRedeliveredMessage: a message handed over again under a new source
// id (a new IMAP UID after a move, a re-delivery) is recognised by its
// identity: it never runs twice and never starts a second conversation;
// only its acknowledgement at the source is redone. A different message
// that reuses the Message-ID is not mistaken for it.
func TestRedeliveredMessage(t *testing.T) {
	t.Run("while in flight", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		ch := f.chans["app"]
		f.start()
		m := msg("10:1", block("once"))
		if err := ch.hand(t, m); err != nil {
			t.Fatal(err)
		}
		ti := f.taskFor("10:1")
		f.waitStarted("app", ti.Conversation)
		again := *m
		again.SourceID = "10:77"
		if err := ch.hand(t, &again); err != nil {
			t.Fatal(err)
		}
		f.release("app", ti.Conversation)
		ch.wait(t, "Done of both copies", func() bool { return len(ch.dones) == 2 })
		replies, dones, acks := ch.snapshot()
		if len(replies) != 1 || len(acks) != 1 {
			t.Errorf("replies %d, acks %d; want one each", len(replies), len(acks))
		}
		if got := doneSources(dones); !slices.Equal(got, []string{"10:1", "10:77"}) {
			t.Errorf("done at the source: %v; want both copies", got)
		}
		if n := len(f.g.Tasks()); n != 1 {
			t.Errorf("tasks: %d; want 1", n)
		}
	})
	t.Run("after a restart mid-task", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{shutdown: 1})
		ch := f.chans["app"]
		f.start()
		m := msg("11:1", "@@run echo run >> ../storage/runs\n"+block("after the restart"))
		if err := ch.hand(t, m); err != nil {
			t.Fatal(err)
		}
		conv := f.taskFor("11:1").Conversation
		f.waitStarted("app", conv)
		f.restart() // the task is cancelled at the shutdown timeout
		again := *m
		again.SourceID = "12:3" // the server gave it a new UID meanwhile
		if err := ch.hand(t, &again); err != nil {
			t.Fatal(err)
		}
		poll(t, "the second run", func() bool {
			data, _ := os.ReadFile(filepath.Join(f.convDir("app", conv), "storage", "runs"))
			return strings.Count(string(data), "run") == 2
		})
		f.release("app", conv)
		ch.wait(t, "the reply and Done", func() bool { return len(ch.replies) == 1 && len(ch.dones) == 1 })
		if r := ch.replies[0]; r.R.ConversationID != conv || r.To.SourceID != "12:3" {
			t.Errorf("reply in %s to %s; want %s to 12:3", r.R.ConversationID, r.To.SourceID, conv)
		}
		if ids, _ := f.handler("app").store.List(); len(ids) != 1 {
			t.Errorf("conversations: %v; want one", ids)
		}
		if len(ch.acks) != 1 {
			t.Errorf("acknowledgements: %d; want 1", len(ch.acks))
		}
	})
	t.Run("after the reply", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		ch := f.chans["app"]
		f.start()
		m := msg("13:1", "@@reply answered")
		// The first Done fails for good: the message stays at its source
		// and comes back under another UID.
		ch.doneErr = func(n int, _ *channel.Message) error {
			if n == 1 {
				return channel.Permanent(os.ErrNotExist)
			}
			return nil
		}
		if err := ch.hand(t, m); err != nil {
			t.Fatal(err)
		}
		ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
		poll(t, "the Done attempt", func() bool { _, n := ch.counts(); return n == 1 })
		poll(t, "the message to be let go", func() bool {
			h := f.handler("app")
			h.mu.Lock()
			defer h.mu.Unlock()
			return len(h.inflight) == 0
		})
		again := *m
		again.SourceID = "13:9"
		if err := ch.hand(t, &again); err != nil {
			t.Fatal(err)
		}
		ch.wait(t, "Done of the copy", func() bool { return len(ch.dones) == 1 })
		if ch.dones[0].SourceID != "13:9" || ch.dones[0].Outcome != channel.OutcomeSuccess {
			t.Errorf("Done: %+v; want 13:9 with the first run's outcome", ch.dones[0])
		}
		if n, _ := ch.counts(); n != 1 || len(f.g.Tasks()) != 1 {
			t.Errorf("replies %d, tasks %d; want the message answered once", n, len(f.g.Tasks()))
		}
	})
	t.Run("same Message-ID, other content", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		ch := f.chans["app"]
		f.start()
		a, b := msg("14:1", "@@reply first"), msg("14:2", "@@reply second")
		b.MessageID = a.MessageID
		for _, m := range []*channel.Message{a, b} {
			if err := ch.hand(t, m); err != nil {
				t.Fatal(err)
			}
		}
		ch.wait(t, "two replies", func() bool { return len(ch.replies) == 2 && len(ch.dones) == 2 })
	})
}

// TestLegacyJournalEntry: an entry written before journal keys existed
// (named by channel and source id) is found and moved to its key, so an
// upgrade does not run an answered message again.
func TestLegacyJournalEntry(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	j, err := openJournal(filepath.Join(f.state, "app", "messages"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, j.legacyPath("fake", "15:1"), `{"source_id":"15:1","channel":"fake","conversation":"0badc0de","acknowledged":true,"replied":true}`)
	f.start()
	if err := ch.hand(t, msg("15:1", "@@reply must not run")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "Done", func() bool { return len(ch.dones) == 1 })
	if n, _ := ch.counts(); n != 0 || len(f.g.Tasks()) != 0 {
		t.Errorf("replies %d, tasks %d; want none: it was answered before the upgrade", n, len(f.g.Tasks()))
	}
	if files, _ := os.ReadDir(j.dir); len(files) != 0 {
		t.Errorf("journal after Done: %d files; want none", len(files))
	}
}
