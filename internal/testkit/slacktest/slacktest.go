// Package slacktest is a local fake of Slack for tests: the Web API over
// real HTTP and Socket Mode over a real WebSocket, reached by slack-go
// through slack.OptionAPIURL.
//
// It checks what Slack checks: every Web API call carries the bot token
// (Authorization: Bearer or a token form field) except apps.connections.open,
// which takes only the app-level token; file downloads need the bot token;
// events go out as Socket Mode envelopes that the client must acknowledge
// with their envelope_id, or they are redelivered with retry_attempt set,
// as Slack does. Every Web API call is recorded for the test to read.
package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Identities of the fake workspace.
const (
	TeamID    = "T0AIRUT"
	BotUserID = "UBOTAIRUT"
	BotID     = "BBOTAIRUT"
	BotToken  = "xoxb-test-bot-token"
	AppToken  = "xapp-test-app-token"
)

// User is one workspace member, as users.info returns it.
type User struct {
	ID                string
	TeamID            string // default TeamID
	Name              string // username
	RealName          string
	DisplayName       string
	Deleted           bool
	IsBot             bool
	IsRestricted      bool
	IsUltraRestricted bool
}

// Call is one recorded Web API call.
type Call struct {
	Method string
	Token  string
	Params url.Values // form fields, or a JSON body's top-level values
}

// Message is a message in a channel, posted by the bot or seeded by a test.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string
	User     string
	BotID    string
	Text     string
	Blocks   string // JSON, as sent
	Edits    int    // times chat.update changed it
}

// Upload is a file shared through files.completeUploadExternal.
type Upload struct {
	ID       string
	Name     string
	Title    string
	Data     []byte
	Channel  string
	ThreadTS string
	Comment  string
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	http *httptest.Server
	// APIURL is the Web API base to give slack.OptionAPIURL.
	APIURL string

	mu          sync.Mutex
	calls       []Call
	users       map[string]User
	groups      map[string]group // by id
	channels    map[string]string
	messages    []*Message
	files       map[string]hostedFile
	uploads     map[string]*Upload // by file id, pending and shared
	shared      []*Upload
	reactions   map[string]map[string]bool // channel:ts -> names
	failures    map[string][]string        // method -> errors to return next
	limited     map[string]int             // method -> 429s to answer next
	openFails   int
	tickets     map[string]bool // from apps.connections.open, good for one socket
	nextTS      int64
	nextID      int
	conns       map[*websocket.Conn]bool
	connected   chan struct{} // closed and replaced on every new socket
	acks        map[string]chan struct{}
	connections int
}

type group struct {
	id, handle string
	members    []string
}

type hostedFile struct {
	name string
	data []byte
}

// New starts a fake on a loopback port; it stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		t:         t,
		users:     map[string]User{},
		groups:    map[string]group{},
		channels:  map[string]string{},
		files:     map[string]hostedFile{},
		uploads:   map[string]*Upload{},
		reactions: map[string]map[string]bool{},
		failures:  map[string][]string{},
		limited:   map[string]int{},
		conns:     map[*websocket.Conn]bool{},
		tickets:   map[string]bool{},
		connected: make(chan struct{}),
		acks:      map[string]chan struct{}{},
		nextTS:    1_700_000_000_000_100,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/socket", s.serveSocket)
	mux.HandleFunc("/files/", s.serveFile)
	mux.HandleFunc("/upload/", s.serveUpload)
	s.http = httptest.NewServer(mux)
	s.APIURL = s.http.URL + "/api/"
	t.Cleanup(s.Close)
	return s
}

// Close drops every socket and stops the server.
func (s *Server) Close() {
	s.DropConnections()
	s.http.Close()
}

// Host is the fake's host:port (its file host too).
func (s *Server) Host() string { return strings.TrimPrefix(s.http.URL, "http://") }

