package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// updatesStage carries the analysts' changes to incidents (the API writes
// them to incidents.updates, keyed by incident id) to the correlator, keyed
// by tenant on the facts topic like the rest of the correlator's input, so
// that the partition of the tenant's state receives them. The correlator
// makes each a new version of the incident on the incidents topic and keeps
// the analysts' fields from then on (operators/correlate/analyst.go).
func updatesStage() Stage {
	return Stage{
		Name:    "incident-updates",
		Doc:     "re-keys analysts' changes to incidents by tenant for the correlator, which publishes them as incident versions",
		Enabled: func(c Config) bool { return c.Correlate.Enabled },
		Inputs:  func(c Config) []string { return []string{UpdatesTopic(c)} },
		Outputs: func(c Config) []Output {
			return []Output{{Topic: kafka.TopicSpec{Name: c.Topics.Facts}}, {Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}}}
		},
		Processor: func(sc *StageContext) (Processor, error) {
			return &updatesProc{facts: sc.Config.Topics.Facts, deadLetter: deadLettersOf(sc.Config)}, nil
		},
	}
}

type updatesProc struct {
	facts      string
	deadLetter deadLetters
}

func (p *updatesProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	if r.Value == nil {
		return nil // a tombstone: nothing to tell the correlator
	}
	var u view.Update
	err := json.Unmarshal(r.Value, &u)
	if err == nil && (!state.ValidTenant(u.TenantID) || u.IncidentID == "") {
		err = fmt.Errorf("an update needs its incident id and tenant (tenant %q, incident %q)", u.TenantID, u.IncidentID)
	}
	if err != nil {
		p.deadLetter.send(ctx, tx, "bad_incident_update", r, err)
		return nil
	}
	au := u.AnalystUpdate
	au.Comments = u.Comments // the view's field shadows the embedded one in JSON
	f := correlate.Facts{Tenant: u.TenantID, Updates: []correlate.AnalystUpdate{au}}
	v, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("incident-updates: %w", err)
	}
	tx.Produce(ctx, &kgo.Record{Topic: p.facts, Key: []byte(u.TenantID), Value: v})
	tx.Count("updates", "", 1)
	return nil
}

func (p *updatesProc) Flush(context.Context, Txn) error           { return nil }
func (p *updatesProc) Tick(context.Context, time.Time, Txn) error { return nil }
func (p *updatesProc) Aborted()                                   {}
func (p *updatesProc) Committed()                                 {}
