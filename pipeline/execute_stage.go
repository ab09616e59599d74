package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/execute"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/microsoft"
	"github.com/stitch-xdr/stitch/connectors/webhook"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// An executor stage carries approved actions out and reports each outcome
// on topics.action_results, which the respond stage applies to the ledger
// (succeeded, or failed with the reason). Each executor is a stage of its
// own, off unless configured, with its own consumer group on the actions
// topic: the webhook executor (connectors/webhook) and the Microsoft
// executor (connectors/microsoft).
//
// The outcome and the input offset commit together; a call whose
// transaction aborts (a crash after the call) is made again with the same
// idempotency key, so a receiver that honours the key acts once. A later
// version of an action that is still approved (an alert joined it) is
// carried out again under the same key, for the same reason.

// Executor carries out one approved action (connectors/webhook,
// connectors/microsoft). Only a done ctx is an error: the action is then
// tried again after the transaction aborts.
type Executor interface {
	Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error)
}

func executorStage(name, doc string, enabled func(Config) bool, build func(Config) (Executor, error)) Stage {
	return Stage{
		Name:    name,
		Doc:     doc,
		Enabled: func(c Config) bool { return respondEnabled(c) && enabled(c) },
		Inputs:  func(c Config) []string { return []string{c.Topics.Actions} },
		Outputs: func(c Config) []Output {
			return []Output{{Topic: kafka.TopicSpec{Name: c.Topics.ActionResults}}, {Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}}}
		},
		Processor: func(sc *StageContext) (Processor, error) {
			exec, err := build(sc.Config)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return &executeProc{name: name, exec: exec, results: sc.Config.Topics.ActionResults, deadLetter: sc.Config.Topics.DeadLetter}, nil
		},
	}
}

func webhookStage() Stage {
	return executorStage("execute-webhook", "posts approved actions to respond.webhook_url and reports the outcomes",
		func(c Config) bool { return c.Respond.WebhookURL != "" },
		func(c Config) (Executor, error) {
			r := c.Respond
			return &webhook.Executor{URL: r.WebhookURL, Secret: []byte(r.WebhookSecret),
				Retry: execute.Retry{Attempts: r.WebhookAttempts, Backoff: r.WebhookBackoff.D()}}, nil
		})
}

func microsoftStage() Stage {
	return executorStage("execute-microsoft", "carries approved actions out through Defender for Endpoint and Microsoft Graph and reports the outcomes",
		func(c Config) bool { return c.Respond.Microsoft },
		func(c Config) (Executor, error) {
			creds, err := microsoft.CredentialsFromEnv()
			if err != nil {
				return nil, err
			}
			r := c.Respond
			return &microsoft.Executor{Credentials: creds, DefenderURL: r.MicrosoftDefenderURL, GraphURL: r.MicrosoftGraphURL,
				LoginURL: r.MicrosoftLoginURL, Retry: execute.Retry{Attempts: r.WebhookAttempts, Backoff: r.WebhookBackoff.D()}}, nil
		})
}

type executeProc struct {
	name    string
	exec    Executor
	results string
	// deadLetter takes records of the actions topic that are not actions.
	deadLetter string
}

func (w *executeProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var a respond.Action
	if err := json.Unmarshal(r.Value, &a); err != nil {
		deadLetter(ctx, tx, w.deadLetter, "bad_action_record", r, fmt.Errorf("%s: not an action: %w", w.name, err))
		return nil
	}
	if a.Status != respond.StatusApproved {
		return nil
	}
	out, err := w.exec.Execute(ctx, &a)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err) // stopped: the transaction aborts, the action is tried again
	}
	v, err := json.Marshal(&out)
	if err != nil {
		return err
	}
	tx.Produce(ctx, &kgo.Record{Topic: w.results, Key: r.Key, Value: v})
	tx.Count("outcomes", out.Status, 1)
	return nil
}

func (w *executeProc) Flush(context.Context, Txn) error           { return nil }
func (w *executeProc) Tick(context.Context, time.Time, Txn) error { return nil }
func (w *executeProc) Aborted()                                   {}
func (w *executeProc) Committed()                                 {}
