package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

func init() {
	register("consume", "write a topic's committed records as JSON lines, until it is idle", consumeCmd)
}

func consumeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	kc := addKafkaFlags(fs)
	topic := fs.String("topic", "", "topic to read from the start (required)")
	out := fs.String("out", "-", "output file, - for stdout")
	idle := fs.Duration("until-idle", 5*time.Second, "stop once the end is reached and nothing new arrived for this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" {
		return fmt.Errorf("%w: --topic is required", errUsage)
	}
	if err := kc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var w io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n, err := kafka.Drain(ctx, *kc, *topic, *idle, func(r *kgo.Record) error {
		return enc.Encode(recordJSON(r))
	})
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("consume: write %s: %w", *out, ferr)
	}
	if *out != "-" {
		fmt.Fprintf(os.Stderr, "consumed %d records from %s into %s\n", n, *topic, *out)
	}
	return err
}

// consumedRecord is one output line; the field order is the documented one.
type consumedRecord struct {
	Topic     string         `json:"topic"`
	Partition int32          `json:"partition"`
	Offset    int64          `json:"offset"`
	Key       any            `json:"key"`
	Timestamp string         `json:"timestamp"`
	Headers   map[string]any `json:"headers"`
	Value     any            `json:"value"`
}

func recordJSON(r *kgo.Record) consumedRecord {
	c := consumedRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       bytesJSON(r.Key, false),
		Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		Headers:   make(map[string]any, len(r.Headers)),
		Value:     bytesJSON(r.Value, true),
	}
	for _, h := range r.Headers {
		c.Headers[h.Key] = bytesJSON(h.Value, false)
	}
	return c
}

// bytesJSON renders bytes readably: JSON as itself (when parseJSON), text as
// a string, anything else as {"base64": ...}; nil is null.
func bytesJSON(b []byte, parseJSON bool) any {
	switch {
	case b == nil:
		return nil
	case parseJSON && json.Valid(b):
		return json.RawMessage(b)
	case utf8.Valid(b):
		return string(b)
	default:
		return map[string]string{"base64": base64.StdEncoding.EncodeToString(b)}
	}
}
