package respond

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// A device that sees a file again soon after its index entry was written
// does not rewrite the entry (no changelog record), and a block found
// later still quarantines the file there, once: even when only the
// sighting held back was within the retention before the block. A device
// whose latest sighting is past the retention (and its step) is not
// quarantined, as before; a sighting more than the step later rewrites
// the entry.
func TestHeldBackSightingKeepsQuarantine(t *testing.T) {
	const retention = 30 * 24 * time.Hour
	t0 := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	step := min(time.Hour, retention/720)
	cases := []struct {
		name       string
		again      time.Duration // the second sighting, after t0
		blockAt    time.Time     // the block's first alert
		rewritten  bool          // the second sighting writes the device's entry
		quarantine bool
	}{
		{"blocked within the retention of both sightings", 10 * time.Minute, t0.Add(24 * time.Hour), false, true},
		{"only the held-back sighting within the retention", 10 * time.Minute, t0.Add(10*time.Minute + retention), false, true},
		{"the latest sighting past the retention", 10 * time.Minute, t0.Add(10*time.Minute + retention + step + time.Minute), false, false},
		{"seen again more than the step later", 2 * step, t0.Add(2*step + retention), true, true},
		{"seen again more than the step later, the latest past the retention", 2 * step, t0.Add(3*step + retention + time.Minute), true, false},
		{"seen again after the first sighting's retention", retention + 48*time.Hour, t0.Add(retention + 49*time.Hour), true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx := openLedger(t)
			r := New(tx, nil, WithRetention(retention))
			apply := applier(t, r)
			// Each signal in a transaction of its own, as the stage commits.
			commit := func() {
				t.Helper()
				if err := tx.CommitAt(nil); err != nil {
					t.Fatal(err)
				}
				if err := tx.Begin(); err != nil {
					t.Fatal(err)
				}
			}
			seen := func(at time.Time) *Signal {
				return &Signal{Tenant: "t", Files: []FileSeen{{Hash: "AAAA", DeviceID: "Dev-1", DeviceName: "ws1", Time: at}}}
			}
			var quarantines int
			count := func(res Result) {
				for _, a := range res.Actions {
					if a.Type == StopAndQuarantineFile && a.Target.DeviceID == "dev-1" {
						quarantines++
					}
				}
			}
			count(apply(seen(t0)))
			commit()
			count(apply(seen(t0.Add(c.again))))
			if got := wroteSpace(t, tx, spaceDevice); got != c.rewritten {
				t.Errorf("the second sighting wrote the device index: %v, want %v", got, c.rewritten)
			}
			commit()
			count(apply(&Signal{Tenant: "t", Incident: &correlate.Incident{ID: "inc-1", TenantID: "t", Status: "active", Version: 1,
				Alerts: []correlate.Alert{{ID: "fa1", Severity: "Medium", ServiceSource: "Microsoft Defender for Office 365", CreatedDateTime: c.blockAt,
					Evidence: []correlate.Evidence{{ODataType: correlate.GraphEvidenceType("File"), FileDetails: &correlate.FileDetails{SHA256: "aaaa", FileName: "Invoice.docm"}}}}}}}))
			want := 0
			if c.quarantine {
				want = 1
			}
			if quarantines != want {
				t.Errorf("%d StopAndQuarantineFile actions on dev-1 once blocked, want %d", quarantines, want)
			}
			commit()
			// The held-back sighting again: the file is blocked now, so it
			// is looked at as it comes, and decides nothing new.
			count(apply(seen(t0.Add(c.again))))
			if quarantines != want {
				t.Errorf("%d StopAndQuarantineFile actions on dev-1 after the sighting again, want %d", quarantines, want)
			}
		})
	}
}

// wroteSpace says whether the open transaction wrote a key of the space.
func wroteSpace(t *testing.T, tx *state.TxStore, space byte) bool {
	t.Helper()
	prefix := []byte{'T', space}
	found := false
	if err := tx.Changes(func(_ bool, k, _ []byte) error {
		found = found || bytes.HasPrefix(k, prefix)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// A device index entry is written as json.Marshal writes it, and read back
// the same, whatever its strings and time; one that needs escaping goes
// through encoding/json.
func TestSeenEntryEncoding(t *testing.T) {
	at := time.Date(2024, 3, 1, 9, 0, 0, 123456789, time.UTC)
	plain := 0
	for _, f := range []FileSeen{
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: "ws1.contoso.com", Time: at},
		{Hash: "aaaa", DeviceID: "dev-1", Time: at.Truncate(time.Second)},
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: "ws5", Time: at.In(time.FixedZone("", -5*3600))},
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: `ws "1"`, Time: at},
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: "a<b>&c", Time: at},
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: "poste-é", Time: at.In(time.FixedZone("", 3600))},
		{Hash: "aaaa", DeviceID: "dev-1", DeviceName: `x","time":"2030-01-01T00:00:00Z`, Time: at},
	} {
		want, err := json.Marshal(&f)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendSeen([]byte("junk"), &f)
		if !ok {
			if string(got) != "junk" {
				t.Errorf("%+v: not plain, but appended %q", f, got)
			}
			continue
		}
		plain++
		if got = got[len("junk"):]; string(got) != string(want) {
			t.Errorf("%+v: %s, want %s", f, got, want)
		}
		var cur FileSeen
		if !sameSeen(want, got, &cur.Time) || !cur.Time.Equal(f.Time) {
			t.Errorf("%+v: read back %v", f, cur.Time)
		}
		other := f
		other.DeviceName += "x"
		if o, _ := appendSeen(nil, &other); sameSeen(want, o, &cur.Time) {
			t.Errorf("%+v: the same entry as one named %q", f, other.DeviceName)
		}
	}
	if plain != 3 {
		t.Errorf("%d entries written without encoding/json, want 3", plain)
	}
}
