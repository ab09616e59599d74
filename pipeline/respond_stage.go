package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	// The respond topic's records are stitch's own (feedRecord, written
	// by respond-feed, read as a respond.Signal): go-json reads and writes
	// the same JSON at a few times encoding/json's speed, whose reflection
	// was 2% of the CPU at 20,000 records/s (bench/RESULTS.md). What
	// leaves stitch (actions) stays encoding/json's.
	gojson "github.com/goccy/go-json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/state"
)

// Automated response is three stages, so that the stateful one reads one
// topic whose partitions its changelog follows:
//
//   - respond-feed (stateless) reads the incidents (keyed by incident id)
//     and the facts (keyed by tenant) and writes what response needs —
//     every incident version, delivered attachments, files seen on
//     devices, the addresses devices and accounts were seen with (the
//     facts' ip and url sightings) and messages' recipients and URLs —
//     to respond.topic, keyed by tenant;
//   - respond-decisions (stateless) does the same for analysts' approvals
//     and rejections (respond.approvals, written by stitch actions) and
//     executors' results (topics.action_results); it is a stage of its own
//     because those topics come from outside, so its lag is input lag;
//   - respond (stateful) reads respond.topic and keeps its ledger (actions,
//     the attachment and device indexes, the blocked files) in a
//     state.TxStore keyed by tenant, so partition p of its changelog is
//     the state of partition p of respond.topic.
//
// Exactly once: an action is produced in the same Kafka transaction as the
// ledger change that records it (its changelog record) and the input
// offset behind it; the store commits after Kafka did, an abort drops
// both, and a partition moving to another process is restored from the
// changelog before its first record. The ledger decides an action again
// only when it is not recorded, so each (incident, type, target) is
// produced once, and again only as a new version when a decision adds to
// it.

// RespondConfig configures automated response (operators/respond).
type RespondConfig struct {
	Enabled        bool     `yaml:"enabled" default:"true" doc:"Decide response actions from incidents and telemetry (playbooks), keep their ledger and produce them to 'topics.actions'. Needs 'correlate.enabled'. Executors that carry actions out are separate and off by default."`
	Playbooks      string   `yaml:"playbooks" doc:"A playbooks YAML file, or a directory of them; empty: the shipped defaults (configs/playbooks.yaml)."`
	Topic          string   `yaml:"topic" default:"stitch.respond" doc:"Internal topic: incidents, the telemetry response indexes, decisions and results, keyed by tenant, from the respond-feed and respond-decisions stages to the respond stage."`
	Approvals      string   `yaml:"approvals" default:"actions.approvals" doc:"Analysts' approvals and rejections of actions ('stitch actions approve' and 'reject'), kept as the audit trail."`
	Indicators     string   `yaml:"indicators" default:"actions.indicators" doc:"Operators' custom indicators ('stitch indicators add' and 'remove'): file hashes, IP addresses, URLs and domains blocked on sight until they expire."`
	Changelog      string   `yaml:"changelog" default:"stitch.respond-changelog" doc:"Changelog of the response ledger (actions, attachment and device indexes, blocked files); compacted, same partition count as 'respond.topic'."`
	IndexRetention Duration `yaml:"index_retention" default:"30d" doc:"How long the ledger keeps, by the tenant's event time, delivered attachments, files seen on devices, and devices' and accounts' sightings of blocked addresses (each alerts once while kept): a file found malicious has its copies of this period before the alert acted on. The index of messages' halves (recipients and URLs, joined to find the copies that carry a blocked URL) keeps a day, or this if shorter."`
	// The webhook executor (pipeline/webhook_stage.go).
	WebhookURL      string   `yaml:"webhook_url" doc:"Post every approved action as JSON to this URL and report the outcome on 'topics.action_results' (the webhook executor); empty: off."`
	WebhookSecret   string   `yaml:"webhook_secret" env:"STITCH_WEBHOOK_SECRET" doc:"Shared secret of the webhook's HMAC-SHA256 signature header (X-Stitch-Signature-256, over '<X-Stitch-Timestamp>.<body>'); better set in the environment."`
	WebhookAttempts int      `yaml:"webhook_attempts" default:"4" doc:"Attempts per action before it is reported failed (5xx, 408, 429 and network errors are retried; other 4xx fail at once); both executors."`
	WebhookBackoff  Duration `yaml:"webhook_backoff" default:"500ms" doc:"Wait before the second attempt, doubled before each next one (both executors)."`
	// The Microsoft executor (connectors/microsoft).
	Microsoft              bool              `yaml:"microsoft" doc:"Carry approved actions out through the Defender for Endpoint machine-action and indicator APIs and Microsoft Graph (users, sessions, risky users, email remediation), reporting outcomes on 'topics.action_results'; a machine action is reported sent, then followed until Defender says it ended. Credentials: 'respond.microsoft_tenants' for the tenants listed there, AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for the others (an Entra ID application with the permissions of the actions); 'stitch run' refuses to start with neither."`
	MicrosoftTenants       []MicrosoftTenant `yaml:"microsoft_tenants" doc:"Entra ID applications of single stitch tenants, each in its customer's directory: 'tenant' (the stitch tenant id), 'azure_tenant_id' (the directory), 'client_id', and where its client secret is read: 'client_secret_env' (an environment variable) or 'client_secret_file' (a file, by a clean absolute path; read at each token request, so a rotated secret is taken up). Entries that read a secret from the same place must name the same 'client_id' (one multi-tenant application): a tenant never acts with another's secret. Tenants not listed use the AZURE_* environment; a tenant with neither has its actions fail with that reason."`
	MicrosoftPollInterval  Duration          `yaml:"microsoft_poll_interval" default:"5s" doc:"Wait before the first look at a sent Defender machine action (GET /api/machineactions/{id}), doubled after each look up to 'respond.microsoft_poll_max_interval'."`
	MicrosoftPollMax       Duration          `yaml:"microsoft_poll_max_interval" default:"1m" doc:"Longest wait between two looks at a sent machine action (Defender allows 100 calls a minute)."`
	MicrosoftActionTimeout Duration          `yaml:"microsoft_action_timeout" default:"24h" doc:"A machine action still Pending or InProgress this long after it was sent (a device that stays offline) is reported failed, and no longer followed; it may still run in Defender."`
	MicrosoftChangelog     string            `yaml:"microsoft_changelog" default:"stitch.execute-microsoft-changelog" doc:"Changelog of the Microsoft executor's store of sent machine actions it follows; compacted, same partition count as 'topics.actions'. A restarted executor follows them from it instead of posting again."`
	MicrosoftDefenderURL   string            `yaml:"microsoft_defender_url" doc:"Defender for Endpoint API base URL; empty: https://api.securitycenter.microsoft.com (set a regional or US Government server here)."`
	MicrosoftGraphURL      string            `yaml:"microsoft_graph_url" doc:"Microsoft Graph base URL; empty: https://graph.microsoft.com."`
	MicrosoftLoginURL      string            `yaml:"microsoft_login_url" doc:"Identity platform base URL of the client credentials grant; empty: https://login.microsoftonline.com."`
}

