// Package pipelinetest runs a whole stitch pipeline for a test: an embedded
// Kafka-protocol broker, the topics, and the pipeline in the background
// until the test ends, with small settings that make a test quick (two
// partitions, 100 ms commits, no hunting sink unless asked, state in the
// test's temporary directory).
package pipelinetest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/pipeline"
)

// Running is a pipeline started by Start.
type Running struct {
	Config  pipeline.Config
	Brokers []string
	// Client produces and reads on the broker; closed when the test ends.
	Client *kgo.Client
	// Pipeline is the running pipeline (its view, its totals).
	Pipeline *pipeline.Pipeline
}

// Start runs a pipeline under ctx until the test ends (its Cleanup stops
// it and fails the test if Run returned an error). configure adjusts the
// test defaults before the pipeline is built.
func Start(t testing.TB, ctx context.Context, instance string, configure func(*pipeline.Config)) *Running {
	t.Helper()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := pipeline.Default()
	cfg.Hunting.Enabled = false
	cfg.Topics.Partitions = 2
	cfg.Kafka.CommitInterval = pipeline.Duration(100 * time.Millisecond)
	cfg.State.Dir = t.TempDir()
	if configure != nil {
		configure(&cfg)
	}
	p, err := pipeline.New(cfg, pipeline.WithBrokers(b.Addrs()), pipeline.WithInstance(instance))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() {
		cl.Close()
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &Running{Config: cfg, Brokers: b.Addrs(), Client: cl, Pipeline: p}
}

// Produce writes records synchronously, failing the test on an error.
func (r *Running) Produce(t testing.TB, ctx context.Context, recs ...*kgo.Record) {
	t.Helper()
	if err := r.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
