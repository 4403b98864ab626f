package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// HostInfo is what the engine reports about the host, as far as it decides
// whether the sandbox's guarantees hold.
type HostInfo struct {
	Engine         string
	Version        string
	Rootless       bool
	CgroupVersion  string // "v1", "v2"
	CgroupManager  string
	Controllers    []string // cgroup controllers available to containers
	OCIRuntime     string
	OCIRuntimePath string
	// LimitsEnforceable is false when the engine accepts --memory and
	// --pids-limit but cannot apply them (rootless on cgroup v1).
	LimitsEnforceable bool
	LimitsReason      string
	ProbeErr          error
}

// ProbeHost asks the engine about the host. Failures are recorded in
// ProbeErr, and limits are then treated as not enforceable: fail closed.
func ProbeHost(ctx context.Context, rt *Runtime) HostInfo {
	hi := HostInfo{Engine: baseName(rt.Command)}
	if !rt.IsPodman() {
		// Docker enforces limits through its daemon; its info format differs.
		out, err := rt.output(ctx, "info", "--format", "{{.CgroupVersion}} {{.ServerVersion}}")
		if err != nil {
			hi.ProbeErr = err
			hi.LimitsReason = "docker info failed: " + err.Error()
			return hi
		}
		f := strings.Fields(string(out))
		if len(f) == 2 {
			hi.CgroupVersion, hi.Version = "v"+f[0], f[1]
		}
		hi.LimitsEnforceable = true
		return hi
	}
	out, err := rt.output(ctx, "info", "--format", "json")
	if err != nil {
		hi.ProbeErr = err
		hi.LimitsReason = "podman info failed: " + err.Error()
		return hi
	}
	var info struct {
		Host struct {
			CgroupManager     string   `json:"cgroupManager"`
			CgroupVersion     string   `json:"cgroupVersion"`
			CgroupControllers []string `json:"cgroupControllers"`
			OCIRuntime        struct {
				Name string `json:"name"`
				Path string `json:"path"`
			} `json:"ociRuntime"`
			Security struct {
				Rootless bool `json:"rootless"`
			} `json:"security"`
		} `json:"host"`
		Version struct {
			Version string `json:"Version"`
		} `json:"version"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		hi.ProbeErr = fmt.Errorf("parse podman info: %w", err)
		hi.LimitsReason = hi.ProbeErr.Error()
		return hi
	}
	hi.Version = info.Version.Version
	hi.Rootless = info.Host.Security.Rootless
	hi.CgroupVersion = info.Host.CgroupVersion
	hi.CgroupManager = info.Host.CgroupManager
	hi.Controllers = info.Host.CgroupControllers
	hi.OCIRuntime = info.Host.OCIRuntime.Name
	hi.OCIRuntimePath = info.Host.OCIRuntime.Path
	hi.LimitsEnforceable, hi.LimitsReason = limitsVerdict(hi.Rootless, hi.CgroupVersion, hi.Controllers)
	return hi
}

// limitsVerdict decides whether --memory and --pids-limit take effect.
func limitsVerdict(rootless bool, cgroupVersion string, controllers []string) (bool, string) {
	switch {
	case rootless && cgroupVersion == "v1":
		return false, "rootless Podman cannot apply resource limits on cgroup v1; " +
			"run rootful, or boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
	case rootless && !(hasController(controllers, "memory") && hasController(controllers, "pids")):
		return false, "the memory and pids cgroup controllers are not delegated to this user " +
			"(systemd: Delegate=memory pids in user@.service)"
	}
	return true, ""
}

// LocalHostInfo answers the limits question from /sys and the effective
// user, without asking the engine. Unreadable files count as "cannot
// enforce": fail closed.
func LocalHostInfo(rt *Runtime) HostInfo {
	hi := HostInfo{Engine: baseName(rt.Command)}
	if !rt.IsPodman() {
		// Docker's daemon applies limits itself.
		hi.LimitsEnforceable = true
		return hi
	}
	hi.Rootless = os.Geteuid() != 0
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == cgroup2Magic {
		hi.CgroupVersion = "v2"
		path := "/sys/fs/cgroup/cgroup.controllers"
		if hi.Rootless {
			uid := strconv.Itoa(os.Geteuid())
			path = "/sys/fs/cgroup/user.slice/user-" + uid + ".slice/user@" + uid + ".service/cgroup.controllers"
		}
		if b, err := os.ReadFile(path); err == nil {
			hi.Controllers = strings.Fields(string(b))
		}
	} else {
		hi.CgroupVersion = "v1"
	}
	hi.LimitsEnforceable, hi.LimitsReason = limitsVerdict(hi.Rootless, hi.CgroupVersion, hi.Controllers)
	return hi
}

const cgroup2Magic = 0x63677270

// cpuLimitWorks reports whether --cpus can be passed: everywhere but a
// rootless cgroup v2 host that did not delegate the cpu controller, where
// the engine refuses the flag instead of ignoring it.
func (h *HostInfo) cpuLimitWorks() bool {
	return !(h.Rootless && h.CgroupVersion == "v2" && !hasController(h.Controllers, "cpu"))
}

func hasController(cs []string, c string) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// UnenforcedLimits names the limits in l that this host would ignore.
func (h *HostInfo) UnenforcedLimits(l Limits) []string {
	if h.LimitsEnforceable {
		return nil
	}
	var out []string
	if l.Memory != "" {
		out = append(out, "memory="+l.Memory)
	}
	if l.CPUs != "" {
		out = append(out, "cpus="+l.CPUs)
	}
	if l.PidsLimit > 0 {
		out = append(out, fmt.Sprintf("pids_limit=%d", l.PidsLimit))
	}
	return out
}