// Counters of the respond stage (/status).
const (
	CountActions     = "action_versions" // label: action type
	CountUnbuildable = "actions_unbuildable"
	CountSightAlerts = "sight_alerts" // block-on-sight alerts sent to the correlator
)

func respondEnabled(c Config) bool { return c.Respond.Enabled && c.Correlate.Enabled }

func respondFeedStage() Stage {
	return Stage{
		Name:      "respond-feed",
		Doc:       "re-keys incidents and the telemetry response needs by tenant",
		Enabled:   respondEnabled,
		Inputs:    func(c Config) []string { return []string{c.Topics.Incidents, c.Topics.Facts} },
		Outputs:   func(c Config) []Output { return []Output{{Topic: kafka.TopicSpec{Name: c.Respond.Topic}}} },
		Processor: newFeedProc,
	}
}

func respondDecisionsStage() Stage {
	return Stage{
		Name:    "respond-decisions",
		Doc:     "re-keys analysts' decisions and executors' results on actions by tenant",
		Enabled: respondEnabled,
		Inputs: func(c Config) []string {
			return []string{c.Respond.Approvals, c.Topics.ActionResults, c.Respond.Indicators}
		},
		Outputs:   func(c Config) []Output { return []Output{{Topic: kafka.TopicSpec{Name: c.Respond.Topic}}} },
		Processor: newFeedProc,
	}
}

func newFeedProc(sc *StageContext) (Processor, error) {
	c := sc.Config
	return &feedProc{incidents: c.Topics.Incidents, facts: c.Topics.Facts, approvals: c.Respond.Approvals, results: c.Topics.ActionResults,
		indicators: c.Respond.Indicators, out: c.Respond.Topic, log: sc.Log.Error}, nil
}

