package correlate

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// TestScenarios runs every testdata/scenarios/*.txt: streaming-API records
// (one JSON per line) fed through the real normalizer, Extract, the facts wire
// encoding and Apply, in chunks (a run of JSON lines is one chunk, so order
// matters as written), interleaved with commands and expectations:
//
//	---                        ends a chunk (records before it are applied first)
//	option window|lateness|grace|idle|lookback <duration>; option prevalence <n>
//	tick <RFC3339>             close idle incidents / expire by event time
//	same A B ...               alerts share one live incident (tenant/id when ids collide)
//	separate A B ...           alerts are in pairwise different incidents
//	incidents N                live incidents (with alerts)
//	redirected N               incidents redirected by merges
//	closed N                   incidents closed as idle
//	late N                     Stats().Late
//	severity A S               severity of A's incident
//	name A text...             A's incident displayName contains text
//	reason A B entity          A's incident explains the A-B link by entity
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

type scenario struct {
	t      *testing.T
	opts   []Option
	c      *Correlator
	norm   *normalize.Normalizer
	chunk  [][]byte
	offset int64
	latest map[string]Incident // incident id (tenant-scoped ids are unique) -> highest version
	schema *incidentValidator
}

func runScenario(t *testing.T, path string) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	s := &scenario{t: t, latest: map[string]Incident{}, schema: newValidator(t)}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if strings.HasPrefix(text, "{") {
			s.chunk = append(s.chunk, []byte(text))
			continue
		}
		s.flush()
		s.command(fmt.Sprintf("%s:%d", filepath.Base(path), line), strings.Fields(text))
	}
	s.flush()
	if err := s.correlator().Verify(); err != nil {
		t.Errorf("invariants after the scenario: %v", err)
	}
}

