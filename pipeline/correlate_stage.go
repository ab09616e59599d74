package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// correlateProc is stage 2: facts in (keyed by tenant, so every alert of a
// tenant arrives at one task), incidents out, keyed by incident id so that a
// SIEM can upsert by key (and compaction keeps the latest version).
type correlateProc struct {
	p *Pipeline
	c *correlate.Correlator
}

func (cp *correlateProc) process(ctx context.Context, r *kgo.Record, tx *txn) error {
	f, err := correlate.UnmarshalFacts(r.Value)
	if err != nil {
		// Facts are written by stitch itself; one that does not decode is a
		// bug or a foreign producer: dead-letter it rather than stop.
		cp.p.log.Error("undecodable facts record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		tx.produce(ctx, &kgo.Record{Topic: cp.p.cfg.Topics.DeadLetter, Value: mustJSON(map[string]any{
			"reason": "bad_facts", "error": err.Error(), "topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		})})
		return nil
	}
	incs, err := cp.c.Apply(r.Partition, f)
	if err != nil {
		return fmt.Errorf("correlate: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

func (cp *correlateProc) publish(ctx context.Context, incs []correlate.Incident, tx *txn) error {
	for i := range incs {
		v, err := json.Marshal(&incs[i])
		if err != nil {
			return fmt.Errorf("encode incident %s: %w", incs[i].ID, err)
		}
		tx.produce(ctx, &kgo.Record{Topic: cp.p.cfg.Topics.Incidents, Key: []byte(incs[i].ID), Value: v,
			Headers: []kgo.RecordHeader{{Key: "stitch-tenant", Value: []byte(incs[i].TenantID)}}})
		tx.tally.incidents++
	}
	return nil
}

func (cp *correlateProc) flush(context.Context, *txn) error { return nil }

func (cp *correlateProc) tick(ctx context.Context, now time.Time, tx *txn) error {
	incs, err := cp.c.Tick(now)
	if err != nil {
		return fmt.Errorf("correlate tick: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

func (cp *correlateProc) aborted()       {}
func (cp *correlateProc) committed(*txn) {}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return b
}
