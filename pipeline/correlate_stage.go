package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

// correlateStage is stage 2: facts in (keyed by tenant, so every alert of a
// tenant arrives at one task), incidents out, keyed by incident id so that a
// SIEM can upsert by key (and compaction keeps the latest version).
//
// Exactly-once: the correlator is the stage's state store. Its writes during
// one Kafka transaction stay in one pending Pebble batch; the stage runtime
// produces them to the changelogs inside the transaction and commits the
// batch only after the Kafka transaction committed (stores.go), and restores
// a partition from the changelogs on assignment (restore.go).
// CountIncidentsNew counts incidents published for the first time (version
// 1): how many incidents exist, where CountIncidentVersions counts updates.
const CountIncidentsNew = "incidents_new"

func correlateStage() Stage {
	return Stage{
		Name:    "correlate",
		Doc:     "groups alerts into incidents by shared entities, per tenant",
		Enabled: func(c Config) bool { return c.Correlate.Enabled },
		Inputs:  func(c Config) []string { return []string{c.Topics.Facts} },
		Outputs: func(c Config) []Output {
			inc := kafka.TopicSpec{Name: c.Topics.Incidents,
				// Every incident version is the full incident keyed by id:
				// compaction keeps the latest, which is all a consumer that
				// starts late needs.
				Configs: map[string]string{"cleanup.policy": "compact"}}
			return []Output{
				{Topic: inc, Replay: "incidents.jsonl", Latest: true},
				{Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}, Replay: "deadletter.jsonl"},
			}
		},
		Stores: []StoreSpec{{Name: "correlate", Changelogs: func(c Config) []kafka.TopicSpec {
			return []kafka.TopicSpec{ChangelogTopic(c.Topics.Changelog), WindowChangelogTopic(c.Topics.WindowChangelog, windowRetention(c.Correlate))}
		}}},
		TickEvery: func(c Config) time.Duration { return c.Correlate.TickEvery.D() },
		Processor: newCorrelateProc,
		Progress: func(s StageSnapshot) string {
			return fmt.Sprintf("incidents %d (%s)", s.Sum(CountIncidentsNew), english.Count(s.Sum(CountIncidentVersions), "version"))
		},
	}
}

// windowRetention is how long the window changelog keeps a record: the
// longest any bucket lives (its width plus what expiry keeps behind the
// watermark), plus a day for event time running behind wall-clock time.
func windowRetention(c CorrelateConfig) time.Duration {
	late := c.AllowedLateness.D()
	return max(2*c.Window.D()+late, 2*c.Grace.D()+late, c.PrevalenceLookback.D()+late+correlate.PrevalenceBucket) + 24*time.Hour
}

type correlateProc struct {
	c          *correlate.Correlator
	incidents  string
	deadLetter deadLetters
	log        func(msg string, args ...any)
}

func newCorrelateProc(sc *StageContext) (Processor, error) {
	store, err := sc.OpenStore("correlate")
	if err != nil {
		return nil, err
	}
	c := sc.Config.Correlate
	cor, err := correlate.New(store,
		// Only the owner of a tenant's facts partition closes its idle
		// incidents: the store keeps tenants whose partition moved away.
		correlate.WithOwnership(func(tenant string) bool { return sc.OwnsKey([]byte(tenant)) }),
		// A tenant's state ages by its own facts partition's clock.
		correlate.WithPartitioner(func(tenant string) int32 { return sc.PartitionOf([]byte(tenant)) }),
		correlate.WithWindow(c.Window.D()),
		correlate.WithEvidenceGrace(c.Grace.D()),
		correlate.WithLateness(c.AllowedLateness.D()),
		correlate.WithPrevalence(c.PrevalenceThreshold, c.PrevalenceLookback.D()),
		correlate.WithIdleClose(c.IdleClose.D()),
		// One fsync per transaction (a commit interval): without it Pebble
		// leaves log write errors (a full disk) unreported, and the store
		// would go on as if its writes had landed.
		correlate.WithSync(true),
	)
	if err != nil {
		return nil, fmt.Errorf("correlator: %w", err)
	}
	if err := sc.Attach("correlate", correlatorStore{cor}); err != nil {
		return nil, err
	}
	return &correlateProc{c: cor, incidents: sc.Config.Topics.Incidents, deadLetter: deadLettersOf(sc.Config), log: sc.Log.Error}, nil
}

// correlatorStore is the correlator as a StateStore.
type correlatorStore struct{ *correlate.Correlator }

func (correlatorStore) ChangelogRoute(key []byte, partitionOf func(tenant []byte) int32) (int32, bool, error) {
	return correlate.ChangelogRoute(key, partitionOf)
}

// ChangelogGroup groups a transaction's new prevalence sightings of a
// tenant in a day bucket into few window-changelog records.
func (correlatorStore) ChangelogGroup(key, val []byte) int { return correlate.SightingGroup(key, val) }

func (cp *correlateProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	f, err := correlate.UnmarshalFacts(r.Value)
	if err != nil {
		// Facts are written by stitch itself; one that does not decode is a
		// bug or a foreign producer: dead-letter it rather than stop.
		cp.log("undecodable facts record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		cp.deadLetter.send(ctx, tx, "bad_facts", r, err)
		return nil // the runtime records that the store covers the offset
	}
	incs, err := cp.c.ApplyOffset(r.Partition, f, r.Topic, r.Offset)
	if err != nil {
		return fmt.Errorf("correlate: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

func (cp *correlateProc) publish(ctx context.Context, incs []correlate.Incident, tx Txn) error {
	if len(incs) > 0 {
		markUrgent(tx) // an incident update: commit soon (kafka.urgent_commit_interval)
	}
	for i := range incs {
		v, err := json.Marshal(&incs[i])
		if err != nil {
			return fmt.Errorf("encode incident %s: %w", incs[i].ID, err)
		}
		tx.Produce(ctx, &kgo.Record{Topic: cp.incidents, Key: []byte(incs[i].ID), Value: v,
			Headers: []kgo.RecordHeader{{Key: "stitch-tenant", Value: []byte(incs[i].TenantID)}}})
		tx.Count(CountIncidentVersions, "", 1)
		if incs[i].Version == 1 {
			tx.Count(CountIncidentsNew, "", 1)
		}
	}
	return nil
}

func (cp *correlateProc) Flush(context.Context, Txn) error { return nil }

func (cp *correlateProc) Tick(ctx context.Context, now time.Time, tx Txn) error {
	incs, err := cp.c.Tick(now)
	if err != nil {
		return fmt.Errorf("correlate tick: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

// Aborted and Committed have nothing to do: the correlator's pending state
// is the store's transaction, which the runtime commits or drops.
func (cp *correlateProc) Aborted()   {}
func (cp *correlateProc) Committed() {}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return b
}