// AddUser adds or replaces a workspace member.
func (s *Server) AddUser(u User) {
	if u.TeamID == "" {
		u.TeamID = TeamID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// AddUserGroup adds a user group with its handle and members.
func (s *Server) AddUserGroup(id, handle string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = group{id: id, handle: handle, members: members}
}

// AddChannel names a channel for conversations.info.
func (s *Server) AddChannel(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id] = name
}

// HostFile makes data downloadable at the returned url_private, which
// requires the bot token.
func (s *Server) HostFile(name string, data []byte) (id, urlPrivate string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id = fmt.Sprintf("F%06d", s.nextID)
	s.files[id] = hostedFile{name: name, data: data}
	return id, s.http.URL + "/files/" + id + "/" + url.PathEscape(name)
}

// Seed puts a message in a channel, as if a user had written it, and
// returns its ts.
func (s *Server) Seed(channel, threadTS, user, text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tsLocked()
	s.messages = append(s.messages, &Message{Channel: channel, TS: ts, ThreadTS: threadTS, User: user, Text: text})
	return ts
}

// NewTS returns a fresh message timestamp.
func (s *Server) NewTS() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tsLocked()
}

func (s *Server) tsLocked() string {
	s.nextTS++
	return fmt.Sprintf("%d.%06d", s.nextTS/1_000_000, s.nextTS%1_000_000)
}

// Fail makes the next calls of method fail with these Slack error codes,
// one per call.
func (s *Server) Fail(method string, errs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[method] = append(s.failures[method], errs...)
}

// RateLimit makes the next n calls of method answer HTTP 429 with a
// Retry-After of one second, as Slack's rate limiter does.
func (s *Server) RateLimit(method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited[method] += n
}

// FailConnectionsOpen makes the next n apps.connections.open calls fail
// with an internal error (Socket Mode then retries with backoff).
func (s *Server) FailConnectionsOpen(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.openFails = n
}

// Calls returns the recorded calls of method ("" for all).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the messages in a thread (threadTS "" for all of the
// channel), the root first.
func (s *Server) Messages(channel, threadTS string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Channel == channel && (threadTS == "" || m.ThreadTS == threadTS || m.TS == threadTS) {
			out = append(out, *m)
		}
	}
	return out
}

// BotMessages returns what the bot posted in a thread.
func (s *Server) BotMessages(channel, threadTS string) []Message {
	var out []Message
	for _, m := range s.Messages(channel, threadTS) {
		if m.BotID == BotID {
			out = append(out, m)
		}
	}
	return out
}

// Uploads returns the files shared so far.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Upload
	for _, u := range s.shared {
		out = append(out, *u)
	}
	return out
}

// Reactions returns the bot's reactions on a message.
func (s *Server) Reactions(channel, ts string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.reactions[channel+":"+ts] {
		out = append(out, name)
	}
	return out
}

// Connections is how many sockets have been opened so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// WaitConnected waits until a socket is open (and at least n were opened).
func (s *Server) WaitConnected(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		ok := s.connections >= n && len(s.conns) > 0
		ch := s.connected
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("slacktest: no socket connection (want %d): %w", n, ctx.Err())
		}
	}
}

// DropConnections closes every socket without a goodbye, as a network
// failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := s.conns
	s.conns = map[*websocket.Conn]bool{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.NetConn().Close()
	}
}

