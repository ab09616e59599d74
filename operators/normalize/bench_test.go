package normalize

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// benchInputs is a realistic mix: one record per table (the endpoint tables
// three times, as in real streams), single and in an Event Hubs envelope.
func benchInputs(b *testing.B) (inputs [][]byte, records int) {
	files, _ := filepath.Glob("testdata/tables/*.json")
	var recs [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			b.Fatal(err)
		}
		n := 1
		if bytes.Contains(raw, []byte(`"AdvancedHunting-Device`)) {
			n = 3
		}
		for i := 0; i < n; i++ {
			recs = append(recs, buf.Bytes())
		}
	}
	for i, r := range recs {
		if i%2 == 0 {
			inputs = append(inputs, r)
			records++
		}
	}
	env := []byte(`{"records":[`)
	for i, r := range recs {
		if i%2 == 1 {
			if env[len(env)-1] != '[' {
				env = append(env, ',')
			}
			env = append(env, r...)
			records++
		}
	}
	inputs = append(inputs, append(env, "]}"...))
	return inputs, records
}

func BenchmarkNormalize(b *testing.B) {
	inputs, perRound := benchInputs(b)
	n := New()
	defer n.Close()
	emit := func(bt Batch) { bt.Release() }
	dead := func(d DeadLetter) { b.Fatalf("dead letter in benchmark: %+v", d) }
	var size int64
	for _, in := range inputs {
		size += int64(len(in))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, in := range inputs {
			n.Add(Input{Value: in}, emit, dead)
		}
	}
	n.Flush(emit)
	b.ReportMetric(float64(b.N*perRound)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.N*perRound), "records")
}
