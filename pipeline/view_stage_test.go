package pipeline

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// The view stage of any process, with a state directory of its own, holds
// the same view: the latest version of every incident and action, the
// analysts' update laid over its incident, the versions it went through;
// a record that is not what its topic holds is skipped. Its position is
// committed under its group, so its lag reads zero once it caught up.
func TestViewIsRebuiltFromTheTopicsInAnyProcess(t *testing.T) {
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.Correlate.Enabled = true
	dir := t.TempDir()

	at := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	inc := correlate.Incident{ID: "inc-1", TenantID: "t1", Status: correlate.StatusActive, Severity: "medium", Version: 1,
		CreatedDateTime: at, LastUpdateDateTime: at, ImpactedAssets: correlate.ImpactedAssets{Devices: []string{"ws-1"}},
		Alerts: []correlate.Alert{{ID: "a1", Title: "first", Severity: "medium", FirstActivityDateTime: at}}}
	v2 := inc
	v2.Version, v2.Severity, v2.LastUpdateDateTime = 2, "high", at.Add(time.Hour)
	v2.Alerts = append(v2.Alerts, correlate.Alert{ID: "a2", Title: "second", Severity: "high", FirstActivityDateTime: at.Add(time.Hour)})
	other := correlate.Incident{ID: "inc-2", TenantID: "t2", Status: correlate.StatusActive, Severity: "low", Version: 1, CreatedDateTime: at, LastUpdateDateTime: at}
	upd := view.Update{AnalystUpdate: correlate.AnalystUpdate{IncidentID: "inc-1", Revision: 1, Status: correlate.StatusInProgress, Classification: "truePositive",
		By: "alice", Time: at.Add(time.Minute)}, TenantID: "t1", Change: "status inProgress; classification truePositive", Log: []view.Change{{Revision: 1, Source: view.SourceAnalyst, By: "alice", Time: at.Add(time.Minute)}}}
	act := respond.Action{ID: "act-1", TenantID: "t1", Type: respond.IsolateDevice, IncidentID: "inc-1", Status: respond.StatusPending, Version: 1,
		Target: respond.Target{DeviceID: "dev1", DeviceName: "ws-1"}}
	approved := act
	approved.Version, approved.Status = 2, respond.StatusApproved

	topo, err := Describe(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, newClient(t, addrs), topo.specs...); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	add := func(topic, key string, v any) {
		b, _ := json.Marshal(v)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: b})
	}
	add(cfg.Topics.Incidents, "inc-1", &inc)
	add(cfg.Topics.Incidents, "inc-1", &v2)
	add(cfg.Topics.Incidents, "inc-1", &inc) // read again after v2: ignored
	add(cfg.Topics.Incidents, "inc-2", &other)
	recs = append(recs, &kgo.Record{Topic: cfg.Topics.Incidents, Key: []byte("junk"), Value: []byte("not json")})
	add(UpdatesTopic(cfg), "inc-1", &upd)
	add(cfg.Topics.Actions, "device:dev1/act-1", &act)
	add(cfg.Topics.Actions, "device:dev1/act-1", &approved)
	if err := newClient(t, addrs).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var answers []string
	for i, instance := range []string{"view-a", "view-b"} {
		c := cfg
		c.State.Dir = filepath.Join(dir, instance)
		p, err := New(c, WithBrokers(addrs), WithInstance(instance))
		if err != nil {
			t.Fatal(err)
		}
		def, info, ok := p.topo.stage("view")
		if !ok {
			t.Fatal("no view stage with correlation on")
		}
		r, sc, err := p.build(def, info)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		v := p.View()
		for !v.Ready() {
			if ctx.Err() != nil {
				t.Fatal("the view never caught up")
			}
			time.Sleep(50 * time.Millisecond)
		}
		d, ok := v.Detail(view.Everything, "inc-1")
		switch {
		case !ok:
			t.Fatalf("%s: no inc-1", instance)
		case d.Incident.Version != 2 || d.Incident.Severity != "high" || len(d.Incident.Alerts) != 2:
			t.Errorf("%s: inc-1 is not its latest version: %+v", instance, d.Incident)
		case d.Incident.Status != correlate.StatusInProgress || d.Incident.Classification != "truePositive" || d.Incident.Revision != 1:
			t.Errorf("%s: the update is not laid over inc-1: %+v", instance, d.Incident)
		case len(d.History) != 3 || d.History[2].Version != 2 || d.History[2].Change != "+1 alert; severity medium → high":
			t.Errorf("%s: history %+v, want versions 1 and 2 (what it changed) and the analyst's revision", instance, d.History)
		case len(d.Actions) != 1 || d.Actions[0].Status != respond.StatusApproved:
			t.Errorf("%s: actions %+v", instance, d.Actions)
		}
		list, _ := v.ListIncidents(view.Everything, view.Filter{}, view.Page{Limit: 10})
		b, _ := json.Marshal(list.Incidents)
		answers = append(answers, string(b))
		if i > 0 && answers[i] != answers[0] {
			t.Errorf("the views differ:\n%s\n%s", answers[0], answers[i])
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		sc.close()
		if n := p.Totals().Stages["view"].RecordsIn[cfg.Topics.Incidents]; n != 5 {
			t.Errorf("%s: the view counted %d incident records, want 5", instance, n)
		}
		lag, err := kafka.Lag(ctx, newClient(t, addrs), info.Group, info.Inputs...)
		if err != nil || lag != 0 {
			t.Errorf("%s: lag of %s after a stop: %d %v", instance, info.Group, lag, err)
		}
	}
}

func newClient(t *testing.T, addrs []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
