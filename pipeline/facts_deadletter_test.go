package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// A facts record the correlate stage cannot decode (a binary record cut
// short, JSON that is not facts) is a dead letter of normalize's shape that
// keeps its bytes as they were (base64 when they are not text; up to the
// configured limit, its size and SHA-256 describing the whole), and the
// stage goes on, whatever the record's timestamp.
func TestUndecodableFactsAreDeadLetters(t *testing.T) {
	good, err := (&correlate.Facts{Tenant: "t1", Sightings: []correlate.Sighting{{Entity: "ip:203.0.113.9", Bucket: 20790,
		Observers: []string{"device:id:d1"}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cp := &correlateProc{deadLetter: deadLetters{topic: "dl", keep: 16}, log: func(string, ...any) {}}
	for _, in := range [][]byte{good[:len(good)-3], append(bytes.Clone(good), 0x80), []byte(`{"tenant":""}`), []byte("not facts")} {
		tx := &recordingTxn{}
		// A timestamp JSON cannot write (a producer may set any): the dead
		// letter still encodes, with the time it was written instead.
		r := &kgo.Record{Topic: "stitch.facts", Partition: 2, Offset: 7, Value: in, Timestamp: time.UnixMilli(1 << 62)}
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
			Size        int    `json:"size"`
			SHA256      string `json:"sha256"`
			Truncated   bool   `json:"truncated"`
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
		sum := sha256.Sum256(in)
		if dl.Reason != "bad_facts" || dl.Error == "" || dl.Offset != 7 || dl.Size != len(in) || dl.SHA256 != hex.EncodeToString(sum[:]) ||
			dl.Truncated != (len(in) > 16) || !bytes.HasPrefix(in, kept) || len(kept) != min(len(in), 16) {
			t.Fatalf("%q: dead letter %s", in, tx.recs[0].Value)
		}
		if string(tx.recs[0].Headers[0].Value) != "bad_facts" {
			t.Fatalf("%q: dead letter's headers %v, want its reason as normalize's have", in, tx.recs[0].Headers)
		}
	}
}
