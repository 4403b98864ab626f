package slack

import "sync"

// lanes runs functions one at a time per key, in the order given, and
// different keys in parallel: messages of one thread are admitted in
// order while a slow download in one thread does not hold up another.
type lanes struct {
	mu     sync.Mutex
	queues map[string][]func()
	wg     sync.WaitGroup
}

func (l *lanes) run(key string, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queues == nil {
		l.queues = map[string][]func(){}
	}
	q, busy := l.queues[key]
	l.queues[key] = append(q, f)
	if busy {
		return
	}
	l.wg.Add(1)
	go l.drain(key)
}

func (l *lanes) drain(key string) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		q := l.queues[key]
		if len(q) == 0 {
			delete(l.queues, key)
			l.mu.Unlock()
			return
		}
		f := q[0]
		l.queues[key] = q[1:]
		l.mu.Unlock()
		f()
	}
}

// wait returns once every lane is empty.
func (l *lanes) wait() { l.wg.Wait() }

// recentSet remembers the last n keys: the double delivery of one post
// (app_mention and message) arrives within seconds, and Slack's retries of
// an envelope within minutes.
type recentSet struct {
	keys map[string]bool
	ring []string
	next int
}

func newRecentSet(n int) recentSet {
	return recentSet{keys: map[string]bool{}, ring: make([]string, n)}
}

// add records key and reports whether it was new.
func (s *recentSet) add(key string) bool {
	if s.keys[key] {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.keys, old)
	}
	s.ring[s.next] = key
	s.next = (s.next + 1) % len(s.ring)
	s.keys[key] = true
	return true
}
