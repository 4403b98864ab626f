package slack

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// userCache caches users.info and the user groups, each for ttl: every
// message is authorized against them, and a user deactivated or removed
// from a group loses access within ttl.
type userCache struct {
	api   *slack.Client
	clock Clock
	ttl   time.Duration

	mu     sync.Mutex
	teamID string
	users  map[string]cachedUser
	// groups maps a handle to its id, refreshed with usergroups.list.
	groups        map[string]string
	groupsFetched time.Time
	members       map[string]cachedMembers // by group id
}

type cachedUser struct {
	u       slack.User
	fetched time.Time
}

type cachedMembers struct {
	ids     map[string]bool
	fetched time.Time
}

func newUserCache(api *slack.Client, clock Clock, ttl time.Duration) *userCache {
	return &userCache{api: api, clock: clock, ttl: ttl, users: map[string]cachedUser{}, members: map[string]cachedMembers{}}
}

func (c *userCache) setTeam(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.teamID = id
}

type user struct{ slack.User }

// displayName is what Slack shows: display name, real name, user name.
func (u user) displayName() string {
	for _, s := range []string{u.Profile.DisplayName, u.Profile.RealName, u.RealName, u.Name} {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return u.ID
}

func (c *userCache) get(ctx context.Context, id string) (user, error) {
	now := c.clock.Now()
	c.mu.Lock()
	cu, ok := c.users[id]
	c.mu.Unlock()
	if ok && now.Sub(cu.fetched) < c.ttl {
		return user{cu.u}, nil
	}
	u, err := c.api.GetUserInfoContext(ctx, id)
	if err != nil {
		return user{}, fmt.Errorf("users.info %s: %w", id, err)
	}
	c.mu.Lock()
	c.users[id] = cachedUser{u: *u, fetched: now}
	c.mu.Unlock()
	return user{*u}, nil
}

// cached returns the users looked up so far (fresh or not): the known
// candidates for @name mentions in replies.
func (c *userCache) cached() []user {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]user, 0, len(c.users))
	for _, cu := range c.users {
		out = append(out, user{cu.u})
	}
	return out
}

// inGroup reports whether userID is a member of the group with handle.
func (c *userCache) inGroup(ctx context.Context, handle, userID string) (bool, error) {
	handle = strings.TrimPrefix(strings.ToLower(handle), "@")
	now := c.clock.Now()
	c.mu.Lock()
	id, known := c.groups[handle]
	stale := now.Sub(c.groupsFetched) >= c.ttl
	c.mu.Unlock()
	if !known || stale {
		groups, err := c.api.GetUserGroupsContext(ctx)
		if err != nil {
			return false, fmt.Errorf("usergroups.list: %w", err)
		}
		m := map[string]string{}
		for _, g := range groups {
			m[strings.ToLower(g.Handle)] = g.ID
		}
		c.mu.Lock()
		c.groups, c.groupsFetched = m, now
		c.mu.Unlock()
		if id, known = m[handle]; !known {
			return false, nil
		}
	}
	c.mu.Lock()
	cm, ok := c.members[id]
	c.mu.Unlock()
	if !ok || now.Sub(cm.fetched) >= c.ttl {
		ids, err := c.api.GetUserGroupMembersContext(ctx, id)
		if err != nil {
			return false, fmt.Errorf("usergroups.users.list %s: %w", handle, err)
		}
		cm = cachedMembers{ids: map[string]bool{}, fetched: now}
		for _, u := range ids {
			cm.ids[u] = true
		}
		c.mu.Lock()
		c.members[id] = cm
		c.mu.Unlock()
	}
	return cm.ids[userID], nil
}

// rejection says why a sender may not start work; "" means authorized.
type rejection string

// authorize applies the fixed checks and then the rules in order. A lookup
// that fails rejects: the check fails closed.
func (c *Channel) authorize(ctx context.Context, userID, userTeam string) (user, rejection) {
	self := c.identity()
	if userID == "" {
		return user{}, "no user"
	}
	if userTeam != "" && userTeam != self.teamID {
		return user{}, rejection("user of another team " + userTeam)
	}
	u, err := c.users.get(ctx, userID)
	if err != nil {
		return user{}, rejection("user lookup failed: " + err.Error())
	}
	switch {
	case u.IsBot || u.IsAppUser || u.ID == self.userID:
		return u, "bot user"
	case u.Deleted:
		return u, "deactivated user"
	case u.TeamID != self.teamID:
		return u, rejection("user of another team " + u.TeamID)
	}
	// A group lookup that fails skips its rule: a later rule may still
	// match on its own, and when none does the error is in the reason.
	var lookupErr string
	for i, r := range c.cfg.Authorized {
		switch {
		case r.WorkspaceMembers:
			if !u.IsRestricted && !u.IsUltraRestricted && !u.IsStranger {
				return u, ""
			}
		case r.UserID != "":
			if r.UserID == u.ID {
				return u, ""
			}
		case r.UserGroup != "":
			ok, err := c.users.inGroup(ctx, r.UserGroup, u.ID)
			if err != nil {
				lookupErr = fmt.Sprintf("; authorized[%d] user_group %s: %v", i, r.UserGroup, err)
				continue
			}
			if ok {
				return u, ""
			}
		}
	}
	return u, rejection("no authorized rule matches" + lookupErr)
}
