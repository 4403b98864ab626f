package gateway

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit"
)

func (f *fixture) repoState(id string) RepoStatus {
	for _, s := range f.g.Repos() {
		if s.ID == id {
			return s
		}
	}
	return RepoStatus{}
}

// TestStopAndStartRepo: StopRepo drains one repo alone: its channel stops
// at once, its running task finishes and replies, its queued message is
// left at the source (and runs once the repo starts again); the other repo
// keeps working throughout.
func TestStopAndStartRepo(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{podman: backend == "podman", maxConcurrent: 1, repos: []string{"app", "other"}})
			app, other := f.chans["app"], f.chans["other"]
			g := f.start()
			if err := app.hand(t, msg("20:1", block("finished while draining"))); err != nil {
				t.Fatal(err)
			}
			running := f.taskFor("20:1")
			f.waitStarted("app", running.Conversation)
			if err := app.hand(t, msg("20:2", "@@reply queued")); err != nil {
				t.Fatal(err)
			}
			queued := f.taskFor("20:2")

			stopped := make(chan error, 1)
			go func() { stopped <- g.StopRepo(context.Background(), "app") }()
			poll(t, "the channel to stop", func() bool {
				app.mu.Lock()
				defer app.mu.Unlock()
				return app.handler == nil
			})
			if st := f.waitTask(queued.ID, StateAbandoned); st.Started.IsZero() == false {
				t.Errorf("queued task started while draining: %+v", st)
			}
			f.release("app", running.Conversation)
			if err := <-stopped; err != nil {
				t.Fatalf("StopRepo: %v", err)
			}
			if st := f.repoState("app"); st.State != RepoStopped {
				t.Errorf("app after StopRepo: %+v; want stopped", st)
			}
			replies, dones, _ := app.snapshot()
			if _, n := replyOf(replies, "20:1"); n != 1 || len(dones) != 1 {
				t.Errorf("running task: %d replies, %d dones; want it finished and answered", n, len(dones))
			}
			if _, n := replyOf(replies, "20:2"); n != 0 {
				t.Errorf("queued message answered while the repo stopped")
			}

			// The other repo is live throughout.
			if err := other.hand(t, msg("21:1", "@@reply other works")); err != nil {
				t.Fatal(err)
			}
			other.wait(t, "the other repo's reply", func() bool { return len(other.replies) == 1 })
			if _, err := g.Submit(context.Background(), Submission{Repo: "app", Channel: "fake"}); !errors.Is(err, ErrRepoNotLive) {
				t.Errorf("Submit to a stopped repo: %v; want ErrRepoNotLive", err)
			}

			// Started again, the source hands the queued message over again.
			if err := g.StartRepo(context.Background(), "app"); err != nil {
				t.Fatal(err)
			}
			f.waitRepo("app", RepoLive)
			if err := app.hand(t, msg("20:2", "@@reply queued")); err != nil {
				t.Fatal(err)
			}
			app.wait(t, "the queued message's reply", func() bool { _, n := replyOf(app.replies, "20:2"); return n == 1 })
			if n := len(app.acks); n != 2 {
				t.Errorf("acknowledgements: %d; want one per message, none repeated", n)
			}
		})
	}
}

