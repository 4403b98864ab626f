// Package slack is the Slack channel: Socket Mode in, the Web API out.
//
// Two surfaces start work: a direct message in the app's assistant thread
// (Agents & AI Apps), and an @-mention in a channel (only allowed_channels,
// when set). Once a thread is engaged, later replies in it continue the
// conversation without a mention. One Slack thread is one conversation;
// the mapping lives in slack_threads.json in the channel's state
// directory, written atomically, and is registered when the gateway
// acknowledges the first message of a thread, before any reply, so a
// second quick message in a new thread waits for it instead of starting a
// second conversation.
//
// Every message is authorized before anything else reads it: bots,
// deactivated users and users of another team are always rejected, then
// the authorized: rules apply in order, first match wins. Rejection is
// silent in Slack and logged here.
//
// Slack delivers a channel post that mentions the app twice (app_mention
// and message); the channel keeps the first by channel and ts. Socket
// Mode envelopes are acknowledged on receipt, as Slack requires within
// three seconds; the message itself is acknowledged to the user with
// reactions (:eyes: on receipt in channels, :white_check_mark: or :x: at
// the end) and, in direct messages, the assistant status while the task is
// being prepared.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/airut/airut/internal/channel"
)

// DefaultAPIURL is Slack's Web API base.
const DefaultAPIURL = "https://slack.com/api/"

// Defaults of Config.
const (
	defaultMaxFileSize     = 50 << 20
	defaultAuthCacheTTL    = 5 * time.Minute
	defaultHistoryMessages = 20
	defaultHistoryChars    = 8000
	defaultHoldTimeout     = 2 * time.Minute
	// maxMessageChars is Slack's limit for a message's text; longer text
	// is cut off by Slack.
	maxMessageChars = 40000
	// maxChunks is how many messages a reply may take before it is sent
	// as a file instead.
	maxChunks = 5
)

// Rule is one entry of slack.authorized; exactly one field is set.
type Rule struct {
	// WorkspaceMembers matches every full member of the workspace (not
	// guests).
	WorkspaceMembers bool
	// UserGroup matches members of the user group with this handle.
	UserGroup string
	// UserID matches one user.
	UserID string
}

// Config is one repository's Slack channel. The cli maps the `slack:`
// block of airut.yaml onto it.
type Config struct {
	// BotToken is the bot user OAuth token, "xoxb-…". Required.
	BotToken string
	// AppToken is the app-level token for Socket Mode, "xapp-…". Required.
	AppToken string
	// APIURL is the Web API base; default DefaultAPIURL. Files are
	// downloaded only from Slack's own hosts or this URL's host.
	APIURL string
	// Authorized are the rules, in order. Required, at least one.
	Authorized []Rule
	// AllowedChannels are the channel ids where mentions are answered;
	// default none, meaning every channel the app is in. DMs are not
	// affected.
	AllowedChannels []string
	// StateDir holds slack_threads.json and slack_inbox.json. Required.
	StateDir string
	// Exists reports whether a conversation still exists; a thread whose
	// conversation was removed starts a new one. Default: every
	// conversation exists.
	Exists func(conversationID string) bool
	// MaxFileSize caps one inbound file; default 50 MiB.
	MaxFileSize int64
	// AuthCacheTTL is how long user and user group lookups are trusted;
	// default 5 minutes.
	AuthCacheTTL time.Duration
	// HistoryMessages and HistoryChars bound the earlier thread messages
	// given as background on a mid-thread mention; defaults 20 and 8000.
	HistoryMessages int
	HistoryChars    int
	// Clock is the time source; default the real clock.
	Clock Clock
	// HTTPClient makes the Web API calls; default http.DefaultClient.
	HTTPClient *http.Client
}

func (c *Config) setDefaults() {
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(c.APIURL, "/") {
		c.APIURL += "/"
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = defaultMaxFileSize
	}
	if c.AuthCacheTTL <= 0 {
		c.AuthCacheTTL = defaultAuthCacheTTL
	}
	if c.HistoryMessages <= 0 {
		c.HistoryMessages = defaultHistoryMessages
	}
	if c.HistoryChars <= 0 {
		c.HistoryChars = defaultHistoryChars
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Exists == nil {
		c.Exists = func(string) bool { return true }
	}
}

func (c *Config) validate() error {
	var errs []error
	if !strings.HasPrefix(c.BotToken, "xoxb-") {
		errs = append(errs, errors.New("bot_token: must be a bot token (xoxb-…)"))
	}
	if !strings.HasPrefix(c.AppToken, "xapp-") {
		errs = append(errs, errors.New("app_token: must be an app-level token (xapp-…)"))
	}
	if len(c.Authorized) == 0 {
		errs = append(errs, errors.New("authorized: at least one rule is required"))
	}
	for i, r := range c.Authorized {
		n := 0
		if r.WorkspaceMembers {
			n++
		}
		if r.UserGroup != "" {
			n++
		}
		if r.UserID != "" {
			n++
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("authorized[%d]: exactly one of workspace_members, user_group, user_id", i))
		}
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("api_url: %q is not an http(s) URL", c.APIURL))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("state directory: required"))
	}
	return errors.Join(errs...)
}

// Log keys.
const (
	logUser    = "user"
	logChan    = "slack_channel"
	logTS      = "ts"
	logThread  = "thread_ts"
	logReason  = "reason"
	logError   = "error"
	logConv    = "conversation"
	logSurface = "surface"
)

// Thread keys in channel.Message.Thread: everything Reply and Done need,
// so a reply journaled before a restart can still be sent.
const (
	threadChannel  = "channel"
	threadTS       = "thread_ts"
	threadMsgTS    = "ts"
	threadSurface  = "surface"
	surfaceDM      = "dm"
	surfaceChannel = "channel"
)

