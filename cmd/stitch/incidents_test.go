package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

// stitch incidents keeps the latest version of each incident, filters by
// tenant, status and age, and shows one with its alerts, entities and the
// reasons they joined; stitch deadletters counts by reason with a sample.
func TestIncidentsAndDeadLettersCommands(t *testing.T) {
	ctx, cl, brokers := incidentsBroker(t, 2)
	now := time.Now().UTC()
	inc := func(id, tenant, status string, version int64, updated time.Time) *kgo.Record {
		v, _ := json.Marshal(correlate.Incident{ID: id, TenantID: tenant, Status: status, Version: version, DisplayName: "Incident " + id,
			LastUpdateDateTime: updated, Severity: "high",
			Alerts:             []correlate.Alert{{ID: "a1", Title: "Phish"}, {ID: "a2", Title: "Process"}},
			ImpactedAssets:     correlate.ImpactedAssets{Devices: []string{"ws-1"}, Users: []string{"ann@contoso.com"}},
			CorrelationReasons: []correlate.CorrelationReason{{Entity: "user:upn:ann@contoso.com", Alerts: [2]string{"a1", "a2"}}}})
		return &kgo.Record{Topic: "incidents", Key: []byte(id), Value: v}
	}
	recs := []*kgo.Record{
		inc("inc-a", "t1", "active", 1, now),
		inc("inc-a", "t1", "resolved", 2, now),
		inc("inc-b", "t2", "active", 1, now),
		inc("inc-c", "t1", "active", 1, now.Add(-48*time.Hour)),
		{Topic: "deadletter", Value: []byte(`{"reason":"not_json","error":"x"}`)},
		{Topic: "deadletter", Value: []byte(`{"reason":"not_json","error":"y"}`)},
		{Topic: "deadletter", Value: []byte(`{"reason":"too_deep","error":"z"}`)},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	run := func(cmd func(context.Context, []string, io.Writer) error, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := cmd(ctx, append([]string{brokers}, args...), &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "ids"}, "inc-a\ninc-b\ninc-c\n"},
		{[]string{"--format", "ids", "--tenant", "t1"}, "inc-a\ninc-c\n"},
		{[]string{"--format", "ids", "--status", "active"}, "inc-b\ninc-c\n"},
		{[]string{"--format", "ids", "--since", "1h"}, "inc-a\ninc-b\n"},
	} {
		if got := run(incidents, c.args...); got != c.want {
			t.Errorf("incidents %v = %q, want %q", c.args, got, c.want)
		}
	}
	show := run(incidents, "show", "inc-a")
	for _, want := range []string{"status resolved", "version 2", "Alerts (2)", "devices    ws-1", "a1 and a2 share user:upn:ann@contoso.com"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	var doc correlate.Incident
	// Flags before or after the id, as a user writes them.
	for _, args := range [][]string{{"--format", "json", "show", "inc-b"}, {"show", "inc-b", "--format", "json"}} {
		doc = correlate.Incident{}
		if err := json.Unmarshal([]byte(run(incidents, args...)), &doc); err != nil || doc.TenantID != "t2" {
			t.Errorf("%v: %v %+v", args, err, doc)
		}
	}
	// A filter that would quietly match nothing is refused, naming what it takes.
	for _, c := range []struct{ flag, value, want string }{
		{"--status", "open", `--status "open" is not one of active, inProgress, resolved, redirected`},
		{"--since", "-1h", "--since -1h0m0s is negative: want 0 or more"},
	} {
		if err := incidents(ctx, []string{brokers, c.flag, c.value}, io.Discard); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: %v, want a usage error %q", c.flag, c.value, err, c.want)
		}
	}
	if got := run(incidents, "--format", "ids", "--status", "Resolved"); got != "inc-a\n" {
		t.Errorf("--status Resolved = %q, want inc-a", got)
	}
	if err := incidents(ctx, []string{brokers, "show", "inc-z"}, io.Discard); err == nil || !strings.Contains(err.Error(), "no incident inc-z") {
		t.Errorf("show of an unknown id: %v", err)
	}
	dl := run(deadletters)
	if !strings.HasPrefix(dl, "3 dead letters in deadletter\n\nnot_json: 2\n  sample: {\"reason\":\"not_json\",\"error\":\"x\"}\n\ntoo_deep: 1\n") {
		t.Errorf("deadletters:\n%s", dl)
	}
}

// Counts in what the commands say agree with their number: one incident
// is "1 incident", one dead letter "1 dead letter" (they said "1
// incidents", "1 dead letters").
func TestCommandsCountInTheSingular(t *testing.T) {
	ctx, cl, brokers := incidentsBroker(t, 1)
	v, _ := json.Marshal(correlate.Incident{ID: "inc-a", TenantID: "t1", Status: "active", Version: 1, LastUpdateDateTime: time.Now().UTC()})
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "incidents", Key: []byte("inc-a"), Value: v},
		&kgo.Record{Topic: "deadletter", Value: []byte(`{"reason":"not_json","error":"x"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cmd  func(context.Context, []string, io.Writer) error
		args []string
		want string
	}{
		{"incidents show", incidents, []string{"show", "inc-z"}, "no incident inc-z in topic incidents (1 incident there)"},
		{"deadletters", deadletters, nil, "1 dead letter in deadletter\n"},
	} {
		var out bytes.Buffer
		err := c.cmd(ctx, append([]string{brokers}, c.args...), &out)
		got := out.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want it to begin %q", c.name, got, c.want)
		}
	}
}

// incidentsBroker starts a broker with the incidents and deadletter topics
// and gives a client of it and the --brokers flag that reaches it.
func incidentsBroker(t *testing.T, partitions int) (context.Context, *kgo.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b, err := kafka.StartBroker(kafka.DefaultPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafka.EnsureTopics(ctx, cl, kafka.TopicSpec{Name: "incidents"}, kafka.TopicSpec{Name: "deadletter"}); err != nil {
		t.Fatal(err)
	}
	return ctx, cl, "--brokers=" + strings.Join(b.Addrs(), ",")
}
