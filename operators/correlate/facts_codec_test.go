package correlate

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"pgregory.net/rapid"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// randomFacts is facts with every field reachable filled at random
// (fillRandom: a field added later is filled too), of a valid tenant.
func randomFacts(rng *rand.Rand) *Facts {
	var f Facts
	fillRandom(rng, reflect.ValueOf(&f).Elem())
	f.Tenant = "tenant-" + string(rune('a'+rng.IntN(26)))
	return &f
}

// Binary facts decode to what their JSON (an earlier release's record)
// decodes to, field for field: nil and empty slices, times and offsets.
// Every cut of a record is an error.
func TestFactsDecodeAsJSONDid(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 14))
	for i := range 2000 {
		f := randomFacts(rng)
		j, err := gojson.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		viaJSON, err := UnmarshalFacts(j)
		if err != nil {
			t.Fatalf("facts %d as JSON: %v", i, err)
		}
		b, err := f.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if b[0] == '{' || b[0] == '[' || b[0] <= ' ' && bytes.IndexByte([]byte("\t\n\r "), b[0]) >= 0 {
			t.Fatal("a binary facts record must not look like JSON")
		}
		viaBinary, err := UnmarshalFacts(b)
		if err != nil {
			t.Fatalf("facts %d: %v", i, err)
		}
		if !reflect.DeepEqual(viaBinary, viaJSON) {
			jb, _ := gojson.Marshal(viaBinary)
			t.Fatalf("facts %d decode otherwise than their JSON did:\nbinary %s\n  JSON %s", i, jb, j)
		}
		if len(b) >= len(j) {
			t.Errorf("facts %d: binary record %d bytes, JSON %d", i, len(b), len(j))
		}
		for cut := range len(b) - 1 {
			if _, err := UnmarshalFacts(b[:cut+1]); err == nil {
				t.Fatalf("facts %d cut to %d of %d bytes decode without an error", i, cut+1, len(b))
			}
		}
	}
}

// A facts topic written by an earlier release (JSON records) is read as
// it is.
func TestFactsWrittenAsJSONStillDecode(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 11, 12, 345678900, time.UTC)
	want := &Facts{Tenant: "t1",
		Links:        [][]string{{"device:id:d1", "device:name:pc1"}},
		Sightings:    []Sighting{{Entity: "ip:203.0.113.9", Bucket: 20790, Observers: []string{"device:id:d1", "user:oid:o1"}}},
		Files:        []FileFact{{SHA256: "ab", DeviceID: "d1", Time: at}},
		DeviceGroups: []DeviceGroupFact{{DeviceID: "d1", Group: "servers", Time: at}},
		Mail:         []MailFact{{NetworkMessageID: "m1", URL: "https://x.test/", Time: at}},
		Attachments:  []AttachmentFact{{SHA256: "ab", NetworkMessageID: "m1", Recipient: "a@x.test", Time: at}},
		Alerts:       []AlertFact{{ID: "da1", Time: at, Severity: "High", Techniques: []string{"T1566"}}},
		Evidence: []EvidenceFact{{AlertID: "da1", Time: at, Entities: []string{"device:id:d1"},
			Evidence: Evidence{ODataType: GraphEvidenceType("Device"), CreatedDateTime: at, Roles: []string{}, MdeDeviceID: "d1"}}},
		MaxTime: at.In(time.FixedZone("", 3600)),
	}
	// As Marshal wrote them before the binary encoding.
	const old = `{"tenant":"t1","alerts":[{"id":"da1","time":"2026-12-03T10:11:12.3456789Z","severity":"High","techniques":["T1566"]}],` +
		`"evidence":[{"alertId":"da1","time":"2026-12-03T10:11:12.3456789Z","entities":["device:id:d1"],"evidence":{"@odata.type":"#microsoft.graph.security.deviceEvidence","createdDateTime":"2026-12-03T10:11:12.3456789Z","roles":[],"mdeDeviceId":"d1"}}],` +
		`"links":[["device:id:d1","device:name:pc1"]],"sightings":[{"entity":"ip:203.0.113.9","bucket":20790,"observers":["device:id:d1","user:oid:o1"]}],` +
		`"attachments":[{"sha256":"ab","networkMessageId":"m1","recipient":"a@x.test","time":"2026-12-03T10:11:12.3456789Z"}],` +
		`"files":[{"sha256":"ab","deviceId":"d1","time":"2026-12-03T10:11:12.3456789Z"}],` +
		`"deviceGroups":[{"deviceId":"d1","group":"servers","time":"2026-12-03T10:11:12.3456789Z"}],` +
		`"mail":[{"networkMessageId":"m1","url":"https://x.test/","time":"2026-12-03T10:11:12.3456789Z"}],"maxTime":"2026-12-03T11:11:12.3456789+01:00"}`
	for _, in := range []string{old, " \n\t" + old} {
		got, err := UnmarshalFacts([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("JSON facts decode to %+v, want %+v", got, want)
		}
		b, _ := got.Marshal()
		again, err := UnmarshalFacts(b)
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Fatalf("re-encoded: %+v, %v; want %+v", again, err, want)
		}
	}
	if want.Evidence[0].Evidence.ODataType != "#microsoft.graph.security.deviceEvidence" {
		t.Fatalf("the literal above names %q", want.Evidence[0].Evidence.ODataType)
	}
}

