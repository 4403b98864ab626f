package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/testkit"
)

var (
	airutOnce sync.Once
	airutBin  string
	airutErr  error
)

// airutBinary builds cmd/airut once per test process.
func airutBinary(t testing.TB) string {
	t.Helper()
	airutOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airut-gwtest-bin-")
		if err != nil {
			airutErr = err
			return
		}
		airutBin = filepath.Join(dir, "airut")
		cmd := exec.Command("go", "build", "-o", airutBin, "./cmd/airut")
		cmd.Dir = testkit.ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			airutErr = err
			airutBin = string(out)
		}
	})
	if airutErr != nil {
		t.Fatalf("build airut: %v\n%s", airutErr, airutBin)
	}
	return airutBin
}

// proc is an `airut run` process on the harness.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

// startProcess runs `airut run` with a config file that points at the
// harness's mail servers; state goes to h.state.
func (h *harness) startProcess(cfgYAML []byte) *proc {
	h.t.Helper()
	dir := filepath.Join(filepath.Dir(h.state), "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "airut.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		h.t.Fatal(err)
	}
	// Secrets come from .env beside the config, as an operator keeps them.
	var env strings.Builder
	for k, v := range h.env() {
		env.WriteString(k + "=" + v + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env.String()), 0o600); err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(airutBinary(h.t), "--config", cfgPath, "run", "--prefix", h.prefix)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Dir(h.state),
		"AIRUT_PROXY_BINARY="+filepath.Join(h.bins, "airut-proxy"))
	cmd.Stderr = h.logs
	cmd.Stdout = h.logs
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	h.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) stop(t testing.TB, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("airut run did not exit after %v", sig)
		return nil
	}
}

func newProcessHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.state = filepath.Join(t.TempDir(), "airut") // $XDG_STATE_HOME/airut
	return h
}

// TestCrashRestart kills `airut run` with SIGKILL while a task runs. After
// a restart the message is processed again in the same conversation, with
// no second acknowledgement, answered once, and the killed run's
// container is swept.
func TestCrashRestart(t *testing.T) {
	h := newProcessHarness(t)
	cfg := h.configYAML(harnessOpts{}, []tmplRepo{{ID: "app", Host: "127.0.0.1"}})
	p1 := h.startProcess(cfg)

	h.send(outMail{Subject: "survive", Body: "@@run echo run >> /storage/runs\n" + blockScript("survived the crash")})
	ack := h.waitMail(1)
	conv := ack.Subject[strings.Index(ack.Subject, "[ID:")+4 : strings.Index(ack.Subject, "]")]
	h.waitStarted(conv)
	_ = p1.stop(t, syscall.SIGKILL)

	p2 := h.startProcess(cfg)
	runs := filepath.Join(h.convDir(conv), "storage", "runs")
	waitFor(t, "the task to run again after the restart", func() bool {
		data, _ := os.ReadFile(runs)
		return strings.Count(string(data), "run\n") >= 2
	})
	h.release(conv)
	reply := h.waitMail(2)
	if !strings.Contains(reply.Text, "survived the crash") {
		t.Errorf("mail after restart: got %q; want the reply, not a second acknowledgement", reply.Text)
	}
	h.waitInboxEmpty()
	if err := p2.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("airut run after SIGTERM: %v; want a clean exit", err)
	}

	// A third start must not answer the message again; a new message
	// proves the inbox was read.
	p3 := h.startProcess(cfg)
	h.send(outMail{Subject: "after", Body: "@@reply fine"})
	_ = h.waitMail(3)
	last := h.waitMail(4)
	if !strings.Contains(last.Text, "fine") {
		t.Errorf("fourth mail: got %q; want the new message's reply", last.Text)
	}
	h.waitInboxEmpty()
	if err := p3.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("airut run after SIGTERM: %v", err)
	}
	n := 0
	for _, m := range h.smtp.Messages() {
		if strings.Contains(string(m.Data), "survived the crash") {
			n++
		}
	}
	if n != 1 || len(h.smtp.Messages()) != 4 {
		t.Errorf("mails: got %d in all, %d replies to the crashed task; want 4 and 1", len(h.smtp.Messages()), n)
	}
	if !strings.Contains(h.logs.String(), "removed leftovers of a previous run") {
		t.Errorf("log does not show the killed run's container being swept")
	}
	if t.Failed() {
		t.Logf("log:\n%s", h.logs.String())
	}
}

// TestIdleMemory reports the resident memory of an idle `airut run` with
// three repos configured. It asserts nothing about the size: the number is
// for the report.
func TestIdleMemory(t *testing.T) {
	h := newProcessHarness(t)
	// The inbox of each repo must differ by server and user: the third
	// repo's server has no listener, and its channel keeps reconnecting,
	// as with a mail server that is down.
	cfg := h.configYAML(harnessOpts{}, []tmplRepo{{ID: "one", Host: "127.0.0.1"}, {ID: "two", Host: "localhost"}, {ID: "three", Host: "127.0.0.2"}})
	p := h.startProcess(cfg)
	waitFor(t, "two repos to connect", func() bool { return strings.Count(h.logs.String(), "imap connected") >= 2 })
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var rss string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
	}
	if rss == "" {
		t.Fatalf("no VmRSS in /proc/pid/status")
	}
	t.Logf("airut run, idle, 3 repos: VmRSS %s", rss)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("airut run after SIGTERM: %v", err)
	}
}
