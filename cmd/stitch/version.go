package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

func init() {
	register(command{
		name:     "version",
		summary:  "Print the version of stitch, the commit it was built from and the Go version.",
		synopsis: "",
		example:  "stitch version",
		run:      versionCmd,
	})
}

func versionCmd(_ context.Context, args []string) error {
	fs := newFlagSet("version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	fmt.Fprint(os.Stdout, versionText(debug.ReadBuildInfo()))
	return nil
}

// versionText is the module version (or "devel"), the VCS revision, its time
// and whether the tree was modified, and the Go version, from build info.
func versionText(bi *debug.BuildInfo, ok bool) string {
	version, commit, when, dirty := "devel", "unknown", "", false
	goVersion := runtime.Version()
	if ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += " (modified)"
	}
	if when != "" {
		commit += " " + when
	}
	return fmt.Sprintf("stitch %s\ncommit %s\ngo %s\n", version, commit, goVersion)
}
