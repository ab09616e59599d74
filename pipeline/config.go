package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// Config is everything a pipeline is built from. The zero value is not
// useful: start from Default() (what an embedded run uses with no config
// file) and override. Every key is documented in configs/README.md; keep the
// two in step (TestConfigKeysDocumented fails otherwise).
type Config struct {
	Kafka     KafkaConfig     `yaml:"kafka"`
	Topics    TopicsConfig    `yaml:"topics"`
	State     StateConfig     `yaml:"state"`
	Normalize NormalizeConfig `yaml:"normalize"`
	Hunting   HuntingConfig   `yaml:"hunting"`
	Correlate CorrelateConfig `yaml:"correlate"`
	HTTP      HTTPConfig      `yaml:"http"`
	Simulate  SimulateConfig  `yaml:"simulate"`
	Log       LogConfig       `yaml:"log"`
}

// KafkaConfig says which cluster to use and how the pipeline consumes it.
// With no brokers, stitch starts its embedded broker.
type KafkaConfig struct {
	kafka.ClientConfig `yaml:",inline"`
	// Group prefixes the consumer groups of the stages (<group>-normalize,
	// <group>-correlate, <group>-hunting) and their transactional ids.
	Group string `yaml:"group"`
	// CommitInterval is how often a stage commits its transaction: the bound
	// on output latency and on the work redone after a crash.
	CommitInterval Duration `yaml:"commit_interval"`
	// MaxPollRecords bounds the records taken per poll.
	MaxPollRecords int `yaml:"max_poll_records"`
	// MaxBufferedBytes bounds what the producer holds in flight; a producer
	// faster than the pipeline makes lag grow, not memory.
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
	// FetchMaxBytes bounds one fetch response.
	FetchMaxBytes int32 `yaml:"fetch_max_bytes"`
}

// TopicsConfig names the topics and says how to create them.
type TopicsConfig struct {
	Inputs        []string `yaml:"inputs"`
	Incidents     string   `yaml:"incidents"`
	Actions       string   `yaml:"actions"`
	ActionResults string   `yaml:"action_results"`
	DeadLetter    string   `yaml:"deadletter"`
	// HuntingPrefix + table name is a hunting topic (Arrow IPC batches).
	HuntingPrefix string `yaml:"hunting_prefix"`
	// Facts is the internal repartition topic carrying correlation facts
	// keyed by tenant from the normalize stage to the correlate stage.
	Facts string `yaml:"facts"`
	// Changelog and WindowChangelog are the correlation store's changelogs
	// (timeless state, compacted; windowed state, compacted and deleted by
	// time), partitioned like Facts: a store is rebuilt from them.
	Changelog         string `yaml:"changelog"`
	WindowChangelog   string `yaml:"window_changelog"`
	Partitions        int32  `yaml:"partitions"`
	ReplicationFactor int16  `yaml:"replication_factor"`
	// Create makes missing topics at start (needs the permission to).
	Create bool `yaml:"create"`
}

// StateConfig places local state.
type StateConfig struct {
	Dir string `yaml:"dir"`
	// CacheBytes and MemtableBytes size Pebble (its defaults are tiny).
	CacheBytes    int64 `yaml:"cache_bytes"`
	MemtableBytes int64 `yaml:"memtable_bytes"`
}

// NormalizeConfig bounds records and batches.
type NormalizeConfig struct {
	BatchRows          int      `yaml:"batch_rows"`
	BatchBytes         int64    `yaml:"batch_bytes"`
	BatchAge           Duration `yaml:"batch_age"`
	MaxRecordBytes     int      `yaml:"max_record_bytes"`
	MaxDepth           int      `yaml:"max_depth"`
	DeadLetterMaxBytes int      `yaml:"deadletter_max_bytes"`
	// Import switches the input form to advanced-hunting export rows (no
	// envelope, no table name). ImportTable names the table; empty infers it.
	Import        bool   `yaml:"import"`
	ImportTable   string `yaml:"import_table"`
	DefaultTenant string `yaml:"default_tenant"`
}

// HuntingConfig controls the hunting outputs.
type HuntingConfig struct {
	Enabled bool `yaml:"enabled"`
	// Dir defaults to <state.dir>/hunting.
	Dir       string   `yaml:"dir"`
	RollBytes int64    `yaml:"roll_bytes"`
	RollAge   Duration `yaml:"roll_age"`
	Retention Duration `yaml:"retention"`
	// RetentionEvery is how often the retention job runs; 0 turns it off.
	RetentionEvery Duration `yaml:"retention_every"`
}

// CorrelateConfig tunes incident correlation.
type CorrelateConfig struct {
	Enabled             bool     `yaml:"enabled"`
	Window              Duration `yaml:"window"`
	Grace               Duration `yaml:"grace"`
	AllowedLateness     Duration `yaml:"allowed_lateness"`
	PrevalenceThreshold int      `yaml:"prevalence_threshold"`
	PrevalenceLookback  Duration `yaml:"prevalence_lookback"`
	IdleClose           Duration `yaml:"idle_close"`
	TickEvery           Duration `yaml:"tick_every"`
}

// HTTPConfig is the operational endpoint (/metrics, /healthz, /readyz).
type HTTPConfig struct {
	Addr string `yaml:"addr"`
}

