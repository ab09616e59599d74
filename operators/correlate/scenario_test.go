package correlate

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// TestScenarios runs every testdata/scenarios/*.txt, a datadriven file
// (github.com/cockroachdb/datadriven): streaming-API records fed through the
// real normalizer, Extract, the facts wire encoding and the correlator's one
// commit path, interleaved with questions whose answers follow "----". After
// a change of behaviour, `go test ./operators/correlate -run Scenarios
// -rewrite` rewrites the answers, and the change is a reviewed diff of the
// data files. Directives:
//
//	apply                 the records below (one JSON per line), in one transaction;
//	                      prints every incident version it produced
//	option k=v            window|lateness|grace|idle=<duration>, prevalence=<n> (before any apply)
//	tick at=<RFC3339>     close idle incidents / expire by event time; prints the closed
//	same A B ...          "same" when the alerts share one live incident (tenant/id when ids collide)
//	separate A B ...      "separate" when they are in pairwise different incidents
//	incidents|redirected|closed   how many live (with alerts), redirected, idle-closed incidents
//	late                  Stats().Late
//	severity A            severity of A's incident
//	name A                displayName of A's incident
//	reason A B            the entities A's incident gives as the A-B link
//	analyst A rev=N [status=S] [classification=C] [determination=D] [assigned=U] [tags=a,b] [incident=ID] [tenant=T]
//	                      an analyst's change to A's incident (or incident ID), as the facts carry it
//
// Every scenario ends with the correlator's invariants checked.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			s := &scenario{t: t, latest: map[string]Incident{}, schema: newValidator(t)}
			datadriven.RunTest(t, f, func(t *testing.T, d *datadriven.TestData) string {
				s.t = t
				return s.directive(d)
			})
			s.t = t
			if err := s.correlator().Verify(); err != nil {
				t.Errorf("invariants after the scenario: %v", err)
			}
		})
	}
}

