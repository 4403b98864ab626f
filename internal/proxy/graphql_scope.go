package proxy

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/airut/airut/internal/secrets"
)

// Repository scoping of GitHub GraphQL for a GitHub App token (S5.5).
// Without a schema, the check goes by field and argument names, and fails
// closed where a name could reach a repository it cannot resolve:
//
//   - repository(owner:, name:) must name a configured repository
//     (literal arguments or variables); repository(name:) under
//     user/organization/repositoryOwner(login:) likewise;
//   - every id argument or input field (id, repositoryId, …Id, …Ids,
//     except clientMutationId), literal or from variables, must be a node
//     id that decodes to a configured repository or to a user,
//     organization, team or bot; repositoryNameWithOwner must name a
//     configured repository;
//   - search, resource(url:) and the connections that list many
//     repositories (repositories, forks, starredRepositories, projects …)
//     are refused anywhere; the connections that span repositories when
//     asked of a user or organization (issues, pullRequests,
//     discussions …) are refused outside a repository.

// everywhereRefused reach beyond one repository wherever they are asked.
var everywhereRefused = []string{
	"search", "resource", "repositories", "repositoriesContributedTo", "starredRepositories",
	"watching", "topRepositories", "pinnedItems", "pinnableItems", "pinnedRepositories", "forks",
	"contributionsCollection", "projects", "projectsV2", "projectV2", "recentProjects", "lists",
}

// outsideRefused span repositories when asked of a user, organization or
// the viewer, and stay within one when asked of a repository.
var outsideRefused = []string{
	"issues", "pullRequests", "discussions", "repositoryDiscussions", "repositoryDiscussionComments",
	"issueComments", "commitComments", "packages",
}

// leaveRepo lead from an object in a repository to one that is not (a
// user, an organization, another repository): below them the
// connections of outsideRefused span repositories again.
var leaveRepo = []string{
	"owner", "author", "editor", "actor", "creator", "sender", "mergedBy", "user", "organization", "viewer",
	"repositoryOwner", "assignees", "participants", "mentionableUsers", "assignableUsers", "collaborators",
	"stargazers", "watchers", "parent", "templateRepository", "headRepository", "headRepositoryOwner",
	"baseRepository", "members", "membersWithRole", "team", "teams", "requestedReviewer", "requestedReviewers",
	"sponsors", "sponsoring", "followers", "following", "enterprise", "enterpriseOwners", "committer",
	"requestedBy", "deletedBy", "lockedBy", "closedBy",
}

// ownerFields take a login and own the repositories asked of them by
// name.
var ownerFields = []string{"user", "organization", "repositoryOwner"}

// repoTypes are the object types whose fields stay in their repository:
// a fragment on one of them is checked as inside a repository.
var repoTypes = []string{
	"Repository", "Issue", "PullRequest", "IssueComment", "PullRequestReview", "PullRequestReviewComment",
	"PullRequestReviewThread", "Label", "Milestone", "Discussion", "DiscussionComment", "Ref", "Commit",
	"Tree", "Blob", "Tag", "Release", "ReleaseAsset", "CheckRun", "CheckSuite", "Deployment",
	"DeploymentStatus", "BranchProtectionRule", "Environment", "Workflow", "WorkflowRun",
}

// checkRepoScope checks a parsed GitHub GraphQL request against the
// repositories of the App whose token it will carry.
func checkRepoScope(g *gqlRequest, scope *secrets.RepoScope) error {
	w := &scopeWalker{g: g, scope: scope, defaults: map[string]*ast.Value{}}
	for _, op := range g.doc.Operations {
		for _, d := range op.VariableDefinitions {
			if d.DefaultValue != nil {
				w.defaults[d.Variable] = d.DefaultValue
			}
		}
	}
	for _, op := range g.doc.Operations {
		if err := w.selections(op.SelectionSet, walkCtx{}); err != nil {
			return err
		}
	}
	for _, f := range g.doc.Fragments {
		if err := w.selections(f.SelectionSet, walkCtx{inRepo: slices.Contains(repoTypes, f.TypeCondition)}); err != nil {
			return err
		}
	}
	return nil
}