// Bad input is an error, never a panic: garbage, wrong version bytes,
// records cut or with bytes flipped.
func TestUnmarshalFactsBadInputIsAnError(t *testing.T) {
	good, _ := (&Facts{Tenant: "t1", Sightings: []Sighting{{Entity: "ip:1.2.3.4", Bucket: 1, Observers: []string{"device:id:d"}}}}).Marshal()
	for _, in := range [][]byte{nil, {}, {factsV1}, {0}, {recordV1}, {3, 1, 't'}, {0xff}, append(bytes.Clone(good), 0),
		append([]byte{recordV1}, good[1:]...), []byte("\x00{}")} {
		if _, err := UnmarshalFacts(in); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
	if _, err := UnmarshalFacts(good); err != nil {
		t.Fatal(err)
	}
	// A record of an invalid tenant is refused in either encoding.
	bad, _ := (&Facts{Tenant: "a\x00b"}).Marshal()
	if _, err := UnmarshalFacts(bad); err == nil || !strings.Contains(err.Error(), "invalid tenant") {
		t.Fatalf("binary facts of an invalid tenant: %v", err)
	}
}

// Arbitrary bytes, and valid records with bytes changed, decode or fail
// without a panic; any facts round-trip to what their JSON gives, and
// re-encode to the same bytes.
func TestFactsCodecProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		in := rapid.SliceOf(rapid.Byte()).Draw(rt, "bytes")
		if rapid.Bool().Draw(rt, "binary") {
			in = append([]byte{factsV1}, in...)
		}
		_, _ = UnmarshalFacts(in)

		f := randomFacts(rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1)))
		b, _ := f.Marshal()
		j, _ := gojson.Marshal(f)
		got, err := UnmarshalFacts(b)
		if err != nil {
			rt.Fatal(err)
		}
		want, err := UnmarshalFacts(j)
		if err != nil {
			rt.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			rt.Fatalf("round trip %+v, its JSON %+v", got, want)
		}
		if again, _ := got.Marshal(); !bytes.Equal(again, b) {
			rt.Fatal("decoded facts re-encode otherwise")
		}
		for range rapid.IntRange(1, 4).Draw(rt, "changes") {
			i := rapid.IntRange(1, len(b)-1).Draw(rt, "at")
			b[i] = rapid.Byte().Draw(rt, "to")
		}
		_, _ = UnmarshalFacts(b)
	})
}

// Decoded lists share blocks (stringSlice), but each is its own: an
// append to one leaves the next as it was.
func TestDecodedListsAreTheirOwn(t *testing.T) {
	f := &Facts{Tenant: "t1", Links: [][]string{{"a", "b"}, {"c", "d"}},
		Sightings: []Sighting{{Entity: "e", Observers: []string{"o1"}}, {Entity: "f", Observers: []string{"o2", "o3"}}}}
	b, _ := f.Marshal()
	got, err := UnmarshalFacts(b)
	if err != nil {
		t.Fatal(err)
	}
	got.Links[0] = append(got.Links[0], "x")
	got.Sightings[0].Observers = append(got.Sightings[0].Observers, "x")
	if !reflect.DeepEqual(got.Links[1], f.Links[1]) || !reflect.DeepEqual(got.Sightings[1], f.Sightings[1]) {
		t.Fatalf("after appends to the first: %+v, want %+v", got, f)
	}
}

func FuzzUnmarshalFacts(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 8 {
		b, _ := randomFacts(rng).Marshal()
		f.Add(b)
	}
	f.Add([]byte(`{"tenant":"t1","sightings":[{"entity":"ip:1.2.3.4","bucket":1,"observers":["device:id:d"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := UnmarshalFacts(b)
		if err != nil || b[0] != factsV1 {
			return
		}
		// What decodes re-encodes to a record that decodes and encodes
		// the same again. (Compared as bytes: a time with an offset other
		// than UTC's or the local zone's decodes into a zone of its own,
		// equal but not the same pointer, which reflect.DeepEqual tells
		// apart; the fuzzer found one.)
		again, _ := got.Marshal()
		x, err := UnmarshalFacts(again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if third, _ := x.Marshal(); !bytes.Equal(third, again) {
			t.Fatalf("re-encoded %q, then %q: %+v, want %+v", again, third, x, got)
		}
	})
}

// benchFacts are the facts of a simulated stream, as the facts tap
// extracts them from the pipeline's batches (made once for every -count).
var benchFacts = sync.OnceValue(func() []*Facts {
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.AttackEvery(2_000))
	n := normalize.New()
	defer n.Close()
	var out []*Facts
	emit := func(bt normalize.Batch) {
		if f := Extract(bt); f != nil {
			out = append(out, f)
		}
		bt.Release()
	}
	for range 30_000 {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, func(d normalize.DeadLetter) { panic("dead letter from the simulator: " + d.Reason) })
	}
	n.Flush(emit)
	return out
})

// BenchmarkFactsCodec encodes and decodes a simulated stream's facts
// records, JSON (as before) and binary:
//
//	go test ./operators/correlate -run XXX -bench FactsCodec -benchtime 1s -count 5
func BenchmarkFactsCodec(b *testing.B) {
	facts := benchFacts()
	enc := map[string]func(*Facts) ([]byte, error){
		"json":   func(f *Facts) ([]byte, error) { return gojson.Marshal(f) },
		"binary": (*Facts).Marshal,
	}
	for _, name := range []string{"json", "binary"} {
		var recs [][]byte
		size, sightings := 0, 0
		for _, f := range facts {
			v, err := enc[name](f)
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, v)
			size += len(v)
			sightings += len(f.Sightings)
		}
		b.Run("marshal/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				for _, f := range facts {
					if _, err := enc[name](f); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(facts)), "ns/record")
			b.ReportMetric(float64(size)/float64(len(facts)), "bytes/record")
		})
		b.Run("unmarshal/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				for _, v := range recs {
					if _, err := UnmarshalFacts(v); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(facts)), "ns/record")
			b.ReportMetric(float64(sightings)/float64(len(facts)), "sightings/record")
		})
	}
}
