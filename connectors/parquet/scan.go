package parquet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// ScanOptions narrows Scan to some partitions.
type ScanOptions struct {
	// Tables to read (all when empty).
	Tables []string
	// Tenant, when set, is a tenant id or its hashed element: only its
	// directory is read.
	Tenant string
	// Since, when set, skips partitions of hours before it (event time).
	Since time.Time
	// BatchRows is the most rows per batch (default 8192).
	BatchRows int64
}

// Scan reads the published hunting partitions under dir
// (<Table>/tenant=<t>/date=YYYY-MM-DD/hour=HH/part-*.parquet, never the
// staging or quarantine directories) and calls fn with their rows as
// batches of their table and tenant, in table, tenant and hour order: how
// `stitch rules test --hunting` backtests rules over what the sink kept.
// A batch is released after fn returns.
func Scan(ctx context.Context, dir string, o ScanOptions, fn func(normalize.Batch) error) error {
	if o.BatchRows <= 0 {
		o.BatchRows = 8192
	}
	tables := o.Tables
	if len(tables) == 0 {
		tables = normalize.Tables()
	}
	tenantDir := ""
	if o.Tenant != "" {
		tenantDir = "tenant=" + o.Tenant
		if !IsHashedTenant(o.Tenant) {
			tenantDir = "tenant=" + TenantElement(o.Tenant)
		}
	}
	for _, table := range tables {
		root := filepath.Join(dir, table)
		if _, err := os.Stat(root); os.IsNotExist(err) {
			continue
		}
		var files []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			parts := strings.Split(rel, string(filepath.Separator))
			if d.IsDir() {
				if len(parts) == 1 && tenantDir != "" && parts[0] != "." && parts[0] != tenantDir {
					return filepath.SkipDir
				}
				if len(parts) == 3 && !o.Since.IsZero() {
					if t, ok := partitionHour(parts[1], parts[2]); ok && t.Add(time.Hour).Before(o.Since) {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if len(parts) == 4 && strings.HasSuffix(p, ".parquet") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("parquet: scan %s: %w", root, err)
		}
		sort.Strings(files)
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, f)
			tenant := strings.TrimPrefix(strings.Split(rel, string(filepath.Separator))[0], "tenant=")
			if t, err := url.PathUnescape(tenant); err == nil && !IsHashedTenant(tenant) {
				tenant = t
			}
			if err := scanFile(ctx, f, table, tenant, o.BatchRows, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func partitionHour(date, hour string) (time.Time, bool) {
	d, ok1 := strings.CutPrefix(date, "date=")
	h, ok2 := strings.CutPrefix(hour, "hour=")
	if !ok1 || !ok2 {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02 15", d+" "+h)
	return t, err == nil
}

func scanFile(ctx context.Context, path, table, tenant string, rows int64, fn func(normalize.Batch) error) error {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return fmt.Errorf("parquet: open %s: %w", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: rows}, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("parquet: read %s: %w", path, err)
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("parquet: read %s: %w", path, err)
	}
	defer rr.Release()
	for rr.Next() {
		rec := rr.Record()
		rec.Retain()
		b := normalize.Batch{Table: table, Tenant: tenant, Record: rec}
		err := fn(b)
		b.Release()
		if err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parquet: read %s: %w", path, err)
	}
	return nil
}
