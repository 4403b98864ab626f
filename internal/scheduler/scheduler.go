// Package scheduler runs the repositories' cron schedules (SPEC S10): at
// each schedule's time it submits a task to the gateway, whose reply
// starts a new thread (email, Slack) that anyone authorized can answer to
// continue the conversation.
//
// Two modes. Prompt mode runs the agent with the schedule's prompt.
// Script mode first runs trigger_command in the repository's sandbox
// (gateway.RunCommand): exit 0 with no output sends nothing and removes
// the conversation; output, or a non-zero exit, runs the agent in the
// same conversation with the output (and the exit code) in its prompt.
//
// A schedule whose previous run is still going is skipped and the skip
// recorded, never stacked. Runs missed while the gateway was down are not
// replayed: after a start, a reload or a late wake-up, each schedule's
// next run is computed from now. The schedules follow the gateway's
// config: every ApplyConfig (a hot reload) is picked up from the event
// bus, so an edited schedule takes effect without a restart.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
)

// Errors of RunNow.
var (
	ErrUnknownSchedule = errors.New("no such schedule")
	// ErrRunning: the schedule's previous run is still going.
	ErrRunning = errors.New("the schedule's previous run is still going")
	// ErrNotRunning: the scheduler's Run has not started or has ended.
	ErrNotRunning = errors.New("the scheduler is not running")
)

// Result statuses.
const (
	// StatusRunning: the run is in progress (trigger, agent or reply).
	StatusRunning = "running"
	// StatusDelivered: the reply went out as a new thread.
	StatusDelivered = "delivered"
	// StatusNothing: the trigger command exited 0 with no output; nothing
	// was sent and no conversation kept.
	StatusNothing = "nothing to send"
	// StatusFailed: the run could not start or finish (trigger not run,
	// task not taken, interrupted); Detail says why.
	StatusFailed = "failed"
	// StatusNotDelivered: the task ran but its channel refused the reply
	// for good; Detail has the channel's error.
	StatusNotDelivered = "not delivered"
)

// Result is how one run of a schedule went.
type Result struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Manual: started by RunNow, not by the clock.
	Manual bool `json:"manual,omitempty"`
	// Status is one of the Status constants.
	Status string `json:"status"`
	// Detail says why a run failed or was not delivered, or how the
	// trigger ended.
	Detail       string `json:"detail,omitempty"`
	Conversation string `json:"conversation,omitempty"`
	Task         string `json:"task,omitempty"`
	// Outcome is the agent task's outcome ("success", "timeout", …).
	Outcome string `json:"outcome,omitempty"`
}

// Info is one schedule as the dashboard and `airut schedule list` show it.
type Info struct {
	Repo     string `json:"repo"`
	Name     string `json:"name"`
	Cron     string `json:"cron"`
	Timezone string `json:"timezone"`
	// Mode is "prompt" or "script".
	Mode    string   `json:"mode"`
	Enabled bool     `json:"enabled"`
	Channel string   `json:"channel"`
	To      []string `json:"to"`
	// Next is the next run by the clock; zero when disabled.
	Next    time.Time `json:"next,omitzero"`
	Running bool      `json:"running"`
	// Last is the run in progress, else the last one; nil before the
	// first.
	Last *Result `json:"last,omitempty"`
	// Skipped counts runs skipped because the previous one was still
	// going; LastSkipped is the latest.
	Skipped     int       `json:"skipped"`
	LastSkipped time.Time `json:"last_skipped,omitzero"`
}

// Options are the scheduler's settings.
type Options struct {
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to discard.
	Logger *slog.Logger
}

type key struct{ repo, name string }

// entry is one schedule and its state.
type entry struct {
	key
	cfg  config.Schedule
	spec *cron.SpecSchedule
	next time.Time // zero: not scheduled (disabled)

	running     bool
	last        *Result // the run in progress, else the last one
	skipped     int
	lastSkipped time.Time
}

// Scheduler runs the schedules of every repository of the gateway's
// config.
type Scheduler struct {
	g     *gateway.Gateway
	clock Clock
	log   *slog.Logger

	mu      sync.Mutex
	entries map[key]*entry
	runCtx  context.Context // nil outside Run
	runs    sync.WaitGroup
	wake    chan struct{}
}

