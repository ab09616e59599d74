package pipeline

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

// The simulator plants attack stories in background telemetry from hundreds
// of devices: a phish that ends in execution on an endpoint, and one identity
// compromised across Defender for Identity, Cloud Apps and Entra ID under
// three different identifiers. Through the whole pipeline, each story's
// alerts must end up in one incident, and no two stories may share one, even
// though they share widespread values (powershell.exe's hash, the proxy IP);
// and the correlator's invariants hold on the store the replay left.
func TestReplaySimulatedStoriesBecomeIncidents(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 30k simulated records")
	}
	in := filepath.Join(t.TempDir(), "sim.jsonl")
	sim := simulator.New(simulator.Seed(11), simulator.EventsPerSecond(25), simulator.AttackEvery(2500))
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var buf []byte
	for range 30000 {
		_, buf = sim.Next(buf[:0])
		w.Write(buf)
		w.WriteByte('\n')
	}
	w.Flush()
	f.Close()
	var stories []simulator.Story
	for _, s := range sim.Stories() {
		if s.Complete {
			stories = append(stories, s)
		}
	}
	if len(stories) < 3 {
		t.Fatalf("only %d complete stories planted; the test needs several", len(stories))
	}

	cfg := Default()
	cfg.State.Dir = filepath.Join(t.TempDir(), "state") // kept for the invariants
	if os.Getenv("STITCH_MUTATE_PREVALENCE") != "" {
		cfg.Correlate.PrevalenceThreshold = 63 // shows the test can fail
	}
	sum, out, _ := replay(t, cfg, in)
	t.Logf("%d complete stories, %d incidents from %d records", len(stories), sum.Incidents, sum.RecordsRead)
	if len(sum.DeadLettered) != 0 {
		t.Fatalf("simulated records were dead-lettered: %v", sum.DeadLettered)
	}
	checkCorrelateInvariants(t, "simulated stories", cfg)

	// alert id (per tenant) → live incident holding it.
	type key struct{ tenant, alert string }
	owner := map[key]string{}
	inc, err := os.Open(filepath.Join(out, "incidents.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	sc := bufio.NewScanner(inc)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var i struct {
			ID       string `json:"id"`
			TenantID string `json:"tenantId"`
			Status   string `json:"status"`
			Alerts   []struct {
				ID string `json:"id"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &i); err != nil {
			t.Fatal(err)
		}
		if i.Status == "redirected" {
			continue
		}
		for _, a := range i.Alerts {
			k := key{i.TenantID, a.ID}
			if prev, dup := owner[k]; dup {
				t.Errorf("alert %s is in two live incidents: %s and %s", a.ID, prev, i.ID)
			}
			owner[k] = i.ID
		}
	}
	storyOf := map[string]int{}
	for n, s := range stories {
		var first string
		for _, a := range s.SameIncident {
			id, ok := owner[key{s.Tenant, a}]
			if !ok {
				t.Errorf("story %d (%s): alert %s is in no incident", n, s.Kind, a)
				continue
			}
			if first == "" {
				first = id
			} else if id != first {
				t.Errorf("story %d (%s): alert %s is in incident %s, its first alert in %s", n, s.Kind, a, id, first)
			}
		}
		if first == "" {
			continue
		}
		if other, taken := storyOf[first]; taken {
			t.Errorf("stories %d and %d share incident %s", other, n, first)
		}
		storyOf[first] = n
	}
}
