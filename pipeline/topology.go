package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// The topology is data: every stage is declared once, as a Stage value, and
// everything that needs to know which stages exist — topic creation, the
// consumer groups and transactional ids, the stores and their changelogs
// and restore, readiness, the progress line, /status, metric labels, the
// shutdown order and replay's drain of the outputs — reads the list. A new
// stage is a file with its processor and its declaration, and one line in
// stages() (or WithStage in a test).

// Stage declares one stage: a consumer group reading Inputs and writing
// Outputs, in Kafka transactions (Processor) or with its own consumer loop
// (Sink), with the state stores it keeps.
type Stage struct {
	// Name names the stage in groups, transactional ids, metrics and logs.
	Name string
	// Doc says in a line what the stage does (stitch topology prints it).
	Doc string
	// Enabled says whether the stage runs under a config; nil: always.
	Enabled func(Config) bool
	// Inputs are the topics the stage consumes. A stage with stores reads
	// one topic: partition p of its changelogs is the state of partition p
	// of that topic.
	Inputs func(Config) []string
	// Outputs are the topics the stage produces, with their settings.
	Outputs func(Config) []Output
	// Stores are the state stores the stage keeps; the processor attaches
	// each by name (StageContext.Attach) when it is built.
	Stores []StoreSpec
	// TickEvery is how often a transactional stage's Tick runs (0: never).
	TickEvery func(Config) time.Duration
	// Processor builds the processor of a transactional stage.
	Processor func(*StageContext) (Processor, error)
	// Sink builds a stage that runs its own consumer (the hunting sink keeps
	// its offsets beside its files, not in a transaction). Exactly one of
	// Processor and Sink is set.
	Sink func(*StageContext) (Runner, error)
	// Position says where a Sink keeps its place in its inputs (stitch
	// topology prints it; empty: beside its output, as the hunting sink).
	Position string
	// Dirs are the directories besides state.dir where the stage keeps
	// what it writes and its place in its inputs (the hunting sink:
	// hunting.dir): checked against the cluster's identity with state.dir,
	// and cleared by a replay when they lie in its output directory.
	Dirs func(Config) []string
	// Discard removes what the stage keeps in one of its Dirs when
	// state.reset discards the state of a former cluster (nil: nothing).
	Discard func(c Config, dir string) error
	// Progress is the stage's part of the progress line, from its committed
	// counters (nil: none).
	Progress func(StageSnapshot) string
}

// Output is a topic a stage produces.
type Output struct {
	Topic kafka.TopicSpec
	// Replay names the file replay drains the topic into (empty: none).
	Replay string
	// Latest keeps only the last record of each key in the replay file (the
	// topic is a table, such as incidents).
	Latest bool
}

// StoreSpec declares a state store of a stage: a Pebble store under
// state.dir/<Name>, made a cache of its changelog topics.
type StoreSpec struct {
	Name string
	// Changelogs are the store's changelog topics: the first takes timeless
	// changes, the second (if any) windowed ones (Store.ChangelogRoute).
	Changelogs func(Config) []kafka.TopicSpec
}

// Runner is a stage with its own consumer loop.
type Runner interface {
	// Run consumes until ctx is done, committing what it did on a clean
	// stop. Run with ctx already done releases what the runner holds (its
	// Kafka client) and returns: a failed start stops the stages built
	// before it so.
	Run(ctx context.Context) error
}

// stages is the topology, in data-flow order: the order stages start in,
// and the reverse of the order their resources close in.
func stages() []Stage {
	return []Stage{normalizeStage(), detectCorrelateStage(), correlateStage(), huntingStage(), respondFeedStage(), respondDecisionsStage(), respondStage(), webhookStage(), microsoftStage(), viewStage(), updatesStage()}
}

// WithStage adds a stage to the topology (tests; later capabilities are
// declared in stages()).
func WithStage(s Stage) Option { return func(p *Pipeline) { p.extra = append(p.extra, s) } }

// Topology is a resolved topology: the enabled stages of a config, with
// their topics, groups, transactional ids and stores.
type Topology struct {
	Stages []StageInfo `json:"stages"`
	// Topics are every topic the stages read or write, with the settings
	// EnsureTopics creates them with.
	Topics []TopicInfo `json:"topics"`

	cfg    Config
	defs   []Stage
	specs  []kafka.TopicSpec
	output map[string]bool // produced by a stage
	input  map[string]bool // consumed by a stage
}