// Channel is the Slack channel of one repository.
type Channel struct {
	cfg     Config
	api     *slack.Client
	log     *slog.Logger
	clock   Clock
	allowed map[string]bool

	store    *threadStore
	inbox    *inbox
	users    *userCache
	channels channelNames
	health   healthTracker

	mu sync.Mutex
	// self is the bot's identity from auth.test, set once Run starts.
	self identity
	// threads is the in-memory state of threads with work in progress.
	threads map[string]*threadState
	seen    recentSet
	lanes   lanes
	plans   map[string]*plan
	replies map[string]*replyProgress
	// starts are the threads Send started, so a retry goes on in them.
	starts map[startKey]*started
	// handler is the gateway's, set by Run; held messages go to it.
	handler channel.Handler
	runCtx  context.Context
}

type identity struct {
	userID, botID, teamID string
}

var (
	_ channel.Channel = (*Channel)(nil)
	_ channel.Prober  = (*Channel)(nil)
)

// New checks cfg, loads the thread store and returns a channel; it does
// not connect yet.
func New(cfg Config, logger *slog.Logger) (*Channel, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("slack config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("channel", "slack")
	store, err := openThreadStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	in, err := openInbox(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	api := slack.New(cfg.BotToken,
		slack.OptionAppLevelToken(cfg.AppToken),
		slack.OptionAPIURL(cfg.APIURL),
		slack.OptionHTTPClient(cfg.HTTPClient),
		// After the HTTP client: waits out 429s as Retry-After says.
		slack.OptionRetry(3),
		slack.OptionLog(slog.NewLogLogger(log.Handler(), slog.LevelDebug)),
	)
	allowed := map[string]bool{}
	for _, id := range cfg.AllowedChannels {
		allowed[id] = true
	}
	c := &Channel{
		cfg:     cfg,
		api:     api,
		log:     log,
		clock:   cfg.Clock,
		allowed: allowed,
		store:   store,
		inbox:   in,
		users:   newUserCache(api, cfg.Clock, cfg.AuthCacheTTL),
		threads: map[string]*threadState{},
		seen:    newRecentSet(4096),
		plans:   map[string]*plan{},
		replies: map[string]*replyProgress{},
	}
	c.health.set(c.clock.Now(), StateConnecting, "not started")
	return c, nil
}

// Name implements channel.Channel.
func (c *Channel) Name() string { return "slack" }

// Probe implements channel.Prober: auth.test with the bot token and
// apps.connections.open with the app token, so either token being refused
// shows. The socket URL it gets is not dialled and expires on its own.
func (c *Channel) Probe(ctx context.Context) error {
	if _, err := c.api.AuthTestContext(ctx); err != nil {
		return fmt.Errorf("slack auth.test (bot token): %w", err)
	}
	if _, _, err := c.api.StartSocketModeContext(ctx); err != nil {
		return fmt.Errorf("slack apps.connections.open (app token): %w", err)
	}
	return nil
}

// DisplayName returns the name Slack shows for a user id (display name,
// else real name, else user name), for the dashboard. Lookups are cached.
func (c *Channel) DisplayName(ctx context.Context, userID string) (string, error) {
	u, err := c.users.get(ctx, userID)
	if err != nil {
		return "", err
	}
	return u.displayName(), nil
}

// Run implements channel.Channel: auth.test once for the bot's identity,
// then Socket Mode until ctx ends. slack-go reconnects with backoff on its
// own; a failure it gives up on (a refused token) is retried here with
// backoff too, since a reload may fix the token.
func (c *Channel) Run(ctx context.Context, h channel.Handler) error {
	if h == nil {
		return errors.New("slack: nil handler")
	}
	bo := backoff{min: time.Second, max: 5 * time.Minute}
	for {
		self, err := c.authTest(ctx)
		if err == nil {
			c.mu.Lock()
			c.self, c.handler, c.runCtx = self, h, ctx
			c.mu.Unlock()
			c.users.setTeam(self.teamID)
			break
		}
		c.health.set(c.clock.Now(), StateFailed, "auth.test: "+err.Error())
		c.log.Error("slack auth.test failed", logError, err)
		if !bo.wait(ctx) {
			return nil
		}
	}

	c.redeliver(ctx)

	smc := socketmode.New(c.api, socketmode.OptionLog(slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)))
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		bo := backoff{min: time.Second, max: 5 * time.Minute}
		for {
			err := smc.RunContext(ctx)
			if ctx.Err() != nil {
				return
			}
			c.health.set(c.clock.Now(), StateFailed, "socket mode: "+err.Error())
			c.log.Error("slack socket mode stopped; retrying", logError, err)
			if !bo.wait(ctx) {
				return
			}
		}
	}()

	for {
		select {
		case <-ctx.Done():
			<-runDone
			c.lanes.wait()
			return nil
		case evt := <-smc.Events:
			c.onSocketEvent(ctx, smc, evt)
		}
	}
}

func (c *Channel) authTest(ctx context.Context) (identity, error) {
	r, err := c.api.AuthTestContext(ctx)
	if err != nil {
		return identity{}, err
	}
	if r.UserID == "" || r.TeamID == "" {
		return identity{}, errors.New("auth.test returned no user or team")
	}
	return identity{userID: r.UserID, botID: r.BotID, teamID: r.TeamID}, nil
}

func (c *Channel) identity() identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.self
}

// backoff doubles a wait from min to max.
type backoff struct {
	min, max, cur time.Duration
}

// wait sleeps for the next interval; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