// Event sends an Events API event (the inner "event" object) over the
// socket and waits for its acknowledgement. Like Slack, it sends the
// envelope again with retry_attempt counting up when no acknowledgement
// arrives within 3 seconds, up to 3 retries.
func (s *Server) Event(ctx context.Context, event map[string]any) error {
	s.mu.Lock()
	s.nextID++
	envID := fmt.Sprintf("env-%d", s.nextID)
	eventID := fmt.Sprintf("Ev%06d", s.nextID)
	acked := make(chan struct{})
	s.acks[envID] = acked
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.acks, envID)
		s.mu.Unlock()
	}()
	for attempt := 0; attempt <= 3; attempt++ {
		env := map[string]any{
			"envelope_id":              envID,
			"type":                     "events_api",
			"accepts_response_payload": false,
			"retry_attempt":            attempt,
			"retry_reason":             map[bool]string{true: "timeout"}[attempt > 0],
			"payload": map[string]any{
				"token":      "verification-token-unused-in-socket-mode",
				"team_id":    TeamID,
				"api_app_id": "AAIRUT",
				"event":      event,
				"type":       "event_callback",
				"event_id":   eventID,
				"event_time": time.Now().Unix(),
			},
		}
		if err := s.send(ctx, env); err != nil {
			return err
		}
		select {
		case <-acked:
			return nil
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("slacktest: envelope %s never acknowledged", envID)
}

// RequestDisconnect sends Slack's "disconnect" message, asking the client
// to reconnect (as Slack does every few hours).
func (s *Server) RequestDisconnect(ctx context.Context) error {
	return s.send(ctx, map[string]any{"type": "disconnect", "reason": "refresh_requested"})
}

// send writes v to one open socket, waiting for one if none is open.
func (s *Server) send(ctx context.Context, v any) error {
	if err := s.WaitConnected(ctx, 1); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return c.WriteJSON(v)
	}
	return errors.New("slacktest: socket closed")
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ok := s.tickets[r.URL.Query().Get("ticket")]
	delete(s.tickets, r.URL.Query().Get("ticket"))
	s.mu.Unlock()
	if !ok {
		http.Error(w, "unknown ticket", http.StatusUnauthorized)
		return
	}
	// slack-go sends Origin: https://api.slack.com, as Slack expects.
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if err := c.WriteJSON(map[string]any{
		"type": "hello", "num_connections": len(s.conns) + 1,
		"connection_info": map[string]any{"app_id": "AAIRUT"},
		"debug_info":      map[string]any{"host": "slacktest"},
	}); err != nil {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c] = true
	s.connections++
	close(s.connected)
	s.connected = make(chan struct{})
	s.mu.Unlock()

	// Slack pings; slack-go reconnects when the pings stop.
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// WriteControl may run beside other writes.
				if err := c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)); err != nil {
					return
				}
			}
		}
	}()
	defer close(done)
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := c.ReadJSON(&ack); err != nil {
			return
		}
		s.mu.Lock()
		if ch, ok := s.acks[ack.EnvelopeID]; ok {
			close(ch)
			delete(s.acks, ack.EnvelopeID)
		}
		s.mu.Unlock()
	}
}

// token returns the token of a Web API request, from the Authorization
// header or the token field, as Slack accepts either.
func token(r *http.Request, params url.Values) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	return params.Get("token")
}

func readParams(r *http.Request) (url.Values, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		params := url.Values{}
		if len(body) == 0 || string(body) == "null\n" || string(body) == "null" {
			return params, nil
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				params.Set(k, v)
			default:
				b, _ := json.Marshal(v)
				params.Set(k, string(b))
			}
		}
		return params, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	params := r.Form
	for k, v := range r.URL.Query() {
		params[k] = v
	}
	return params, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func slackErr(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	params, err := readParams(r)
	if err != nil {
		writeJSON(w, slackErr("invalid_form_data"))
		return
	}
	tok := token(r, params)
	params.Del("token")
	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: method, Token: tok, Params: params})
	var fail string
	if f := s.failures[method]; len(f) > 0 {
		fail, s.failures[method] = f[0], f[1:]
	}
	limited := s.limited[method] > 0
	if limited {
		s.limited[method]--
	}
	s.mu.Unlock()
	if limited {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}

	switch {
	case tok == "":
		writeJSON(w, slackErr("not_authed"))
		return
	case method == "apps.connections.open":
		if strings.HasPrefix(tok, "xoxb-") {
			writeJSON(w, slackErr("not_allowed_token_type"))
			return
		}
		if tok != AppToken {
			writeJSON(w, slackErr("invalid_auth"))
			return
		}
	case strings.HasPrefix(tok, "xapp-"):
		writeJSON(w, slackErr("not_allowed_token_type"))
		return
	case tok != BotToken:
		writeJSON(w, slackErr("invalid_auth"))
		return
	}
	if fail != "" {
		writeJSON(w, slackErr(fail))
		return
	}
	h, ok := apiMethods[method]
	if !ok {
		writeJSON(w, slackErr("unknown_method"))
		return
	}
	writeJSON(w, h(s, params))
}