// StageInfo is one stage as it runs.
type StageInfo struct {
	Name    string   `json:"name"`
	Doc     string   `json:"doc,omitempty"`
	Inputs  []string `json:"inputs"`
	Outputs []string `json:"outputs"`
	Group   string   `json:"group"`
	// TransactionalID is the prefix of the stage's transactional ids: each
	// process appends its instance id (kept in its state directory).
	TransactionalID string `json:"transactional_id_prefix,omitempty"`
	// Position is where a stage without transactions keeps its place.
	Position string      `json:"position,omitempty"`
	Stores   []StoreInfo `json:"stores"`
}

// StoreInfo is a stage's state store and its changelog topics.
type StoreInfo struct {
	Name       string   `json:"name"`
	Changelogs []string `json:"changelogs"`
}

// TopicInfo is a topic to create.
type TopicInfo struct {
	Name              string            `json:"name"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int16             `json:"replication_factor"`
	Configs           map[string]string `json:"configs,omitempty"`
}

// Describe resolves the topology of cfg: stitch's stages plus extra ones.
func Describe(cfg Config, extra ...Stage) (*Topology, error) {
	t := &Topology{cfg: cfg, output: map[string]bool{}, input: map[string]bool{}}
	specs := map[string]kafka.TopicSpec{}
	var order []string
	add := func(s kafka.TopicSpec) {
		if s.Partitions == 0 {
			s.Partitions = cfg.Topics.Partitions
		}
		if s.ReplicationFactor == 0 {
			s.ReplicationFactor = cfg.Topics.ReplicationFactor
		}
		prev, ok := specs[s.Name]
		if !ok {
			order = append(order, s.Name)
		}
		// A spec with settings (a changelog, the incidents table, declared
		// by whoever writes it) wins over a bare one (a stage's input).
		if !ok || len(prev.Configs) == 0 && len(s.Configs) > 0 {
			specs[s.Name] = s
		}
	}
	names := map[string]bool{}
	for _, d := range append(stages(), extra...) {
		if d.Enabled != nil && !d.Enabled(cfg) {
			continue
		}
		if err := d.check(); err != nil {
			return nil, err
		}
		if names[d.Name] {
			return nil, fmt.Errorf("topology: two stages named %q", d.Name)
		}
		names[d.Name] = true
		group := cfg.Kafka.Group + "-" + d.Name
		si := StageInfo{Name: d.Name, Doc: d.Doc, Group: group, Inputs: d.Inputs(cfg), Stores: []StoreInfo{}, Outputs: []string{}}
		if len(si.Inputs) == 0 {
			return nil, fmt.Errorf("topology: stage %s reads no topic under this config", d.Name)
		}
		if d.Processor != nil {
			si.TransactionalID = group + "-"
		} else {
			si.Position = cmp.Or(d.Position, "offsets kept beside its output")
		}
		for _, in := range si.Inputs {
			t.input[in] = true
			add(kafka.TopicSpec{Name: in})
		}
		if d.Outputs != nil {
			for _, o := range d.Outputs(cfg) {
				si.Outputs = append(si.Outputs, o.Topic.Name)
				t.output[o.Topic.Name] = true
				add(o.Topic)
			}
		}
		if len(d.Stores) > 0 && len(si.Inputs) != 1 {
			return nil, fmt.Errorf("topology: stage %s keeps state but reads %d topics: a stateful stage reads one, whose partitions its changelogs follow", d.Name, len(si.Inputs))
		}
		for _, st := range d.Stores {
			info := StoreInfo{Name: st.Name, Changelogs: []string{}}
			for _, cl := range st.Changelogs(cfg) {
				info.Changelogs = append(info.Changelogs, cl.Name)
				add(cl)
			}
			if len(info.Changelogs) == 0 {
				return nil, fmt.Errorf("topology: stage %s: store %s has no changelog topic, so nothing could restore it", d.Name, st.Name)
			}
			si.Stores = append(si.Stores, info)
		}
		t.Stages = append(t.Stages, si)
		t.defs = append(t.defs, d)
	}
	for _, name := range order {
		s := specs[name]
		t.specs = append(t.specs, s)
		t.Topics = append(t.Topics, TopicInfo{Name: s.Name, Partitions: s.Partitions, ReplicationFactor: s.ReplicationFactor, Configs: s.Configs})
	}
	return t, nil
}

func (d Stage) check() error {
	switch {
	case d.Name == "" || strings.ContainsAny(d.Name, " /"):
		return fmt.Errorf("topology: stage name %q is empty or has a space or slash", d.Name)
	case (d.Processor == nil) == (d.Sink == nil):
		return fmt.Errorf("topology: stage %s needs exactly one of Processor and Sink", d.Name)
	case d.Inputs == nil:
		return fmt.Errorf("topology: stage %s reads no topic", d.Name)
	case d.Sink != nil && len(d.Stores) > 0:
		return fmt.Errorf("topology: stage %s is a sink with stores; only transactional stages keep changelogged state", d.Name)
	}
	for _, st := range d.Stores {
		if st.Name == "" || st.Changelogs == nil {
			return fmt.Errorf("topology: stage %s declares a store without a name or changelogs (%q)", d.Name, st.Name)
		}
	}
	return nil
}

// replayOutputs are the outputs of defs that name a replay file, one for
// each topic.
func replayOutputs(defs []Stage, cfg Config) []Output {
	var outs []Output
	seen := map[string]bool{}
	for _, d := range defs {
		if d.Outputs == nil {
			continue
		}
		for _, o := range d.Outputs(cfg) {
			if o.Replay != "" && !seen[o.Topic.Name] {
				seen[o.Topic.Name] = true
				outs = append(outs, o)
			}
		}
	}
	return outs
}

// stageDirs are the directories defs keep (Stage.Dirs), each once.
func stageDirs(defs []Stage, cfg Config) []string {
	var dirs []string
	for _, d := range defs {
		if d.Dirs == nil {
			continue
		}
		for _, dir := range d.Dirs(cfg) {
			if !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
	}
	return dirs
}

// stage returns the declaration and info of a stage by name.
func (t *Topology) stage(name string) (Stage, StageInfo, bool) {
	for i, s := range t.Stages {
		if s.Name == name {
			return t.defs[i], s, true
		}
	}
	return Stage{}, StageInfo{}, false
}

// Internal says whether topic is produced by one stage and read by another:
// an internal topic, whose records are all consumed once a run is idle.
func (t *Topology) Internal(topic string) bool { return t.output[topic] && t.input[topic] }

// Sources are the stages that read a topic no stage produces: the ones whose
// lag is the pipeline's input lag.
func (t *Topology) Sources() []StageInfo {
	var out []StageInfo
	for _, s := range t.Stages {
		for _, in := range s.Inputs {
			if !t.output[in] {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Groups are the stages' consumer groups and the topics each reads.
func (t *Topology) Groups() map[string][]string {
	g := map[string][]string{}
	for _, s := range t.Stages {
		g[s.Group] = s.Inputs
	}
	return g
}

// WriteText prints the topology for people, one block per stage, as
// Kafka Streams' Topology#describe() does.
func (t *Topology) WriteText(w io.Writer) error {
	var b strings.Builder
	for i, s := range t.Stages {
		fmt.Fprintf(&b, "Stage %d: %s", i+1, s.Name)
		if s.Doc != "" {
			fmt.Fprintf(&b, " (%s)", s.Doc)
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "  group:            %s\n", s.Group)
		if s.TransactionalID != "" {
			fmt.Fprintf(&b, "  transactional id: %s<instance>\n", s.TransactionalID)
		} else {
			fmt.Fprintf(&b, "  transactional id: none (%s)\n", s.Position)
		}
		fmt.Fprintf(&b, "  inputs:           %s\n", listOrNone(s.Inputs))
		fmt.Fprintf(&b, "  outputs:          %s\n", listOrNone(s.Outputs))
		for _, st := range s.Stores {
			fmt.Fprintf(&b, "  store %s: changelogs %s\n", st.Name, strings.Join(st.Changelogs, ", "))
		}
	}
	b.WriteString("Topics:\n")
	for _, tp := range t.Topics {
		rf := "broker-default"
		if tp.ReplicationFactor > 0 {
			rf = fmt.Sprint(tp.ReplicationFactor)
		}
		fmt.Fprintf(&b, "  %s  partitions=%d replication=%s", tp.Name, tp.Partitions, rf)
		keys := make([]string, 0, len(tp.Configs))
		for k := range tp.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, tp.Configs[k])
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the topology as JSON.
func (t *Topology) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	if len(s) > 6 {
		return strings.Join(s[:3], ", ") + fmt.Sprintf(", ... (%d topics)", len(s))
	}
	return strings.Join(slices.Clone(s), ", ")
}
