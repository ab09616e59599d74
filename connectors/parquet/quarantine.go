package parquet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// quarantined is the .reason.json beside a file in _quarantine.
type quarantined struct {
	Segment string `json:"segment"`
	Final   string `json:"final"` // where it was to be published
	Rows    int64  `json:"rows"`
	Reason  string `json:"reason"`
	Time    string `json:"time"`
}

// quarantine moves the staged file f of a committed segment, which could
// not be published because of cause, to _quarantine/ with a .reason.json
// beside it, logs it and reports it to OnQuarantine. Its offsets stay
// committed: the rows are in the quarantined file, not re-read.
func (w *Writer) quarantine(segment string, f manifestFile, cause error) error {
	qdir := filepath.Join(w.dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(f.Staged), tmpExt)
	reason := cause.Error()
	data, err := json.Marshal(quarantined{Segment: segment, Final: f.Final, Rows: f.Rows, Reason: reason,
		Time: w.cfg.clock().UTC().Format("2006-01-02T15:04:05Z")})
	if err != nil {
		return err
	}
	// The reason first: a crash between the two leaves the staged file
	// and the manifest, and the next Open quarantines it again.
	if err := writeAtomic(filepath.Join(qdir, name+".reason.json"), data); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(w.dir, f.Staged), filepath.Join(qdir, name)); err != nil {
		return fmt.Errorf("parquet: quarantine %s: %w", f.Final, err)
	}
	if err := syncDir(qdir); err != nil {
		return err
	}
	w.cfg.log.Error("hunting: file could not be published; quarantined", "file", f.Final, "rows", f.Rows,
		"quarantine", filepath.Join(quarantineDir, name), "reason", reason)
	if w.cfg.quarantined != nil {
		w.cfg.quarantined(f.Final, reason)
	}
	return nil
}
