package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"testing"

	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/conf"
)

// Every key whose flag tag names a flag (of run unless the tag names a
// command) is registered by that command, with the key's doc as its help
// (keyFlag builds both from the tags). configs/README.md lists these flags.
func TestEveryKeyFlagExists(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stderr := os.Stderr
	os.Stderr = devnull // the commands print their usage for -h
	defer func() { os.Stderr = stderr }()
	for _, name := range []string{"run", "replay"} {
		if err := commands[name].run(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: %v", name, err)
		}
	}
	for _, k := range conf.Keys(appconfig.Config{}) {
		if k.Flag == "" {
			continue
		}
		cmd := k.FlagCommand()
		if cmd == "" {
			cmd = "run"
		}
		if !keyFlagsOf[cmd][k.Path] {
			t.Errorf("%s's flag tag says %q, but stitch %s has no such flag", k.Path, k.Flag, cmd)
		}
	}
}

// Flags override the file only when given, and a bad value is refused when
// the flags are parsed.
func TestKeyFlagsOverrideWhenGiven(t *testing.T) {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var pf pipelineFlags
	pf.add(fs, "normalize.import", "normalize.import_table")
	if err := fs.Parse([]string{"--state-dir", "/tmp/x", "--import", "--table", "DeviceEvents"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pf.load()
	if err != nil {
		t.Fatal(err)
	}
	def := appconfig.Default()
	if cfg.State.Dir != "/tmp/x" || !cfg.Normalize.Import || cfg.Normalize.ImportTable != "DeviceEvents" ||
		cfg.Log.Level != def.Log.Level || cfg.Kafka.Group != def.Kafka.Group {
		t.Fatalf("flags applied wrongly: %+v", cfg)
	}
	fs = flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pf = pipelineFlags{}
	pf.add(fs, "simulate.rate")
	if err := fs.Parse([]string{"--rate", "fast"}); err == nil {
		t.Fatal("--rate fast accepted")
	}
}
