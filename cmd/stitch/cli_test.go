package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// The binary explains itself: help in every spelling exits 0 on standard
// output, and each command's help starts with a sentence and ends with an
// example.
func TestHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := stitchBinary(t)
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}, {"help", "help"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Errorf("stitch %v: %v", args, err)
		}
		if !strings.Contains(string(out), "Commands:") {
			t.Errorf("stitch %v printed:\n%s", args, out)
		}
	}
	for name, c := range commands {
		for _, args := range [][]string{{"help", name}, {name, "-h"}, {name, "--help"}} {
			out, err := exec.Command(bin, args...).Output()
			if err != nil {
				t.Errorf("stitch %v: %v", args, err)
				continue
			}
			text := strings.TrimSpace(string(out))
			first, _, _ := strings.Cut(text, "\n")
			if first != c.summary || !strings.HasSuffix(first, ".") {
				t.Errorf("stitch %v: first line %q, want the one-sentence summary %q", args, first, c.summary)
			}
			if i := strings.LastIndex(text, "\nExample:\n"); i < 0 || !strings.Contains(text[i:], "stitch "+name) {
				t.Errorf("stitch %v: does not end with an example of the command:\n%s", args, text)
			}
		}
	}
	// A command's verbs (incidents show, actions approve, ...) answer -h
	// with the command's help, even before the id they need.
	for _, args := range [][]string{{"incidents", "show", "-h"}, {"incidents", "show", "inc-1", "--help"},
		{"actions", "approve", "-h"}, {"actions", "undo", "--help"}, {"indicators", "add", "-h"},
		{"rules", "check", "-h"}, {"rules", "test", "-h"}, {"token", "create", "-h"}} {
		out, err := exec.Command(bin, args...).Output()
		if first, _, _ := strings.Cut(string(out), "\n"); err != nil || first != commands[args[0]].summary {
			t.Errorf("stitch %v: %v, first line %q", args, err, first)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--rate", "x")
	cmd.Stderr = &stderr
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "simulate.rate") {
		t.Errorf("a bad flag value: %v, stderr %q; want exit 2 naming the key", err, stderr.String())
	}
}

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	want := "stitch v1.2.3\ncommit abc123 (modified) 2026-01-02T03:04:05Z\ngo go1.26.0\n"
	if got := versionText(bi, true); got != want {
		t.Errorf("versionText = %q, want %q", got, want)
	}
	if got := versionText(nil, false); !strings.HasPrefix(got, "stitch devel\ncommit unknown\ngo go") {
		t.Errorf("without build info: %q", got)
	}
}

// Flags may follow the arguments; after "--" everything is an argument.
func TestFlagsAfterArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // format, then the arguments
	}{
		{[]string{"show", "inc-1", "--format", "json"}, "json show inc-1"},
		{[]string{"--format=json", "show", "inc-1"}, "json show inc-1"},
		{[]string{"show", "--format", "ids", "inc-1"}, "ids show inc-1"},
		{[]string{"show", "--", "--format", "json"}, "text show --format json"},
		{nil, "text"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		format := fs.String("format", "text", "")
		if err := parseFlags(fs, c.args); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if got := strings.Join(append([]string{*format}, fs.Args()...), " "); got != c.want {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}

// A negative count, limit or duration is refused before anything runs,
// naming the flag.
func TestNegativeFlagValuesRefused(t *testing.T) {
	for _, args := range [][]string{
		{"consume", "--topic", "signals", "--until-idle", "-1s"},
		{"replay", "--in", "x.jsonl", "--out", "/nonexistent", "--timeout", "-1m"},
		{"hunt", "--limit", "-5", "SELECT 1"},
		{"broker", "--partitions", "-3"},
		{"indicators", "add", "--expires", "-1d"},
		{"incidents", "show", "inc-1", "--since", "-2h"},
	} {
		err := commands[args[0]].run(context.Background(), args[1:])
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "is negative: want 0 or more") {
			t.Errorf("stitch %v: %v, want a usage error naming the flag", args, err)
		}
	}
}

// consume names a topic that does not exist, and reads an empty one.
func TestConsumeMissingAndEmptyTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	brokers := "--brokers=" + strings.Join(b.Addrs(), ",")
	err = consumeCmd(ctx, []string{brokers, "--topic", "nosuch", "--until-idle", "100ms"})
	if err == nil || !strings.Contains(err.Error(), "topic nosuch does not exist") {
		t.Errorf("missing topic: %v", err)
	}
	if err := consumeCmd(ctx, []string{brokers, "--topic", "nosuch", "--format", "yaml"}); !errors.Is(err, errUsage) {
		t.Errorf("--format yaml: %v, want a usage error", err)
	}
}
