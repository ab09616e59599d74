package appconfig

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stitch-xdr/stitch/internal/conf"
)

// The generated files, relative to the configs directory.
const (
	YAMLFile   = "stitch.yaml"
	README     = "README.md"
	regenerate = "go generate ./internal/appconfig"
)

// The lines that enclose the generated key tables in configs/README.md.
const (
	beginTables = "<!-- The key tables are generated from the config structs' tags by `" + regenerate + "`; edit the tags, not the tables. -->"
	endTables   = "<!-- End of the generated key tables. -->"
)

// Files renders the generated files from the defaults, given the configs
// directory's README (whose prose around the key tables is kept): the
// defaults written out as YAML, and the README with its tables replaced.
func Files(readme []byte) (map[string][]byte, error) {
	def := Default()
	yaml := conf.YAML(def,
		"stitch: the defaults, written out. Every key is documented in configs/README.md.",
		"`stitch run` needs no config at all; copy this file to change what you need.",
		"Generated from the config structs' tags by `"+regenerate+"`; do not edit.",
	)
	doc, err := conf.Splice(readme, beginTables, endTables, append([]byte("\n"), append(conf.Markdown(def), '\n')...))
	if err != nil {
		return nil, fmt.Errorf("configs/%s: %w", README, err)
	}
	return map[string][]byte{YAMLFile: yaml, README: doc}, nil
}

// WriteFiles regenerates the files in the configs directory dir.
func WriteFiles(dir string) error {
	readme, err := os.ReadFile(filepath.Join(dir, README))
	if err != nil {
		return err
	}
	files, err := Files(readme)
	if err != nil {
		return err
	}
	for name, data := range files {
		old, _ := os.ReadFile(filepath.Join(dir, name))
		if bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
