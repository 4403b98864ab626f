package dashboard

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderEvent(t *testing.T) {
	long := strings.Repeat("output line\n", 100)
	tests := []struct {
		name    string
		line    string
		want    []string
		notWant []string
	}{
		{"init", `{"type":"system","subtype":"init","model":"opus","tools":["Bash","Edit"]}`, []string{"Session started", "opus", "2 tools"}, nil},
		{"api retry", `{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1500,"error_status":529}`,
			[]string{"API retry 2 of 10", "1.5s", "529"}, nil},
		{"markdown text", `{"type":"assistant","message":{"content":[{"type":"text","text":"**bold** <script>x</script>"}]}}`,
			[]string{"<strong>bold</strong>", "&lt;script&gt;"}, []string{"<script>"}},
		{"bash", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"go test ./...","description":"run tests"}}]}}`,
			[]string{"tool-Bash", "$ go test ./...", "run tests"}, nil},
		{"edit diff", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Edit","input":{"file_path":"/w/a.go","old_string":"x := 1","new_string":"x := 2"}}]}}`,
			[]string{"/w/a.go", `<span class="del">-x := 1</span>`, `<span class="add">+x := 2</span>`}, nil},
		{"write", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t3","name":"Write","input":{"file_path":"/w/b.txt","content":"hello"}}]}}`,
			[]string{"/w/b.txt", "5 B"}, nil},
		{"read", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t4","name":"Read","input":{"file_path":"/w/c.go"}}]}}`, []string{"/w/c.go"}, nil},
		{"grep", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t5","name":"Grep","input":{"pattern":"func main","path":"/w","glob":"*.go"}}]}}`,
			[]string{"<code>func main</code>", "in /w", "(*.go)"}, nil},
		{"glob", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t6","name":"Glob","input":{"pattern":"**/*.md"}}]}}`, []string{"**/*.md"}, nil},
		{"subagent", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t7","name":"Task","input":{"description":"explore","subagent_type":"Explore","prompt":"look around"}}]}}`,
			[]string{"explore", "Explore", "look around"}, nil},
		{"nested subagent event", `{"type":"assistant","parent_tool_use_id":"t7","message":{"content":[{"type":"text","text":"inside"}]}}`,
			[]string{"nested", "inside"}, nil},
		{"todo write", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t8","name":"TodoWrite","input":{"todos":[{"content":"a","status":"completed"},{"content":"b","status":"in_progress"}]}}]}}`,
			[]string{`todo-completed">a`, `todo-in_progress">b`}, nil},
		{"task create", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t9","name":"TaskCreate","input":{"subject":"write docs"}}]}}`, []string{"write docs"}, nil},
		{"task update", `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t10","name":"TaskUpdate","input":{"taskId":"3","status":"completed"}}]}}`,
			[]string{"task 3", "completed"}, nil},
		{"short result", `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok\n"}]}}`, []string{"<pre>ok\n</pre>"}, []string{"<details"}},
		{"long result is cut with an expander", `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":` + quote(long) + `}]}}`,
			[]string{"<details", "show all 101 lines"}, nil},
		{"error result", `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":[{"type":"text","text":"boom"}]}]}}`,
			[]string{"tool-result error", "boom"}, nil},
		{"api error", `{"type":"assistant","message":{"content":[{"type":"text","text":"API Error"}],"error":"rate_limit"}}`, []string{"API error: rate_limit"}, nil},
		{"result", `{"type":"result","subtype":"success","is_error":false,"num_turns":3,"duration_ms":61000,"total_cost_usd":0.0123,"result":"All *done*"}`,
			[]string{"Result: success", "3 turns", "1m01s", "$0.0123", "<em>done</em>"}, nil},
		{"failed result", `{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["No conversation found"]}`,
			[]string{"result error", "No conversation found"}, nil},
		{"truncated stub", `{"type":"user","airut_truncated_bytes":300000}`, []string{"300000 bytes"}, nil},
		{"not JSON", `garbage <b>`, []string{"garbage &lt;b&gt;"}, nil},
		{"unknown type", `{"type":"stream_event"}`, []string{"stream_event event"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			renderEvent(&b, []byte(tc.line))
			got := b.String()
			checkContains(t, got, tc.want, tc.notWant)
		})
	}
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	big := strings.Repeat("x", maxLine+10)
	// The last line has no newline yet: it is being written.
	content := "one\n\ntwo\n" + big + "\nthree\npartial"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	type got struct {
		line string
		end  int64
	}
	read := func(from, to int64) []got {
		var out []got
		err := tail(context.Background(), path, from, to, false, nil, nil, func(l []byte, end int64) error {
			s := string(l)
			if len(s) > 40 {
				s = s[:40]
			}
			out = append(out, got{s, end})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := read(0, -1)
	if len(all) != 4 {
		t.Fatalf("lines %+v", all)
	}
	if all[0] != (got{"one", 4}) || all[1] != (got{"two", 9}) {
		t.Errorf("first lines %+v", all[:2])
	}
	if !strings.Contains(all[2].line, "airut_truncated") || all[2].end != int64(9+len(big)+1) {
		t.Errorf("big line %+v", all[2])
	}
	if all[3].line != "three" || all[3].end != int64(len(content)-len("partial")) {
		t.Errorf("last complete line %+v", all[3])
	}
	// Resume from an offset; stop at a range end.
	if r := read(4, -1); len(r) != 3 || r[0].line != "two" {
		t.Errorf("from 4: %+v", r)
	}
	if r := read(0, 9); len(r) != 2 {
		t.Errorf("to 9: %+v", r)
	}
	if r := read(0, 0); len(r) != 0 {
		t.Errorf("empty range: %+v", r)
	}
	// A missing file is an empty transcript.
	if err := tail(context.Background(), filepath.Join(dir, "none"), 0, -1, false, nil, nil, nil); err != nil {
		t.Errorf("missing file: %v", err)
	}
}

func TestTailFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.log")
	if err := os.WriteFile(path, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wake := make(chan struct{}, 1)
	finished := false
	var lines []string
	done := make(chan error)
	go func() {
		done <- tail(context.Background(), path, 0, -1, true, wake, func() bool { return finished }, func(l []byte, _ int64) error {
			lines = append(lines, string(l))
			if len(lines) == 1 {
				f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("b\nc")
				f.Close()
			}
			if len(lines) == 2 {
				f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("\n")
				f.Close()
				finished = true
			}
			return nil
		})
	}()
	wake <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, ",") != "a,b,c" {
		t.Errorf("followed lines %q", lines)
	}
}

func TestNetworkLines(t *testing.T) {
	tests := []struct{ line, verdict, host string }{
		{"ALLOWED GET https://api.github.com/repos/x -> 200 [masked: 1]", "ALLOWED", "api.github.com"},
		{"BLOCKED POST https://evil.example.com:8443/up -> 403", "BLOCKED", "evil.example.com"},
		{"ERROR GET https://down.example.com/ -> connection refused", "ERROR", "down.example.com"},
		{"STRIPPED Authorization on registry.npmjs.org (plain http)", "STRIPPED", "registry.npmjs.org"},
		{"DNS A pypi.org -> 10.0.0.2", "DNS", "pypi.org"},
	}
	for _, tc := range tests {
		if v := verdict(tc.line); v != tc.verdict {
			t.Errorf("verdict(%q) = %q", tc.line, v)
		}
		if h := lineHost(tc.line); h != tc.host {
			t.Errorf("lineHost(%q) = %q, want %q", tc.line, h, tc.host)
		}
	}
	f := netFilter{verdict: "BLOCKED", host: "evil"}
	if !f.match(tests[1].line) || f.match(tests[0].line) {
		t.Errorf("filter")
	}
}

func TestLoopbackHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "x.localhost": true, "127.0.0.1": true, "127.8.9.1": true, "::1": true, "[::1]": true,
		"0.0.0.0": false, "10.0.0.1": false, "example.com": false, "localhost.example.com": false, "127.0.0.1.nip.io": false,
	} {
		if got := isLoopbackHost(h); got != want {
			t.Errorf("isLoopbackHost(%q) = %v", h, got)
		}
	}
}

// TestRenderWarmPool: the overview's warm sandboxes panel in each of its
// states.
func TestRenderWarmPool(t *testing.T) {
	tests := []struct {
		name    string
		d       overviewData
		want    []string
		notWant []string
	}{
		{"running", overviewData{Warm: &WarmSandboxes{Size: 3, Ready: 2, Starting: 1, Claimed: 4, Replaced: 5, Warm: 6, Cold: 7}},
			[]string{`aria-labelledby="warm-pool-title"`, `<h2 id="warm-pool-title">Warm sandboxes</h2>`,
				`data-warm="ready">2 of 3<`, `data-warm="starting">1<`, `data-warm="claimed">4<`,
				`data-warm="replaced">5<`, `data-warm="warm">6<`, `data-warm="cold">7<`},
			[]string{"Disabled", "Not running"}},
		{"disabled by config", overviewData{WarmOff: true},
			[]string{"Disabled", "<code>execution.warm_sandboxes: 0</code>", "starts its network sandbox cold"},
			[]string{"data-warm=\"ready\"", "Not running"}},
		{"configured but not running", overviewData{},
			[]string{"Not running", "gateway log"},
			[]string{"data-warm=\"ready\"", "Disabled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := pageTemplates.ExecuteTemplate(&b, "overview-live", tc.d); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			checkContains(t, got, tc.want, tc.notWant)
		})
	}
}

// checkContains fails t for each of want missing from got and each of
// notWant in it.
func checkContains(t *testing.T, got string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
	for _, w := range notWant {
		if strings.Contains(got, w) {
			t.Errorf("unexpected %q in\n%s", w, got)
		}
	}
}
