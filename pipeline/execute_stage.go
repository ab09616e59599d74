package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/execute"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/microsoft"
	"github.com/stitch-xdr/stitch/connectors/webhook"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/state"
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
//
// An executor whose calls start work that ends later (a Follower: the
// Microsoft executor's machine actions) reports the action sent, with the
// work's id, and records it in its store in the same transaction; its tick
// looks at the work again (Poll, with backoff) and reports succeeded or
// failed once it ended, deleting the record. The store is a cache of its
// changelog, partitioned as the actions topic (the record's key is the
// action's record key), so a restarted or rebalanced executor follows the
// work it finds recorded instead of starting it again, and a version of
// the action read again (approved before the sent outcome reached the
// ledger, or sent) is not carried out a second time.

// Executor carries out one approved action (connectors/webhook,
// connectors/microsoft). Only a done ctx is an error: the action is then
// tried again after the transaction aborts.
type Executor interface {
	Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error)
}

// Follower is an executor whose calls may start work that ends later.
// Start reports such an action sent with the work's id (ExternalID); Poll
// looks at the work once (sent while it runs); Resume finds the work of a
// sent action nothing recorded (ok false: not this executor's). Only a
// done ctx is an error.
type Follower interface {
	Executor
	Start(ctx context.Context, a *respond.Action) (execute.Report, error)
	Poll(ctx context.Context, p *execute.Pending, now time.Time) (execute.Report, error)
	Resume(ctx context.Context, a *respond.Action) (rep execute.Report, ok bool, err error)
}

// MicrosoftTenant is one entry of respond.microsoft_tenants: the Entra ID
// application that acts for one stitch tenant. Its secret is never in the
// file: it is read from an environment variable or a file.
type MicrosoftTenant struct {
	Tenant           string `yaml:"tenant" json:"tenant"`
	AzureTenantID    string `yaml:"azure_tenant_id" json:"azure_tenant_id"`
	ClientID         string `yaml:"client_id" json:"client_id"`
	ClientSecretEnv  string `yaml:"client_secret_env,omitempty" json:"client_secret_env,omitempty"`
	ClientSecretFile string `yaml:"client_secret_file,omitempty" json:"client_secret_file,omitempty"`
}

// validateMicrosoft reports the mistakes of the Microsoft executor's keys.
func (r *RespondConfig) validateMicrosoft(bad func(key, why string)) {
	seen := map[string]bool{}
	for i, t := range r.MicrosoftTenants {
		key := fmt.Sprintf("respond.microsoft_tenants[%d]", i)
		switch {
		case !state.ValidTenant(t.Tenant):
			bad(key, "needs 'tenant', the stitch tenant id it acts for")
		case seen[t.Tenant]:
			bad(key, fmt.Sprintf("tenant %q is listed twice", t.Tenant))
		}
		seen[t.Tenant] = true
		if t.AzureTenantID == "" || t.ClientID == "" {
			bad(key, fmt.Sprintf("tenant %q needs 'azure_tenant_id' and 'client_id' (its Entra ID directory and application)", t.Tenant))
		}
		if (t.ClientSecretEnv == "") == (t.ClientSecretFile == "") {
			bad(key, fmt.Sprintf("tenant %q needs one of 'client_secret_env' (an environment variable) and 'client_secret_file' (a file) holding its client secret", t.Tenant))
		}
		if f := t.ClientSecretFile; f != "" && (!filepath.IsAbs(f) || filepath.Clean(f) != f) {
			bad(key, fmt.Sprintf("tenant %q: client_secret_file %q is not a clean absolute path (as /run/secrets/%s): a relative one depends on where stitch was started", t.Tenant, f, t.Tenant))
		}
		// A secret belongs to one application: entries that read it from
		// the same place must name the same client_id (a multi-tenant
		// application in several directories), or one tenant would act
		// with another's secret.
		for j, o := range r.MicrosoftTenants[:i] {
			env, file := t.ClientSecretEnv != "" && t.ClientSecretEnv == o.ClientSecretEnv,
				t.ClientSecretFile != "" && filepath.Clean(t.ClientSecretFile) == filepath.Clean(o.ClientSecretFile)
			if (env || file) && t.ClientID != o.ClientID && t.Tenant != o.Tenant {
				where := "client_secret_env " + t.ClientSecretEnv
				if file {
					where = "client_secret_file " + t.ClientSecretFile
				}
				bad(key, fmt.Sprintf("tenant %q reads the secret of tenant %q's application (%s, as respond.microsoft_tenants[%d]): a secret belongs to one client_id", t.Tenant, o.Tenant, where, j))
				break
			}
		}
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"respond.microsoft_poll_interval", r.MicrosoftPollInterval}, {"respond.microsoft_poll_max_interval", r.MicrosoftPollMax},
		{"respond.microsoft_action_timeout", r.MicrosoftActionTimeout}} {
		if d.v <= 0 {
			bad(d.key, fmt.Sprintf("%s is out of range: must be more than 0s", d.v))
		}
	}
	if r.MicrosoftPollMax > 0 && r.MicrosoftPollMax < r.MicrosoftPollInterval {
		bad("respond.microsoft_poll_max_interval", fmt.Sprintf("%s is below respond.microsoft_poll_interval (%s)", r.MicrosoftPollMax, r.MicrosoftPollInterval))
	}
	if r.Microsoft && r.MicrosoftChangelog == "" {
		bad("respond.microsoft_changelog", "must not be empty")
	}
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
			return &executeProc{name: name, exec: exec, results: sc.Config.Topics.ActionResults, deadLetter: deadLettersOf(sc.Config)}, nil
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