var apiMethods = map[string]func(*Server, url.Values) any{
	"apps.connections.open":                 (*Server).connectionsOpen,
	"auth.test":                             (*Server).authTest,
	"users.info":                            (*Server).usersInfo,
	"usergroups.list":                       (*Server).usergroupsList,
	"usergroups.users.list":                 (*Server).usergroupsUsers,
	"conversations.info":                    (*Server).conversationsInfo,
	"conversations.replies":                 (*Server).conversationsReplies,
	"conversations.open":                    (*Server).conversationsOpen,
	"chat.postMessage":                      (*Server).postMessage,
	"chat.update":                           (*Server).update,
	"reactions.add":                         (*Server).reactionsAdd,
	"reactions.remove":                      (*Server).reactionsRemove,
	"assistant.threads.setStatus":           okMethod,
	"assistant.threads.setTitle":            okMethod,
	"assistant.threads.setSuggestedPrompts": okMethod,
	"files.getUploadURLExternal":            (*Server).getUploadURL,
	"files.completeUploadExternal":          (*Server).completeUpload,
}

func okMethod(*Server, url.Values) any { return map[string]any{"ok": true} }

func (s *Server) connectionsOpen(url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.openFails > 0 {
		s.openFails--
		return slackErr("internal_error")
	}
	s.nextID++
	ticket := fmt.Sprintf("t%d", s.nextID)
	s.tickets[ticket] = true
	return map[string]any{"ok": true, "url": "ws://" + s.Host() + "/socket?ticket=" + ticket}
}

func (s *Server) authTest(url.Values) any {
	return map[string]any{
		"ok": true, "url": "https://airut-test.slack.com/", "team": "Airut Test", "user": "airut",
		"team_id": TeamID, "user_id": BotUserID, "bot_id": BotID,
	}
}

func (s *Server) usersInfo(p url.Values) any {
	s.mu.Lock()
	u, ok := s.users[p.Get("user")]
	s.mu.Unlock()
	if !ok {
		return slackErr("user_not_found")
	}
	return map[string]any{"ok": true, "user": map[string]any{
		"id": u.ID, "team_id": u.TeamID, "name": u.Name, "real_name": u.RealName, "deleted": u.Deleted,
		"is_bot": u.IsBot, "is_restricted": u.IsRestricted, "is_ultra_restricted": u.IsUltraRestricted,
		"profile": map[string]any{"display_name": u.DisplayName, "real_name": u.RealName},
	}}
}

func (s *Server) usergroupsList(url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, g := range s.groups {
		out = append(out, map[string]any{"id": g.id, "team_id": TeamID, "is_usergroup": true, "handle": g.handle, "name": g.handle, "user_count": len(g.members)})
	}
	return map[string]any{"ok": true, "usergroups": out}
}

func (s *Server) usergroupsUsers(p url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[p.Get("usergroup")]
	if !ok {
		return slackErr("no_such_subteam")
	}
	return map[string]any{"ok": true, "users": append([]string{}, g.members...)}
}

func (s *Server) conversationsInfo(p url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.channels[p.Get("channel")]
	if !ok {
		return slackErr("channel_not_found")
	}
	return map[string]any{"ok": true, "channel": map[string]any{"id": p.Get("channel"), "name": name}}
}

// DMChannel is the id of the app's direct-message channel with user, as
// conversations.open gives it.
func DMChannel(user string) string { return "D" + user }

// conversationsOpen opens the app's DM with one user (a group DM is not
// modelled: more than one user is refused).
func (s *Server) conversationsOpen(p url.Values) any {
	users := strings.Split(p.Get("users"), ",")
	if p.Get("users") == "" || len(users) != 1 {
		return slackErr("invalid_arguments")
	}
	s.mu.Lock()
	u, ok := s.users[users[0]]
	s.mu.Unlock()
	switch {
	case !ok:
		return slackErr("user_not_found")
	case u.Deleted:
		return slackErr("user_disabled")
	case u.IsBot:
		return slackErr("cannot_dm_bot")
	}
	return map[string]any{"ok": true, "channel": map[string]any{"id": DMChannel(u.ID), "is_im": true, "user": u.ID}}
}

