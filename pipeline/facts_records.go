package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// CountFactsLeftOut counts correlation facts (a sighting, a link, an alert
// with its evidence) too large for one record of the facts topic, which
// could not be sent (label: the stage's name). The rows they came from are
// still normalized and in the hunting partitions.
const CountFactsLeftOut = "facts_left_out"

// factsRecordBytes is the largest value a stage writes to the facts topic.
// A batch's facts grow with its distinct entities (a 4 MiB batch of
// telemetry can summarise to more than 1 MiB), so facts go out in chunks
// of at most 512 KiB, or the record limit (recordLimit) when that is
// smaller.
func factsRecordBytes(c Config) int { return min(512<<10, recordLimit(c)) }

// factsRecords encodes f as the facts topic's records, keyed by tenant,
// chunked to max bytes (correlate.Facts.MarshalChunks); what cannot fit is
// logged and counted, never silently lost.
func factsRecords(tx Txn, log *slog.Logger, stage, topic string, f *correlate.Facts, max int) ([]*kgo.Record, error) {
	chunks, dropped, err := f.MarshalChunks(max)
	if err != nil {
		return nil, fmt.Errorf("encode facts: %w", err)
	}
	if dropped > 0 {
		if log != nil {
			log.Warn("correlation facts too large for one record were left out", "stage", stage, "tenant", f.Tenant,
				"left_out", dropped, "max_bytes", max)
		}
		tx.Count(CountFactsLeftOut, stage, int64(dropped))
	}
	recs := make([]*kgo.Record, len(chunks))
	for i, v := range chunks {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(f.Tenant), Value: v}
	}
	return recs, nil
}

// produceFacts produces f to the facts topic (factsRecords).
func produceFacts(ctx context.Context, tx Txn, log *slog.Logger, stage, topic string, f *correlate.Facts, max int) error {
	recs, err := factsRecords(tx, log, stage, topic, f, max)
	if err != nil {
		return err
	}
	for _, r := range recs {
		tx.Produce(ctx, r)
	}
	return nil
}
