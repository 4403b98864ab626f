package config

import (
	_ "embed"
	"slices"
)

//go:embed starter.yaml
var starter []byte

// StarterConfig returns a commented starter airut.yaml: every section
// explained, secrets as !env references. It loads once AIRUT_EMAIL_PASSWORD
// is set; ANTHROPIC_API_KEY and GH_TOKEN are left out while unset.
func StarterConfig() []byte { return slices.Clone(starter) }