func respondStage() Stage {
	return Stage{
		Name:    "respond",
		Doc:     "decides response actions by playbook and keeps their ledger",
		Enabled: respondEnabled,
		Inputs:  func(c Config) []string { return []string{c.Respond.Topic} },
		Outputs: func(c Config) []Output {
			// Keyed by target and action id: a compacted topic keeps the
			// latest version of every action.
			act := kafka.TopicSpec{Name: c.Topics.Actions, Configs: map[string]string{"cleanup.policy": "compact"}}
			// Block-on-sight alerts go to the correlator as facts, like a
			// product's alerts, so the incident's story shows them.
			return []Output{{Topic: act, Replay: "actions.jsonl", Latest: true}, {Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}},
				{Topic: kafka.TopicSpec{Name: c.Topics.Facts}}}
		},
		Stores: []StoreSpec{{Name: "respond", Changelogs: func(c Config) []kafka.TopicSpec {
			return []kafka.TopicSpec{ChangelogTopic(c.Respond.Changelog)}
		}}},
		TickEvery: func(c Config) time.Duration { return c.Correlate.TickEvery.D() },
		Processor: newRespondProc,
		Progress: func(s StageSnapshot) string {
			return fmt.Sprintf("action versions %d", s.Sum(CountActions))
		},
	}
}

// feedProc writes incidents and response telemetry to the respond topic.
type feedProc struct {
	incidents, facts, approvals, results, indicators, out string
	log                                                   func(msg string, args ...any)
}

// feedRecord is a respond.Signal with the incident passed on as it came.
type feedRecord struct {
	Tenant       string                      `json:"tenant"`
	Incident     json.RawMessage             `json:"incident,omitempty"`
	Attachments  []correlate.AttachmentFact  `json:"attachments,omitempty"`
	Files        []respond.FileSeen          `json:"files,omitempty"`
	DeviceGroups []correlate.DeviceGroupFact `json:"deviceGroups,omitempty"`
	Decisions    []respond.Decision          `json:"decisions,omitempty"`
	Outcomes     []respond.Outcome           `json:"outcomes,omitempty"`
	Indicators   []respond.Indicator         `json:"indicators,omitempty"`
	Network      []respond.Reach             `json:"network,omitempty"`
	Mail         []correlate.MailFact        `json:"mail,omitempty"`
}

