package testkit

import (
	"os/exec"
	"strings"
	"testing"
)

// sharedImages are the images every test builds once and reuses (BaseImage,
// ClaudeImage, GitImage): never removed by RemoveImages.
var sharedImages = map[string]bool{"airut-test-base": true, "airut-test-claude": true, "airut-test-git": true}

// RemoveImages removes, when the test ends, the images named
// localhost/<name> or localhost/<name>-…: those one gateway of a harness
// built (name is its prefix and ImageCache.Instance, "<prefix>-<instance>",
// so no other test's images match). Register it before the gateway starts:
// cleanups run last first, so the removal comes after the gateway has
// stopped. Without it every harness left its repo, proxy and task images,
// a few hundred a run, and the engine slowed down with them.
// An image still in use (a leftover container, which the leftover check
// reports) is kept and logged.
func RemoveImages(t testing.TB, engine, name string) {
	t.Helper()
	t.Cleanup(func() {
		out, err := exec.Command(engine, "images", "--format", "{{.Repository}}:{{.Tag}}").Output()
		if err != nil {
			t.Logf("list images to remove: %v", err)
			return
		}
		var refs []string
		for _, ref := range strings.Fields(string(out)) {
			repo, _, _ := strings.Cut(strings.TrimPrefix(ref, "localhost/"), ":")
			if (repo == name || strings.HasPrefix(repo, name+"-")) && !sharedImages[repo] {
				refs = append(refs, ref)
			}
		}
		if len(refs) == 0 {
			return
		}
		if out, err := exec.Command(engine, append([]string{"rmi"}, refs...)...).CombinedOutput(); err != nil {
			t.Logf("remove images %s: %v: %s", strings.Join(refs, " "), err, strings.TrimSpace(string(out)))
		}
	})
}
