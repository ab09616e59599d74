package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

func init() {
	register(command{
		name:     "broker",
		summary:  "Run the embedded Kafka-protocol broker standalone until Ctrl-C, for several stitch processes or tests to share.",
		synopsis: "[--listen HOST:PORT] [--data DIR] [flags]",
		example:  "stitch broker --listen 127.0.0.1:9092 --data /tmp/broker",
		run:      brokerCmd,
	})
}

func brokerCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("broker")
	listen := fs.String("listen", "127.0.0.1:9092", "host:port of the first broker (port 0: any free port; broker i gets port+i)")
	data := fs.String("data", "", "persist topics, records and offsets in this directory (default: in memory)")
	partitions := fs.Int("partitions", 0, "partitions of topics created with the broker default (default 10)")
	brokers := fs.Int("num-brokers", 1, "number of brokers in the cluster")
	logLevel := fs.String("log-level", "warn", "broker log level: debug, info, warn or error")
	latency := fs.Duration("produce-latency", 0, "delay every produce request by this long (a slow cluster, for testing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: %v", errUsage, *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := []kafka.BrokerOption{kafka.Listen(*listen), kafka.NumBrokers(*brokers), kafka.BrokerLogger(logger)}
	if *data != "" {
		opts = append(opts, kafka.DataDir(*data))
	}
	if *partitions > 0 {
		opts = append(opts, kafka.DefaultPartitions(*partitions))
	}
	if *latency > 0 {
		opts = append(opts, kafka.ProduceLatency(*latency))
	}
	b, err := kafka.StartBroker(opts...)
	if err != nil {
		return err
	}
	defer b.Close() // persists state when --data is set
	fmt.Printf("stitch broker listening on %s\n", strings.Join(b.Addrs(), ","))
	<-ctx.Done()
	return nil
}
