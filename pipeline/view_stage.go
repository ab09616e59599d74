package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// viewStage keeps the incident view the API serves (internal/view): the
// latest version of every incident and action and the analysts' changes.
// Like Kafka Streams' global tables it reads every partition of its topics
// in every process, outside any consumer group, so that any process can
// serve the whole API; the view is in memory and is rebuilt from the
// compacted topics at each start. Its group is used only to commit the
// position it reached, so that its lag shows like any stage's.
//
// It declares UpdatesTopic as an output: the API of the process that runs
// it writes the analysts' changes there (PATCH /api/incidents/{id}), and
// the view lays them over the incidents.
func viewStage() Stage {
	return Stage{
		Name:    "view",
		Doc:     "reads every partition of incidents, actions and the analysts' updates into the API's incident view, in every process",
		Enabled: func(c Config) bool { return c.Correlate.Enabled },
		Inputs: func(c Config) []string {
			in := []string{c.Topics.Incidents, UpdatesTopic(c)}
			if respondEnabled(c) {
				in = append(in, c.Topics.Actions)
			}
			return in
		},
		Outputs: func(c Config) []Output {
			// Keyed by incident id, the analysts' whole state of it: a
			// compacted topic keeps the latest.
			return []Output{{Topic: kafka.TopicSpec{Name: UpdatesTopic(c), Configs: map[string]string{"cleanup.policy": "compact"}}}}
		},
		Sink: func(sc *StageContext) (Runner, error) { return newViewSink(sc) },
		Position: "reads every partition in every process, from the start: the view is rebuilt from the compacted topics; " +
			"the group only records how far it got, for lag",
	}
}

// UpdatesTopic is the topic of the analysts' changes to incidents: the
// incidents topic's name with ".updates".
func UpdatesTopic(c Config) string { return c.Topics.Incidents + ".updates" }

// views holds each pipeline's view: the API asks for it (View) before the
// stage that fills it is built.
var views sync.Map // *Pipeline → *view.Index

// View is the incident view of the pipeline, filled by its view stage
// while it runs (empty when correlation is off).
func (p *Pipeline) View() *view.Index {
	v, _ := views.LoadOrStore(p, view.New())
	return v.(*view.Index)
}

type viewSink struct {
	p     *Pipeline
	sc    *StageContext
	cl    *kgo.Client
	v     *view.Index
	ready func()

	incidents, actions, updates string
}

func newViewSink(sc *StageContext) (*viewSink, error) {
	p := sc.p
	opts, err := p.clientOpts(sc.Name)
	if err != nil {
		return nil, err
	}
	c := sc.Config
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumeTopics(sc.info.Inputs...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("view consumer: %w", err)
	}
	return &viewSink{p: p, sc: sc, cl: cl, v: p.View(), ready: sc.readyFunc(),
		incidents: c.Topics.Incidents, actions: c.Topics.Actions, updates: UpdatesTopic(c)}, nil
}

func (s *viewSink) Run(ctx context.Context) error {
	defer s.cl.Close()
	adm := kadm.NewClient(s.cl)
	// The view is ready once it has read what the topics held when it
	// started (or a poll finds nothing more).
	ends := map[string]map[int32]int64{}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	listed, err := adm.ListEndOffsets(ectx, s.sc.info.Inputs...)
	cancel()
	if err == nil {
		listed.Each(func(o kadm.ListedOffset) {
			if o.Err == nil && o.Offset > 0 {
				if ends[o.Topic] == nil {
					ends[o.Topic] = map[int32]int64{}
				}
				ends[o.Topic][o.Partition] = o.Offset
			}
		})
	}
	next := kadm.Offsets{}
	caughtUp := func() bool {
		for topic, parts := range ends {
			for p, end := range parts {
				// A transaction's commit marker takes the last offset.
				if o, ok := next.Lookup(topic, p); !ok || o.At < end-1 {
					return false
				}
			}
		}
		return true
	}
	if err == nil && caughtUp() {
		// The topics were empty: nothing to read before the view is
		// complete (a poll would give up only after its timeout).
		s.v.SetReady()
		s.ready()
	}
	lastCommit := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := s.cl.PollFetches(pctx)
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			s.commit(adm, next)
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			s.p.log.Warn("view: fetch error", "topic", topic, "partition", p, "err", err)
		})
		t := newTally()
		fetches.EachRecord(func(r *kgo.Record) {
			t.recordsIn[r.Topic]++
			next.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Offset + 1, LeaderEpoch: -1})
			if err := s.apply(r); err != nil {
				s.p.log.Warn("view: record skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			}
		})
		if len(t.recordsIn) > 0 {
			s.p.totals.merge(s.sc.Name, t, s.p.metrics)
		}
		if !s.v.Ready() && (fetches.NumRecords() == 0 || caughtUp()) {
			s.v.SetReady()
			s.ready()
		}
		if time.Since(lastCommit) > 5*time.Second {
			s.commit(adm, next)
			lastCommit = time.Now()
		}
	}
}

// commit records the position reached under the stage's group, for lag
// only: the view is rebuilt from the start of the topics at every start.
func (s *viewSink) commit(adm *kadm.Client, next kadm.Offsets) {
	if len(next) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := adm.CommitOffsets(ctx, s.sc.Group, next); err != nil {
		s.p.log.Debug("view: commit position (for lag only)", "err", err)
	}
}

func (s *viewSink) apply(r *kgo.Record) error {
	if r.Value == nil {
		return nil // a tombstone: nothing deletes incidents or actions yet
	}
	switch r.Topic {
	case s.incidents:
		var inc correlate.Incident
		if err := json.Unmarshal(r.Value, &inc); err != nil {
			return fmt.Errorf("not an incident: %w", err)
		}
		s.v.PutIncident(inc)
	case s.actions:
		var a respond.Action
		if err := json.Unmarshal(r.Value, &a); err != nil {
			return fmt.Errorf("not an action: %w", err)
		}
		s.v.PutAction(a)
	case s.updates:
		var u view.Update
		if err := json.Unmarshal(r.Value, &u); err != nil {
			return fmt.Errorf("not an incident update: %w", err)
		}
		s.v.PutUpdate(u)
	}
	return nil
}
