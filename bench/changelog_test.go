package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// BenchmarkCorrelateChangelog measures what the changelog adds to a
// correlate transaction, side by side in one run: one op is a transaction
// of a telemetry-heavy facts batch (2,000 new sightings of 2 observers, 5
// alerts of 5 entities, as stage 1 sends per commit interval), committed
// to Pebble; "changes" also reads the transaction's writes back
// (state.Batch.Changes), routes each to its partition and copies it into a
// record buffer, as pipeline/changelog.go does before producing.
//
//	go test ./bench -run XXX -bench CorrelateChangelog -benchtime 200x
func BenchmarkCorrelateChangelog(b *testing.B) {
	for _, withChanges := range []bool{false, true} {
		name := "apply"
		if withChanges {
			name = "apply+changes"
		}
		b.Run(name, func(b *testing.B) {
			_, c := openCorrelator(b)
			base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
			partOf := func([]byte) int32 { return 0 }
			var changes, bytes int
			for i := 0; b.Loop(); i++ {
				at := base.Add(time.Duration(i) * time.Second)
				f := &correlate.Facts{Tenant: "bench-tenant", MaxTime: at}
				for j := range 2000 {
					n := i*2000 + j
					f.Sightings = append(f.Sightings, correlate.Sighting{
						Entity: fmt.Sprintf("ip:10.%d.%d.%d", n>>16&255, n>>8&255, n&255), Bucket: state.Bucket(at, correlate.PrevalenceBucket),
						Observers: []string{fmt.Sprintf("device:id:%040x", n%5000), fmt.Sprintf("user:oid:%d", n%3000)},
					})
				}
				for j := range 5 {
					f.Alerts, f.Evidence = appendAlert(f.Alerts, f.Evidence, i*5+j, at)
				}
				if err := c.Begin(); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ApplyOffset(0, f, "facts", int64(i)); err != nil {
					b.Fatal(err)
				}
				if withChanges {
					err := c.Changes(func(del bool, k, v []byte) error {
						if _, _, err := correlate.ChangelogRoute(k, partOf); err != nil {
							return err
						}
						buf := make([]byte, 0, len(k)+1+len(v))
						buf = append(append(append(buf, k...), 's'), v...)
						changes++
						bytes += len(buf)
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				if err := c.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			if withChanges {
				b.ReportMetric(float64(changes)/float64(b.N), "changes/op")
				b.ReportMetric(float64(bytes)/float64(changes), "bytes/change")
			}
		})
	}
}
