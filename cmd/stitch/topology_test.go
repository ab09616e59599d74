package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// `stitch topology` prints what a config runs, with no broker: in JSON the
// stages with their topics, groups and stores, and the topics to create;
// a config that turns correlation off drops its stage, store and topics.
func TestTopologyCommand(t *testing.T) {
	bin := stitchBinary(t)
	cfg := filepath.Join(t.TempDir(), "stitch.yaml")
	if err := os.WriteFile(cfg, []byte("kafka:\n  group: acme\ncorrelate:\n  enabled: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "topology", "--format", "json").Output()
	if err != nil {
		t.Fatalf("stitch topology: %v", err)
	}
	var doc struct {
		Stages []struct {
			Name   string   `json:"name"`
			Inputs []string `json:"inputs"`
			Group  string   `json:"group"`
			Stores []struct {
				Name       string   `json:"name"`
				Changelogs []string `json:"changelogs"`
			} `json:"stores"`
		} `json:"stages"`
		Topics []struct {
			Name    string            `json:"name"`
			Configs map[string]string `json:"configs"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	var names []string
	for _, s := range doc.Stages {
		names = append(names, s.Name+"@"+s.Group)
	}
	if !slices.Equal(names, []string{"normalize@stitch-normalize", "correlate@stitch-correlate", "hunting@stitch-hunting",
		"respond-feed@stitch-respond-feed", "respond-decisions@stitch-respond-decisions", "respond@stitch-respond", "view@stitch-view", "incident-updates@stitch-incident-updates"}) {
		t.Fatalf("stages %v", names)
	}
	if st := doc.Stages[1].Stores; len(st) != 1 || len(st[0].Changelogs) != 2 {
		t.Fatalf("correlate stores %+v", st)
	}

	text, err := exec.Command(bin, "topology", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("stitch topology --config: %v\n%s", err, text)
	}
	s := string(text)
	if !strings.Contains(s, "group:            acme-normalize") || strings.Contains(s, "correlate") || strings.Contains(s, "stitch.facts") {
		t.Fatalf("text topology with correlation off and group acme:\n%s", s)
	}
	if out, err := exec.Command(bin, "topology", "--format", "yaml").CombinedOutput(); err == nil || !strings.Contains(string(out), "not text or json") {
		t.Fatalf("--format yaml: %v %s", err, out)
	}
}

// `stitch topology` refuses a config `stitch run` refuses, with the same
// message naming the key, rather than printing a topology (0 partitions)
// an operator would create topics and ACLs from.
func TestTopologyRejectsAnInvalidConfig(t *testing.T) {
	bin := stitchBinary(t)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no partitions", "topics:\n  partitions: 0\n", "topics.partitions: must be at least 1"},
		{"replication", "topics:\n  replication_factor: -2\n", "topics.replication_factor: -2 is out of range"},
		{"log format", "log:\n  format: xml\n", `log.format: "xml" is not one of text, json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "stitch.yaml")
			if err := os.WriteFile(cfg, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"topology", "run"} {
				out, err := exec.Command(bin, cmd, "--config", cfg).CombinedOutput()
				if err == nil || !strings.Contains(string(out), "invalid config") || !strings.Contains(string(out), tc.want) {
					t.Errorf("stitch %s with %q: %v\n%s\nwant an invalid config error with %q", cmd, tc.yaml, err, out, tc.want)
				}
			}
		})
	}
}
