// Command gen writes configs/stitch.yaml (the defaults written out) and the
// key tables of configs/README.md from the tags of the config structs, so
// that neither can drift from what stitch does. TestGeneratedFilesInStep
// fails when they are out of step.
//
// Usage: go run ./gen <configs dir>   (go generate ./internal/appconfig)
package main

import (
	"fmt"
	"os"

	"github.com/stitch-xdr/stitch/internal/appconfig"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen <configs dir>")
		os.Exit(2)
	}
	if err := appconfig.WriteFiles(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