func (s *scenario) correlator() *Correlator {
	if s.c == nil {
		st, err := state.Open(s.t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
		if err != nil {
			s.t.Fatal(err)
		}
		s.t.Cleanup(func() { st.Close() })
		if s.c, err = New(st, s.opts...); err != nil {
			s.t.Fatal(err)
		}
		s.norm = normalize.New()
	}
	return s.c
}

// flush normalizes the pending chunk and applies its facts.
func (s *scenario) flush() {
	c := s.correlator()
	if len(s.chunk) == 0 {
		return
	}
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	for _, v := range s.chunk {
		s.norm.Add(normalize.Input{Topic: "ah", Offset: s.offset, Value: v}, emit, func(d normalize.DeadLetter) {
			s.t.Fatalf("record dead-lettered (%s): %s: %s", d.Reason, d.Error, d.Value)
		})
		s.offset++
	}
	s.norm.Flush(emit)
	s.chunk = s.chunk[:0]
	for _, b := range batches {
		f := wireFacts(s.t, b)
		if f == nil {
			continue
		}
		out, err := c.ApplyOffset(0, f, "facts", s.offset)
		if err != nil {
			s.t.Fatalf("apply: %v", err)
		}
		s.record(out)
	}
}

func (s *scenario) record(out []Incident) {
	for _, inc := range out {
		s.schema.validate(s.t, inc)
		if prev, ok := s.latest[inc.ID]; ok && inc.Version <= prev.Version {
			s.t.Fatalf("incident %s version %d after %d", inc.ID, inc.Version, prev.Version)
		}
		s.latest[inc.ID] = inc
	}
	// Every alert belongs to exactly one live incident.
	seen := map[string]string{}
	for _, inc := range s.latest {
		if inc.Status == StatusRedirected && len(inc.Alerts) > 0 {
			s.t.Fatalf("redirected incident %s still holds alerts", inc.ID)
		}
		if inc.Status != StatusActive {
			continue
		}
		for _, a := range inc.Alerts {
			k := inc.TenantID + "/" + a.ID
			if other, dup := seen[k]; dup {
				s.t.Fatalf("alert %s in incidents %s and %s", k, other, inc.ID)
			}
			seen[k] = inc.ID
		}
	}
}

// incidentOf finds the live incident of an alert ("id" or "tenant/id").
func (s *scenario) incidentOf(where, ref string) Incident {
	tenant, id, scoped := strings.Cut(ref, "/")
	if !scoped {
		id, tenant = ref, ""
	}
	var found []Incident
	for _, inc := range s.latest {
		if inc.Status != StatusActive || (tenant != "" && inc.TenantID != tenant) {
			continue
		}
		if slices.ContainsFunc(inc.Alerts, func(a Alert) bool { return a.ID == id }) {
			found = append(found, inc)
		}
	}
	if len(found) != 1 {
		s.t.Fatalf("%s: alert %s is in %d live incidents, want 1", where, ref, len(found))
	}
	return found[0]
}

func (s *scenario) count(status string) int {
	n := 0
	for _, inc := range s.latest {
		if inc.Status == status && (status != StatusActive || len(inc.Alerts) > 0) {
			n++
		}
	}
	return n
}

func (s *scenario) command(where string, f []string) {
	t := s.t
	t.Helper()
	atoi := func(v string) int {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return n
	}
	switch f[0] {
	case "---": // chunk boundary: the flush before the command did it
	case "option":
		if s.c != nil {
			t.Fatalf("%s: options must come before records", where)
		}
		if f[1] == "prevalence" {
			s.opts = append(s.opts, WithPrevalence(atoi(f[2]), 7*24*time.Hour))
			return
		}
		d, err := time.ParseDuration(f[2])
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		switch f[1] {
		case "window":
			s.opts = append(s.opts, WithWindow(d))
		case "lateness":
			s.opts = append(s.opts, WithLateness(d))
		case "grace":
			s.opts = append(s.opts, WithEvidenceGrace(d))
		case "idle":
			s.opts = append(s.opts, WithIdleClose(d))
		default:
			t.Fatalf("%s: unknown option %s", where, f[1])
		}
	case "tick":
		at, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		out, err := s.correlator().Tick(at)
		if err != nil {
			t.Fatalf("%s: tick: %v", where, err)
		}
		s.record(out)
	case "same":
		first := s.incidentOf(where, f[1])
		for _, ref := range f[2:] {
			if got := s.incidentOf(where, ref); got.ID != first.ID {
				t.Errorf("%s: %s in %s (%q), %s in %s (%q): want the same incident",
					where, f[1], first.ID, first.DisplayName, ref, got.ID, got.DisplayName)
			}
		}
	case "separate":
		ids := map[string]string{}
		for _, ref := range f[1:] {
			inc := s.incidentOf(where, ref)
			if other, ok := ids[inc.ID]; ok {
				t.Errorf("%s: %s and %s share incident %s (reasons %v): want separate",
					where, other, ref, inc.ID, inc.CorrelationReasons)
			}
			ids[inc.ID] = ref
		}
	case "incidents", "redirected", "closed":
		status := map[string]string{"incidents": StatusActive, "redirected": StatusRedirected, "closed": StatusResolved}[f[0]]
		if got := s.count(status); got != atoi(f[1]) {
			t.Errorf("%s: %d %s incidents, want %s", where, got, status, f[1])
		}
	case "late":
		if got := s.correlator().Stats().Late; got != int64(atoi(f[1])) {
			t.Errorf("%s: Stats().Late = %d, want %s", where, got, f[1])
		}
	case "severity":
		if got := s.incidentOf(where, f[1]).Severity; got != f[2] {
			t.Errorf("%s: severity of %s's incident = %s, want %s", where, f[1], got, f[2])
		}
	case "name":
		want := strings.Join(f[2:], " ")
		if got := s.incidentOf(where, f[1]).DisplayName; !strings.Contains(got, want) {
			t.Errorf("%s: displayName %q lacks %q", where, got, want)
		}
	case "reason":
		inc := s.incidentOf(where, f[1])
		ok := slices.ContainsFunc(inc.CorrelationReasons, func(r CorrelationReason) bool {
			pair := r.Alerts[0] == f[1] && r.Alerts[1] == f[2] || r.Alerts[0] == f[2] && r.Alerts[1] == f[1]
			return pair && r.Entity == f[3]
		})
		if !ok {
			t.Errorf("%s: no reason %s-%s by %s in %v", where, f[1], f[2], f[3], inc.CorrelationReasons)
		}
	default:
		t.Fatalf("%s: unknown command %q", where, f[0])
	}
}