type scopeWalker struct {
	g        *gqlRequest
	scope    *secrets.RepoScope
	defaults map[string]*ast.Value // variable defaults, from every operation
}

// walkCtx is where a selection is: inside a repository in scope, or
// under an owner given by login.
type walkCtx struct {
	inRepo bool
	owner  string // login of the enclosing user/organization, when known
}

func (w *scopeWalker) selections(set ast.SelectionSet, ctx walkCtx) error {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if err := w.field(s, ctx); err != nil {
				return err
			}
		case *ast.InlineFragment:
			if err := w.selections(s.SelectionSet, ctx); err != nil {
				return err
			}
		case *ast.FragmentSpread:
			// Checked where it is defined (checkRepoScope walks every
			// fragment), and fields never get more context than there.
		}
	}
	return nil
}

func (w *scopeWalker) field(f *ast.Field, ctx walkCtx) error {
	name := f.Name
	if slices.Contains(everywhereRefused, name) {
		return gqlErr("field %q reaches beyond the GitHub App's repositories (%s)", name, w.repoNames())
	}
	if !ctx.inRepo && slices.Contains(outsideRefused, name) {
		return gqlErr("field %q outside a repository spans repositories beyond the GitHub App's (%s)", name, w.repoNames())
	}
	child := walkCtx{inRepo: ctx.inRepo}
	kinds := map[nodeKind]bool{}
	for _, a := range f.Arguments {
		if err := w.value(a.Name, w.resolve(a.Value), kinds); err != nil {
			return err
		}
	}
	switch {
	case name == "repository":
		owner, hasOwner := w.stringArg(f, "owner")
		repo, hasName := w.stringArg(f, "name")
		switch {
		case !hasOwner && !hasName:
			// The parent's own repository (issue { repository { … } }).
		case !hasName:
			return gqlErr("repository(owner:) without a name cannot be checked")
		case !hasOwner && ctx.owner == "":
			return gqlErr("repository(name: %q) without a known owner cannot be checked against the GitHub App's repositories", repo)
		default:
			if !hasOwner {
				owner = ctx.owner
			}
			if !w.scope.HasFullName(owner + "/" + repo) {
				return gqlErr("repository %s/%s is not one of the GitHub App's repositories (%s)", owner, repo, w.repoNames())
			}
			child.inRepo = true
		}
	case slices.Contains(ownerFields, name):
		child.inRepo = false
		if login, ok := w.stringArg(f, "login"); ok {
			child.owner = login
		}
	case name == "node" || name == "nodes":
		child.inRepo = kinds[nodeRepo] && !kinds[nodeOther]
	case slices.Contains(leaveRepo, name):
		child.inRepo = false
	}
	return w.selections(f.SelectionSet, child)
}

// stringArg is a field's argument as a string, resolved.
func (w *scopeWalker) stringArg(f *ast.Field, name string) (string, bool) {
	a := f.Arguments.ForName(name)
	if a == nil {
		return "", false
	}
	s, ok := w.resolve(a.Value).(string)
	return s, ok
}

// resolve turns a literal into its JSON-like value, with variables
// replaced by theirs (or their defaults); an unset variable is nil.
func (w *scopeWalker) resolve(v *ast.Value) any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case ast.Variable:
		if val, ok := w.g.variables[v.Raw]; ok {
			return val
		}
		if d, ok := w.defaults[v.Raw]; ok {
			return w.resolve(d)
		}
		return nil
	case ast.StringValue, ast.BlockValue:
		return v.Raw
	case ast.IntValue, ast.FloatValue:
		return json.Number(v.Raw)
	case ast.ListValue:
		out := make([]any, 0, len(v.Children))
		for _, c := range v.Children {
			out = append(out, w.resolve(c.Value))
		}
		return out
	case ast.ObjectValue:
		out := make(map[string]any, len(v.Children))
		for _, c := range v.Children {
			out[c.Name] = w.resolve(c.Value)
		}
		return out
	}
	return nil // booleans, enums, null: nothing to scope
}

