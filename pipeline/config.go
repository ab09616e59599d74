package pipeline

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Config is everything a pipeline is built from. The zero value is not
// useful: start from Default() (what an embedded run uses with no config
// file) and override.
//
// The tags of each key are its one source of truth (see internal/conf): its
// default, its documentation, and the flag and environment variable that
// override it. configs/stitch.yaml and the key tables of configs/README.md
// are generated from them (go generate ./internal/appconfig), and a test
// fails when they drift. To add a key, add a field with its tags here and
// regenerate.
type Config struct {
	Kafka     KafkaConfig     `yaml:"kafka"`
	Topics    TopicsConfig    `yaml:"topics"`
	State     StateConfig     `yaml:"state"`
	Normalize NormalizeConfig `yaml:"normalize"`
	Hunting   HuntingConfig   `yaml:"hunting"`
	Correlate CorrelateConfig `yaml:"correlate"`
	Respond   RespondConfig   `yaml:"respond"`
	Detect    DetectConfig    `yaml:"detect"`
	Runtime   RuntimeConfig   `yaml:"runtime"`
}

// RuntimeConfig tunes the Go runtime of a process running the pipeline.
type RuntimeConfig struct {
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes" default:"805306368" doc:"Soft limit of the Go heap while the pipeline runs (runtime/debug.SetMemoryLimit): the garbage collector works harder as the heap nears it, so peak memory follows the configured buffers (hunting.max_open_files, hunting.max_buffered_bytes, kafka.max_buffered_bytes) rather than twice the live heap. Set it above what they add up to; 0: no limit. GOMEMLIMIT in the environment wins."`
}

// KafkaConfig says which cluster to use and how the pipeline consumes it.
// With no brokers, stitch starts its embedded broker.
type KafkaConfig struct {
	kafka.ClientConfig `yaml:",inline"`
	Group              string   `yaml:"group" default:"stitch" flag:"group" doc:"Prefix of the stages' consumer groups ('<group>-normalize', '<group>-correlate', '<group>-hunting') and transactional ids. Processes with the same group share the work."`
	CommitInterval     Duration `yaml:"commit_interval" default:"1s" doc:"How often each stage commits its transaction (outputs plus input offsets). It bounds output latency and the work redone after a crash; it is also the time bound of Arrow batches."`
	UrgentCommit       Duration `yaml:"urgent_commit_interval" default:"100ms" doc:"How long a transaction that carries an alert lasts, instead of 'commit_interval', once the stage is less than a poll ('max_poll_records') behind its input: normalize's when it read an AlertInfo or AlertEvidence record, correlate's when it produced an incident version. An alert crosses both on its way to 'incidents', and is visible to the next only when each commits, so this bounds the incident latency while telemetry alone still commits once a 'commit_interval'. A stream with alerts in most intervals commits about this often (the CPU of a shorter commit interval); a backlog still commits a full 'commit_interval' at a time. 0s: off."`
	MaxPollRecords     int      `yaml:"max_poll_records" default:"10000" doc:"Most records taken per poll."`
	MaxBufferedBytes   int64    `yaml:"max_buffered_bytes" default:"67108864" doc:"Bytes a stage's producer may hold unacknowledged; past it producing blocks, so a fast input makes lag grow, not memory. At least twice normalize.max_record_bytes; records a stage sizes itself (hunting batches, facts) stay under half of it."`
	FetchMaxBytes      int32    `yaml:"fetch_max_bytes" default:"16777216" doc:"Upper bound of one fetch response."`
	Compression        string   `yaml:"compression" default:"lz4" doc:"Batch compression of what the stages produce (Kafka's compression.type): 'lz4', 'zstd', 'snappy', 'gzip' or 'none'. Facts records, the largest internal topic, compress about 3.7 times with lz4; the hunting records' Arrow bodies are compressed already (hunting.ipc_compression). On the embedded broker at 20,000 records/s, lz4 took a sixth off the broker's CPU a record for about 1 µs a record more in stitch (bench/RESULTS.md)."`
}