// TestStopRepoTimeout: a drain whose context ends cancels the running task
// without a reply; its message runs again once the repo starts.
func TestStopRepoTimeout(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	g := f.start()
	if err := ch.hand(t, msg("22:1", block("second run"))); err != nil {
		t.Fatal(err)
	}
	ti := f.taskFor("22:1")
	f.waitStarted("app", ti.Conversation)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := g.StopRepo(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if st := f.waitTask(ti.ID, StateAbandoned); st.Outcome != "" {
		t.Errorf("abandoned task has an outcome: %+v", st)
	}
	if n, _ := ch.counts(); n != 0 {
		t.Errorf("replies: %d; want none for a task stopped by the drain", n)
	}
	if err := g.StartRepo(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	f.waitRepo("app", RepoLive)
	f.release("app", ti.Conversation)
	if err := ch.hand(t, msg("22:1", block("second run"))); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
}

// TestFailedStartRetried: a repo that cannot start (its mirror cannot be
// cloned) shows as failed with the reason and is retried with backoff; it
// goes live once the cause is gone, without a restart of the gateway. A
// channel that cannot log in shows the repo failed until its probe passes.
func TestFailedStartRetried(t *testing.T) {
	f := newFixture(t, fixtureOpts{repos: []string{"app", "late"}})
	missing := filepath.Join(t.TempDir(), "late.git")
	cfg := f.config()
	cfg.Repos["late"].RepoURL = missing
	f.chans["app"].setProbeErr(errors.New("imap login: [AUTHENTICATIONFAILED] invalid credentials"))
	f.g = f.newGateway(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.g.Run(ctx) }()

	poll(t, "late to fail", func() bool { return f.repoState("late").State == RepoFailed })
	if st := f.repoState("late"); !strings.Contains(st.Reason, "git mirror") {
		t.Errorf("late: %+v; want the mirror failure as reason", st)
	}
	poll(t, "app to fail its probe", func() bool { return f.repoState("app").State == RepoFailed })
	if st := f.repoState("app"); !strings.Contains(st.Reason, "channel fake: imap login: [AUTHENTICATIONFAILED]") {
		t.Errorf("app: %+v; want the channel's login error", st)
	}
	// Both causes go away.
	testkit.Git(t, filepath.Dir(missing), "clone", "--bare", "-q", f.origin, missing)
	f.chans["app"].setProbeErr(nil)
	f.waitRepo("late", RepoLive)
	f.waitRepo("app", RepoLive)
	if st := f.repoState("app"); st.Reason != "" {
		t.Errorf("app reason once live: %q", st.Reason)
	}
	if err := f.chans["late"].hand(t, msg("23:1", "@@reply late but live")); err != nil {
		t.Fatal(err)
	}
	f.chans["late"].wait(t, "the reply", func() bool { return len(f.chans["late"].replies) == 1 })
}

// TestApplyConfig: what a hot reload does. Task-scope keys apply to the
// next task without a restart; a changed repo-scope key restarts the repo
// once its running task is done; an added repo starts, a removed one is
// drained and gone; an invalid section keeps the repo on its previous
// config; max_concurrent resizes the pool.
func TestApplyConfig(t *testing.T) {
	f := newFixture(t, fixtureOpts{repos: []string{"app", "extra"}})
	f.chans["new"] = newFakeChannel("fake")
	app := f.chans["app"]
	cfg := f.config()
	delete(cfg.Repos, "extra")
	f.o.repos = []string{"app"}
	g := f.startWith(cfg)
	if got := f.repoState("extra").State; got != "" {
		t.Fatalf("extra before it is configured: %q", got)
	}

	// Task scope: the model, for the next task, with no restart.
	next := f.config()
	next.Repos["app"].Model = "sonnet"
	if err := g.ApplyConfig(next); err != nil {
		t.Fatal(err)
	}
	if err := app.hand(t, msg("24:1", "@@reply on sonnet")); err != nil {
		t.Fatal(err)
	}
	app.wait(t, "the reply", func() bool { return len(app.replies) == 1 })
	if runs := f.fakeSessions(f.taskFor("24:1").Conversation); len(runs) != 1 || runs[0].Model != "sonnet" {
		t.Errorf("runs: %+v; want the new model", runs)
	}
	app.mu.Lock()
	runsBefore := app.runs
	app.mu.Unlock()
	if runsBefore != 1 {
		t.Errorf("channel runs after a task-scope change: %d; want 1 (no restart)", runsBefore)
	}

	// Repo scope: the repo URL; the running task finishes first.
	if err := app.hand(t, msg("24:2", block("before the restart"))); err != nil {
		t.Fatal(err)
	}
	running := f.taskFor("24:2")
	f.waitStarted("app", running.Conversation)
	clone := filepath.Join(t.TempDir(), "clone.git")
	testkit.Git(t, filepath.Dir(clone), "clone", "--bare", "-q", f.origin, clone)
	next2 := f.config()
	next2.Repos["app"].Model = "sonnet"
	next2.Repos["app"].RepoURL = clone
	next2.Repos["new"] = f.repoConfig()
	next2.Execution.MaxConcurrent = 5
	if err := g.ApplyConfig(next2); err != nil {
		t.Fatal(err)
	}
	f.waitRepo("new", RepoLive)
	poll(t, "app to be reloading", func() bool { return f.repoState("app").State == RepoReloading })
	g.mu.Lock()
	if g.pool.max != 5 {
		t.Errorf("pool size after the reload: %d; want 5", g.pool.max)
	}
	g.mu.Unlock()
	f.release("app", running.Conversation)
	f.waitRepo("app", RepoLive)
	replies, _, _ := app.snapshot()
	if _, n := replyOf(replies, "24:2"); n != 1 {
		t.Errorf("the running task's replies: %d; want it finished before the restart", n)
	}
	app.wait(t, "the channel to run again (restarted once)", func() bool { return app.runs == 2 })

	// An invalid section: the repo keeps running its previous config.
	bad := f.config()
	bad.Repos["new"] = f.repoConfig()
	delete(bad.Repos, "app")
	bad.RepoErrors = map[string]error{"app": errors.New("airut.yaml:7: repos.app.repo_url: required")}
	if err := g.ApplyConfig(bad); err != nil {
		t.Fatal(err)
	}
	if st := f.repoState("app"); st.State != RepoLive || !strings.Contains(st.Reason, "repos.app.repo_url: required") {
		t.Errorf("app with an invalid new section: %+v; want live, the error shown", st)
	}
	if err := app.hand(t, msg("24:3", "@@reply still here")); err != nil {
		t.Fatal(err)
	}
	app.wait(t, "the reply", func() bool { _, n := replyOf(app.replies, "24:3"); return n == 1 })

	// Removed: drained and gone.
	gone := f.config()
	if err := g.ApplyConfig(gone); err != nil {
		t.Fatal(err)
	}
	poll(t, "new to be gone", func() bool { return f.repoState("new").State == "" })
	if _, err := g.Submit(context.Background(), Submission{Repo: "new", Channel: "fake"}); !errors.Is(err, ErrUnknownRepo) {
		t.Errorf("Submit to a removed repo: %v; want ErrUnknownRepo", err)
	}
}

// TestSetMaxConcurrent: the pool resizes at run time: a queued task starts
// as soon as the pool grows.
func TestSetMaxConcurrent(t *testing.T) {
	f := newFixture(t, fixtureOpts{maxConcurrent: 1})
	ch := f.chans["app"]
	g := f.start()
	for _, id := range []string{"25:1", "25:2"} {
		if err := ch.hand(t, msg(id, block(id))); err != nil {
			t.Fatal(err)
		}
	}
	a, b := f.taskFor("25:1"), f.taskFor("25:2")
	f.waitStarted("app", a.Conversation)
	if ti := f.waitTask(b.ID, StateQueued); !ti.Started.IsZero() {
		t.Fatalf("second task started with one worker")
	}
	g.SetMaxConcurrent(2)
	f.waitStarted("app", b.Conversation)
	f.release("app", a.Conversation)
	f.release("app", b.Conversation)
	ch.wait(t, "both replies", func() bool { return len(ch.replies) == 2 })
}

// TestConfigSnapshot: a task reads the config it started with, even when a
// reload replaces it while the task runs.
func TestConfigSnapshot(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	g := f.start()
	if err := ch.hand(t, msg("26:1", block("done"))); err != nil {
		t.Fatal(err)
	}
	ti := f.taskFor("26:1")
	f.waitStarted("app", ti.Conversation)
	next := f.config()
	next.Repos["app"].Model = "haiku"
	next.Repos["app"].ResourceLimits.Timeout = 1 // would kill the running task if it were read now
	if err := g.ApplyConfig(next); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the new timeout
	f.release("app", ti.Conversation)
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	if o := ch.replies[0].R.Outcome; o != channel.OutcomeSuccess {
		t.Errorf("outcome: %s; want success under the config the task started with", o)
	}
	if ti := f.waitTask(ti.ID, StateDone); ti.Model != "opus" {
		t.Errorf("model: %s; want opus, the config at start", ti.Model)
	}
}
