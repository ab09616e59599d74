package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/webhook"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// webhookStage carries approved actions out through the webhook executor
// (connectors/webhook) and reports each outcome on topics.action_results,
// which the respond stage applies to the ledger (succeeded, or failed with
// the reason). It is off unless respond.webhook_url is set.
//
// The outcome and the input offset commit together; a call whose
// transaction aborts (a crash after the POST) is made again with the same
// idempotency key, so a receiver that honours the key acts once. A later
// version of an action that is still approved (an alert joined it) is
// posted again under the same key, for the same reason.
func webhookStage() Stage {
	return Stage{
		Name:    "execute-webhook",
		Doc:     "posts approved actions to respond.webhook_url and reports the outcomes",
		Enabled: func(c Config) bool { return respondEnabled(c) && c.Respond.WebhookURL != "" },
		Inputs:  func(c Config) []string { return []string{c.Topics.Actions} },
		Outputs: func(c Config) []Output {
			return []Output{{Topic: kafka.TopicSpec{Name: c.Topics.ActionResults}}}
		},
		Processor: func(sc *StageContext) (Processor, error) {
			c := sc.Config.Respond
			return &webhookProc{results: sc.Config.Topics.ActionResults, log: sc.Log.Warn,
				exec: &webhook.Executor{URL: c.WebhookURL, Secret: []byte(c.WebhookSecret), Attempts: c.WebhookAttempts, Backoff: c.WebhookBackoff.D()}}, nil
		},
	}
}

type webhookProc struct {
	exec    *webhook.Executor
	results string
	log     func(msg string, args ...any)
}

func (w *webhookProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var a respond.Action
	if err := json.Unmarshal(r.Value, &a); err != nil {
		w.log("execute-webhook: not an action, skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	if a.Status != respond.StatusApproved {
		return nil
	}
	out, err := w.exec.Execute(ctx, &a)
	if err != nil {
		return fmt.Errorf("execute-webhook: %w", err) // stopped: the transaction aborts, the action is tried again
	}
	v, err := json.Marshal(&out)
	if err != nil {
		return err
	}
	tx.Produce(ctx, &kgo.Record{Topic: w.results, Key: r.Key, Value: v})
	tx.Count("webhook_outcomes", out.Status, 1)
	return nil
}

func (w *webhookProc) Flush(context.Context, Txn) error           { return nil }
func (w *webhookProc) Tick(context.Context, time.Time, Txn) error { return nil }
func (w *webhookProc) Aborted()                                   {}
func (w *webhookProc) Committed()                                 {}