// TopicsConfig names the topics and says how to create them.
type TopicsConfig struct {
	Inputs            []string `yaml:"inputs" default:"signals" doc:"Topics of streaming-API records (one record or an Event Hubs envelope per Kafka record)."`
	Incidents         string   `yaml:"incidents" default:"incidents" doc:"Incidents, keyed by incident id, full state per version (compacted)."`
	Actions           string   `yaml:"actions" default:"actions" doc:"Response actions, keyed by target and action id; every change is the full action with a higher version (compacted)."`
	ActionResults     string   `yaml:"action_results" default:"actions.results" doc:"Results reported by responders."`
	DeadLetter        string   `yaml:"deadletter" default:"deadletter" doc:"Records that could not be normalized, with the reason and the original bytes."`
	HuntingPrefix     string   `yaml:"hunting_prefix" default:"hunting." doc:"Prefix of the per-table Arrow IPC topics ('hunting.DeviceProcessEvents', ...)."`
	Facts             string   `yaml:"facts" default:"stitch.facts" doc:"Internal repartition topic: correlation facts keyed by tenant, from normalize to correlate."`
	Changelog         string   `yaml:"changelog" default:"stitch.correlate-changelog" doc:"Changelog of the correlation store's timeless state (incidents, alert placements, identity links, offsets, watermarks); compacted, same partition count as 'topics.facts'. A store is restored from it on every assignment. Never delete it while the group has committed offsets."`
	WindowChangelog   string   `yaml:"window_changelog" default:"stitch.correlate-window-changelog" doc:"Changelog of the correlation store's windowed state (entity index, prevalence sightings, early evidence); compacted and deleted by time after the longest window it serves. Same partition count as 'topics.facts'."`
	Partitions        int32    `yaml:"partitions" default:"6" doc:"Partitions of topics stitch creates. More partitions allow more processes."`
	ReplicationFactor int16    `yaml:"replication_factor" default:"-1" doc:"Replication of created topics; -1 takes the broker default."`
	Create            bool     `yaml:"create" default:"true" doc:"Create missing topics at start (needs the permission). Existing topics are never changed."`
}

// StateConfig places local state.
type StateConfig struct {
	Dir           string `yaml:"dir" default:"./stitch-data" flag:"state-dir" doc:"Local state (Pebble stores) and, by default, hunting partitions."`
	CacheBytes    int64  `yaml:"cache_bytes" default:"134217728" doc:"Pebble block cache of the process: one cache that every state store of the process (correlate, respond, detections, ...) shares, not one each. Pebble reserves the stores' memtables out of it while they are in memory, so it bounds the stores' memory together, unless their memtables alone exceed it (see 'state.memtable_bytes'). It is allocated outside the Go heap: 'runtime.memory_limit_bytes' does not count it."`
	MemtableBytes int64  `yaml:"memtable_bytes" default:"33554432" doc:"Pebble memtable size, per store: a busy store holds up to about three in memory (the one written, one being flushed, one kept for reuse), reserved out of 'state.cache_bytes'. A process has a store per stateful stage it runs."`
	Reset         bool   `yaml:"reset" default:"false" flag:"reset-state" doc:"When the state directory (or hunting.dir) was written against another Kafka cluster or topics since recreated, discard its stores and hunting partitions and start over, instead of refusing to start."`
}

// NormalizeConfig bounds records and batches.
type NormalizeConfig struct {
	BatchRows          int      `yaml:"batch_rows" default:"8192" doc:"An Arrow batch is emitted at this many rows."`
	BatchBytes         int64    `yaml:"batch_bytes" default:"4194304" doc:"... or at this many input bytes."`
	BatchAge           Duration `yaml:"batch_age" default:"1s" doc:"... or when its oldest row is this old, so a quiet stream still flushes."`
	MaxRecordBytes     int      `yaml:"max_record_bytes" default:"1048576" doc:"Larger records are dead-lettered 'too_large'."`
	MaxDepth           int      `yaml:"max_depth" default:"32" doc:"Deeper JSON nesting is dead-lettered 'too_deep'."`
	DeadLetterMaxBytes int      `yaml:"deadletter_max_bytes" default:"16384" doc:"Original bytes kept in a dead letter; larger ones are truncated, with their size and SHA-256."`
	Import             bool     `yaml:"import" flag:"replay --import" doc:"Inputs are advanced-hunting export rows (no envelope, no table name)."`
	ImportTable        string   `yaml:"import_table" flag:"replay --table" doc:"Table of the export rows; empty infers it per row from its columns and 'ActionType'. Implies 'normalize.import'."`
	DefaultTenant      string   `yaml:"default_tenant" default:"00000000-0000-0000-0000-000000000000" flag:"replay --tenant" doc:"Tenant of export rows, which carry none."`
}