// SimulateConfig drives the built-in signal simulator.
type SimulateConfig struct {
	// Mode is auto (on with the embedded broker only), true or false.
	Mode    string `yaml:"mode"`
	Rate    int    `yaml:"rate"`
	Tenants int    `yaml:"tenants"`
	Devices int    `yaml:"devices"`
	Users   int    `yaml:"users"`
	Seed    int64  `yaml:"seed"`
	// AttackEvery is how often (of stream time) an attack story starts.
	AttackEvery Duration `yaml:"attack_every"`
}

// LogConfig configures log/slog.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
	// ProgressEvery is the interval of the progress line; 0 turns it off.
	ProgressEvery Duration `yaml:"progress_every"`
}

// Default is the configuration of an embedded run with no config file.
func Default() Config {
	return Config{
		Kafka: KafkaConfig{
			ClientConfig:     kafka.ClientConfig{ClientID: "stitch"},
			Group:            "stitch",
			CommitInterval:   Duration(time.Second),
			MaxPollRecords:   10000,
			MaxBufferedBytes: 64 << 20,
			FetchMaxBytes:    16 << 20,
		},
		Topics: TopicsConfig{
			Inputs:            []string{"signals"},
			Incidents:         "incidents",
			Actions:           "actions",
			ActionResults:     "actions.results",
			DeadLetter:        "deadletter",
			HuntingPrefix:     "hunting.",
			Facts:             "stitch.facts",
			Changelog:         "stitch.correlate-changelog",
			WindowChangelog:   "stitch.correlate-window-changelog",
			Partitions:        6,
			ReplicationFactor: -1,
			Create:            true,
		},
		State: StateConfig{
			Dir:           "./stitch-data",
			CacheBytes:    128 << 20,
			MemtableBytes: 32 << 20,
		},
		Normalize: NormalizeConfig{
			BatchRows:          8192,
			BatchBytes:         4 << 20,
			BatchAge:           Duration(time.Second),
			MaxRecordBytes:     1 << 20,
			MaxDepth:           32,
			DeadLetterMaxBytes: 16 << 10,
			DefaultTenant:      "00000000-0000-0000-0000-000000000000",
		},
		Hunting: HuntingConfig{
			Enabled:        true,
			RollBytes:      128 << 20,
			RollAge:        Duration(time.Minute),
			Retention:      Duration(30 * 24 * time.Hour),
			RetentionEvery: Duration(time.Hour),
		},
		Correlate: CorrelateConfig{
			Enabled:             true,
			Window:              Duration(24 * time.Hour),
			Grace:               Duration(time.Hour),
			AllowedLateness:     Duration(time.Hour),
			PrevalenceThreshold: 10,
			PrevalenceLookback:  Duration(7 * 24 * time.Hour),
			IdleClose:           Duration(7 * 24 * time.Hour),
			TickEvery:           Duration(10 * time.Second),
		},
		HTTP:     HTTPConfig{Addr: "127.0.0.1:8080"},
		Simulate: SimulateConfig{Mode: "auto", Rate: 2000, Tenants: 2, Devices: 300, Users: 200, Seed: 1, AttackEvery: Duration(30 * time.Second)},
		Log:      LogConfig{Level: "warn", Format: "text", ProgressEvery: Duration(5 * time.Second)},
	}
}

// Load reads a YAML config over the defaults. Unknown keys are errors that
// name the line; secrets may come from the environment (ApplyEnv).
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.Strict()); err != nil {
		return cfg, fmt.Errorf("config %s:\n%s", path, yaml.FormatError(err, false, true))
	}
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = nil // "brokers: []" means embedded, as absent does
	}
	return cfg, nil
}

// Environment variables that override the config, so that secrets need not be
// written into files.
const (
	EnvBrokers      = "STITCH_BROKERS"
	EnvSASLUser     = "STITCH_SASL_USERNAME"
	EnvSASLPassword = "STITCH_SASL_PASSWORD"
)

// ApplyEnv overrides config keys from the environment.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv(EnvBrokers); v != "" {
		c.Kafka.Brokers = splitList(v)
	}
	if v := getenv(EnvSASLUser); v != "" {
		c.Kafka.SASL.Username = v
	}
	if v := getenv(EnvSASLPassword); v != "" {
		c.Kafka.SASL.Password = v
	}
}

// Embedded reports whether the pipeline runs on its own in-process broker.
func (c *Config) Embedded() bool { return len(c.Kafka.Brokers) == 0 }

// Simulating resolves the simulate mode against the broker choice.
func (c *Config) Simulating() bool {
	switch strings.ToLower(c.Simulate.Mode) {
	case "true", "on", "yes":
		return true
	case "false", "off", "no":
		return false
	}
	return c.Embedded()
}

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
	if c.Normalize.MaxDepth < 1 {
		bad("normalize.max_depth", "must be at least 1")
	}
	if c.Correlate.PrevalenceThreshold < 1 || c.Correlate.PrevalenceThreshold > 63 {
		bad("correlate.prevalence_threshold", "must be between 1 and 63")
	}
	if c.Hunting.Retention <= 0 {
		bad("hunting.retention", "must be positive")
	}
	switch strings.ToLower(c.Simulate.Mode) {
	case "auto", "true", "false", "on", "off", "yes", "no":
	default:
		bad("simulate.mode", fmt.Sprintf("%q is not one of auto, true, false", c.Simulate.Mode))
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level", err.Error())
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", fmt.Sprintf("%q is not one of text, json", c.Log.Format))
	}
	if !c.Embedded() {
		if err := c.Kafka.ClientConfig.Validate(); err != nil {
			bad("kafka", err.Error())
		}
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
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

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}
