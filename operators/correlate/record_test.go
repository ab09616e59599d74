package correlate

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/stitch-xdr/stitch/state"
)

// fillRandom sets every exported field reachable from v (a pointer's
// target) to a random value: strings, times with various offsets (the zero
// time too), slices nil, empty or not, pointers nil or not. A field added to
// the incident later is filled too, so a codec that forgets it fails
// TestStateRecordsDecodeAsJSONDid.
func fillRandom(rng *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if rng.IntN(3) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fillRandom(rng, v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(randomTime(rng)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(rng, v.Field(i))
			}
		}
	case reflect.Slice:
		switch rng.IntN(4) {
		case 0:
			v.SetZero()
			return
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1+rng.IntN(3), 3))
		for i := range v.Len() {
			fillRandom(rng, v.Index(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			fillRandom(rng, v.Index(i))
		}
	case reflect.String:
		const chars = "abcXYZ019 \"\\<>&/:@.-é漢\u2028"
		r := []rune(chars)
		var b []rune
		for range rng.IntN(12) {
			b = append(b, r[rng.IntN(len(r))])
		}
		v.SetString(string(b))
	case reflect.Int64, reflect.Int:
		v.SetInt(rng.Int64N(1<<40) - 1<<39)
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	default:
		panic("fillRandom: field kind " + v.Kind().String() + " not handled: teach record.go and this test")
	}
}

func randomTime(rng *rand.Rand) time.Time {
	if rng.IntN(5) == 0 {
		return time.Time{}
	}
	t := time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
	switch rng.IntN(4) {
	case 0:
		return t.UTC()
	case 1:
		return t.In(time.FixedZone("", 2*3600))
	case 2:
		return t.In(time.FixedZone("IST", 5*3600+1800))
	}
	return t.Truncate(time.Second).In(time.FixedZone("", -7*3600))
}

// The binary state records decode to what the JSON records of earlier
// releases decoded to (field for field, nil and empty slices, times and
// their offsets), so that every output, and every decision made on a
// record, stays as it was.
func TestStateRecordsDecodeAsJSONDid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var s incState
		fillRandom(rng, reflect.ValueOf(&s).Elem())
		var viaJSON, viaBinary incState
		j, err := gojson.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeIncState(j, &viaJSON); err != nil {
			t.Fatalf("JSON record: %v", err)
		}
		b := appendIncState(nil, &s)
		if b[0] == '{' {
			t.Fatal("a binary record must not look like JSON")
		}
		if err := decodeIncState(b, &viaBinary); err != nil {
			t.Fatalf("incident %d: %v", i, err)
		}
		if !reflect.DeepEqual(viaBinary, viaJSON) {
			jb, _ := gojson.Marshal(&viaBinary)
			t.Fatalf("incident %d decodes otherwise than its JSON did:\nbinary %s\n  JSON %s", i, jb, j)
		}
		if len(b) >= len(j) {
			t.Errorf("incident %d: binary record %d bytes, JSON %d", i, len(b), len(j))
		}
		for cut := range len(b) - 1 {
			var x incState
			if decodeIncState(b[:cut+1], &x) == nil {
				t.Fatalf("incident %d cut to %d of %d bytes decodes without an error", i, cut+1, len(b))
			}
		}

		var r, rJSON, rBinary alertRec
		fillRandom(rng, reflect.ValueOf(&r).Elem())
		if j, err = gojson.Marshal(&r); err != nil {
			t.Fatal(err)
		}
		if err := decodeAlertRec(j, &rJSON); err != nil {
			t.Fatal(err)
		}
		if err := decodeAlertRec(appendAlertRec(nil, &r), &rBinary); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rBinary, rJSON) {
			t.Fatalf("alert record %d decodes otherwise than its JSON did: %+v, want %+v", i, rBinary, rJSON)
		}
	}
}

