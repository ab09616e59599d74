package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// cutFacts normalizes vals and writes their facts as one transaction, or
// as two with a commit right after vals[cut-1] when cut > 0 (where a
// restart after a kill, or a commit interval, can fall).
func cutFacts(t *testing.T, vals [][]byte, cut int) []*kgo.Record {
	t.Helper()
	norm := normalize.New(normalize.WithBatchRows(1 << 20))
	f := &factsWriter{topic: "facts"}
	tx := &recordingTxn{}
	ctx := context.Background()
	emit := func(b normalize.Batch) {
		if err := f.Batch(ctx, b, tx); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	flush := func() {
		norm.Flush(emit)
		if err := f.Flush(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range vals {
		if i == cut && cut > 0 {
			flush()
		}
		norm.Add(normalize.Input{Topic: "signals", Offset: int64(i), Value: v}, emit,
			func(d normalize.DeadLetter) { t.Fatalf("dead letter %s", d.Reason) })
	}
	flush()
	return tx.recs
}

// finalIncidents applies facts records and returns each incident's last
// version as "status→redirect [alert ids]", as e2e's runs compare them.
func finalIncidents(t *testing.T, recs []*kgo.Record) map[string]string {
	t.Helper()
	out := map[string]string{}
	applyFacts(t, recs, func(inc correlate.Incident) {
		var ids []string
		for _, a := range inc.Alerts {
			ids = append(ids, a.ID)
		}
		slices.Sort(ids)
		red := ""
		if inc.RedirectIncidentID != nil {
			red = *inc.RedirectIncidentID
		}
		out[inc.ID] = string(inc.Status) + "→" + red + " [" + strings.Join(ids, " ") + "]"
	})
	return out
}

// TestAlertBeforeItsEvidenceAcrossACommit is the crash test's "extra
// incident inc-bc45ad587675d6bf2916: redirected→inc-b0b27567992894d879aa
// []" (e2e TestCrashExactlyOnce, about 1 run in 10): in e2e's stream an
// alert comes some records before its evidence (that one 20 before its
// only evidence, record 11050, and others do so too). Where both
// land in one transaction, the facts writer puts the evidence first and
// the alert joins its partners' incident at once; where a commit falls
// between them (commit intervals fall by time, and a restart after a kill
// resumes at the last commit), the alert opens an incident of its own,
// with nothing to link it, and its evidence, a transaction later,
// redirects that one into its partners'. Both are what the stream says:
// the live incidents and their alerts are the same, and the one more
// incident is redirected, with no alert, into one of them.
func TestAlertBeforeItsEvidenceAcrossACommit(t *testing.T) {
	const n = 12000 // e2e's writeInput
	sim := simulator.New(simulator.Seed(11), simulator.EventsPerSecond(10), simulator.AttackEvery(n/25))
	var vals [][]byte
	for range n {
		_, v := sim.Next(nil)
		vals = append(vals, v)
	}
	// The alerts with no evidence before them and some after: a commit
	// right after each is a cut to try.
	type row struct {
		Category   string `json:"category"`
		Properties struct {
			AlertID string `json:"AlertId"`
		} `json:"properties"`
	}
	var cuts []int
	at := map[string]int{} // alert id -> index of its AlertInfo
	evBefore := map[string]bool{}
	for i, v := range vals {
		var r row
		if err := json.Unmarshal(v, &r); err != nil {
			t.Fatal(err)
		}
		id := r.Properties.AlertID
		switch {
		case strings.HasSuffix(r.Category, "-AlertInfo"):
			at[id] = i
		case strings.HasSuffix(r.Category, "-AlertEvidence"):
			if a, ok := at[id]; !ok {
				evBefore[id] = true
			} else if !evBefore[id] && !slices.Contains(cuts, a+1) {
				cuts = append(cuts, a+1)
			}
		}
	}
	whole := finalIncidents(t, cutFacts(t, vals, 0))
	// From the end of the stream (the crash test's cut, after record
	// 11050, is among the last): a cut that opens an incident.
	for i := len(cuts) - 1; i >= 0; i-- {
		split := finalIncidents(t, cutFacts(t, vals, cuts[i]))
		var extra []string
		for id, g := range split {
			if w, ok := whole[id]; !ok {
				extra = append(extra, id)
			} else if w != g {
				t.Errorf("cut after record %d: incident %s:\n got %s\nwant %s", cuts[i]-1, id, g, w)
			}
		}
		for id, w := range whole {
			if _, ok := split[id]; !ok {
				t.Errorf("cut after record %d: incident %s missing (want %s)", cuts[i]-1, id, w)
			}
		}
		if len(extra) == 0 {
			continue
		}
		for _, id := range extra {
			into, ok := strings.CutPrefix(split[id], "redirected→")
			into, empty := strings.CutSuffix(into, " []")
			if !ok || !empty || whole[into] == "" || strings.HasPrefix(whole[into], "redirected") {
				t.Errorf("cut after record %d: incident %s: %s, want one redirected, with no alert, into a live one", cuts[i]-1, id, split[id])
			}
		}
		t.Logf("a commit after record %d (an alert before its evidence): %d incidents, and %v redirected", cuts[i]-1, len(whole), extra)
		return
	}
	t.Fatalf("no commit between an alert and its evidence (%d tried) opened an incident: the stream no longer tests this", len(cuts))
}
