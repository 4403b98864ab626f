package repoconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"testing/fstest"

	"github.com/airut/airut/internal/allowlist"
)

// ContainerContext returns the build context under containerPath
// (default .airut/container) and checks that it holds a Dockerfile.
func ContainerContext(ctx context.Context, src Source, containerPath string) (fs.FS, error) {
	if containerPath == "" {
		containerPath = DefaultContainerPath
	}
	tree, err := src.Tree(ctx, containerPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no %s/Dockerfile: add a Dockerfile describing the agent's container", src.Describe(), containerPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read container context: %w", err)
	}
	// The build context must be plain files: a symlink would make the
	// build read whatever it points at.
	err = fs.WalkDir(tree, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type().IsRegular() {
			return err
		}
		return fmt.Errorf("%s: %s is a symlink or special file; the container context must hold plain files",
			src.Describe(), path.Join(containerPath, name))
	})
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(tree, "Dockerfile"); err != nil {
		return nil, fmt.Errorf("%s: no %s: add a Dockerfile describing the agent's container", src.Describe(), path.Join(containerPath, "Dockerfile"))
	}
	return tree, nil
}

// LoadSandbox reads .airut/sandbox.yaml; a missing file gives the defaults.
func LoadSandbox(ctx context.Context, src Source, env LookupEnv) (*Sandbox, error) {
	data, err := src.ReadFile(ctx, SandboxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return &Sandbox{NetworkSandbox: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", SandboxPath, err)
	}
	return ParseSandbox(data, SandboxPath, env)
}

// WithFile returns a copy of tree with name set to data: airut-sandbox's
// --dockerfile replaces the context's Dockerfile this way, so the build
// still sees only the materialised context.
func WithFile(tree fs.FS, name string, data []byte) (fs.FS, error) {
	out := fstest.MapFS{}
	err := fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(tree, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: b, Mode: info.Mode()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out[name] = &fstest.MapFile{Data: data, Mode: 0o644}
	return out, nil
}

// LoadAllowlist reads and strictly validates .airut/network-allowlist.yaml.
// A missing file is an error: the network sandbox never falls back to an
// open network. It returns the raw bytes (what the proxy is given) too.
func LoadAllowlist(ctx context.Context, src Source) ([]byte, *allowlist.Allowlist, error) {
	data, err := src.ReadFile(ctx, AllowlistPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%s: %s is missing: the network sandbox needs it (add one, or set network_sandbox: false to run without the sandbox)", src.Describe(), AllowlistPath)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", AllowlistPath, err)
	}
	al, err := allowlist.Parse(data, AllowlistPath)
	if err != nil {
		return nil, nil, err
	}
	return data, al, nil
}