// microsoftStore is the store of the Microsoft executor's followed actions.
const microsoftStore = "execute-microsoft"

func microsoftStage() Stage {
	s := executorStage("execute-microsoft", "carries approved actions out through Defender for Endpoint and Microsoft Graph, follows machine actions until they end, and reports the outcomes",
		func(c Config) bool { return c.Respond.Microsoft }, nil)
	s.Stores = []StoreSpec{{Name: microsoftStore, Changelogs: func(c Config) []kafka.TopicSpec {
		return []kafka.TopicSpec{ChangelogTopic(c.Respond.MicrosoftChangelog)}
	}}}
	// Each tick looks at the followed actions that are due.
	s.TickEvery = func(c Config) time.Duration { return min(c.Respond.MicrosoftPollInterval.D(), time.Second) }
	s.Processor = func(sc *StageContext) (Processor, error) {
		exec, err := newMicrosoftExecutor(sc.Config, sc.Log)
		if err != nil {
			return nil, fmt.Errorf("execute-microsoft: %w", err)
		}
		st, err := sc.OpenStore(microsoftStore)
		if err != nil {
			return nil, err
		}
		followed := state.NewTxStore(st)
		if err := sc.Attach(microsoftStore, followed); err != nil {
			return nil, err
		}
		c := sc.Config
		return &executeProc{name: sc.Name, exec: exec, results: c.Topics.ActionResults, deadLetter: deadLettersOf(c),
			follow: &following{f: exec, store: followed, owns: sc.OwnsKey, log: sc.Log, due: map[string]due{},
				policy: exec.Follow}}, nil
	}
	return s
}

