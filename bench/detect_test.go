package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/shareddata"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/detect"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkDetect measures custom detections over DeviceProcessEvents
// batches, on one goroutine: the simulator's process events (20,000,
// pre-generated) normalized into 8,192-row batches with no rules, the same
// with at least 100 Sigma process_creation rules evaluated on every batch,
// and the rules alone over batches normalized before the timer. The rules
// are SigmaHQ's process_creation rules in ../shared/data/sigma, loaded
// again under new ids until there are 100.
//
//	go test ./bench -run XXX -bench Detect -benchtime 20x
func BenchmarkDetect(b *testing.B) {
	set := processRules(b, 100)
	recs := processRecords(20_000)
	b.Logf("%d rules (%d distinct), %d records", len(set.Rules), distinct(set), len(recs))
	run := func(b *testing.B, ev *detect.Evaluator) {
		n := normalize.New()
		defer n.Close()
		matches := 0
		emit := func(bt normalize.Batch) {
			if ev != nil {
				ev.Eval(bt, func(*detect.Rule, int) { matches++ })
			}
			bt.Release()
		}
		dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter: %s %s", d.Reason, d.Error) }
		b.ReportAllocs()
		for b.Loop() {
			for _, r := range recs {
				n.Add(normalize.Input{Value: r}, emit, dead)
			}
			n.Flush(emit)
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
	}
	b.Run("normalize", func(b *testing.B) { run(b, nil) })
	b.Run("normalize+rules", func(b *testing.B) { run(b, set.NewEvaluator()) })
	b.Run("rules", func(b *testing.B) {
		var batches []normalize.Batch
		n := normalize.New()
		for _, r := range recs {
			n.Add(normalize.Input{Value: r}, func(bt normalize.Batch) { batches = append(batches, bt) }, nil)
		}
		n.Flush(func(bt normalize.Batch) { batches = append(batches, bt) })
		defer func() {
			for _, bt := range batches {
				bt.Release()
			}
			n.Close()
		}()
		ev := set.NewEvaluator()
		b.ReportAllocs()
		for b.Loop() {
			for _, bt := range batches {
				ev.Eval(bt, func(*detect.Rule, int) {})
			}
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "events/s")
	})
}

func processRecords(n int) [][]byte {
	sim := simulator.New(simulator.AttackEvery(2_000))
	var out [][]byte
	for len(out) < n {
		_, v := sim.Next(nil)
		if bytes.Contains(v, []byte(`"AdvancedHunting-DeviceProcessEvents"`)) {
			out = append(out, v)
		}
	}
	return out
}

// processRules loads the shared process_creation rules, repeated until
// there are at least n.
func processRules(b *testing.B, n int) *detect.Set {
	dir := shareddata.Path(b, "sigma")
	type file struct {
		name string
		data []byte
	}
	var files []file
	for _, sub := range []string{"rules", "rules-emerging-threats"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.Contains(p, "proc_creation") {
				return err
			}
			data, err := os.ReadFile(p)
			files = append(files, file{p, data})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	set := detect.NewSet()
	for round := 0; len(set.Rules) < n; round++ {
		before := len(set.Rules)
		for _, f := range files {
			set.Add(f.name, f.data)
			if len(set.Rules) >= n {
				break
			}
		}
		if len(set.Rules) == before {
			b.Fatalf("no process_creation rule loads: %v", set.Problems)
		}
	}
	return set
}

func distinct(s *detect.Set) int {
	ids := map[string]bool{}
	for _, r := range s.Rules {
		ids[r.Key()] = true
	}
	return len(ids)
}
