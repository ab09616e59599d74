package correlate

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// bigFacts is one record's worth of facts too large for one Kafka record:
// a batch with many sightings and links, then alerts that carry their
// evidence (as the detection and block-on-sight stages send them), in
// stories of three alerts sharing a device.
func bigFacts(stories int) *Facts {
	f := &Facts{Tenant: "t1", MaxTime: t0.Add(time.Hour)}
	for i := 0; i < stories*20; i++ {
		f.Sightings = append(f.Sightings, Sighting{Entity: fmt.Sprintf("file:%064d", i), Bucket: 1,
			Observers: []string{fmt.Sprintf("device:id:%040d", i%7)}})
		f.Links = append(f.Links, []string{fmt.Sprintf("user:oid:%036d", i), fmt.Sprintf("user:upn:u%d@contoso.com", i)})
	}
	for s := 0; s < stories; s++ {
		for a := 0; a < 3; a++ {
			id := fmt.Sprintf("da%04d-%d", s, a)
			at := t0.Add(time.Duration(s*3+a) * time.Second)
			f.Alerts = append(f.Alerts, AlertFact{ID: id, Time: at, Title: "alert " + id, Severity: "High"})
			f.Evidence = append(f.Evidence, EvidenceFact{AlertID: id, Time: at,
				Entities: []string{fmt.Sprintf("device:id:story%04d", s), fmt.Sprintf("ip:10.%d.%d.%d", s/250, s%250, a)},
				Evidence: Evidence{ODataType: GraphEvidenceType("Device"), CreatedDateTime: at, Roles: []string{}}})
		}
	}
	return f
}

func TestMarshalChunksFitAndKeepWhatOneRecordSays(t *testing.T) {
	f := bigFacts(200)
	whole, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const max = 16 << 10
	chunks, dropped, err := f.MarshalChunks(max)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 0 {
		t.Fatalf("dropped %d elements that fit", dropped)
	}
	if len(chunks) < len(whole)/max {
		t.Fatalf("%d bytes in %d chunks of at most %d", len(whole), len(chunks), max)
	}
	var parts []*Facts
	got := &Facts{Tenant: "t1"}
	for i, c := range chunks {
		if len(c) > max {
			t.Fatalf("chunk %d: %d bytes, over %d", i, len(c), max)
		}
		p, err := UnmarshalFacts(c)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if last := i == len(chunks)-1; p.MaxTime.IsZero() == last {
			t.Fatalf("chunk %d of %d: maxTime %v; only the last moves the watermark", i, len(chunks), p.MaxTime)
		}
		for _, ev := range p.Evidence {
			if !slices.ContainsFunc(p.Alerts, func(a AlertFact) bool { return a.ID == ev.AlertID }) {
				t.Fatalf("chunk %d: evidence of %s without its alert", i, ev.AlertID)
			}
		}
		got.add(p)
		parts = append(parts, p)
	}
	got.MaxTime = f.MaxTime
	b, _ := got.Marshal()
	if string(b) != string(whole) {
		t.Fatal("the chunks together do not say what the facts said, in the same order")
	}
	// The user-visible consequence: the same incidents either way.
	one, _ := UnmarshalFacts(whole)
	want := run(t, []*Facts{one}, 0)
	if len(want) != 200 {
		t.Fatalf("the whole record gave %d incidents, want 200 stories", len(want))
	}
	if chunked := run(t, parts, 1); strings.Join(chunked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("chunked facts gave other incidents:\n%s\nwant:\n%s", strings.Join(chunked, "\n"), strings.Join(want, "\n"))
	}
}

func TestMarshalChunksOneValueWhenItFits(t *testing.T) {
	f := bigFacts(2)
	chunks, dropped, err := f.MarshalChunks(1 << 20)
	if err != nil || dropped != 0 || len(chunks) != 1 {
		t.Fatalf("%d chunks, %d dropped, %v; want the one value", len(chunks), dropped, err)
	}
}

func TestMarshalChunksLeavesOutWhatCannotFitAndSaysSo(t *testing.T) {
	f := bigFacts(20)
	f.Sightings = append(f.Sightings, Sighting{Entity: "url:https://x.test/" + strings.Repeat("a", 64<<10), Bucket: 1,
		Observers: []string{"device:id:d1"}})
	chunks, dropped, err := f.MarshalChunks(16 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Fatalf("dropped %d, want the one 64 KiB sighting", dropped)
	}
	alerts := 0
	for _, c := range chunks {
		p, err := UnmarshalFacts(c)
		if err != nil {
			t.Fatal(err)
		}
		alerts += len(p.Alerts)
	}
	if alerts != 60 {
		t.Fatalf("%d alerts arrived, want all 60 beside the dropped sighting", alerts)
	}
}
