package respond

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configs/playbooks.yaml is the shipped defaults written out, for operators
// to copy and change.
func TestShippedPlaybooksFile(t *testing.T) {
	b, err := os.ReadFile("../../configs/playbooks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, DefaultYAML()) {
		t.Fatal("configs/playbooks.yaml differs from operators/respond/defaults.yaml: copy the defaults over it")
	}
	if _, err := Load("../../configs/playbooks.yaml"); err != nil {
		t.Fatal(err)
	}
}

// A directory of playbook files is read together; a mistake in one names
// that file and its line.
func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "playbooks:\n  - name: a\n    actions: [IsolateDevice]\nautomation:\n  default: full\n")
	write("b.yml", "playbooks:\n  - name: b\n    when:\n      minSeverity: high\n    actions: [DisableUser]\n")
	pb, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Playbooks) != 2 || pb.Automation.Level("t", IsolateDevice, "a", "") != LevelFull {
		t.Fatalf("loaded %+v", pb)
	}
	write("c.yaml", "playbooks:\n  - name: c\n    actions: [DisableUser]\n    when:\n      minSeverity: critical\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "c.yaml")+":5:") {
		t.Fatalf("error %v, want one naming c.yaml line 5", err)
	}
}
