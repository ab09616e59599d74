package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
)

func init() {
	register(command{
		name:     "consume",
		summary:  "Write a topic's committed records as JSON lines, from the start until it is idle, and say how many it read.",
		synopsis: "--brokers HOST:PORT --topic TOPIC [--format record|value] [--out FILE]",
		example:  "stitch consume --brokers 127.0.0.1:9092 --topic incidents --format value",
		run:      consumeCmd,
	})
}

func consumeCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("consume")
	kc := addKafkaFlags(fs)
	topic := fs.String("topic", "", "topic to read from the start (required)")
	out := fs.String("out", "-", "output file, - for stdout")
	idle := fs.Duration("until-idle", 5*time.Second, "stop once the end is reached and nothing new arrived for this long")
	format := fs.String("format", "record", "record: one JSON object per record, the value with its Kafka coordinates (topic, partition, offset, key, timestamp, headers); value: the raw value alone, one per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *topic == "" {
		return fmt.Errorf("%w: --topic is required", errUsage)
	}
	if *format != "record" && *format != "value" {
		return fmt.Errorf("%w: --format %q is not record or value", errUsage, *format)
	}
	if err := kc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := topicExists(ctx, *kc, *topic); err != nil {
		return err
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
		if *format == "value" {
			bw.Write(r.Value)
			return bw.WriteByte('\n')
		}
		return enc.Encode(recordJSON(r))
	})
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("consume: write %s: %w", *out, ferr)
	}
	into := ""
	if *out != "-" {
		into = " into " + *out
	}
	fmt.Fprintf(os.Stderr, "consumed %s from %s%s\n", english.Count(n, "record"), *topic, into)
	return err
}

// topicExists fails, naming the topic and the topics there are, when the
// cluster has no such topic.
func topicExists(ctx context.Context, kc kafka.ClientConfig, topic string) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics on %s: %w", strings.Join(kc.Brokers, ","), err)
	}
	if topics.Has(topic) {
		return nil
	}
	has := "no topics"
	if names := topics.Names(); len(names) > 0 {
		has = "topics " + strings.Join(names, ", ")
	}
	return fmt.Errorf("topic %s does not exist on %s (it has %s)", topic, strings.Join(kc.Brokers, ","), has)
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
