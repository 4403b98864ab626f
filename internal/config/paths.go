package config

import (
	"errors"
	"path/filepath"
)

// FileName is the server config file's name inside the config directory.
const FileName = "airut.yaml"

// DotEnvName is the file beside the config whose variables !env can read.
const DotEnvName = ".env"

// DefaultPath returns $XDG_CONFIG_HOME/airut/airut.yaml, falling back to
// ~/.config/airut/airut.yaml when XDG_CONFIG_HOME is unset or relative (the
// XDG spec says relative values are to be ignored). env is usually
// os.LookupEnv.
func DefaultPath(env Environ) (string, error) {
	dir, err := xdgDir(env, "XDG_CONFIG_HOME", ".config")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "airut", FileName), nil
}

// StateDir returns $XDG_STATE_HOME/airut, falling back to
// ~/.local/state/airut.
func StateDir(env Environ) (string, error) {
	dir, err := xdgDir(env, "XDG_STATE_HOME", filepath.Join(".local", "state"))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "airut"), nil
}

func xdgDir(env Environ, name, fallback string) (string, error) {
	if env == nil {
		env = noEnv
	}
	if v, ok := env(name); ok && filepath.IsAbs(v) {
		return v, nil
	}
	home, ok := env("HOME")
	if !ok || home == "" {
		return "", errors.New("cannot locate home directory: HOME is not set")
	}
	return filepath.Join(home, fallback), nil
}
