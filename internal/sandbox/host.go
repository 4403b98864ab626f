package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
	switch {
	case hi.Rootless && hi.CgroupVersion == "v1":
		hi.LimitsReason = "rootless Podman cannot apply resource limits on cgroup v1; " +
			"run rootful, or boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
	case hi.Rootless && !(hasController(hi.Controllers, "memory") && hasController(hi.Controllers, "pids")):
		hi.LimitsReason = "the memory and pids cgroup controllers are not delegated to this user; " +
			"see https://github.com/containers/podman/blob/main/troubleshooting.md (cgroup delegation)"
	default:
		hi.LimitsEnforceable = true
	}
	return hi
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
