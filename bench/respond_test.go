package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/state"
)

// BenchmarkRespondTelemetry measures what the respond stage does with the
// telemetry the respond-feed stage sends it: the simulator's stream at its
// defaults (two tenants of 300 devices, 2,000 records a second of stream
// time) normalized, its facts turned into respond.Signals as respond-feed
// does, and applied to a responder over a real Pebble store, one store
// transaction per STITCH_BENCH_RESPOND_TX records (default 2,000: the
// default commit interval of one second at the simulator's rate) with the
// normalizer flushed at each, as the pipeline's time-bounded batches are.
// STITCH_BENCH_RESPOND_RECORDS records in all (default 300,000). Only the
// Apply calls are timed. "files" applies the files seen on devices alone
// (Responder.fileSeen); "files+blocks" the same for tenants that have 20
// files blocked (operators' indicators of hashes the stream does not
// have), as tenants have once incidents blocked files; "feed" everything
// respond-feed sends (attachments, files, device groups, network
// sightings, messages).
//
// Metrics: ns/file is the Apply time per file sighting ("files") and
// ns/record per telemetry record; cpu-ns/file the process's CPU time
// (getrusage, Pebble's background work included) during the Apply calls
// per file sighting; changelog/record is how many changelog
// records the transactions make per telemetry record: the distinct keys
// each transaction wrote, as pipeline/changelog.go sends the last write of
// each timeless key of a transaction. devfile-keys/record is how many
// distinct (tenant, file, device) entries the device index got, per
// record: the changelog records that no rewrite rule can avoid.
//
//	go test ./bench -run XXX -bench RespondTelemetry -benchtime 1x
func BenchmarkRespondTelemetry(b *testing.B) {
	records := envInt("STITCH_BENCH_RESPOND_RECORDS", 300_000)
	perTx := envInt("STITCH_BENCH_RESPOND_TX", 2_000)
	txs := respondStream(b, records, perTx)
	tenants := map[string]bool{}
	for _, sigs := range txs {
		for _, s := range sigs {
			tenants[s.Tenant] = true
		}
	}
	for _, kind := range []string{"files", "files+blocks", "feed"} {
		b.Run(kind, func(b *testing.B) {
			var files int
			var took, cpu time.Duration
			var changes, keys int
			for range b.N {
				files, changes, took, cpu = 0, 0, 0, 0
				st, err := state.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				tx := state.NewTxStore(st)
				r := respond.New(tx, nil)
				if kind == "files+blocks" {
					blockFiles(b, tx, r, tenants)
				}
				seen, indexed := map[string]struct{}{}, map[string]struct{}{}
				for _, sigs := range txs {
					if err := tx.Begin(); err != nil {
						b.Fatal(err)
					}
					for _, s := range sigs {
						sig := s // Apply lowers the hashes in place: a copy of the slice headers is enough, they are lower already
						if kind != "feed" {
							sig = respond.Signal{Tenant: s.Tenant, Files: s.Files}
							if len(sig.Files) == 0 {
								continue
							}
						}
						files += len(sig.Files)
						start, c0 := time.Now(), cpuTime()
						if _, err := r.Apply(&sig); err != nil {
							b.Fatal(err)
						}
						took, cpu = took+time.Since(start), cpu+cpuTime()-c0
					}
					clear(seen)
					if err := tx.Changes(func(_ bool, k, _ []byte) error {
						if _, ok := state.ParseOffsetKey(k); !ok {
							seen[string(k)] = struct{}{}
						}
						if len(k) > 1 && k[1] == 'D' { // the device index (operators/respond)
							indexed[string(k)] = struct{}{}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					changes += len(seen)
					if err := tx.CommitAt(nil); err != nil {
						b.Fatal(err)
					}
				}
				keys = len(indexed)
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(took.Nanoseconds())/float64(max(files, 1)), "ns/file")
			b.ReportMetric(float64(took.Nanoseconds())/float64(records), "ns/record")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(files, 1)), "cpu-ns/file")
			b.ReportMetric(float64(changes)/float64(records), "changelog/record")
			b.ReportMetric(float64(files)/float64(records), "files/record")
			b.ReportMetric(float64(keys)/float64(records), "devfile-keys/record")
		})
	}
}

// respondStream is the simulator's stream as the respond stage receives
// it, split in transactions of perTx records.
func respondStream(tb testing.TB, records, perTx int) [][]respond.Signal {
	sim := simulator.New(simulator.Seed(14))
	n := normalize.New()
	defer n.Close()
	var txs [][]respond.Signal
	var cur []respond.Signal
	emit := func(bt normalize.Batch) {
		defer bt.Release()
		f := correlate.Extract(bt)
		if f == nil {
			return
		}
		// Through the facts topic's encoding, as respond-feed reads it:
		// Extract's strings are views of the batch, released here.
		v, err := f.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		if f, err = correlate.UnmarshalFacts(v); err != nil {
			tb.Fatal(err)
		}
		s := respond.Signal{Tenant: f.Tenant, Attachments: f.Attachments, DeviceGroups: f.DeviceGroups,
			Network: respond.Reaches(f), Mail: f.Mail}
		for _, x := range f.Files { // as pipeline/respond_stage.go's filesSeen
			s.Files = append(s.Files, respond.FileSeen{Hash: x.SHA256, DeviceID: x.DeviceID, DeviceName: x.DeviceName, Time: x.Time})
		}
		if len(s.Attachments)+len(s.Files)+len(s.DeviceGroups)+len(s.Network)+len(s.Mail) > 0 {
			cur = append(cur, s)
		}
	}
	dead := func(d normalize.DeadLetter) { tb.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
	for i := range records {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, dead)
		if (i+1)%perTx == 0 || i == records-1 {
			n.Flush(emit)
			txs, cur = append(txs, cur), nil
		}
	}
	return txs
}

// blockFiles gives each tenant 20 blocked files (operators' indicators),
// in a transaction of their own.
func blockFiles(b *testing.B, tx *state.TxStore, r *respond.Responder, tenants map[string]bool) {
	if err := tx.Begin(); err != nil {
		b.Fatal(err)
	}
	at := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	for tenant := range tenants {
		sig := respond.Signal{Tenant: tenant}
		for i := range 20 {
			sig.Indicators = append(sig.Indicators, respond.Indicator{TenantID: tenant, Type: respond.IndicatorSHA256,
				Value: fmt.Sprintf("%064x", i+1), By: "bench", Time: at})
		}
		if _, err := r.Apply(&sig); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.CommitAt(nil); err != nil {
		b.Fatal(err)
	}
}
