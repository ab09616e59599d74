package pipeline

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Through the whole pipeline, the simulator's stories end in the actions
// their playbooks ask for, once each: the phish yields SoftDeleteEmail for
// the delivered copy, BlockIndicator for the attachment's hash and
// StopAndQuarantineFile on the device it was written to (approved at once:
// file, mail and indicator actions are fully automated by default); the
// identity compromise yields DisableUser and RevokeSessions for the one
// account (pending: users are semi-automated). summary.json counts the
// actions of actions.jsonl by type.
func TestReplayStoriesBecomeActions(t *testing.T) {
	if testing.Short() {
		t.Skip("replays simulated records")
	}
	in := filepath.Join(t.TempDir(), "sim.jsonl")
	sim := simulator.New(simulator.Seed(5), simulator.EventsPerSecond(25), simulator.AttackEvery(2500))
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var buf []byte
	for range 12000 {
		_, buf = sim.Next(buf[:0])
		w.Write(buf)
		w.WriteByte('\n')
	}
	kinds := map[simulator.StoryKind]int{}
	var stories []simulator.Story
	for _, s := range sim.Stories() {
		if s.Complete {
			stories = append(stories, s)
			kinds[s.Kind]++
		}
	}
	if kinds[simulator.PhishToEndpoint] == 0 || kinds[simulator.IdentityCompromise] == 0 {
		t.Fatalf("complete stories %v: the test needs one of each kind", kinds)
	}
	// Later, the first phish's file is written on a device of its own:
	// block on sight quarantines it there and adds an alert to the story's
	// incident.
	var spread simulator.Story
	for _, s := range stories {
		if s.Kind == simulator.PhishToEndpoint {
			spread = s
			break
		}
	}
	at := spread.Start.Add(40 * time.Minute).UTC().Format(time.RFC3339)
	fmt.Fprintf(w, `{"time":%q,"tenantId":%q,"category":"AdvancedHunting-DeviceFileEvents","properties":{"Timestamp":%q,"DeviceId":"dev-spread","DeviceName":"spread-ws.contoso.com","ActionType":"FileCreated","FileName":"invoice.docm","FolderPath":"C:\\Users\\x\\Downloads\\invoice.docm","SHA256":%q}}`+"\n",
		at, spread.Tenant, at, spread.SHA256)
	w.Flush()
	f.Close()

	sum, out, _ := replay(t, Default(), in)
	actions := readActions(t, filepath.Join(out, "actions.jsonl"))
	byType := map[string]int{}
	// (tenant, type, target key) -> the actions on it, by incident.
	on := map[string][]respond.Action{}
	for _, a := range actions {
		byType[a.Type]++
		k, err := a.Target.Key(a.Type)
		if err != nil {
			t.Errorf("action %s has a half-filled target: %v", a.ID, err)
		}
		on[a.TenantID+" "+a.Type+" "+k] = append(on[a.TenantID+" "+a.Type+" "+k], a)
	}
	if fmt.Sprint(byType) != fmt.Sprint(sum.Actions) {
		t.Errorf("summary.json actions %v, actions.jsonl has %v", sum.Actions, byType)
	}
	once := func(s simulator.Story, typ, target, status string) {
		t.Helper()
		got := on[s.Tenant+" "+typ+" "+target]
		if len(got) != 1 {
			t.Errorf("%s story of %s: %d %s actions on %s, want 1 (%d actions in all: %v)", s.Kind, s.Tenant, len(got), typ, target, len(actions), byType)
			return
		}
		if got[0].Status != status {
			t.Errorf("%s on %s: status %s, want %s", typ, target, got[0].Status, status)
		}
		if len(got[0].Alerts) == 0 || got[0].IncidentID == "" || !strings.Contains(got[0].Reason, ":") {
			t.Errorf("%s on %s: no alerts, incident or reason: %+v", typ, target, got[0])
		}
	}
	for _, s := range stories {
		switch s.Kind {
		case simulator.PhishToEndpoint:
			sha := strings.ToLower(s.SHA256)
			once(s, respond.SoftDeleteEmail, "mail:"+strings.ToLower(s.NetworkMessageID)+"/"+strings.ToLower(s.User), respond.StatusApproved)
			once(s, respond.BlockIndicator, "indicator:"+respond.IndicatorSHA256+":"+sha, respond.StatusApproved)
			once(s, respond.StopAndQuarantineFile, "device:"+strings.ToLower(s.DeviceID)+"/file:"+sha, respond.StatusApproved)
		case simulator.IdentityCompromise:
			once(s, respond.DisableUser, "user:oid:"+strings.ToLower(s.UserObjectID), respond.StatusPending)
			once(s, respond.RevokeSessions, "user:oid:"+strings.ToLower(s.UserObjectID), respond.StatusPending)
		}
	}
	sha := strings.ToLower(spread.SHA256)
	once(spread, respond.StopAndQuarantineFile, "device:dev-spread/file:"+sha, respond.StatusApproved)
	var story, sighted *correlate.Incident
	incs := liveIncidents(t, out)
	for i := range incs {
		for _, a := range incs[i].Alerts {
			if a.ID == spread.Alerts[0].ID {
				story = &incs[i]
			}
			if a.DetectionSource == respond.SightDetectionSource && strings.Contains(a.Title, "spread-ws") {
				sighted = &incs[i]
			}
		}
	}
	switch {
	case sighted == nil:
		t.Errorf("no block-on-sight alert for the file on spread-ws in any incident")
	case story == nil || story.ID != sighted.ID:
		t.Errorf("the block-on-sight alert is in incident %s, not in the story's incident", sighted.ID)
	}
	t.Logf("%d stories, %d actions: %v", len(stories), len(actions), byType)
}

func readActions(t *testing.T, path string) []respond.Action {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []respond.Action
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var a respond.Action
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("actions.jsonl: %v", err)
		}
		if ids[a.ID] {
			t.Errorf("action %s twice in actions.jsonl", a.ID)
		}
		ids[a.ID] = true
		out = append(out, a)
	}
	return out
}
