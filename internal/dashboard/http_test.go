package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/gateway"
)

// TestHTTP drives every API endpoint, page and stream of S9 against one
// real gateway (Podman, proxy, fakeclaude) and checks the security rules
// on the way.
func TestHTTP(t *testing.T) {
	e := newEnv(t, envOpts{maxStreams: 4})

	// One finished conversation of two tasks: the first echoes the
	// secret, writes to its workspace and the outbox and is blocked by
	// the proxy; the second resumes and reads what the first left.
	conv, task1 := e.startTask("@@run echo keep-me > /workspace/marker.txt\n" +
		"@@run echo report > /outbox/report.txt\n" +
		"@@run tkhttp https://blocked.example.test/upload || true\n" +
		"@@run echo the token is " + e.secret + "\n" +
		"@@reply first reply, token " + e.secret)
	ti := e.waitDoneWithin(task1, 20*time.Minute) // it builds the images
	if ti.Outcome != "success" {
		t.Fatalf("task 1: %s %s\n%s", ti.Outcome, ti.Reason, e.dump())
	}

	t.Run("health and version", func(t *testing.T) {
		var h struct {
			Status string
			Repos  map[string]int
			Tasks  map[string]int
			Gen    *uint64 `json:"config_generation"`
			Err    *string `json:"last_reload_error"`
		}
		e.getJSON("/api/health", &h)
		if h.Status != "ok" || h.Repos["live"] != 1 || h.Repos["failed"] != 0 || h.Gen == nil || h.Err == nil {
			t.Errorf("health = %+v", h)
		}
		var v map[string]string
		e.getJSON("/api/version", &v)
		if v["version"] != "test" {
			t.Errorf("version = %v", v)
		}
	})

	t.Run("repos", func(t *testing.T) {
		var repos []struct {
			ID, State string
			Channels  []string
		}
		e.getJSON("/api/repos", &repos)
		if len(repos) != 1 || repos[0].ID != "app" || repos[0].State != "live" || strings.Join(repos[0].Channels, ",") != "web" {
			t.Errorf("repos = %+v", repos)
		}
	})

	t.Run("resume in the same conversation", func(t *testing.T) {
		resp := e.request("POST", "/api/conversations/"+conv+"/messages", map[string]string{"prompt": "@@run cat /workspace/marker.txt\n@@reply second reply"})
		body := readAll(t, resp)
		if resp.StatusCode != 202 {
			t.Fatalf("POST messages: %d %s", resp.StatusCode, body)
		}
		var out struct{ Task string }
		_ = json.Unmarshal([]byte(body), &out)
		ti := e.waitDone(out.Task)
		if ti.Outcome != "success" || ti.Conversation != conv {
			t.Fatalf("task 2: %+v", ti)
		}
		var events strings.Builder
		resp = e.request("GET", "/api/tasks/"+out.Task+"/events", nil)
		events.WriteString(readAll(t, resp))
		if !strings.Contains(events.String(), "keep-me") {
			t.Errorf("the second task did not see the first task's workspace file:\n%s", events.String())
		}
		if strings.Contains(events.String(), "first reply") {
			t.Errorf("task 2's events include task 1's")
		}
		var c struct {
			ID    string
			Tasks []struct{ ID, Reply, Outcome string }
		}
		e.getJSON("/api/conversations/"+conv, &c)
		if len(c.Tasks) != 2 || c.Tasks[0].ID != out.Task || c.Tasks[1].ID != task1 || c.Tasks[0].Reply == "" {
			t.Errorf("conversation tasks (newest first) = %+v", c.Tasks)
		}
	})

	t.Run("tasks newest first", func(t *testing.T) {
		var tasks []struct{ ID, State string }
		e.getJSON("/api/tasks", &tasks)
		if len(tasks) < 2 || tasks[len(tasks)-1].ID != task1 {
			t.Errorf("tasks = %+v", tasks)
		}
		var one struct{ ID, Outcome, Reply string }
		e.getJSON("/api/tasks/"+task1, &one)
		if one.ID != task1 || one.Outcome != "success" || !strings.Contains(one.Reply, "first reply") {
			t.Errorf("task = %+v", one)
		}
		if resp := e.request("GET", "/api/tasks/nosuch", nil); resp.StatusCode != 404 {
			t.Errorf("unknown task: %d", resp.StatusCode)
		}
	})

	t.Run("events NDJSON", func(t *testing.T) {
		body := readAll(t, e.request("GET", "/api/tasks/"+task1+"/events", nil))
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if len(lines) < 4 {
			t.Fatalf("events: %d lines", len(lines))
		}
		var types []string
		for _, l := range lines {
			var ev struct{ Type string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("not JSON: %q", l)
			}
			types = append(types, ev.Type)
		}
		if types[len(types)-1] != "result" {
			t.Errorf("last event %q, want result", types[len(types)-1])
		}
	})

	t.Run("network NDJSON", func(t *testing.T) {
		body := readAll(t, e.request("GET", "/api/conversations/"+conv+"/network", nil))
		if !strings.Contains(body, `"verdict":"BLOCKED"`) || !strings.Contains(body, "blocked.example.test") {
			t.Errorf("network log: %s", body)
		}
	})

	t.Run("ETags", func(t *testing.T) {
		for _, p := range []string{"/api/health", "/api/repos", "/api/tasks", "/api/tasks/" + task1, "/api/conversations/" + conv, "/api/version"} {
			resp := e.request("GET", p, nil)
			readAll(t, resp)
			tag := resp.Header.Get("ETag")
			if tag == "" {
				t.Errorf("%s: no ETag", p)
				continue
			}
			resp = e.request("GET", p, nil, "If-None-Match", tag)
			readAll(t, resp)
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("%s with If-None-Match: %d, want 304", p, resp.StatusCode)
			}
			resp = e.request("GET", p, nil, "If-None-Match", `"other"`)
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Errorf("%s with a stale ETag: %d", p, resp.StatusCode)
			}
		}
	})

	t.Run("SSE resume with Last-Event-ID", func(t *testing.T) {
		all := sseAll(t, e, "/api/tasks/"+task1+"/events", "")
		if len(all) < 3 {
			t.Fatalf("only %d events", len(all))
		}
		resumed := sseAll(t, e, "/api/tasks/"+task1+"/events", all[1].ID)
		if len(resumed) != len(all)-2 {
			t.Fatalf("resumed after %s: %d events, want %d", all[1].ID, len(resumed), len(all)-2)
		}
		for i, ev := range resumed {
			if ev.Data != all[i+2].Data || ev.ID != all[i+2].ID {
				t.Errorf("resumed event %d = %q, want %q", i, ev.ID, all[i+2].ID)
			}
		}
		// The ids are byte offsets into events.jsonl.
		if n, err := strconv.ParseInt(all[0].ID, 10, 64); err != nil || n <= 0 {
			t.Errorf("id %q is not an offset", all[0].ID)
		}
	})

	t.Run("state stream resumes from a bus sequence", func(t *testing.T) {
		seq := e.gw.Events().Seq()
		conv2, task := e.startTask("@@reply quick")
		e.waitDone(task)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/tasks", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Last-Event-ID", strconv.FormatUint(seq, 10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		evs := readSSE(resp.Body, func(ev sseEvent) bool {
			return strings.Contains(ev.Data, `"state":"done"`) && strings.Contains(ev.Data, task)
		})
		if len(evs) == 0 || evs[0].Name == "reset" {
			t.Fatalf("resume replayed %d events, first %+v", len(evs), evs)
		}
		first, _ := strconv.ParseUint(evs[0].ID, 10, 64)
		if first != seq+1 {
			t.Errorf("first replayed seq %d, want %d", first, seq+1)
		}
		_ = conv2
	})

	t.Run("stream cap", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var open []*http.Response
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/", nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("stream %d: %d", i, resp.StatusCode)
			}
			open = append(open, resp)
		}
		resp := e.request("GET", "/", nil, "Accept", "text/event-stream")
		readAll(t, resp)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("stream over the cap: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		for _, r := range open {
			r.Body.Close()
		}
		cancel()
		e.waitFor("the streams to close", func() bool {
			resp := e.request("GET", "/api/tasks/"+task1+"/events", nil, "Accept", "text/event-stream")
			readAll(t, resp)
			return resp.StatusCode == 200
		})
	})

	t.Run("foreign Host is 421", func(t *testing.T) {
		for _, host := range []string{"evil.example.com", "evil.example.com:80", "127.0.0.1.nip.io"} {
			req, _ := http.NewRequest("GET", e.base+"/api/health", nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("Host %s: %d, want 421", host, resp.StatusCode)
			}
			checkHeaders(t, resp)
		}
		for _, host := range []string{"localhost", "127.0.0.1:5200", "[::1]:80", "dash.localhost"} {
			req, _ := http.NewRequest("GET", e.base+"/api/health", nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Errorf("Host %s: %d, want 200", host, resp.StatusCode)
			}
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		u, _ := url.Parse(e.base)
		same := "http://" + u.Host
		// A real token from a page.
		resp := e.request("GET", "/repos/app", nil)
		page := readAll(t, resp)
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "airut_csrf" {
				cookie = c
			}
		}
		if cookie == nil || !strings.Contains(page, `name="csrf" value="`+cookie.Value+`"`) {
			t.Fatalf("repo page sets no CSRF cookie or form token")
		}
		apiBody := map[string]string{"repo": "app", "prompt": "@@reply x"}
		cases := []struct {
			name   string
			path   string
			form   url.Values
			cookie bool
			hdr    []string
		}{
			{"API without X-Requested-With", "/api/conversations", nil, false, []string{"X-Requested-With", ""}},
			{"API from another origin", "/api/conversations", nil, false, []string{"Origin", "http://evil.example.com"}},
			{"API cross-site fetch", "/api/conversations", nil, false, []string{"Sec-Fetch-Site", "cross-site"}},
			{"API same-site but other origin", "/api/tasks/" + task1 + "/stop", nil, false, []string{"Sec-Fetch-Site", "same-site"}},
			{"form without token", "/repos/app/tasks", url.Values{"prompt": {"x"}}, true, nil},
			{"form with a wrong token", "/repos/app/tasks", url.Values{"prompt": {"x"}, "csrf": {strings.Repeat("0", 32)}}, true, nil},
			{"form without the cookie", "/repos/app/tasks", url.Values{"prompt": {"x"}, "csrf": {cookie.Value}}, false, nil},
			{"form from another origin", "/repos/app/tasks", url.Values{"prompt": {"x"}, "csrf": {cookie.Value}}, true, []string{"Origin", "http://evil.example.com"}},
			{"stop form without token", "/tasks/" + task1 + "/stop", url.Values{}, true, nil},
		}
		before := len(e.gw.Tasks())
		for _, c := range cases {
			var req *http.Request
			if c.form != nil {
				req, _ = http.NewRequest("POST", e.base+c.path, strings.NewReader(c.form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				data, _ := json.Marshal(apiBody)
				req, _ = http.NewRequest("POST", e.base+c.path, strings.NewReader(string(data)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Requested-With", "test")
			}
			if c.cookie {
				req.AddCookie(cookie)
			}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				if c.hdr[i+1] == "" {
					req.Header.Del(c.hdr[i])
				} else {
					req.Header.Set(c.hdr[i], c.hdr[i+1])
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", c.name, resp.StatusCode)
			}
		}
		if n := len(e.gw.Tasks()); n != before {
			t.Errorf("a refused request started a task (%d tasks, were %d)", n, before)
		}
		// The same form, done right, is taken.
		form := url.Values{"prompt": {"@@reply from the form"}, "csrf": {cookie.Value}}
		req, _ := http.NewRequest("POST", e.base+"/repos/app/tasks", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", same)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.AddCookie(cookie)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/conversations/") {
			t.Errorf("good form: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("stop a running task", func(t *testing.T) {
		_, task := e.startTask("@@run echo started\n@@sleep 120\n@@reply never")
		e.waitFor("the task to run", func() bool {
			ti, _ := e.gw.Task(task)
			return ti.State == gateway.StateRunning && len(e.taskLeftovers()) > 0
		})
		resp := e.request("POST", "/api/tasks/"+task+"/stop", nil)
		readAll(t, resp)
		if resp.StatusCode != 202 {
			t.Fatalf("stop: %d", resp.StatusCode)
		}
		ti := e.waitDone(task)
		if ti.Outcome != "cancelled" {
			t.Errorf("outcome %s", ti.Outcome)
		}
		e.waitFor("the containers to go", func() bool { return len(e.taskLeftovers()) == 0 })
		if resp := e.request("POST", "/api/tasks/"+task+"/stop", nil); resp.StatusCode != 404 {
			t.Errorf("stopping a finished task: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("pages", func(t *testing.T) {
		for _, p := range []string{"/", "/tasks/" + task1, "/conversations/" + conv, "/conversations/" + conv + "/network", "/repos/app"} {
			resp := e.request("GET", p, nil)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(body, "</html>") {
				t.Errorf("%s: %d", p, resp.StatusCode)
			}
		}
		task := readAll(t, e.request("GET", "/tasks/"+task1, nil))
		for _, want := range []string{"tool-Bash", "marker.txt", "Result: success", `class="stop"`} {
			if want == `class="stop"` {
				if strings.Contains(task, want) {
					t.Errorf("a finished task shows a Stop button")
				}
				continue
			}
			if !strings.Contains(task, want) {
				t.Errorf("task page lacks %q", want)
			}
		}
		convPage := readAll(t, e.request("GET", "/conversations/"+conv, nil))
		for _, want := range []string{"first reply", "second reply", "report.txt", `id="reply-form"`} {
			if !strings.Contains(convPage, want) {
				t.Errorf("conversation page lacks %q", want)
			}
		}
		net := readAll(t, e.request("GET", "/conversations/"+conv+"/network?verdict=BLOCKED", nil))
		if !strings.Contains(net, `class="net net-BLOCKED"`) {
			t.Errorf("network page shows no BLOCKED line")
		}
		if strings.Contains(net, "net-ALLOWED") {
			t.Errorf("verdict filter let ALLOWED through")
		}
		over := readAll(t, e.request("GET", "/", nil))
		if !strings.Contains(over, "Claude credential") || !strings.Contains(over, "/config") {
			t.Errorf("overview lacks the checklist or the Config link")
		}
		for _, p := range []string{"/tasks/nosuch", "/conversations/00000000", "/repos/nosuch", "/conversations/../../etc/network"} {
			if resp := e.request("GET", p, nil); resp.StatusCode != 404 {
				t.Errorf("%s: %d, want 404", p, resp.StatusCode)
			}
		}
	})

	t.Run("downloads", func(t *testing.T) {
		var c struct{ Tasks []struct{ ID string } }
		e.getJSON("/api/conversations/"+conv, &c)
		// The web channel kept the first reply's outbox file.
		resp := e.request("GET", "/conversations/"+conv+"/files/"+task1+"/report.txt", nil)
		body := readAll(t, resp)
		if resp.StatusCode != 200 || body != "report\n" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
			t.Errorf("reply file: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Disposition"))
		}
		for _, p := range []string{"/conversations/" + conv + "/files/" + task1 + "/..%2f..%2fconversation.json", "/conversations/" + conv + "/outbox/..%2fconversation.json"} {
			if resp := e.request("GET", p, nil); resp.StatusCode != 404 {
				t.Errorf("%s: %d, want 404", p, resp.StatusCode)
			}
		}
	})

	t.Run("no secret anywhere", func(t *testing.T) {
		paths := []string{"/", "/tasks/" + task1, "/conversations/" + conv, "/conversations/" + conv + "/network", "/repos/app",
			"/api/tasks", "/api/tasks/" + task1, "/api/tasks/" + task1 + "/events", "/api/conversations/" + conv,
			"/api/conversations/" + conv + "/network", "/api/health", "/api/repos"}
		for _, p := range paths {
			body := readAll(t, e.request("GET", p, nil))
			if strings.Contains(body, e.secret) {
				t.Errorf("%s contains the secret", p)
			}
		}
		for _, ev := range sseAll(t, e, "/api/tasks/"+task1+"/events", "") {
			if strings.Contains(ev.Data, e.secret) {
				t.Errorf("SSE event contains the secret")
			}
		}
		// The agent did echo it: the raw file has it, so the check above
		// could fail.
		raw, _ := os.ReadFile(filepath.Join(e.state, "app", "conversations", conv, "events.jsonl"))
		if !strings.Contains(string(raw), "[REDACTED]") && !strings.Contains(string(raw), e.secret) {
			t.Errorf("the agent's echo of the secret is not in events.jsonl at all")
		}
		body := readAll(t, e.request("GET", "/api/tasks/"+task1+"/events", nil))
		if !strings.Contains(body, "the token is") {
			t.Errorf("the echo line is missing from the events")
		}
	})

	t.Run("security headers on every response", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"GET", "/"}, {"GET", "/api/health"}, {"GET", "/static/style.css"}, {"GET", "/static/vendor/htmx.min.js"},
			{"GET", "/nosuch"}, {"GET", "/api/tasks/nosuch"}, {"POST", "/api/conversations"}, {"GET", "/tasks/" + task1},
			{"POST", "/repos/app/tasks"},
		} {
			resp := e.request(c.method, c.path, nil)
			readAll(t, resp)
			checkHeaders(t, resp)
		}
	})

	t.Run("past conversations after a restart", func(t *testing.T) {
		// A new gateway on the same state directory, its tracker empty
		// and the repo no longer configured: everything comes from disk.
		ts := httptest.NewServer(newIdleServer(t, e.state))
		defer ts.Close()
		get := func(p string) string {
			resp, err := http.Get(ts.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s after restart: %d %s", p, resp.StatusCode, body)
			}
			return body
		}
		if page := get("/conversations/" + conv); !strings.Contains(page, "first reply") || !strings.Contains(page, "second reply") {
			t.Errorf("conversation page after restart lacks the replies")
		}
		if page := get("/tasks/" + task1); !strings.Contains(page, "marker.txt") || !strings.Contains(page, "Result: success") {
			t.Errorf("task page after restart lacks the transcript")
		}
		events := get("/api/tasks/" + task1 + "/events")
		if !strings.Contains(events, "marker.txt") || strings.Contains(events, "second reply") {
			t.Errorf("task events after restart are not the task's own")
		}
		if !strings.Contains(get("/api/conversations/"+conv+"/network"), "BLOCKED") {
			t.Errorf("network log after restart")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			path string
			body any
			want int
		}{
			{"/api/conversations", map[string]string{"repo": "app", "prompt": ""}, 400},
			{"/api/conversations", map[string]string{"prompt": "x"}, 400},
			{"/api/conversations", map[string]string{"repo": "nosuch", "prompt": "x"}, 404},
			{"/api/conversations", map[string]any{"repo": "app", "prompt": "x", "extra": 1}, 400},
			{"/api/conversations/00000000/messages", map[string]string{"prompt": "x"}, 404},
		} {
			resp := e.request("POST", c.path, c.body)
			body := readAll(t, resp)
			if resp.StatusCode != c.want {
				t.Errorf("POST %s %v: %d %s, want %d", c.path, c.body, resp.StatusCode, body, c.want)
			}
		}
	})
}

// sseAll reads a finished task's event stream to its end.
func sseAll(t *testing.T, e *env, path, lastID string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	for _, ev := range readSSE(bufio.NewReader(resp.Body), func(ev sseEvent) bool { return ev.Name == "end" }) {
		if ev.Name == "event" {
			out = append(out, ev)
		}
	}
	return out
}

func checkHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s %s: %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, k, got, v)
		}
	}
}
