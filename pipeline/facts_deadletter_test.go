package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// A facts record the correlate stage cannot decode (a binary record cut
// short, JSON that is not facts) is a dead letter that keeps its bytes as
// they were, base64 when they are not text, and the stage goes on.
func TestUndecodableFactsAreDeadLetters(t *testing.T) {
	good, err := (&correlate.Facts{Tenant: "t1", Sightings: []correlate.Sighting{{Entity: "ip:203.0.113.9", Bucket: 20790,
		Observers: []string{"device:id:d1"}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cp := &correlateProc{deadLetter: "dl", log: func(string, ...any) {}}
	for _, in := range [][]byte{good[:len(good)-3], append(bytes.Clone(good), 0x80), []byte(`{"tenant":""}`), []byte("not facts")} {
		tx := &recordingTxn{}
		r := &kgo.Record{Topic: "stitch.facts", Partition: 2, Offset: 7, Value: in}
		if err := cp.Process(context.Background(), r, tx); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if len(tx.recs) != 1 || tx.recs[0].Topic != "dl" {
			t.Fatalf("%q: produced %d records, want one dead letter", in, len(tx.recs))
		}
		var dl struct {
			Reason      string `json:"reason"`
			Error       string `json:"error"`
			Offset      int64  `json:"offset"`
			Value       string `json:"value"`
			ValueBase64 []byte `json:"value_base64"`
		}
		if err := json.Unmarshal(tx.recs[0].Value, &dl); err != nil {
			t.Fatal(err)
		}
		kept := dl.ValueBase64
		if kept == nil {
			kept = []byte(dl.Value)
		}
		if dl.Reason != "bad_facts" || dl.Error == "" || dl.Offset != 7 || !bytes.Equal(kept, in) {
			t.Fatalf("%q: dead letter %s", in, tx.recs[0].Value)
		}
	}
}