// isIDName reports whether an argument or input field carries node ids.
func isIDName(name string) bool {
	if name == "clientMutationId" {
		return false
	}
	return name == "id" || name == "ids" || strings.HasSuffix(name, "Id") || strings.HasSuffix(name, "Ids")
}

// value checks one argument or input field, and every field of input
// objects inside it, and notes the kinds of node ids found.
func (w *scopeWalker) value(name string, v any, kinds map[nodeKind]bool) error {
	switch {
	case name == "repositoryNameWithOwner":
		if s, ok := v.(string); ok && !w.scope.HasFullName(s) {
			return gqlErr("repository %s is not one of the GitHub App's repositories (%s)", s, w.repoNames())
		}
	case isIDName(name):
		var ids []string
		switch x := v.(type) {
		case string:
			ids = []string{x}
		case []any:
			for _, item := range x {
				if s, ok := item.(string); ok {
					ids = append(ids, s)
				}
			}
		}
		for _, id := range ids {
			kind, repo := decodeNodeID(id)
			switch {
			case kind == nodeOther:
			case kind == nodeRepo && w.scope.HasID(repo):
			case kind == nodeRepo:
				return gqlErr("%s %q belongs to repository id %d, not one of the GitHub App's repositories (%s)", name, id, repo, w.repoNames())
			default:
				return gqlErr("%s %q is not a node id that can be checked against the GitHub App's repositories", name, id)
			}
			kinds[kind] = true
		}
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			if err := w.value(k, item, kinds); err != nil {
				return err
			}
		}
	case []any:
		for _, item := range x {
			if err := w.value("", item, kinds); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *scopeWalker) repoNames() string {
	names := make([]string, 0, len(w.scope.Repos))
	for _, r := range w.scope.Repos {
		names = append(names, r.FullName)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// nodeKind is what a GitHub node id refers to, as far as its encoding
// tells.
type nodeKind int

const (
	nodeUnknown nodeKind = iota // not decodable: refused
	nodeRepo                    // a repository or an object inside one
	nodeOther                   // a user, organization, team or bot
)

// GitHub's node id types, by the prefix of the new format
// ("PREFIX_" + base64url(msgpack([0, repository id, …]))).
var (
	repoPrefixes = []string{
		"R", "I", "PR", "IC", "PRR", "PRRC", "PRRT", "LA", "MI", "D", "DC", "REF", "C", "RE", "RA",
		"CR", "CS", "DE", "DES", "BPR", "W", "WFR",
	}
	otherPrefixes = []string{"U", "O", "T", "BOT", "EMU"}
	// Legacy ids are base64 of "NN:TypeID" ("010:Repository1296269");
	// git objects carry their repository's id ("06:Commit1296269:sha").
	legacyRepoTypes  = []string{"Repository"}
	legacyInRepo     = []string{"Commit", "Tree", "Blob", "Ref", "Tag"}
	legacyOtherTypes = []string{"User", "Organization", "Team", "Bot"}
	newNodeID        = regexp.MustCompile(`^([A-Z]{1,6})_([A-Za-z0-9_-]{2,})$`)
	legacyNodeID     = regexp.MustCompile(`^([0-9]{1,3}):([A-Za-z]+)([0-9]{1,19})(:.*)?$`)
)

// decodeNodeID says what a node id refers to and, for one in a
// repository, that repository's database id.
func decodeNodeID(id string) (nodeKind, int64) {
	if m := newNodeID.FindStringSubmatch(id); m != nil {
		prefix := m[1]
		if slices.Contains(otherPrefixes, prefix) {
			return nodeOther, 0
		}
		if !slices.Contains(repoPrefixes, prefix) {
			return nodeUnknown, 0
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(m[2], "="))
		if err != nil {
			return nodeUnknown, 0
		}
		arr, err := msgpackInts(raw)
		if err != nil || len(arr) < 2 || arr[0] != 0 || arr[1] <= 0 {
			return nodeUnknown, 0
		}
		return nodeRepo, arr[1]
	}
	raw, err := base64.StdEncoding.DecodeString(id)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(id); err != nil {
			return nodeUnknown, 0
		}
	}
	m := legacyNodeID.FindStringSubmatch(string(raw))
	if m == nil {
		return nodeUnknown, 0
	}
	if n, _ := strconv.Atoi(m[1]); n != len(m[2]) {
		return nodeUnknown, 0
	}
	num, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil || num <= 0 {
		return nodeUnknown, 0
	}
	switch typ, rest := m[2], m[4]; {
	case slices.Contains(legacyRepoTypes, typ) && rest == "":
		return nodeRepo, num
	case slices.Contains(legacyInRepo, typ) && rest != "":
		return nodeRepo, num
	case slices.Contains(legacyOtherTypes, typ) && rest == "":
		return nodeOther, 0
	}
	return nodeUnknown, 0
}

var errMsgpack = errors.New("not a node id payload")

// msgpackInts decodes the msgpack array of a node id: integers, with
// strings and binary (object keys, hashes) as -1. Anything else fails.
func msgpackInts(b []byte) ([]int64, error) {
	if len(b) == 0 {
		return nil, errMsgpack
	}
	var n int
	switch c := b[0]; {
	case c >= 0x90 && c <= 0x9f:
		n, b = int(c&0x0f), b[1:]
	case c == 0xdc && len(b) >= 3:
		n, b = int(binary.BigEndian.Uint16(b[1:3])), b[3:]
	default:
		return nil, errMsgpack
	}
	out := make([]int64, 0, n)
	for range n {
		if len(b) == 0 {
			return nil, errMsgpack
		}
		c := b[0]
		var size int
		var v int64 = -1
		switch {
		case c <= 0x7f:
			v, size = int64(c), 1
		case c == 0xcc && len(b) >= 2:
			v, size = int64(b[1]), 2
		case c == 0xcd && len(b) >= 3:
			v, size = int64(binary.BigEndian.Uint16(b[1:3])), 3
		case c == 0xce && len(b) >= 5:
			v, size = int64(binary.BigEndian.Uint32(b[1:5])), 5
		case c == 0xcf && len(b) >= 9:
			u := binary.BigEndian.Uint64(b[1:9])
			if u > 1<<62 {
				return nil, errMsgpack
			}
			v, size = int64(u), 9
		case c >= 0xa0 && c <= 0xbf:
			size = 1 + int(c&0x1f)
		case (c == 0xd9 || c == 0xc4) && len(b) >= 2:
			size = 2 + int(b[1])
		default:
			return nil, errMsgpack
		}
		if size > len(b) {
			return nil, errMsgpack
		}
		out = append(out, v)
		b = b[size:]
	}
	if len(b) != 0 {
		return nil, errMsgpack
	}
	return out, nil
}

// gitHubScoper is the injector that carries GitHub App tokens: it tells
// which requests will carry one to the App's GraphQL endpoint, and the
// repositories such a request must stay within.
type gitHubScoper interface {
	GitHubScope(ctx context.Context, h http.Header, host, path string) (*secrets.RepoScope, bool, error)
}

// gitHubScope is the repository check of S5.5, on every request that will
// carry a GitHub App token to that App's GraphQL endpoint. It runs before
// the token is injected; a token that cannot be had answers 502.
func (p *Proxy) gitHubScope(r *Request) error {
	for _, s := range p.scopers {
		scope, ok, err := s.GitHubScope(r.HTTP.Context(), r.HTTP.Header, r.Host, r.Path)
		if err != nil {
			return fmt.Errorf("%w: %v", errInjectorFailed, err)
		}
		if !ok {
			continue
		}
		g, err := r.graphQL()
		if err != nil {
			return err
		}
		return checkRepoScope(g, scope)
	}
	return nil
}