// HuntingConfig controls the hunting outputs.
type HuntingConfig struct {
	Enabled        bool     `yaml:"enabled" default:"true" doc:"Produce the 'hunting.<Table>' topics and write Parquet partitions."`
	Dir            string   `yaml:"dir" doc:"Parquet root; empty means '<state.dir>/hunting'. Every instance of one consumer group may share it (a network file system with working flock): each Kafka partition's commit and lock live in it, so a partition moves between instances in place."`
	RollBytes      int64    `yaml:"roll_bytes" default:"134217728" doc:"Roll the open files (commit a segment) at this many input bytes."`
	RollAge        Duration `yaml:"roll_age" default:"1m" doc:"... or when the oldest pending row is this old: the most rows wait before they are visible to hunting queries. A pause of the input (two 'kafka.commit_interval's with no new record) commits them at once, and so does a drained input (normalize committed all of its input and the sink read all it produced) at most once per roll age."`
	MaxOpenFiles   int      `yaml:"max_open_files" default:"128" doc:"Partition files (one per table, tenant and hour) open at once; past it the least recently written is finished early and the segment is committed. About 2 MiB of memory each: with 'max_buffered_bytes' this bounds the writer's memory, whatever the hours and tenants of the input. Below the partitions a stream keeps busy (tables x tenants x hours in flight) it makes more, smaller files."`
	IPCCompression string   `yaml:"ipc_compression" default:"lz4" doc:"Arrow IPC body compression of the 'hunting.<Table>' records: 'lz4', 'zstd' (about half lz4's bytes for about four times its CPU: the dearest step of normalizing) or 'none'. Every Arrow reader decodes all three."`
	MaxBuffered    int64    `yaml:"max_buffered_bytes" default:"67108864" doc:"Bytes (in memory, as Arrow data) of the rows the open files hold until they write them out as row groups, together; past it the file holding the most writes its rows out. Over the second half of a segment (by roll_age or roll_bytes) the bound falls to an eighth of it, so that a roll has little left to write at once."`
	Retention      Duration `yaml:"retention" default:"30d" doc:"Partitions older than this (by event time) are deleted, whenever they were written: replaying a recording older than this through 'run' keeps none of it."`
	RetentionEvery Duration `yaml:"retention_every" default:"1h" doc:"How often the retention job runs (also once at start); '0s' turns it off. 'replay' turns it off: it usually writes old recordings."`
}

// CorrelateConfig tunes incident correlation.
type CorrelateConfig struct {
	Enabled             bool     `yaml:"enabled" default:"true" doc:"Run incident correlation."`
	Window              Duration `yaml:"window" default:"24h" doc:"Alerts sharing a linking entity join one incident when within this time of each other."`
	Grace               Duration `yaml:"grace" default:"1h" doc:"How long evidence may arrive before or after its alert and still be joined."`
	AllowedLateness     Duration `yaml:"allowed_lateness" default:"1h" doc:"Alerts later than the watermark by more than this are still placed, and counted as late."`
	PrevalenceThreshold int      `yaml:"prevalence_threshold" default:"10" doc:"An entity seen on more distinct devices or users than this is prevalent and links nothing (1..63: a batch reports at most 64 observers of an entity, enough to tell prevalence)."`
	PrevalenceLookback  Duration `yaml:"prevalence_lookback" default:"7d" doc:"The period over which prevalence is counted."`
	IdleClose           Duration `yaml:"idle_close" default:"7d" doc:"Incidents with no new alert for this long (event time) are closed and their state released."`
	TickEvery           Duration `yaml:"tick_every" default:"10s" doc:"Wall-clock punctuation: closing idle incidents, expiring buckets."`
}