func (f *feedProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var rec feedRecord
	switch r.Topic {
	case f.approvals, f.results, f.indicators:
		var d respond.Decision
		var o respond.Outcome
		var in respond.Indicator
		var err error
		switch r.Topic {
		case f.approvals:
			err = json.Unmarshal(r.Value, &d)
			rec = feedRecord{Tenant: d.TenantID, Decisions: []respond.Decision{d}}
		case f.indicators:
			err = json.Unmarshal(r.Value, &in)
			rec = feedRecord{Tenant: in.TenantID, Indicators: []respond.Indicator{in}}
		default:
			err = json.Unmarshal(r.Value, &o)
			rec = feedRecord{Tenant: o.TenantID, Outcomes: []respond.Outcome{o}}
		}
		if err != nil || !state.ValidTenant(rec.Tenant) {
			f.log("respond: decision or result without a usable tenant skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return nil
		}
	case f.incidents:
		var head struct {
			TenantID string `json:"tenantId"`
		}
		if err := json.Unmarshal(r.Value, &head); err != nil || !state.ValidTenant(head.TenantID) {
			f.log("respond-feed: incident without a usable tenant skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			return nil
		}
		rec = feedRecord{Tenant: head.TenantID, Incident: r.Value}
	default:
		facts, err := correlate.UnmarshalFacts(r.Value)
		if err != nil {
			return nil // the correlate stage dead-letters it
		}
		// Network: the sightings that block on sight of addresses looks at
		// (respond.Reaches: ip and url entities seen by devices, URLs by
		// accounts alone), not the others, which response has no use for.
		rec = feedRecord{Tenant: facts.Tenant, Attachments: facts.Attachments, Files: filesSeen(facts), DeviceGroups: facts.DeviceGroups,
			Network: respond.Reaches(facts), Mail: facts.Mail}
		if len(rec.Attachments) == 0 && len(rec.Files) == 0 && len(rec.DeviceGroups) == 0 && len(rec.Network) == 0 && len(rec.Mail) == 0 {
			return nil
		}
	}
	v, err := gojson.Marshal(&rec)
	if err != nil {
		return err
	}
	tx.Produce(ctx, &kgo.Record{Topic: f.out, Key: []byte(rec.Tenant), Value: v})
	return nil
}

// filesSeen are the files of a facts record on devices (DeviceFileEvents
// and DeviceProcessEvents rows with a device id).
func filesSeen(f *correlate.Facts) []respond.FileSeen {
	out := make([]respond.FileSeen, 0, len(f.Files))
	for _, x := range f.Files {
		out = append(out, respond.FileSeen{Hash: x.SHA256, DeviceID: x.DeviceID, DeviceName: x.DeviceName, Time: x.Time})
	}
	return out
}

func (f *feedProc) Flush(context.Context, Txn) error           { return nil }
func (f *feedProc) Tick(context.Context, time.Time, Txn) error { return nil }
func (f *feedProc) Aborted()                                   {}
func (f *feedProc) Committed()                                 {}

type respondProc struct {
	r              *respond.Responder
	actions, facts string
	deadLetter     deadLetters
	max            int
	log            *slog.Logger
}

func newRespondProc(sc *StageContext) (Processor, error) {
	pb, err := respond.Load(sc.Config.Respond.Playbooks)
	if err != nil {
		return nil, err
	}
	st, err := sc.OpenStore("respond")
	if err != nil {
		return nil, err
	}
	ledger := state.NewTxStore(st)
	if err := sc.Attach("respond", ledger); err != nil {
		return nil, err
	}
	r := respond.New(ledger, pb, respond.WithRetention(sc.Config.Respond.IndexRetention.D()),
		// Only the owner of a tenant's partition ages its index.
		respond.WithOwnership(func(tenant string) bool { return sc.OwnsKey([]byte(tenant)) }))
	return &respondProc{r: r, actions: sc.Config.Topics.Actions, deadLetter: deadLettersOf(sc.Config), facts: sc.Config.Topics.Facts, max: factsRecordBytes(sc.Config), log: sc.Log}, nil
}

func (p *respondProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	var sig respond.Signal
	if err := gojson.Unmarshal(r.Value, &sig); err != nil || !state.ValidTenant(sig.Tenant) {
		if err == nil {
			err = fmt.Errorf("invalid tenant %q", sig.Tenant)
		}
		p.log.Error("undecodable respond record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		p.deadLetter.send(ctx, tx, "bad_respond_record", r, err)
		return nil
	}
	res, err := p.r.Apply(&sig)
	if err != nil {
		return fmt.Errorf("respond: %w", err)
	}
	for i := range res.Actions {
		a := &res.Actions[i]
		v, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode action %s: %w", a.ID, err)
		}
		tx.Produce(ctx, &kgo.Record{Topic: p.actions, Key: []byte(a.RecordKey()), Value: v,
			Headers: []kgo.RecordHeader{{Key: "stitch-tenant", Value: []byte(a.TenantID)}}})
		tx.Count(CountActions, a.Type, 1)
	}
	if len(res.Alerts) > 0 {
		f := correlate.Facts{Tenant: sig.Tenant}
		for _, a := range res.Alerts {
			f.Alerts = append(f.Alerts, a.Info)
			f.Evidence = append(f.Evidence, a.Evidence...)
			if a.Info.Time.After(f.MaxTime) {
				f.MaxTime = a.Info.Time
			}
		}
		if err := produceFacts(ctx, tx, p.log, "respond", p.facts, &f, p.max); err != nil {
			return fmt.Errorf("block-on-sight alerts: %w", err)
		}
		tx.Count(CountSightAlerts, "", int64(len(res.Alerts)))
	}
	for _, pr := range res.Problems {
		// Reported, never emitted half-filled.
		p.log.Warn("response action cannot be built", "type", pr.Type, "incident", pr.Incident, "playbook", pr.Playbook, "err", pr.Error)
		tx.Count(CountUnbuildable, pr.Type, 1)
	}
	return nil
}

func (p *respondProc) Flush(context.Context, Txn) error { return nil }

// Tick ages the ledger's indexes a slice at a time.
func (p *respondProc) Tick(_ context.Context, _ time.Time, tx Txn) error {
	n, err := p.r.Sweep(10000)
	if err != nil {
		return fmt.Errorf("respond sweep: %w", err)
	}
	tx.Count("index_expired", "", int64(n))
	return nil
}

// Aborted and Committed have nothing to do: the ledger's pending writes
// are the store's transaction, which the runtime commits or drops.
func (p *respondProc) Aborted()   {}
func (p *respondProc) Committed() {}

// countActions counts the actions of a replay's actions.jsonl by type
// (none when response is off and the file is absent).
func countActions(path string) (map[string]int, error) {
	counts := map[string]int{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return counts, nil
	}
	if err != nil {
		return nil, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var a struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &a); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		counts[a.Type]++
	}
	return counts, nil
}
