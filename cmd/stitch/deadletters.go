package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
)

func init() {
	register(command{
		name:     "deadletters",
		summary:  "Count the dead letters (records stitch could not normalize) by reason and show a sample of each.",
		synopsis: "[--format text|json] [--brokers HOST:PORT]",
		details: "Reads the deadletter topic of a running 'stitch run' (found through <state-dir>/brokers) or of\n" +
			"the cluster given with --brokers.",
		example: "stitch deadletters --brokers 127.0.0.1:9092 --format json",
		run:     deadlettersCmd,
	})
}

// deadLetterReason is one reason's count and its first dead letter.
type deadLetterReason struct {
	Reason string          `json:"reason"`
	Count  int             `json:"count"`
	Sample json.RawMessage `json:"sample"`
}

func deadlettersCmd(ctx context.Context, args []string) error {
	return deadletters(ctx, args, os.Stdout)
}

// deadletters is the command, writing to stdout.
func deadletters(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("deadletters")
	cf := addClusterFlags(fs)
	format := fs.String("format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if !slices.Contains([]string{"text", "json"}, *format) {
		return fmt.Errorf("%w: --format %q is not text or json", errUsage, *format)
	}
	cfg, kc, err := cf.load()
	if err != nil {
		return err
	}
	topic := cfg.Topics.DeadLetter
	if err := topicExists(ctx, kc, topic); err != nil {
		return err
	}
	by := map[string]*deadLetterReason{}
	n, err := kafka.Drain(ctx, kc, topic, 500*time.Millisecond, func(r *kgo.Record) error {
		var dl struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(r.Value, &dl) != nil || dl.Reason == "" {
			dl.Reason = "(unreadable)"
		}
		d := by[dl.Reason]
		if d == nil {
			d = &deadLetterReason{Reason: dl.Reason, Sample: append(json.RawMessage(nil), r.Value...)}
			if !json.Valid(d.Sample) {
				d.Sample, _ = json.Marshal(string(r.Value))
			}
			by[dl.Reason] = d
		}
		d.Count++
		return nil
	})
	if err != nil {
		return err
	}
	list := make([]*deadLetterReason, 0, len(by))
	for _, d := range by {
		list = append(list, d)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Count != list[j].Count {
			return list[i].Count > list[j].Count
		}
		return list[i].Reason < list[j].Reason
	})
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"topic": topic, "total": n, "reasons": list})
	}
	fmt.Fprintf(stdout, "%s in %s\n", english.Count(n, "dead letter"), topic)
	for _, d := range list {
		fmt.Fprintf(stdout, "\n%s: %d\n  sample: %s\n", d.Reason, d.Count, sampleText(d.Sample, 400))
	}
	return nil
}

// sampleText is a dead letter on one line, cut at max bytes.
func sampleText(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	return string(b[:max]) + fmt.Sprintf("... (%d bytes)", len(b))
}