// DetectConfig runs custom detections: Sigma rules over the normalized
// batches (operators/detect).
type DetectConfig struct {
	Enabled  bool     `yaml:"enabled" default:"true" doc:"Run the Sigma rules of 'detect.rules' on every normalized batch; a match becomes an alert (detectionSource customDetection) that joins incidents like a product's. Needs 'correlate.enabled'."`
	Rules    []string `yaml:"rules" doc:"Directories or files of Sigma rules (.yml, .yaml), loaded at start. A rule that cannot be loaded or that the tables cannot express is logged with its file, line and reason, and the others run. Empty: no detection."`
	Suppress Duration `yaml:"suppress" default:"1h" doc:"A rule raises at most one alert per entity (the matched row's device, else its user, IP, URL or file) in each window of this length (event time); later matches in the window are the same alert."`
}

// Default is the configuration of an embedded run with no config file: the
// default tags of the keys.
func Default() Config { return conf.Default[Config]() }

// Load reads a YAML config over the defaults. Unknown keys are errors that
// name the line; secrets may come from the environment (ApplyEnv).
func Load(path string) (Config, error) { return conf.Load[Config](path) }

// ApplyEnv overrides config keys from the environment (their env tags).
func (c *Config) ApplyEnv(getenv func(string) string) error {
	return conf.ApplyEnv(c, getenv)
}

// Embedded reports whether the pipeline runs on its own in-process broker.
func (c *Config) Embedded() bool { return len(c.Kafka.Brokers) == 0 }

// HuntingDir is where Parquet partitions go.
func (c *Config) HuntingDir() string {
	if c.Hunting.Dir != "" {
		return c.Hunting.Dir
	}
	return filepath.Join(c.State.Dir, "hunting")
}

