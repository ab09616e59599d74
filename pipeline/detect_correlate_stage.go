package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/detect"
	"github.com/stitch-xdr/stitch/state"
)

// Sigma correlation rules run in two steps, so that their windows are
// state of a stage that reads one topic keyed by tenant:
//
//   - the detection tap (detect_tap.go) sends each match of a rule a
//     correlation refers to as a detect.Event (the fields correlations read,
//     the matched row's entities) to DetectMatchesTopic, keyed by tenant;
//   - detect-correlate (this stage) keeps the windows of every correlation
//     rule and group (operators/detect/windows.go) in a state.TxStore whose
//     changelog partition p is the state of partition p of the matches
//     topic, and produces the alert of a correlation that fires as
//     correlation facts, like the tap's alerts, so it joins the incident of
//     the entities its window saw.
//
// Exactly once: the window changes (their changelog records), the alert and
// the input offsets are one Kafka transaction, and the store commits after
// it; an abort drops the store's side too, and a partition moving to
// another process is restored from the changelog before its first record.
// An alert id is the rule, tenant, group and the window's first event (for
// value_percentile, whose window stays as the baseline: the group, the
// event's value and time), so processing the same matches again yields the
// same alert. Values value_sum and value_avg skip as no numbers are
// counted (CountNotNumbers) with the transaction.

// The stage's topics. They are not configuration keys (yet): nothing
// outside stitch reads them.
const (
	DetectMatchesTopic       = "stitch.detect-matches"
	DetectCorrelateStore     = "detect-correlate"
	DetectCorrelateChangelog = "stitch.detect-correlate-changelog"
)

// CountCorrelations counts the correlation rules that fired, by title (a
// counter of the detect-correlate stage), those that only feed another
// correlation (no alert of their own) included.
const CountCorrelations = "correlations"

// CountNotNumbers counts, by correlation title, the values value_sum and
// value_avg correlations skipped because they are not numbers.
const CountNotNumbers = "correlation_values_not_numbers"

// ruleCorrelations caches, per rule paths, whether the rules hold
// correlation rules: the topology asks it several times.
var ruleCorrelations sync.Map

// hasCorrelations says whether the configured rules include correlation
// rules (so the matches topic and the stage exist).
func hasCorrelations(c Config) bool {
	if !detectTap().Enabled(c) {
		return false
	}
	key := strings.Join(c.Detect.Rules, "\x00")
	if v, ok := ruleCorrelations.Load(key); ok {
		return v.(bool)
	}
	set, err := detect.Load(c.Detect.Rules...)
	has := err == nil && len(set.Correlations) > 0
	ruleCorrelations.Store(key, has)
	return has
}

func detectCorrelateStage() Stage {
	return Stage{
		Name:    "detect-correlate",
		Doc:     "evaluates Sigma correlation rules over the matches of the rules they refer to",
		Enabled: hasCorrelations,
		Inputs:  func(Config) []string { return []string{DetectMatchesTopic} },
		Outputs: func(c Config) []Output {
			return []Output{{Topic: kafka.TopicSpec{Name: c.Topics.Facts}}, {Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}}}
		},
		Stores: []StoreSpec{{Name: DetectCorrelateStore, Changelogs: func(Config) []kafka.TopicSpec {
			return []kafka.TopicSpec{ChangelogTopic(DetectCorrelateChangelog)}
		}}},
		TickEvery: func(c Config) time.Duration { return c.Correlate.TickEvery.D() },
		Processor: newDetectCorrelateProc,
		Progress: func(s StageSnapshot) string {
			return fmt.Sprintf("correlations %d", s.Sum(CountCorrelations))
		},
	}
}

type detectCorrelateProc struct {
	windows    *detect.Windows
	facts      string
	deadLetter deadLetters
	max        int
	owns       func(tenant string) bool
	log        *slog.Logger
}

func newDetectCorrelateProc(sc *StageContext) (Processor, error) {
	set, err := detect.Load(sc.Config.Detect.Rules...)
	if err != nil {
		return nil, err
	}
	// The tap logs the rules that do not load or resolve.
	set.ResolveCorrelations()
	st, err := sc.OpenStore(DetectCorrelateStore)
	if err != nil {
		return nil, err
	}
	kv := state.NewTxStore(st)
	if err := sc.Attach(DetectCorrelateStore, kv); err != nil {
		return nil, err
	}
	log := sc.Log
	if log == nil {
		log = slog.Default()
	}
	return &detectCorrelateProc{windows: set.NewWindows(kv), facts: sc.Config.Topics.Facts, deadLetter: deadLettersOf(sc.Config),
		max: factsRecordBytes(sc.Config), owns: func(tenant string) bool { return sc.OwnsKey([]byte(tenant)) }, log: log}, nil
}

func (p *detectCorrelateProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var in detect.Events
	if err := json.Unmarshal(r.Value, &in); err != nil || !state.ValidTenant(in.Tenant) {
		if err == nil {
			err = fmt.Errorf("invalid tenant %q", in.Tenant)
		}
		p.log.Error("undecodable detection matches", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		p.deadLetter.send(ctx, tx, "bad_detect_matches", r, err)
		return nil
	}
	f := correlate.Facts{Tenant: in.Tenant}
	p.windows.TakeSkipped() // a failed record's, whose transaction aborts
	for _, e := range in.Events {
		fired, err := p.windows.Observe(in.Tenant, e)
		if err != nil {
			return fmt.Errorf("detect-correlate: %w", err)
		}
		for _, x := range fired {
			tx.Count(CountCorrelations, x.Match.Rule.Title, 1)
			if !x.Standalone {
				continue // it feeds another correlation only
			}
			f.Alerts = append(f.Alerts, x.Alert.Info)
			f.Evidence = append(f.Evidence, x.Alert.Evidence...)
			if x.Alert.Info.Time.After(f.MaxTime) {
				f.MaxTime = x.Alert.Info.Time
			}
		}
	}
	for title, n := range p.windows.TakeSkipped() {
		tx.Count(CountNotNumbers, title, int64(n))
	}
	if len(f.Alerts) == 0 {
		return nil
	}
	if err := produceFacts(ctx, tx, p.log, "detect-correlate", p.facts, &f, p.max); err != nil {
		return fmt.Errorf("correlation alerts: %w", err)
	}
	return nil
}

func (p *detectCorrelateProc) Flush(context.Context, Txn) error { return nil }

// Tick ages windows no event touched for a timespan, a slice at a time, on
// the partitions this process owns.
func (p *detectCorrelateProc) Tick(_ context.Context, _ time.Time, tx Txn) error {
	n, err := p.windows.Sweep(p.owns, 10000)
	if err != nil {
		return fmt.Errorf("detect-correlate sweep: %w", err)
	}
	tx.Count("windows_expired", "", int64(n))
	return nil
}

// Aborted and Committed have nothing to do: the windows are the store's
// transaction, which the runtime commits or drops.
func (p *detectCorrelateProc) Aborted()   {}
func (p *detectCorrelateProc) Committed() {}
