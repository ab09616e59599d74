package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
)

func init() {
	register(command{
		name:     "produce",
		summary:  "Produce replay files (JSON lines, JSON arrays, Event Hubs envelopes, .gz) to a topic, keyed by tenant.",
		synopsis: "--brokers HOST:PORT [--topic TOPIC] FILE...",
		example:  "stitch produce --brokers 127.0.0.1:9092 --topic signals testdata/replay/mixed-bad.jsonl",
		run:      produceCmd,
	})
}

func produceCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("produce")
	kc := addKafkaFlags(fs)
	topic := fs.String("topic", "signals", "topic to produce to (created with broker defaults if absent)")
	key := fs.String("key", "tenant", "record key: tenant (the record's tenantId, keeps a tenant in one partition) or none")
	maxMsg := fs.Int("max-message-bytes", 0, "largest record to produce (default franz-go's 1 MiB; the broker must allow it too)")
	var inputs []string
	fs.Func("in", "input file; repeat the flag or list files after the flags", func(s string) error {
		inputs = append(inputs, s)
		return nil
	})
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	inputs = append(inputs, fs.Args()...)
	if len(inputs) == 0 {
		return fmt.Errorf("%w: no input files (--in FILE or FILE...)", errUsage)
	}
	var popts []kafka.ProduceOption
	switch *key {
	case "tenant":
		popts = append(popts, kafka.KeyByTenant())
	case "none":
	default:
		return fmt.Errorf("%w: --key %q: want tenant or none", errUsage, *key)
	}
	kc.MaxMessageBytes = int32(*maxMsg)
	if err := kc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, kafka.TopicSpec{Name: *topic}); err != nil {
		return err
	}
	n, err := kafka.ProduceFiles(ctx, cl, *topic, inputs, popts...)
	fmt.Printf("produced %s to %s from %s\n", english.Count(n, "record"), *topic, strings.Join(inputs, ", "))
	return err
}