// newMicrosoftExecutor builds the Microsoft executor of a config: the
// credential sets of respond.microsoft_tenants, and the AZURE_* environment
// for the other tenants. It refuses a half-set environment, and a config
// with no credentials at all; a listed tenant whose secret cannot be read
// now is logged, and its actions fail with that reason until it can.
func newMicrosoftExecutor(c Config, log *slog.Logger) (*microsoft.Executor, error) {
	r := c.Respond
	def, set, err := microsoft.EnvCredentials(os.Getenv)
	if err != nil {
		return nil, err
	}
	if !set && len(r.MicrosoftTenants) == 0 {
		return nil, fmt.Errorf("no credentials: list the tenants' Entra ID applications in respond.microsoft_tenants, or set %s, %s and %s in the environment (an Entra ID application with the Defender for Endpoint and Graph permissions of the actions)",
			microsoft.EnvTenantID, microsoft.EnvClientID, microsoft.EnvClientSecret)
	}
	e := &microsoft.Executor{Credentials: def, Tenants: map[string]microsoft.Credentials{},
		DefenderURL: r.MicrosoftDefenderURL, GraphURL: r.MicrosoftGraphURL, LoginURL: r.MicrosoftLoginURL,
		Retry:  execute.Retry{Attempts: r.WebhookAttempts, Backoff: r.WebhookBackoff.D()},
		Follow: execute.Follow{Interval: r.MicrosoftPollInterval.D(), MaxInterval: r.MicrosoftPollMax.D(), Timeout: r.MicrosoftActionTimeout.D()}}
	for _, t := range r.MicrosoftTenants {
		e.Tenants[t.Tenant] = microsoft.Credentials{TenantID: t.AzureTenantID, ClientID: t.ClientID, SecretEnv: t.ClientSecretEnv, SecretFile: t.ClientSecretFile}
	}
	for _, err := range e.Check() {
		log.Warn("execute-microsoft: credentials not usable now; the tenant's actions fail until they are", "err", err)
	}
	return e, nil
}

type executeProc struct {
	name    string
	exec    Executor
	results string
	// deadLetter takes records of the actions topic that are not actions.
	deadLetter deadLetters
	// follow is set for a Follower.
	follow *following
}

func (w *executeProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var a respond.Action
	if err := json.Unmarshal(r.Value, &a); err != nil {
		w.deadLetter.send(ctx, tx, "bad_action_record", r, fmt.Errorf("%s: not an action: %w", w.name, err))
		return nil
	}
	if w.follow != nil {
		return w.follow.process(ctx, w, r, &a, tx)
	}
	if a.Status != respond.StatusApproved {
		return nil
	}
	out, err := w.exec.Execute(ctx, &a)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err) // stopped: the transaction aborts, the action is tried again
	}
	return w.report(ctx, tx, r.Key, execute.Report{Outcome: out})
}

// report produces an outcome, keyed as the action's records.
func (w *executeProc) report(ctx context.Context, tx Txn, key []byte, rep execute.Report) error {
	v, err := json.Marshal(&rep)
	if err != nil {
		return err
	}
	tx.Produce(ctx, &kgo.Record{Topic: w.results, Key: key, Value: v})
	tx.Count("outcomes", rep.Status, 1)
	return nil
}

func (w *executeProc) Flush(context.Context, Txn) error { return nil }

func (w *executeProc) Tick(ctx context.Context, now time.Time, tx Txn) error {
	if w.follow == nil {
		return nil
	}
	return w.follow.tick(ctx, w, now, tx)
}

func (w *executeProc) Aborted()   {}
func (w *executeProc) Committed() {}

// following is a Follower's side of the stage: the store of the actions
// it follows, and when each is next looked at.
type following struct {
	f      Follower
	store  *state.TxStore
	owns   func(key []byte) bool
	log    *slog.Logger
	policy execute.Follow

	// due is when each followed action (by id) is looked at next, and how
	// often it was: kept in memory only (a restarted executor looks at
	// once, then backs off again), never ahead of the store (an entry
	// without one is due now).
	due map[string]due
}

type due struct {
	at    time.Time
	looks int
}

// followed is a store entry: the pending work and the key of the action's
// records (its outcomes go out under it).
type followed struct {
	execute.Pending
	Key string `json:"key"`
}

// spaceFollowed is the store's key space of followed actions. The key's
// tenant part is the action's record key, so that the changelog routes the
// entry to the partition of the action's records (state.RouteKey with the
// input's partitioner), whose owner follows it.
const spaceFollowed = 'F'

func followedKey(recordKey []byte) []byte {
	return state.TenantKey(nil, spaceFollowed, string(recordKey))
}

