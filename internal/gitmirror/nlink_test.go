package gitmirror

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

type inode struct{ dev, ino uint64 }

// inodes maps every file under root to its path by device and inode.
func inodes(t *testing.T, root string) map[inode]string {
	t.Helper()
	m := map[inode]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			t.Skip("no inode numbers on this platform")
		}
		m[inode{uint64(st.Dev), st.Ino}] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
