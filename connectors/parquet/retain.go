package parquet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultRetention is how long hunting partitions are kept, as in advanced
// hunting.
const DefaultRetention = 30 * 24 * time.Hour

// Retain deletes the date= partitions whose whole day (event time, from the
// path) ends before now-olderThan (DefaultRetention when olderThan <= 0).
// It is safe beside a running Writer: it removes only finished *.parquet
// files, never staged ones, and removes directories only when empty (a
// writer that just created one keeps it). It returns the removed paths.
func Retain(ctx context.Context, dir string, olderThan time.Duration, now time.Time, log *slog.Logger) (removed []string, err error) {
	if olderThan <= 0 {
		olderThan = DefaultRetention
	}
	if log == nil {
		log = slog.Default()
	}
	cutoff := now.UTC().Add(-olderThan)
	tables, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("retention: %w", err)
	}
	var errs []error
	for _, t := range tables {
		if !t.IsDir() || strings.HasPrefix(t.Name(), "_") || strings.HasPrefix(t.Name(), ".") {
			continue
		}
		tdir := filepath.Join(dir, t.Name())
		tenants, err := os.ReadDir(tdir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, tn := range tenants {
			if !tn.IsDir() || !strings.HasPrefix(tn.Name(), "tenant=") {
				continue
			}
			ndir := filepath.Join(tdir, tn.Name())
			dates, err := os.ReadDir(ndir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, d := range dates {
				if err := ctx.Err(); err != nil {
					return removed, err
				}
				day, ok := strings.CutPrefix(d.Name(), "date=")
				if !d.IsDir() || !ok {
					continue
				}
				start, perr := time.Parse("2006-01-02", day)
				if perr != nil {
					// The writer makes none (years 0001-9999 only): one from
					// elsewhere, or from a writer before that bound, is kept
					// and said so rather than silently never expiring.
					log.Warn("hunting retention: not a date; partition kept", "partition", filepath.Join(ndir, d.Name()))
					continue
				}
				if start.Add(24 * time.Hour).After(cutoff) {
					continue // some of the day is still kept
				}
				ddir := filepath.Join(ndir, d.Name())
				files, rerr := removeFinished(ddir)
				removed = append(removed, files...)
				if rerr != nil {
					errs = append(errs, rerr)
				}
				log.Info("hunting retention: removed partition", "partition", ddir, "files", len(files))
			}
			os.Remove(ndir) // only succeeds when empty
		}
		os.Remove(tdir)
	}
	return removed, errors.Join(errs...)
}

// removeFinished removes the *.parquet files under dir and then the
// directories left empty, bottom up.
func removeFinished(dir string) ([]string, error) {
	var removed, dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if strings.HasSuffix(p, ".parquet") {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			removed = append(removed, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i]) // fails, harmlessly, when something else lives there
	}
	if err != nil {
		return removed, fmt.Errorf("retention: %s: %w", dir, err)
	}
	return removed, nil
}

// RetentionLoop runs Retain every interval until ctx ends, logging failures.
func RetentionLoop(ctx context.Context, dir string, every, olderThan time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := Retain(ctx, dir, olderThan, time.Now(), log); err != nil && ctx.Err() == nil {
			log.Error("hunting retention failed", "dir", dir, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