// A state directory written by a release that stored alert records and
// incidents as JSON keeps correlating as if it had been written now: with
// every record turned back into JSON after each commit (and no recent
// values, so that each read is of a JSON record), the facts give byte for
// byte the outputs they give over the binary records, and the records they
// change are written in the new encoding.
func TestStateWrittenAsJSONStillCorrelates(t *testing.T) {
	s := synthStream(rand.New(rand.NewPCG(5, 17)), 3, 40)
	facts := arrange(s, delays(s, func(item) time.Duration { return 0 }), false, false)
	toJSON := func(k, v []byte) []byte {
		var j []byte
		var err error
		if k[1] == spaceAlerts {
			var r alertRec
			if err = decodeAlertRec(v, &r); err == nil {
				j, err = gojson.Marshal(&r)
			}
		} else {
			var s incState
			if err = decodeIncState(v, &s); err == nil {
				j, err = gojson.Marshal(&s)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	run := func(asJSON bool) (out []string, rewritten int) {
		c, st := openCorrelator(t, t.TempDir(), withRecent(0))
		defer st.Close()
		for _, f := range facts {
			inTx(t, c, func() { out = append(out, applyAll(t, c, []*Facts{f})...) })
			if asJSON {
				before := rewriteRecords(t, st, nil)
				rewritten += rewriteRecords(t, st, toJSON) - before
			}
		}
		if err := CheckInvariants(st, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		return out, rewritten
	}
	want, _ := run(false)
	got, rewritten := run(true)
	if len(want) < 100 || rewritten < len(want) {
		t.Fatalf("%d outputs, %d records rewritten by them after they were JSON: not a test", len(want), rewritten)
	}
	sameOutputs(t, "over JSON state", got, want)
}

// rewriteRecords counts the committed alert and incident records that are
// JSON and, when to is not nil, rewrites every binary one as to says; it
// returns the count of JSON records before the rewrite plus those written.
func rewriteRecords(t *testing.T, st *state.Store, to func(k, v []byte) []byte) int {
	t.Helper()
	b := st.NewBatch()
	n := 0
	for _, space := range []byte{spaceAlerts, spaceIncidents} {
		it, err := st.NewIter([]byte{'T', space})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			if bytes.HasPrefix(it.Value(), []byte("{")) {
				n++
				continue
			}
			if to != nil {
				v := to(it.Key(), it.Value())
				if err := b.Set(bytes.Clone(it.Key()), v); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	return n
}

// An incident that several facts of one transaction change is written once,
// with its last state, when the transaction's changes are read or it
// commits; the outputs, the committed state and a replica restored from
// the changes are exactly those of one commit per fact, with idle closes
// (deletions) of incidents the same transaction wrote, and a transaction
// that aborts leaves nothing of its held states.
func TestIncidentWrittenOncePerTransaction(t *testing.T) {
	s := synthStream(rand.New(rand.NewPCG(9, 17)), 3, 40)
	facts := arrange(s, delays(s, func(item) time.Duration { return 0 }), false, false)
	const per = 50
	idle := WithIdleClose(time.Hour)
	ref, refStore := openCorrelator(t, t.TempDir(), idle)
	defer refStore.Close()
	var want []string
	for i, f := range facts {
		inTx(t, ref, func() {
			incs, err := ref.ApplyOffset(0, f, "facts", int64(i))
			if err != nil {
				t.Fatal(err)
			}
			if (i+1)%per == 0 || i == len(facts)-1 {
				closed, err := ref.Tick(f.MaxTime)
				if err != nil {
					t.Fatal(err)
				}
				incs = append(incs, closed...)
			}
			want = append(want, encode(t, incs)...)
		})
	}

	c, st := openCorrelator(t, t.TempDir(), idle)
	defer st.Close()
	replica, replicaStore := openCorrelator(t, t.TempDir(), idle)
	defer replicaStore.Close()
	var got []string
	held, closedWritten := 0, 0 // versions published without a write; closes of incidents written in the transaction
	for i := 0; i < len(facts); i += per {
		end := min(i+per, len(facts))
		applied := 0
		apply := func() (out []string, wrote map[string]bool) {
			applied = 0
			if err := c.Begin(); err != nil {
				t.Fatal(err)
			}
			wrote = map[string]bool{}
			for j := i; j < end; j++ {
				incs, err := c.ApplyOffset(0, facts[j], "facts", int64(j))
				if err != nil {
					t.Fatal(err)
				}
				for _, inc := range incs {
					wrote[inc.ID] = true
				}
				applied += len(incs)
				out = append(out, encode(t, incs)...)
			}
			closed, err := c.Tick(facts[end-1].MaxTime)
			if err != nil {
				t.Fatal(err)
			}
			for _, inc := range closed {
				if wrote[inc.ID] {
					closedWritten++
				}
			}
			return append(out, encode(t, closed)...), wrote
		}
		if (i/per)%2 == 0 {
			apply()
			c.Abort()
		}
		out, _ := apply()
		got = append(got, out...)
		if err := replica.Begin(); err != nil {
			t.Fatal(err)
		}
		writes := map[string]int{}
		err := c.Changes(func(del bool, k, v []byte) error {
			if k[0] == 'T' && k[1] == spaceIncidents {
				writes[string(k)]++
				if writes[string(k)] > 1 {
					t.Errorf("incident %q written %d times in one transaction", k, writes[string(k)])
				}
			}
			return replica.Restore(del, k, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		held += applied - len(writes)
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := replica.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if held == 0 || closedWritten == 0 {
		t.Fatalf("%d incident versions published without a write, %d idle closes of incidents written in their transaction: not a test", held, closedWritten)
	}
	sameOutputs(t, "after aborts, once per transaction", got, want)
	// (The replica's bucketed keys are not compared: expiry's range
	// deletions are not changes, a replica expires on its own Tick.)
	for what, x := range map[string]struct {
		st         *state.Store
		namespaces string
	}{"the store": {st, "TB"}, "the replica": {replicaStore, "T"}} {
		wantState, got := dumpState(t, refStore, x.namespaces), dumpState(t, x.st, x.namespaces)
		if len(got) != len(wantState) {
			t.Fatalf("%s holds %d keys, one commit a fact %d", what, len(got), len(wantState))
		}
		for k, v := range wantState {
			if got[k] != v {
				t.Fatalf("%s: key %q is %q, one commit a fact %q", what, k, got[k], v)
			}
		}
	}
	t.Logf("%d incident versions published without a write of their own, %d closed in the transaction that wrote them", held, closedWritten)
}

// dumpState is every key of st's committed state in namespaces ('T'
// timeless, 'B' bucketed: not the offsets and watermarks, which depend on
// how facts were batched) and its value.
func dumpState(t *testing.T, st *state.Store, namespaces string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range []byte(namespaces) {
		it, err := st.NewIter([]byte{ns})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			out[string(it.Key())] = string(it.Value())
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