// New returns a scheduler for g's schedules; nothing runs before Run.
func New(g *gateway.Gateway, opts Options) *Scheduler {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{g: g, clock: opts.Clock, log: opts.Logger.With("component", "scheduler"),
		entries: map[key]*entry{}, wake: make(chan struct{}, 1)}
}

// Run fires the schedules until ctx ends, following the gateway's config
// through its reloads, then waits for the runs in progress to end (their
// tasks are the gateway's: a shutdown drains them).
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.runCtx = ctx
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.runCtx = nil
		s.mu.Unlock()
		s.runs.Wait()
	}()
	filter := gateway.Filter{Kinds: []gateway.EventKind{gateway.EventConfig}}
	// Subscribed before the config is read: no reload falls in between.
	sub := s.g.Events().Subscribe(filter)
	defer func() { sub.Close() }()
	s.apply(s.g.Config())
	for {
		var fire <-chan time.Time
		var timer Timer
		if at, ok := s.earliest(); ok {
			timer = s.clock.NewTimer(at.Sub(s.clock.Now()))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-fire:
			s.fireDue()
		case <-s.wake:
		case _, open := <-sub.Events():
			if !open {
				// Dropped as too slow: whatever was missed, the config
				// in force says it all.
				sub = s.g.Events().Subscribe(filter)
			}
			s.apply(s.g.Config())
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// earliest is the soonest next run of all schedules.
func (s *Scheduler) earliest() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at time.Time
	for _, e := range s.entries {
		if !e.next.IsZero() && (at.IsZero() || e.next.Before(at)) {
			at = e.next
		}
	}
	return at, !at.IsZero()
}

// fireDue starts every schedule whose time has come. Each one's next run
// is computed from now, so a wake-up hours late (a suspended host) runs a
// schedule once, not once per missed time.
func (s *Scheduler) fireDue() {
	now := s.clock.Now()
	s.mu.Lock()
	var due []*entry
	for _, e := range s.entries {
		if !e.next.IsZero() && !now.Before(e.next) {
			due = append(due, e)
			e.next = nextRun(e.spec, now)
		}
	}
	s.mu.Unlock()
	sort.Slice(due, func(i, j int) bool {
		return due[i].repo+"/"+due[i].name < due[j].repo+"/"+due[j].name
	})
	for _, e := range due {
		_ = s.start(e, false)
	}
}

// apply makes cfg's schedules the ones in force. A schedule whose entry
// is unchanged keeps its next run; a new or changed one is scheduled from
// now. A repo whose new section is invalid keeps its schedules, as the
// gateway keeps running it on its previous config.
func (s *Scheduler) apply(cfg *config.Config) {
	if cfg == nil {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[key]bool{}
	for repo, rc := range cfg.Repos {
		for name, sc := range rc.Schedules {
			k := key{repo, name}
			seen[k] = true
			e := s.entries[k]
			if e != nil && reflect.DeepEqual(e.cfg, sc) {
				continue
			}
			spec, err := parse(sc)
			if err != nil {
				// Validated at load; this is a bug, not an operator error.
				s.log.Error("schedule not scheduled", "repo", repo, "schedule", name, "error", err)
				delete(s.entries, k)
				continue
			}
			if e == nil {
				e = &entry{key: k}
				s.entries[k] = e
			}
			changed := e.spec != nil
			e.cfg, e.spec, e.next = sc, spec, time.Time{}
			if sc.Enable {
				e.next = nextRun(spec, now)
			}
			s.log.Info("schedule set", "repo", repo, "schedule", name, "cron", sc.Cron, "timezone", spec.Location.String(),
				"enabled", sc.Enable, "next", e.next, "changed", changed)
		}
	}
	for k := range s.entries {
		if seen[k] {
			continue
		}
		if _, invalid := cfg.RepoErrors[k.repo]; invalid {
			continue
		}
		s.log.Info("schedule removed", "repo", k.repo, "schedule", k.name)
		delete(s.entries, k)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// nextRun is the schedule's first run after from, read on the wall clock
// of its time zone as Vixie cron reads it across a DST change: a time
// that the spring-forward skips runs right after the change (02:30 becomes
// 03:30), and a time that the fall-back repeats runs once, at its first
// pass. (robfig/cron alone skips the first and runs the second twice.)
func nextRun(spec *cron.SpecSchedule, from time.Time) time.Time {
	loc := spec.Location
	wall := *spec
	wall.Location = time.UTC
	f := from.In(loc)
	w := time.Date(f.Year(), f.Month(), f.Day(), f.Hour(), f.Minute(), f.Second(), f.Nanosecond(), time.UTC)
	// The bound only guards against a loop: two steps suffice.
	for range 4 {
		if w = wall.Next(w); w.IsZero() {
			return w
		}
		// time.Date resolves a repeated wall time to its second pass and
		// a skipped one to just after the change.
		t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, loc)
		if first := t.Add(-time.Hour); sameWall(first.In(loc), t.In(loc)) {
			if first.After(from) {
				return first
			}
			continue // its first pass is over: it ran then
		}
		if t.After(from) {
			return t
		}
	}
	return time.Time{}
}

func sameWall(a, b time.Time) bool {
	return a.Year() == b.Year() && a.YearDay() == b.YearDay() && a.Hour() == b.Hour() && a.Minute() == b.Minute()
}

func parse(sc config.Schedule) (*cron.SpecSchedule, error) {
	loc := time.Local
	if sc.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(sc.Timezone); err != nil {
			return nil, err
		}
	}
	return config.ParseCron(sc.Cron, loc)
}

// RunNow starts a run of the schedule at once, whether it is enabled or
// not (the dashboard's Run now, `airut schedule run`). It returns once
// the run has started; List shows how it goes.
func (s *Scheduler) RunNow(repo, name string) error {
	s.mu.Lock()
	e := s.entries[key{repo, name}]
	s.mu.Unlock()
	if e == nil {
		return fmt.Errorf("%s/%s: %w", repo, name, ErrUnknownSchedule)
	}
	return s.start(e, true)
}

// start runs e in the background unless its previous run is still going.
func (s *Scheduler) start(e *entry, manual bool) error {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.log.With("repo", e.repo, "schedule", e.name)
	ctx := s.runCtx
	if ctx == nil {
		return ErrNotRunning
	}
	if e.running {
		e.skipped++
		e.lastSkipped = now
		log.Warn("schedule skipped: its previous run is still going", "previous_started", e.last.Started, "skipped", e.skipped)
		return fmt.Errorf("%s/%s: %w", e.repo, e.name, ErrRunning)
	}
	e.running = true
	cur := &Result{Started: now, Manual: manual, Status: StatusRunning}
	e.last = cur
	sc := e.cfg
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		log.Info("schedule run starting", "manual", manual)
		res := s.execute(ctx, e.key, sc, *cur, func(r Result) {
			s.mu.Lock()
			*cur = r
			s.mu.Unlock()
		})
		res.Finished = s.clock.Now()
		s.mu.Lock()
		*cur = res
		e.running = false
		s.mu.Unlock()
		log.Info("schedule run finished", "status", res.Status, "detail", res.Detail, "conversation", res.Conversation, "outcome", res.Outcome)
	}()
	return nil
}

// List returns every schedule, sorted by repo and name.
func (s *Scheduler) List() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e.info())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Schedule returns one schedule's Info.
func (s *Scheduler) Schedule(repo, name string) (Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key{repo, name}]
	if e == nil {
		return Info{}, false
	}
	return e.info(), true
}