func (s *Server) conversationsReplies(p url.Values) any {
	limit, _ := strconv.Atoi(p.Get("limit"))
	var out []map[string]any
	for _, m := range s.Messages(p.Get("channel"), p.Get("ts")) {
		out = append(out, map[string]any{"type": "message", "ts": m.TS, "thread_ts": m.ThreadTS, "user": m.User, "bot_id": m.BotID, "text": m.Text})
	}
	if len(out) == 0 {
		return slackErr("thread_not_found")
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return map[string]any{"ok": true, "messages": out, "has_more": false}
}

func (s *Server) postMessage(p url.Values) any {
	ch := p.Get("channel")
	if ch == "" {
		return slackErr("channel_not_found")
	}
	if p.Get("text") == "" && p.Get("blocks") == "" {
		return slackErr("no_text")
	}
	if n := len([]rune(p.Get("text"))); n > 40000 {
		return slackErr("msg_too_long")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tsLocked()
	m := &Message{Channel: ch, TS: ts, ThreadTS: p.Get("thread_ts"), User: BotUserID, BotID: BotID, Text: p.Get("text"), Blocks: p.Get("blocks")}
	s.messages = append(s.messages, m)
	return map[string]any{"ok": true, "channel": ch, "ts": ts, "message": map[string]any{"ts": ts, "text": m.Text, "thread_ts": m.ThreadTS}}
}

func (s *Server) update(p url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if m.Channel == p.Get("channel") && m.TS == p.Get("ts") {
			if m.BotID != BotID {
				return slackErr("cant_update_message")
			}
			m.Text, m.Blocks = p.Get("text"), p.Get("blocks")
			m.Edits++
			return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text}
		}
	}
	return slackErr("message_not_found")
}

func (s *Server) reactionsAdd(p url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := p.Get("channel") + ":" + p.Get("timestamp")
	if s.reactions[k] == nil {
		s.reactions[k] = map[string]bool{}
	}
	if s.reactions[k][p.Get("name")] {
		return slackErr("already_reacted")
	}
	s.reactions[k][p.Get("name")] = true
	return map[string]any{"ok": true}
}

func (s *Server) reactionsRemove(p url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := p.Get("channel") + ":" + p.Get("timestamp")
	if !s.reactions[k][p.Get("name")] {
		return slackErr("no_reaction")
	}
	delete(s.reactions[k], p.Get("name"))
	return map[string]any{"ok": true}
}

func (s *Server) getUploadURL(p url.Values) any {
	name, length := p.Get("filename"), p.Get("length")
	n, err := strconv.Atoi(length)
	if name == "" || err != nil || n <= 0 {
		return slackErr("invalid_arguments")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := fmt.Sprintf("F%06d", s.nextID)
	s.uploads[id] = &Upload{ID: id, Name: name}
	return map[string]any{"ok": true, "upload_url": s.http.URL + "/upload/" + id + "?length=" + length, "file_id": id}
}

func (s *Server) completeUpload(p url.Values) any {
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(p.Get("files")), &files); err != nil || len(files) == 0 {
		return slackErr("invalid_arguments")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		u := s.uploads[f.ID]
		if u == nil || u.Data == nil {
			return slackErr("file_not_found")
		}
		u.Title, u.Channel, u.ThreadTS, u.Comment = f.Title, p.Get("channel_id"), p.Get("thread_ts"), p.Get("initial_comment")
		s.shared = append(s.shared, u)
		delete(s.uploads, f.ID)
		if u.Comment != "" {
			ts := s.tsLocked()
			s.messages = append(s.messages, &Message{Channel: u.Channel, TS: ts, ThreadTS: u.ThreadTS, User: BotUserID, BotID: BotID, Text: u.Comment})
		}
	}
	return map[string]any{"ok": true, "files": files}
}