// Validate reports every problem at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, why string) { errs = append(errs, fmt.Errorf("%s: %s", key, why)) }
	if len(c.Topics.Inputs) == 0 {
		bad("topics.inputs", "at least one input topic is needed")
	}
	for k, v := range map[string]string{
		"topics.incidents": c.Topics.Incidents, "topics.deadletter": c.Topics.DeadLetter,
		"topics.facts": c.Topics.Facts, "topics.hunting_prefix": c.Topics.HuntingPrefix,
		"topics.changelog": c.Topics.Changelog, "topics.window_changelog": c.Topics.WindowChangelog,
		"kafka.group": c.Kafka.Group, "state.dir": c.State.Dir,
	} {
		if strings.TrimSpace(v) == "" {
			bad(k, "must not be empty")
		}
	}
	if c.Topics.Partitions < 1 {
		bad("topics.partitions", "must be at least 1")
	}
	if rf := c.Topics.ReplicationFactor; rf == 0 || rf < -1 {
		bad("topics.replication_factor", fmt.Sprintf("%d is out of range: must be -1 (the broker default) or at least 1", rf))
	}
	if c.Kafka.CommitInterval <= 0 {
		bad("kafka.commit_interval", "must be positive")
	}
	if c.Kafka.MaxPollRecords < 1 {
		bad("kafka.max_poll_records", "must be at least 1")
	}
	if c.Normalize.BatchRows < 1 {
		bad("normalize.batch_rows", "must be at least 1")
	}
	if c.Normalize.BatchBytes < 1 {
		bad("normalize.batch_bytes", "must be at least 1")
	}
	if c.Normalize.MaxRecordBytes < 1 {
		bad("normalize.max_record_bytes", "must be at least 1")
	}
	if m := int64(c.Normalize.MaxRecordBytes); m >= 1 && c.Kafka.MaxBufferedBytes >= 1 && c.Kafka.MaxBufferedBytes < 2*m {
		// One input record becomes one row of a hunting.<Table> record,
		// which cannot be split further: the producer must hold it.
		bad("kafka.max_buffered_bytes", fmt.Sprintf("%d is below twice normalize.max_record_bytes (%d): a record of that size could not be produced once normalized; raise it or lower normalize.max_record_bytes", c.Kafka.MaxBufferedBytes, m))
	}
	if c.Normalize.MaxDepth < 1 {
		bad("normalize.max_depth", "must be at least 1")
	}
	if c.Correlate.PrevalenceThreshold < 1 || c.Correlate.PrevalenceThreshold > 63 {
		bad("correlate.prevalence_threshold", "must be between 1 and 63")
	}
	if c.Detect.Suppress < 0 {
		bad("detect.suppress", "must not be negative")
	}
	if c.Hunting.Retention <= 0 {
		bad("hunting.retention", "must be positive")
	}
	// The other sizes and durations: the key, the value and the range.
	for _, r := range []struct {
		key    string
		v, min int64
	}{
		{"kafka.max_buffered_bytes", c.Kafka.MaxBufferedBytes, 1},
		{"kafka.fetch_max_bytes", int64(c.Kafka.FetchMaxBytes), 1},
		{"state.cache_bytes", c.State.CacheBytes, 0},
		{"state.memtable_bytes", c.State.MemtableBytes, 1},
		{"normalize.deadletter_max_bytes", int64(c.Normalize.DeadLetterMaxBytes), 0},
		{"runtime.memory_limit_bytes", c.Runtime.MemoryLimitBytes, 0},
		{"hunting.roll_bytes", c.Hunting.RollBytes, 1},
		{"kafka.max_message_bytes", int64(c.Kafka.MaxMessageBytes), 0},
		{"respond.webhook_attempts", int64(c.Respond.WebhookAttempts), 1},
	} {
		if r.v < r.min {
			bad(r.key, fmt.Sprintf("%d is out of range: must be at least %d", r.v, r.min))
		}
	}
	for _, r := range []struct {
		key       string
		v         Duration
		zeroOK    bool
		zeroMeans string
	}{
		{"kafka.urgent_commit_interval", c.Kafka.UrgentCommit, true, " (0s: alerts wait out kafka.commit_interval like telemetry)"},
		{"normalize.batch_age", c.Normalize.BatchAge, false, ""},
		{"hunting.roll_age", c.Hunting.RollAge, false, ""},
		{"hunting.retention_every", c.Hunting.RetentionEvery, true, " (0s: no retention job)"},
		{"correlate.window", c.Correlate.Window, false, ""},
		{"correlate.grace", c.Correlate.Grace, true, ""},
		{"correlate.allowed_lateness", c.Correlate.AllowedLateness, true, ""},
		{"correlate.prevalence_lookback", c.Correlate.PrevalenceLookback, false, ""},
		{"correlate.idle_close", c.Correlate.IdleClose, false, ""},
		{"correlate.tick_every", c.Correlate.TickEvery, false, ""},
		{"respond.index_retention", c.Respond.IndexRetention, false, ""},
		{"respond.webhook_backoff", c.Respond.WebhookBackoff, true, ""},
	} {
		switch {
		case r.v <= 0 && !r.zeroOK:
			bad(r.key, fmt.Sprintf("%s is out of range: must be more than 0s", r.v))
		case r.v < 0:
			bad(r.key, fmt.Sprintf("%s is out of range: must be 0s or more%s", r.v, r.zeroMeans))
		}
	}
	if _, err := kafka.ParseCompression(c.Kafka.Compression); err != nil {
		bad("kafka.compression", err.Error())
	}
	if _, err := ipc.ParseCompression(c.Hunting.IPCCompression); err != nil {
		bad("hunting.ipc_compression", err.Error())
	}
	c.Respond.validateMicrosoft(bad)
	if c.Respond.Enabled && c.Respond.Playbooks != "" {
		// Read now, so a wrong path is this message rather than a stage
		// that fails to start.
		if _, err := respond.Load(c.Respond.Playbooks); err != nil {
			bad("respond.playbooks", err.Error())
		}
	}
	if c.Hunting.MaxOpenFiles < 1 {
		bad("hunting.max_open_files", "must be at least 1")
	}
	if c.Hunting.MaxBuffered < 1 {
		bad("hunting.max_buffered_bytes", "must be at least 1")
	}
	if !c.Embedded() {
		if err := c.Kafka.ClientConfig.Validate(); err != nil {
			bad("kafka", err.Error())
		}
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration written as "1s", "24h", "720h" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText parses Go duration syntax, plus "Nd" for days.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil {
			*d = Duration(time.Duration(n) * 24 * time.Hour)
			return nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. 500ms, 10s, 24h, 30d)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as it is best read in a config file.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes a whole number of the largest unit that divides the duration
// (30d, 24h, 1m, 10s; days from two on), or Go duration syntax (1.5s, 500ms).
func (d Duration) String() string {
	v := time.Duration(d)
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if v != 0 && v%u.unit == 0 && (u.name != "d" || v >= 2*u.unit) {
			return fmt.Sprintf("%d%s", v/u.unit, u.name)
		}
	}
	return v.String()
}