// info is e's Info; s.mu is held.
func (e *entry) info() Info {
	in := describe(e.repo, e.name, e.cfg, e.spec)
	in.Next, in.Running, in.Skipped, in.LastSkipped = e.next, e.running, e.skipped, e.lastSkipped
	if e.last != nil {
		r := *e.last
		in.Last = &r
	}
	return in
}

// Describe is a schedule's Info from its config alone, its next run the
// first after now (none when disabled or invalid): what `airut schedule
// list` shows when no gateway runs.
func Describe(repo, name string, sc config.Schedule, now time.Time) Info {
	spec, err := parse(sc)
	if err != nil {
		in := describe(repo, name, sc, nil)
		in.Timezone = sc.Timezone
		return in
	}
	in := describe(repo, name, sc, spec)
	if sc.Enable {
		in.Next = nextRun(spec, now)
	}
	return in
}

func describe(repo, name string, sc config.Schedule, spec *cron.SpecSchedule) Info {
	in := Info{Repo: repo, Name: name, Cron: sc.Cron, Mode: "prompt", Enabled: sc.Enable,
		Channel: sc.Deliver.Channel, To: append([]string(nil), sc.Deliver.To...)}
	if spec != nil {
		in.Timezone = spec.Location.String()
	}
	if sc.TriggerCommand != "" {
		in.Mode = "script"
	}
	return in
}
