package parquet

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Discard removes what writers keep in dir of a stream that is gone (a
// former cluster's, or topics since recreated): the manifest (every
// partition's commit and lock), the staging files, and the tables'
// partitions, whose file names the new stream's offsets would reuse.
// Anything else in dir stays (quarantined files, files stitch does not
// write). No writer may have dir open.
func Discard(dir string) error {
	paths := []string{filepath.Join(dir, manifestDir), filepath.Join(dir, stagingDir)}
	for _, t := range normalize.Tables() {
		paths = append(paths, filepath.Join(dir, t))
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("parquet: discard %s: %w", dir, err)
		}
	}
	return nil
}
