// Package shareddata finds the public reference material that tests may read
// beside the project root (../shared/data), and skips a test with a clear
// message where it is absent. Nothing from it is ever copied into the repo.
package shareddata

import (
	"os"
	"path/filepath"
	"testing"
)

// Root is the module root: the nearest directory above the working directory
// holding go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Path returns ../shared/data/<rel> from the module root, or skips the test
// when it is not there.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Root(t), "..", "shared", "data", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("reference data %s is absent (%v): this test needs ../shared/data beside the project root", rel, err)
	}
	return p
}
