package detect_test

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/shareddata"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/detect"
	"github.com/stitch-xdr/stitch/pipeline"
)

// Acceptance of custom detections end to end: recordings replayed through
// the whole pipeline (normalize with the Windows input and the detect tap,
// the facts topic, the real correlator), with the rules that ship in
// configs/rules.

// unzipTo writes the files of a zip under dir (a test's temporary
// directory: nothing from ../shared is copied into the repository) and
// returns their paths.
func unzipTo(t *testing.T, path, dir string) []string {
	t.Helper()
	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var out []string
	for _, f := range z.File {
		if f.FileInfo().IsDir() {
			continue
		}
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(f.Name))
		w, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(w, r)
		r.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// replayIncidents replays inputs with the shipped rules and returns the
// live incidents (the last version of each, less redirected ones) and the
// summary.
func replayIncidents(t *testing.T, cfg pipeline.Config, inputs []string) ([]correlate.Incident, pipeline.Summary) {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sum, err := pipeline.Replay(ctx, cfg, pipeline.ReplayOptions{Inputs: inputs, OutDir: out})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	f, err := os.Open(filepath.Join(out, "incidents.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := map[string]correlate.Incident{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var inc correlate.Incident
		if err := json.Unmarshal(sc.Bytes(), &inc); err != nil {
			t.Fatal(err)
		}
		if old, ok := last[inc.ID]; !ok || inc.Version >= old.Version {
			last[inc.ID] = inc
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var incs []correlate.Incident
	for _, inc := range last {
		if inc.Status != correlate.StatusRedirected {
			incs = append(incs, inc)
		}
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].CreatedDateTime.Before(incs[j].CreatedDateTime) })
	return incs, sum
}

func shippedRulesConfig(t *testing.T) pipeline.Config {
	cfg := pipeline.Default()
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")
	cfg.Hunting.Enabled = false
	cfg.Detect.Rules = []string{filepath.Join(shareddata.Root(t), "configs", "rules")}
	return cfg
}

// TestOTRFAtomicIncidents replays each OTRF atomic recording on its own:
// its customDetection alerts are on the attacked host and the correlator
// makes one incident of them. Then all recordings together, in one replay
// (see below for which share an incident).
func TestOTRFAtomicIncidents(t *testing.T) {
	recs := detect.OTRFRecordings(t)
	type result struct {
		rec    detect.OTRFRecording
		files  []string
		alerts []string // alert ids
	}
	var results []result
	one := 0
	for _, r := range recs {
		dir := t.TempDir()
		var files []string
		for _, z := range r.Zips {
			files = append(files, unzipTo(t, z, dir)...)
		}
		incs, sum := replayIncidents(t, shippedRulesConfig(t), files)
		res := result{rec: r, files: files}
		var hosts []string
		for _, inc := range incs {
			for _, a := range inc.Alerts {
				if a.DetectionSource != detect.DetectionSource {
					continue
				}
				res.alerts = append(res.alerts, a.ID)
			}
			for _, d := range inc.ImpactedAssets.Devices {
				hosts = append(hosts, detect.ShortHost(d))
			}
		}
		results = append(results, res)
		t.Logf("%s %s: %d records, normalized %v, %d incidents, %d custom alerts, devices %v",
			r.ID, r.Title, sum.RecordsRead, sum.Normalized, len(incs), len(res.alerts), hosts)
		if len(sum.DeadLettered) > 0 {
			t.Errorf("%s %s: dead letters %v: every event should reach a table", r.ID, r.Title, sum.DeadLettered)
		}
		switch {
		case len(res.alerts) == 0:
			t.Errorf("%s %s: no customDetection alert", r.ID, r.Title)
		case len(incs) != 1:
			t.Errorf("%s %s: %d incidents, want one: %v", r.ID, r.Title, len(incs), incidentSummary(incs))
		case !slices.Contains(hosts, detect.AttackedHost):
			t.Errorf("%s %s: the incident's devices %v miss the attacked host %s", r.ID, r.Title, hosts, detect.AttackedHost)
		case !allIn(detect.AlsoAttacked[r.ID], hosts):
			t.Errorf("%s %s: the incident's devices %v miss %v, which the attack touches too", r.ID, r.Title, hosts, detect.AlsoAttacked[r.ID])
		default:
			one++
		}
	}
	fmt.Printf("OTRF atomic: %d recordings, %d with one incident\n", len(recs), one)

	// All recordings in one replay. Every one ran on the same lab host,
	// WORKSTATION5 (most as its local user wardog), and the correlator
	// joins alerts that share a linking entity within correlate.window
	// (24h), transitively: an incident is a connected component. So with
	// the default window recordings of different days on that host share
	// an incident through its device: the lsass dumps via comsvcs (18
	// October 23:50 UTC) and dumpert (19 Oct 02:56), the SAM copy (04:28),
	// the psexec LSA dump (07:30) and the logon script (20 Oct 02:47), a
	// chain of hops of at most 19h16m spanning 27h; and the mshta (22 Oct
	// 06:58) and bitsadmin (23 Oct 06:36) runs, 23h38m apart: 5 incidents
	// for 10 recordings. Only the time between them tells them apart (three
	// are of one UTC day, on one host, as one user), and the closest two are
	// 1h32m apart: with a window of an hour every recording, each a few
	// minutes long, is an incident of its own. Whatever the window, the
	// recordings join only through the attacked host (its device, its local
	// account), never through another entity.
	var all []string
	byAlert := map[string]int{}
	for i, r := range results {
		all = append(all, r.files...)
		for _, a := range r.alerts {
			byAlert[a] = i
		}
	}
	together := func(window time.Duration) (incidents, alone int) {
		cfg := shippedRulesConfig(t)
		cfg.Correlate.Window = pipeline.Duration(window)
		incs, _ := replayIncidents(t, cfg, all)
		for _, inc := range incs {
			var times []time.Time
			ids := map[string]bool{}
			for _, a := range inc.Alerts {
				if i, ok := byAlert[a.ID]; ok {
					ids[results[i].rec.ID] = true
					times = append(times, a.FirstActivityDateTime)
				}
			}
			if len(ids) == 1 {
				alone++
			}
			slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
			for k := 1; k < len(times); k++ {
				if gap := times[k].Sub(times[k-1]); gap > window {
					t.Errorf("window %v: incident %s joins recordings %v across a gap of %v", window, inc.ID, keys(ids), gap)
				}
			}
			if len(ids) > 1 {
				t.Logf("window %v: incident %s joins recordings %v (alerts %s to %s)", window, inc.ID, keys(ids),
					times[0].Format(time.RFC3339), times[len(times)-1].Format(time.RFC3339))
			}
			for _, r := range inc.CorrelationReasons {
				i, ok := byAlert[r.Alerts[0]]
				j, ok2 := byAlert[r.Alerts[1]]
				if ok && ok2 && i != j && !strings.Contains(strings.ToLower(r.Entity), detect.AttackedHost) {
					t.Errorf("window %v: recordings %s and %s join through %s, not the attacked host", window,
						results[i].rec.ID, results[j].rec.ID, r.Entity)
				}
			}
		}
		return len(incs), alone
	}
	n, alone := together(cfg24h)
	fmt.Printf("OTRF atomic together, correlate.window 24h: %d incidents, %d of %d recordings alone in theirs\n", n, alone, len(results))
	n, alone = together(time.Hour)
	fmt.Printf("OTRF atomic together, correlate.window 1h: %d incidents, %d of %d recordings alone in theirs\n", n, alone, len(results))
	if alone != len(results) {
		t.Errorf("with a window of an hour, %d of %d recordings are alone in their incident, want all", alone, len(results))
	}
}

// cfg24h is the default correlation window.
var cfg24h = pipeline.Default().Correlate.Window.D()

func allIn(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func incidentSummary(incs []correlate.Incident) string {
	var b strings.Builder
	for _, inc := range incs {
		fmt.Fprintf(&b, "[%s devices %v:", inc.ID, inc.ImpactedAssets.Devices)
		for _, a := range inc.Alerts {
			fmt.Fprintf(&b, " %q@%s", a.Title, a.FirstActivityDateTime.Format(time.RFC3339))
		}
		b.WriteString("] ")
	}
	return b.String()
}

// TestGoldenSAMLIncident replays every file of the Golden SAML recording
// (the Defender advanced-hunting export, the Windows events, Entra ID's
// AuditLogs and the OfficeActivity export, as Sentinel wrote them) with the
// shipped rules. No product alert is in it: the incident is made of custom
// detections alone, and it must tie the AD FS server, the impersonated user,
// the OAuth application that read the mail and the address it came from
// (../shared/data/m365d/azure-simuland, steps 2 to 6).
func TestGoldenSAMLIncident(t *testing.T) {
	dir := shareddata.Path(t, "otrf/datasets/compound/GoldenSAMLADFSMailAccess/unzipped")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) != 4 {
		t.Fatalf("want the recording's 4 files under %s, have %v (%v)", dir, files, err)
	}
	cfg := shippedRulesConfig(t)
	// The Defender export rows carry no table: infer it per row. Windows
	// events and the Sentinel logs are recognised before that.
	cfg.Normalize.Import = true
	incs, sum := replayIncidents(t, cfg, files)
	t.Logf("read %d, normalized %v, dead-lettered %v", sum.RecordsRead, sum.Normalized, sum.DeadLettered)
	want := map[string]func(correlate.ImpactedAssets) bool{
		"host ADFS01": func(a correlate.ImpactedAssets) bool {
			return slices.ContainsFunc(a.Devices, func(d string) bool { return detect.ShortHost(d) == "adfs01" })
		},
		"user pgustavo": func(a correlate.ImpactedAssets) bool {
			return slices.ContainsFunc(a.Users, func(u string) bool { return strings.Contains(strings.ToLower(u), "pgustavo") })
		},
		"application 5a95e683": func(a correlate.ImpactedAssets) bool {
			return slices.ContainsFunc(a.Apps, func(s string) bool { return strings.Contains(s, "5a95e683-08ad-424e-a441-1d1aec52c02c") })
		},
		"IP 1.2.3.4": func(a correlate.ImpactedAssets) bool { return slices.Contains(a.IPs, "1.2.3.4") },
	}
	best, bestN := -1, -1
	for i, inc := range incs {
		n := 0
		for _, ok := range want {
			if ok(inc.ImpactedAssets) {
				n++
			}
		}
		var titles []string
		for _, a := range inc.Alerts {
			titles = append(titles, a.Title)
		}
		t.Logf("incident %s: %d alerts %q, assets %+v", inc.ID, len(inc.Alerts), titles, inc.ImpactedAssets)
		if n > bestN {
			best, bestN = i, n
		}
	}
	fmt.Printf("Golden SAML: %d incidents; the best ties %d of %d of ADFS01, pgustavo, 5a95e683, 1.2.3.4\n", len(incs), bestN, len(want))
	if len(incs) != 1 {
		t.Errorf("%d incidents, want one: %s", len(incs), incidentSummary(incs))
	}
	if best < 0 {
		t.Fatal("no incident")
	}
	for what, ok := range want {
		if !ok(incs[best].ImpactedAssets) {
			t.Errorf("the incident does not tie %s: assets %+v", what, incs[best].ImpactedAssets)
		}
	}
}
