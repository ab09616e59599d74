package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// TestProduceThenConsumeCommands runs the two tool subcommands against an
// embedded broker the way a user would, and checks the documented output.
func TestProduceThenConsumeCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, []byte("{\"tenantId\":\"t1\",\"n\":1}\nnot json\n\x00\xff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	brokers := "--brokers=" + strings.Join(b.Addrs(), ",")
	if err := produceCmd(ctx, []string{brokers, "--topic", "in", in}); err != nil {
		t.Fatalf("produce: %v", err)
	}
	out := filepath.Join(dir, "out.jsonl")
	if err := consumeCmd(ctx, []string{brokers, "--topic", "in", "--out", out, "--until-idle", "200ms"}); err != nil {
		t.Fatalf("consume: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("output line %q is not JSON: %v", line, err)
		}
		for _, f := range []string{"topic", "partition", "offset", "key", "timestamp", "headers", "value"} {
			if _, ok := rec[f]; !ok {
				t.Fatalf("output line %q lacks %q", line, f)
			}
		}
		v, _ := json.Marshal(rec["value"])
		values[string(v)] = rec
	}
	if r := values[`{"n":1,"tenantId":"t1"}`]; r == nil || r["key"] != "t1" {
		t.Errorf("JSON value should be parsed and keyed by tenant: %s", data)
	}
	if r := values[`"not json"`]; r == nil || r["key"] != nil {
		t.Errorf("text value should be a string without a key: %s", data)
	}
	if values[`{"base64":"AP8="}`] == nil {
		t.Errorf("binary value should be base64: %s", data)
	}
	if err := produceCmd(ctx, []string{brokers, "--key", "sideways", in}); err == nil {
		t.Error("an unknown --key must be a usage error")
	}
}
