package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/detect"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// CountDetections counts the alerts custom detections raised, by rule
// title (a counter of the normalize stage).
const CountDetections = "detections"

// detectTap runs the Sigma rules of detect.rules over every batch and turns
// matches into alerts, produced as correlation facts to the facts topic, so
// that they join incidents like the products' alerts.
//
// Ordering: the facts tap produces a transaction's telemetry facts as the
// batches come and holds its alert facts until Flush; this tap comes after
// it in taps() and produces its alerts only in its own Flush, which runs
// after the facts tap's. So within a transaction the correlator sees all
// telemetry (the sightings prevalence is judged by) before any alert,
// product or custom, as the facts tap's rule asks, without either tap
// knowing the other.
//
// Repeats: a rule raises one alert per main entity and suppression window
// (detect.NewAlert derives the alert id from them), so the tap sends each
// key once; the keys sent are remembered once their transaction committed,
// and forgotten when their window is two windows old. A key lost to a
// restart costs one fact the correlator recognises (same alert id).
//
// Correlation rules: every match of a rule a correlation rule refers to,
// suppressed or not, is sent as a detect.Event to DetectMatchesTopic,
// keyed by tenant, in Flush; the detect-correlate stage keeps their windows
// (detect_correlate_stage.go). Such a rule raises alerts of its own only
// where a correlation referring to it says generate: true, as Sigma says.
func detectTap() Tap {
	return Tap{
		Name:    "detect",
		Enabled: func(c Config) bool { return c.Detect.Enabled && len(c.Detect.Rules) > 0 && c.Correlate.Enabled },
		// The facts topic, which the facts tap declares too (Describe lists
		// a topic once).
		Outputs: func(c Config) []Output {
			out := []Output{{Topic: kafka.TopicSpec{Name: c.Topics.Facts}}}
			if hasCorrelations(c) {
				out = append(out, Output{Topic: kafka.TopicSpec{Name: DetectMatchesTopic}})
			}
			return out
		},
		New: newDetectTap,
	}
}

func newDetectTap(sc *StageContext) (BatchTap, error) {
	set, err := detect.Load(sc.Config.Detect.Rules...)
	if err != nil {
		return nil, err
	}
	log := sc.Log
	if log == nil {
		log = slog.Default()
	}
	for _, p := range set.Problems {
		log.Warn("detect: rule not loaded", "file", p.File, "line", p.Line, "unsupported", p.Unsupported, "reason", p.Reason, "title", p.Title)
	}
	for _, p := range set.ResolveCorrelations() {
		log.Warn("detect: correlation rule not run", "file", p.File, "line", p.Line, "unsupported", p.Unsupported, "reason", p.Reason, "title", p.Title)
	}
	log.Info("detect: rules loaded", "rules", len(set.Rules), "correlations", len(set.Correlations), "not_loaded", len(set.Problems), "tables", set.Tables())
	d := &detectWriter{
		topic: sc.Config.Topics.Facts, max: factsRecordBytes(sc.Config), log: sc.Log, suppress: sc.Config.Detect.Suppress.D(),
		set: set, eval: set.NewEvaluator(), sent: map[string]time.Time{}, pending: map[string]time.Time{},
	}
	if len(set.Correlations) > 0 && hasCorrelations(sc.Config) {
		d.matchTopic = DetectMatchesTopic
		d.correlated, d.standalone = map[*detect.Rule]bool{}, map[*detect.Rule]bool{}
		for _, r := range set.Rules {
			d.correlated[r], d.standalone[r] = set.Correlated(r), set.Standalone(r)
		}
	}
	return d, nil
}

type detectWriter struct {
	topic    string
	max      int
	log      *slog.Logger
	suppress time.Duration
	set      *detect.Set
	eval     *detect.Evaluator
	// sent are the suppression keys of committed alerts, by match time.
	sent map[string]time.Time
	// pending are the keys of the open transaction, and facts its alerts.
	pending map[string]time.Time
	facts   []*correlate.Facts
	// newest is the latest alert time seen: the clock that expires keys.
	newest time.Time
	// matchTopic receives the matches correlation rules read (empty: no
	// correlation rules); matches are the open transaction's, by tenant.
	matchTopic string
	matches    []*detect.Events
	// correlated rules' matches go to matchTopic; only standalone ones
	// are alerts of their own.
	correlated, standalone map[*detect.Rule]bool
}

func (d *detectWriter) Batch(ctx context.Context, b normalize.Batch, tx Txn) error {
	var f *correlate.Facts
	var m *detect.Events
	d.eval.Eval(b, func(r *detect.Rule, row int) {
		a := detect.NewAlert(r, b, row, d.suppress)
		if d.matchTopic != "" && d.correlated[r] {
			if m == nil {
				m = &detect.Events{Tenant: b.Tenant}
				d.matches = append(d.matches, m)
			}
			m.Events = append(m.Events, d.set.Event(d.eval, r, row, a.Info.Time, a.Evidence))
			if !d.standalone[r] {
				return // only the correlation is an alert (Sigma's generate: false)
			}
		}
		if _, ok := d.sent[a.Key]; ok {
			return
		}
		if _, ok := d.pending[a.Key]; ok {
			return
		}
		d.pending[a.Key] = a.Info.Time
		if f == nil {
			f = &correlate.Facts{Tenant: b.Tenant}
			d.facts = append(d.facts, f)
		}
		f.Alerts = append(f.Alerts, a.Info)
		f.Evidence = append(f.Evidence, a.Evidence...)
		if a.Info.Time.After(f.MaxTime) {
			f.MaxTime = a.Info.Time
		}
		if a.Info.Time.After(d.newest) {
			d.newest = a.Info.Time
		}
		tx.Count(CountDetections, r.Title, 1)
	})
	return nil
}

// Flush produces the transaction's alerts, after every telemetry fact (see
// detectTap).
func (d *detectWriter) Flush(ctx context.Context, tx Txn) error {
	for _, f := range d.facts {
		if err := produceFacts(ctx, tx, d.log, "normalize", d.topic, f, d.max); err != nil {
			return fmt.Errorf("detection alerts: %w", err)
		}
	}
	clear(d.facts)
	d.facts = d.facts[:0]
	for _, m := range d.matches {
		v, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode detection matches: %w", err)
		}
		tx.Produce(ctx, &kgo.Record{Topic: d.matchTopic, Key: []byte(m.Tenant), Value: v})
	}
	clear(d.matches)
	d.matches = d.matches[:0]
	return nil
}

// Committed remembers the keys the transaction sent, and forgets keys whose
// window has long passed.
func (d *detectWriter) Committed() {
	for k, t := range d.pending {
		d.sent[k] = t
	}
	clear(d.pending)
	horizon := d.newest.Add(-2*d.suppress - time.Hour)
	for k, t := range d.sent {
		if t.Before(horizon) {
			delete(d.sent, k)
		}
	}
}

func (d *detectWriter) Aborted() {
	clear(d.facts)
	d.facts = d.facts[:0]
	clear(d.matches)
	d.matches = d.matches[:0]
	clear(d.pending)
}