// serveUpload takes the bytes of a pending upload, multipart or raw, and
// checks they are as long as announced.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	var data []byte
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(ct, "multipart/") {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			if part.FormName() == "file" {
				data, _ = io.ReadAll(part)
			}
		}
	} else {
		data, _ = io.ReadAll(r.Body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[id]
	if u == nil {
		http.Error(w, "unknown upload", http.StatusNotFound)
		return
	}
	if want := r.URL.Query().Get("length"); want != strconv.Itoa(len(data)) {
		http.Error(w, "length mismatch", http.StatusBadRequest)
		return
	}
	u.Data = data
	fmt.Fprint(w, "OK - ", len(data))
}

// serveFile serves a hosted file to the bot token only; anyone else gets
// the login page redirect Slack gives.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+BotToken {
		http.Redirect(w, r, "/signin", http.StatusFound)
		return
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/files/"), "/")
	s.mu.Lock()
	f, ok := s.files[id]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(f.data)
}

// DM is a message event in a direct-message channel (the assistant
// thread when threadTS is set).
func DM(channel, user, text, ts, threadTS string) map[string]any {
	return messageEvent("im", channel, user, text, ts, threadTS)
}

// ChannelMessage is a message event in a public channel.
func ChannelMessage(channel, user, text, ts, threadTS string) map[string]any {
	return messageEvent("channel", channel, user, text, ts, threadTS)
}

// Mention is the app_mention event of a channel post that starts with a
// mention of the bot.
func Mention(channel, user, text, ts, threadTS string) map[string]any {
	ev := map[string]any{"type": "app_mention", "channel": channel, "user": user,
		"text": "<@" + BotUserID + "> " + text, "ts": ts, "event_ts": ts}
	if threadTS != "" {
		ev["thread_ts"] = threadTS
	}
	return ev
}

// AssistantThreadStarted is the event of a user opening a new assistant
// thread with the app.
func AssistantThreadStarted(channel, user, threadTS string) map[string]any {
	return map[string]any{"type": "assistant_thread_started", "event_ts": threadTS,
		"assistant_thread": map[string]any{"user_id": user, "channel_id": channel, "thread_ts": threadTS}}
}

func messageEvent(kind, channel, user, text, ts, threadTS string) map[string]any {
	ev := map[string]any{"type": "message", "channel": channel, "channel_type": kind, "user": user,
		"text": text, "ts": ts, "event_ts": ts}
	if threadTS != "" {
		ev["thread_ts"] = threadTS
	}
	return ev
}

// People and channels of SeedWorkspace.
const (
	Alice   = "UALICE"    // full member, display name "Alice"
	Bob     = "UBOB"      // full member, display name "bobby"
	Guest   = "UGUEST"    // guest (restricted)
	Gone    = "UGONE"     // deactivated
	BotUser = "UOTHERBOT" // another app's bot user
	Foreign = "UFOREIGN"  // member of another team
	General = "C0GENERAL" // #general
	Secret  = "C0SECRET"  // #secret
)

// SeedWorkspace adds the users and channels above: one of each kind that
// authorization tells apart.
func (s *Server) SeedWorkspace() {
	s.AddUser(User{ID: Alice, Name: "alice", RealName: "Alice Liddell", DisplayName: "Alice"})
	s.AddUser(User{ID: Bob, Name: "bob", RealName: "Bob Builder", DisplayName: "bobby"})
	s.AddUser(User{ID: Guest, Name: "guest", RealName: "Guest", IsRestricted: true})
	s.AddUser(User{ID: Gone, Name: "gone", Deleted: true})
	s.AddUser(User{ID: BotUser, Name: "otherbot", IsBot: true})
	s.AddUser(User{ID: Foreign, Name: "foreign", TeamID: "T0OTHER"})
	s.AddChannel(General, "general")
	s.AddChannel(Secret, "secret")
}