// Polls a tick makes at most, and the time it may spend on them: the rest
// wait for the next tick (a transaction must not outlast its timeout).
const (
	maxPollsPerTick = 50
	pollTickBudget  = 5 * time.Second
)

// process handles a version of an action: an approved one is started
// unless it is followed already; a sent one nothing follows is looked
// for (a follower that lost its store), never started again.
func (f *following) process(ctx context.Context, w *executeProc, r *kgo.Record, a *respond.Action, tx Txn) error {
	if a.Status != respond.StatusApproved && a.Status != respond.StatusSent {
		return nil
	}
	if !state.ValidTenant(string(r.Key)) {
		f.log.Error(w.name+": action record without a usable key skipped", "partition", r.Partition, "offset", r.Offset, "action", a.ID)
		return nil
	}
	key := followedKey(r.Key)
	if _, ok, err := f.store.Get(key); err != nil || ok {
		return err // followed already: its tick reports the outcome
	}
	var rep execute.Report
	var err error
	if a.Status == respond.StatusApproved {
		rep, err = f.f.Start(ctx, a)
	} else {
		var ok bool
		rep, ok, err = f.f.Resume(ctx, a)
		if err == nil && !ok {
			if rep.Error != "" {
				f.log.Warn(w.name+": cannot tell whether a sent action is this executor's", "action", a.ID, "err", rep.Error)
			}
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err) // stopped: the transaction aborts, the action is tried again
	}
	if rep.Status == respond.StatusSent {
		v, err := json.Marshal(&followed{Pending: execute.PendingOf(a, rep), Key: string(r.Key)})
		if err != nil {
			return err
		}
		if err := f.store.Set(key, v); err != nil {
			return err
		}
		f.due[a.ID] = due{at: time.Now().Add(f.policy.Wait(0))}
		if a.Status == respond.StatusSent {
			return nil // the ledger says so already
		}
	}
	return w.report(ctx, tx, r.Key, rep)
}

// tick looks at the followed actions of owned partitions that are due,
// oldest due first, and reports those that ended.
func (f *following) tick(ctx context.Context, w *executeProc, now time.Time, tx Txn) error {
	var todo []followed
	var bad [][]byte
	seen := map[string]bool{}
	prefix := followedKey(nil)
	prefix = prefix[:len(prefix)-1] // every key of the space
	err := f.store.Scan(prefix, func(k, v []byte) error {
		var e followed
		if err := json.Unmarshal(v, &e); err != nil {
			f.log.Error(w.name+": unreadable followed action dropped", "key", string(k), "err", err)
			bad = append(bad, append([]byte(nil), k...))
			return nil
		}
		seen[e.ActionID] = true
		if f.owns([]byte(e.Key)) && !now.Before(f.due[e.ActionID].at) {
			todo = append(todo, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range bad {
		if err := f.store.Delete(k); err != nil {
			return err
		}
	}
	for id := range f.due {
		if !seen[id] { // ended, or its record was aborted
			delete(f.due, id)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return f.due[todo[i].ActionID].at.Before(f.due[todo[j].ActionID].at) })
	start := time.Now()
	for i, e := range todo {
		if i == maxPollsPerTick || time.Since(start) > pollTickBudget {
			break
		}
		before := e.Status
		rep, err := f.f.Poll(ctx, &e.Pending, now)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		tx.Count("polls", e.Status, 1)
		if rep.Status == respond.StatusSent {
			d := f.due[e.ActionID]
			f.due[e.ActionID] = due{at: now.Add(f.policy.Wait(d.looks + 1)), looks: d.looks + 1}
			if e.Status != before { // keep what Defender said last, for a restart's logs
				v, err := json.Marshal(&e)
				if err != nil {
					return err
				}
				if err := f.store.Set(followedKey([]byte(e.Key)), v); err != nil {
					return err
				}
			}
			continue
		}
		if err := f.store.Delete(followedKey([]byte(e.Key))); err != nil {
			return err
		}
		delete(f.due, e.ActionID)
		if err := w.report(ctx, tx, []byte(e.Key), rep); err != nil {
			return err
		}
	}
	return nil
}
