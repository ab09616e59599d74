package detect

import (
	"archive/zip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// OTRFRecording is one OTRF atomic recording as its _metadata file names it.
type OTRFRecording struct {
	ID, Title string
	// Techniques are the ATT&CK ids the metadata maps it to (T1003.001).
	Techniques []string
	// Zips are the local paths of its host recordings.
	Zips []string
}

// OTRFRecordings reads ../shared/data/otrf/datasets/atomic/_metadata.
func OTRFRecordings(t *testing.T) []OTRFRecording {
	t.Helper()
	root := shareddata.Path(t, "otrf")
	metas, err := filepath.Glob(filepath.Join(root, "datasets", "atomic", "_metadata", "*.yaml"))
	if err != nil || len(metas) == 0 {
		t.Skipf("no OTRF atomic metadata under %s (%v)", root, err)
	}
	var out []OTRFRecording
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			ID, Title      string
			AttackMappings []struct {
				Technique    string `yaml:"technique"`
				SubTechnique string `yaml:"sub-technique"`
			} `yaml:"attack_mappings"`
			Files []struct{ Type, Link string }
		}
		if err := yaml.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		r := OTRFRecording{ID: meta.ID, Title: meta.Title}
		for _, a := range meta.AttackMappings {
			tech := a.Technique
			if a.SubTechnique != "" {
				tech += "." + a.SubTechnique
			}
			r.Techniques = append(r.Techniques, tech)
		}
		for _, f := range meta.Files {
			_, rel, ok := strings.Cut(f.Link, "/Security-Datasets/master/")
			if !ok || !strings.EqualFold(f.Type, "host") {
				continue
			}
			if p := filepath.Join(root, filepath.FromSlash(rel)); fileExists(p) {
				r.Zips = append(r.Zips, p)
			}
		}
		if len(r.Zips) > 0 {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		t.Skip("no OTRF atomic host recording named by the metadata is present")
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// ReadZip calls fn with each JSON value of each file of a zip.
func ReadZip(t *testing.T, path string, fn func([]byte)) {
	t.Helper()
	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		err = ReadValues(r, fn)
		r.Close()
		if err != nil {
			t.Fatalf("%s/%s: %v", path, f.Name, err)
		}
	}
}

// AttackedHost is the host each recording's attack runs on (its
// adversary_view and events): every atomic recording here is on
// WORKSTATION5, written short or fully qualified.
const AttackedHost = "workstation5"

// AlsoAttacked are the other hosts a recording's attack touches: SharpSC
// queries a service of WORKSTATION6 from WORKSTATION5.
var AlsoAttacked = map[string][]string{"SDWIN-200806012009": {"workstation6"}}

func ShortHost(h string) string {
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	return h
}

// TestShippedRulesOnOTRF: the rule set that ships in configs/rules loads
// whole, and over each OTRF atomic recording (Windows Security and Sysmon
// events in the flat form) it matches on the attacked host only, with a
// rule tagged with a technique the recording's metadata names.
func TestShippedRulesOnOTRF(t *testing.T) {
	recs := OTRFRecordings(t)
	set, err := Load(filepath.Join(shareddata.Root(t), "configs", "rules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Problems {
		t.Errorf("shipped rule not loaded: %s", p)
	}
	covered := 0
	for _, r := range recs {
		tester := NewTester(set)
		hosts := map[string]int{}
		techs := map[string]bool{}
		rules := map[string]int{}
		tester.OnMatch = func(m Match) {
			h, _ := m.Fields["DeviceName"].(string)
			hosts[ShortHost(h)]++
			rules[m.Title]++
			for _, rule := range set.Rules {
				if rule.ID == m.RuleID {
					for _, tech := range rule.Techniques {
						techs[tech] = true
					}
				}
			}
		}
		for _, z := range r.Zips {
			ReadZip(t, z, tester.Add)
		}
		tester.Flush()
		tester.Close()
		var names []string
		for n, c := range rules {
			names = append(names, fmt.Sprintf("%s ×%d", n, c))
		}
		sort.Strings(names)
		t.Logf("%s %s %v: %d records, %d not normalized %v; matches on %v: %s", r.ID, r.Title, r.Techniques,
			tester.Records, tester.Skipped, tester.SkipReasons, hosts, strings.Join(names, "; "))
		if hosts[AttackedHost] == 0 {
			t.Errorf("%s %s: no match on %s", r.ID, r.Title, AttackedHost)
		}
		for _, h := range AlsoAttacked[r.ID] {
			if hosts[h] == 0 {
				t.Errorf("%s %s: no match on %s, which the attack touches too", r.ID, r.Title, h)
			}
		}
		for h := range hosts {
			if h != AttackedHost && !slices.Contains(AlsoAttacked[r.ID], h) {
				t.Errorf("%s %s: %d matches on %s, which the attack does not touch", r.ID, r.Title, hosts[h], h)
			}
		}
		if slices.ContainsFunc(r.Techniques, func(tech string) bool { return techs[tech] }) {
			covered++
		} else {
			t.Errorf("%s %s: no matching rule is tagged with %v (matched %v)", r.ID, r.Title, r.Techniques, techs)
		}
	}
	fmt.Printf("shipped rules on OTRF: %d recordings, %d with a match of their technique on %s\n", len(recs), covered, AttackedHost)
}
