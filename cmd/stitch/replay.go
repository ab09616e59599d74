package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "replay",
		summary:  "Run the pipeline offline over files and write its outputs (summary, dead letters, incidents, hunting partitions) to a directory.",
		synopsis: "--in FILE [--in FILE...] --out DIR [flags]",
		details:  "Replays streaming-API records (JSON lines, a JSON array or an Event Hubs envelope; .gz too), in the\norder given, through the pipeline on an embedded broker and writes DIR/summary.json, deadletter.jsonl,\nincidents.jsonl and hunting/. A rerun into the same DIR starts clean.",
		example:  "stitch replay --in testdata/replay/mixed-bad.jsonl --out /tmp/out",
		run:      replayCmd,
	})
}

// stringsFlag collects a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func replayCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("replay")
	var pf pipelineFlags
	pf.add(fs, "state.reset", "normalize.import", "normalize.import_table", "normalize.default_tenant")
	var ins stringsFlag
	fs.Var(&ins, "in", "input file (repeatable; positional arguments are inputs too)")
	out := fs.String("out", "", "output directory (required)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the replay takes longer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ins = append(ins, fs.Args()...)
	if len(ins) == 0 || *out == "" {
		return fmt.Errorf("%w: --in and --out are required", errUsage)
	}
	cfg, err := pf.load()
	if err != nil {
		return err
	}
	if cfg.Normalize.ImportTable != "" {
		cfg.Normalize.Import = true
	}
	log, err := newLogger(cfg.Log)
	if err != nil {
		return err
	}
	if cfg.Normalize.Import {
		how := "inferred per row from its columns and ActionType"
		if cfg.Normalize.ImportTable != "" {
			how = "taken from --table: " + cfg.Normalize.ImportTable
		}
		fmt.Fprintf(os.Stderr, "stitch replay: import mode: table %s; tenant %s\n", how, cfg.Normalize.DefaultTenant)
	}
	sum, err := pipeline.Replay(ctx, cfg.Config, pipeline.ReplayOptions{
		Inputs: ins, OutDir: *out, Timeout: *timeout,
		Progress: func(line string) { fmt.Fprintln(os.Stderr, "stitch "+line) },
	}, pipeline.WithLogger(log))
	if err != nil {
		return err
	}
	var dead int64
	for _, v := range sum.DeadLettered {
		dead += v
	}
	fmt.Fprintf(os.Stderr, "stitch replay: %s read, %d normalized, %d dead-lettered, %s; wrote %s in %.1fs\n",
		english.Count(sum.RecordsRead, "record"), sum.RecordsRead-dead, dead, english.Count(sum.Incidents, "incident"), *out, sum.Seconds)
	huntDir := cmp.Or(cfg.Hunting.Dir, filepath.Join(*out, "hunting"))
	if why := noIncidentReason(sum, huntDir); why != "" {
		fmt.Fprintf(os.Stderr, "stitch replay: %s\n", why)
	}
	return nil
}

// noIncidentReason says why a replay that read records built no incident
// when the input held no alert: incidents are built from alerts, and a
// recording of telemetry alone (the Golden SAML one) yields hunting rows.
func noIncidentReason(sum pipeline.Summary, huntDir string) string {
	if sum.Incidents > 0 || sum.RecordsRead == 0 || sum.Normalized["AlertInfo"] > 0 {
		return ""
	}
	return "no incident: the input holds no product alert (AlertInfo, AlertEvidence) and no detection raised one; " +
		"its telemetry is in the hunting partitions ('stitch hunt --dir " + huntDir + " --tables')"
}