type scenario struct {
	t      *testing.T
	opts   []Option
	c      *Correlator
	norm   *normalize.Normalizer
	offset int64
	latest map[string]Incident // incident id (tenant-scoped ids are unique) -> highest version
	schema *incidentValidator
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

// apply normalizes records and applies their facts in one transaction, as
// a poll is in the correlate stage, and prints the incident versions.
func (s *scenario) apply(records []string) string {
	c := s.correlator()
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	for _, v := range records {
		s.norm.Add(normalize.Input{Topic: "ah", Offset: s.offset, Value: []byte(v)}, emit, func(d normalize.DeadLetter) {
			s.t.Fatalf("record dead-lettered (%s): %s: %s", d.Reason, d.Error, d.Value)
		})
		s.offset++
	}
	s.norm.Flush(emit)
	var out []Incident
	inTx(s.t, c, func() {
		for _, b := range batches {
			f := wireFacts(s.t, b)
			if f == nil {
				continue
			}
			incs, err := c.ApplyOffset(0, f, "facts", s.offset)
			if err != nil {
				s.t.Fatalf("apply: %v", err)
			}
			out = append(out, incs...)
		}
	})
	s.record(out)
	return versions(out)
}

// versions prints incident versions, one a line: id, status, version and
// alerts (a redirected one names where it went).
func versions(incs []Incident) string {
	var b strings.Builder
	for _, inc := range incs {
		fmt.Fprintf(&b, "%s v%d %s:", inc.ID, inc.Version, inc.Status)
		for _, a := range inc.Alerts {
			b.WriteString(" " + a.ID)
		}
		if inc.RedirectIncidentID != nil {
			b.WriteString(" -> " + *inc.RedirectIncidentID)
		}
		b.WriteByte('\n')
	}
	return b.String()
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
		// Live: not merged away nor closed (an analyst's inProgress is live).
		if inc.Status == StatusRedirected || inc.Status == StatusResolved || (tenant != "" && inc.TenantID != tenant) {
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

func (s *scenario) directive(d *datadriven.TestData) string {
	t := s.t
	t.Helper()
	var args []string
	for _, a := range d.CmdArgs {
		args = append(args, a.Key)
	}
	switch d.Cmd {
	case "apply":
		return s.apply(strings.Split(strings.TrimSpace(d.Input), "\n"))
	case "option":
		if s.c != nil {
			d.Fatalf(t, "options must come before records")
		}
		for _, a := range d.CmdArgs {
			if len(a.Vals) != 1 {
				d.Fatalf(t, "option %s: want one value", a.Key)
			}
			if a.Key == "prevalence" {
				n, err := strconv.Atoi(a.Vals[0])
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				s.opts = append(s.opts, WithPrevalence(n, 7*24*time.Hour))
				continue
			}
			v, err := time.ParseDuration(a.Vals[0])
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			switch a.Key {
			case "window":
				s.opts = append(s.opts, WithWindow(v))
			case "lateness":
				s.opts = append(s.opts, WithLateness(v))
			case "grace":
				s.opts = append(s.opts, WithEvidenceGrace(v))
			case "idle":
				s.opts = append(s.opts, WithIdleClose(v))
			default:
				d.Fatalf(t, "unknown option %s", a.Key)
			}
		}
		return ""
	case "tick":
		var when string
		d.ScanArgs(t, "at", &when)
		at, err := time.Parse(time.RFC3339, when)
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		var out []Incident
		inTx(t, s.correlator(), func() {
			if out, err = s.correlator().Tick(at); err != nil {
				d.Fatalf(t, "tick: %v", err)
			}
		})
		s.record(out)
		return versions(out)
	case "analyst":
		inc := s.incidentOf(d.Pos, args[0])
		u := AnalystUpdate{IncidentID: inc.ID, Time: inc.LastUpdateDateTime}
		tenant := inc.TenantID
		for _, a := range d.CmdArgs[1:] {
			v := strings.Join(a.Vals, ",")
			switch a.Key {
			case "rev":
				u.Revision, _ = strconv.ParseInt(v, 10, 64)
			case "status":
				u.Status = v
			case "classification":
				u.Classification = v
			case "determination":
				u.Determination = v
			case "assigned":
				u.AssignedTo = &v
			case "tags":
				u.Tags = a.Vals
			case "comments": // comments=N: N numbered notes
				n, _ := strconv.Atoi(v)
				for i := 1; i <= n; i++ {
					u.Comments = append(u.Comments, Comment{By: "analyst", Time: u.Time, Text: fmt.Sprintf("note %d", i)})
				}
			case "incident":
				u.IncidentID = v // an incident by id (a merged one)
			case "tenant":
				tenant = v // facts of another tenant naming this incident
			default:
				d.Fatalf(t, "analyst: unknown field %s", a.Key)
			}
		}
		var out []Incident
		inTx(t, s.correlator(), func() {
			var err error
			if out, err = s.correlator().ApplyOffset(0, &Facts{Tenant: tenant, Updates: []AnalystUpdate{u}}, "facts", s.offset); err != nil {
				d.Fatalf(t, "analyst: %v", err)
			}
			s.offset++
		})
		s.record(out)
		var b strings.Builder
		for _, inc := range out {
			who := "nobody"
			if inc.AssignedTo != nil {
				who = *inc.AssignedTo
			}
			fmt.Fprintf(&b, "%s v%d %s %s/%s assigned=%s tags=%s", inc.ID, inc.Version, inc.Status, inc.Classification, inc.Determination, who, strings.Join(inc.Tags, ","))
			if n := len(inc.Comments); n > 0 {
				fmt.Fprintf(&b, " comments=%d (%s .. %s)", n, inc.Comments[0].Text, inc.Comments[n-1].Text)
			}
			b.WriteString("\n")
		}
		if b.Len() == 0 {
			return "no versions\n"
		}
		return b.String()
	case "same":
		first := s.incidentOf(d.Pos, args[0])
		var differ []string
		for _, ref := range args[1:] {
			if got := s.incidentOf(d.Pos, ref); got.ID != first.ID {
				differ = append(differ, fmt.Sprintf("%s in %s (%q)", ref, got.ID, got.DisplayName))
			}
		}
		if len(differ) > 0 {
			return fmt.Sprintf("%s in %s (%q); %s", args[0], first.ID, first.DisplayName, strings.Join(differ, "; "))
		}
		return "same"
	case "separate":
		ids := map[string]string{}
		var shared []string
		for _, ref := range args {
			inc := s.incidentOf(d.Pos, ref)
			if other, ok := ids[inc.ID]; ok {
				shared = append(shared, fmt.Sprintf("%s and %s share %s (reasons %v)", other, ref, inc.ID, inc.CorrelationReasons))
			}
			ids[inc.ID] = ref
		}
		if len(shared) > 0 {
			return strings.Join(shared, "; ")
		}
		return "separate"
	case "incidents", "redirected", "closed":
		status := map[string]string{"incidents": StatusActive, "redirected": StatusRedirected, "closed": StatusResolved}[d.Cmd]
		return strconv.Itoa(s.count(status))
	case "late":
		return strconv.FormatInt(s.correlator().Stats().Late, 10)
	case "severity":
		return s.incidentOf(d.Pos, args[0]).Severity
	case "name":
		return s.incidentOf(d.Pos, args[0]).DisplayName
	case "reason":
		var out []string
		for _, r := range s.incidentOf(d.Pos, args[0]).CorrelationReasons {
			if r.Alerts == [2]string{args[0], args[1]} || r.Alerts == [2]string{args[1], args[0]} {
				out = append(out, r.Entity)
			}
		}
		return strings.Join(out, "\n")
	}
	d.Fatalf(t, "unknown directive %q", d.Cmd)
	return ""
}
