package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/state"
)

// countStage is a stage declared only here: it passes every record of
// count.in on to count.out as "tenant #n", n the tenant's running count,
// kept in a changelogged store. Nothing else in the pipeline knows of it.
func countStage() Stage { return countStageOn("count.in") }

// countStageOn is countStage reading input.
func countStageOn(input string) Stage {
	return Stage{
		Name:   "count",
		Doc:    "test: counts records per tenant",
		Inputs: func(Config) []string { return []string{input} },
		Outputs: func(Config) []Output {
			return []Output{{Topic: kafka.TopicSpec{Name: "count.out"}, Replay: "count.jsonl"}}
		},
		Stores: []StoreSpec{{Name: "counts", Changelogs: func(Config) []kafka.TopicSpec {
			return []kafka.TopicSpec{ChangelogTopic("count.counts-changelog")}
		}}},
		Processor: func(sc *StageContext) (Processor, error) {
			st, err := sc.OpenStore("counts")
			if err != nil {
				return nil, err
			}
			p := &countProc{store: state.NewTxStore(st)}
			return p, sc.Attach("counts", p.store)
		},
	}
}

type countProc struct{ store *state.TxStore }

func (c *countProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	tenant := string(r.Key)
	if !state.ValidTenant(tenant) {
		tenant = "-" // unkeyed input
	}
	key := state.TenantKey(nil, 'n', tenant)
	v, ok, err := c.store.Get(key)
	if err != nil {
		return err
	}
	var n uint64
	if ok {
		n = binary.BigEndian.Uint64(v)
	}
	n++
	if err := c.store.Set(key, binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return err
	}
	tx.Produce(ctx, &kgo.Record{Topic: "count.out", Key: r.Key, Value: fmt.Appendf(nil, "%s #%d", r.Key, n)})
	tx.Count("passed", string(r.Key), 1)
	return nil
}

// Tick counts the ticks that commit (the count stage ticks only where a
// test sets its TickEvery).
func (c *countProc) Tick(_ context.Context, _ time.Time, tx Txn) error {
	tx.Count("ticks", "", 1)
	return nil
}

func (c *countProc) Flush(context.Context, Txn) error { return nil }
func (c *countProc) Aborted()                         {}
func (c *countProc) Committed()                       {}

// countingSetup starts a broker with partitions per topic and gives the
// config of a pipeline that runs only normalize and the count stage on it.
func countingSetup(t *testing.T, partitions int) (context.Context, []string, Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b, err := kafka.StartBroker(kafka.DefaultPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := Default()
	cfg.Hunting.Enabled = false
	cfg.Correlate.Enabled = false
	cfg.Topics.Partitions = int32(partitions)
	cfg.Kafka.CommitInterval = Duration(100 * time.Millisecond)
	return ctx, b.Addrs(), cfg
}

// runCounting produces rounds records per tenant to count.in, runs a
// pipeline with the count stage on addrs until it is idle, stops it and
// returns its totals. Every run is the same instance: a run replaces the
// previous one's static membership at once.
func runCounting(ctx context.Context, t *testing.T, cfg Config, addrs []string, tenants []string, rounds int) Snapshot {
	t.Helper()
	p := newTestPipeline(t, ctx, cfg, addrs, "count-test", WithStage(countStage()))
	for range rounds {
		for _, tn := range tenants {
			p.produce(ctx, &kgo.Record{Topic: "count.in", Key: []byte(tn), Value: []byte("x")})
		}
	}
	return p.runUntilIdle(ctx)
}

// A stage declared in a test, with no other change: the pipeline creates
// its topics, runs it in transactions, keeps its store, reports it in the
// totals /status serves, and restores its store from its changelog on a
// new state directory (the counts go on from where they were, not from 1).
func TestDeclaredStageRunsWithItsStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline twice")
	}
	ctx, addrs, cfg := countingSetup(t, 3)
	dir := t.TempDir()

	tenants := []string{"t-a", "t-b", "t-c", "t-d", "t-e"}
	run := func(stateDir string, rounds int) Snapshot {
		c := cfg
		c.State.Dir = stateDir
		return runCounting(ctx, t, c, addrs, tenants, rounds)
	}

	first := run(filepath.Join(dir, "a"), 4)
	st, ok := first.Stages["count"]
	if !ok {
		t.Fatalf("the totals (/status) have no count stage: %v", first.Stages)
	}
	if got := st.Sum("passed"); got != 20 {
		t.Fatalf("count stage passed %d records, want 20", got)
	}
	if st.Transactions == 0 || st.RecordsIn["count.in"] != 20 || st.RecordsOut["count.out"] != 20 {
		t.Fatalf("count stage status %+v: want committed transactions, 20 in and 20 out", st)
	}
	if st.RecordsOut["count.counts-changelog"] == 0 {
		t.Fatalf("count stage wrote nothing to its changelog: %+v", st.RecordsOut)
	}

	// A new state directory: the store must come back from the changelog.
	run(filepath.Join(dir, "b"), 2)
	last := map[string]string{}
	if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: addrs}, "count.out", 300*time.Millisecond, func(r *kgo.Record) error {
		last[string(r.Key)] = string(r.Value)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		if want := tn + " #6"; last[tn] != want {
			t.Errorf("last output for %s: %q, want %q (the restored count went on)", tn, last[tn], want)
		}
	}
}

// Replay drains a declared stage's output into the file it names, and
// waits for the stage before it ends: the count stage, reading the replay's
// input beside normalize, passes every record to count.jsonl.
func TestReplayDrainsADeclaredStage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a replay")
	}
	cfg := Default()
	cfg.Hunting.Enabled = false
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	sum, err := Replay(ctx, cfg, ReplayOptions{Inputs: []string{"../testdata/replay/mixed-bad.jsonl"}, OutDir: out},
		WithStage(countStageOn(cfg.Topics.Inputs[0])))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	readLines(t, filepath.Join(out, "count.jsonl"), func([]byte) { lines++ })
	if lines == 0 || int64(lines) != sum.KafkaRecords {
		t.Fatalf("count.jsonl has %d lines; the replay produced %d input records", lines, sum.KafkaRecords)
	}
}

// Everything that lists stages derives from the declarations: each
// enabled stage's inputs, outputs and changelogs are created, its group is
// watched for lag, and every output with a replay file is drained.
func TestTopologyDerivesTopicsGroupsAndStores(t *testing.T) {
	cfg := Default()
	p, err := New(cfg, WithBrokers([]string{"127.0.0.1:1"}), WithInstance("x"), WithStage(countStage()))
	if err != nil {
		t.Fatal(err)
	}
	topo := p.Topology()
	created := map[string]kafka.TopicSpec{}
	for _, s := range p.Topics() {
		created[s.Name] = s
	}
	groups := p.Groups()
	var names []string
	for i, s := range topo.Stages {
		names = append(names, s.Name)
		if _, ok := groups[s.Group]; !ok {
			t.Errorf("stage %s: group %s not among the groups %v", s.Name, s.Group, groups)
		}
		for _, tp := range slices.Concat(s.Inputs, s.Outputs) {
			if _, ok := created[tp]; !ok {
				t.Errorf("stage %s: topic %s is not created", s.Name, tp)
			}
		}
		for j, st := range s.Stores {
			if len(st.Changelogs) == 0 {
				t.Errorf("stage %s store %s has no changelog", s.Name, st.Name)
			}
			for _, cl := range st.Changelogs {
				if created[cl].Configs["cleanup.policy"] == "" {
					t.Errorf("changelog %s is not created compacted: %v", cl, created[cl].Configs)
				}
			}
			if topo.defs[i].Stores[j].Name != st.Name {
				t.Errorf("store %s out of order", st.Name)
			}
		}
	}
	if !slices.Equal(names, []string{"normalize", "correlate", "hunting", "respond-feed", "respond-decisions", "respond", "view", "incident-updates", "count"}) {
		t.Fatalf("stages %v", names)
	}
	if created[cfg.Topics.Incidents].Configs["cleanup.policy"] != "compact" {
		t.Errorf("incidents topic not compacted: %+v", created[cfg.Topics.Incidents])
	}
	for _, internal := range []string{cfg.Topics.Facts, cfg.Topics.HuntingPrefix + "AlertInfo", "count.in"} {
		if want := internal != "count.in"; topo.Internal(internal) != want {
			t.Errorf("Internal(%s) = %v, want %v", internal, !want, want)
		}
	}
	var sources []string
	for _, s := range topo.Sources() {
		sources = append(sources, s.Name)
	}
	if !slices.Equal(sources, []string{"normalize", "respond-decisions", "count"}) {
		t.Errorf("source stages %v, want normalize, respond-decisions and count", sources)
	}

	// Disabled stages vanish with their topics and stores.
	off := cfg
	off.Correlate.Enabled = false
	off.Hunting.Enabled = false
	t2, err := Describe(off)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range t2.Topics {
		if tp.Name == cfg.Topics.Facts || tp.Name == cfg.Topics.Changelog || strings.HasPrefix(tp.Name, cfg.Topics.HuntingPrefix) {
			t.Errorf("topic %s created with correlate and hunting off", tp.Name)
		}
	}

	// The JSON shape stitch topology --format json promises.
	var buf bytes.Buffer
	if err := topo.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stages []struct {
			Name    string   `json:"name"`
			Inputs  []string `json:"inputs"`
			Outputs []string `json:"outputs"`
			Group   string   `json:"group"`
			Stores  []struct {
				Name       string   `json:"name"`
				Changelogs []string `json:"changelogs"`
			} `json:"stores"`
		} `json:"stages"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Stages) != 9 || doc.Stages[1].Name != "correlate" || doc.Stages[1].Group != "stitch-correlate" ||
		len(doc.Stages[1].Stores) != 1 || !slices.Equal(doc.Stages[1].Stores[0].Changelogs, []string{cfg.Topics.Changelog, cfg.Topics.WindowChangelog}) {
		t.Fatalf("topology JSON:\n%s", buf.String())
	}
}

// Declarations that cannot run are refused with the reason.
func TestTopologyRefusesBadStages(t *testing.T) {
	cfg := Default()
	for name, s := range map[string]Stage{
		"duplicate name":       {Name: "normalize", Inputs: func(Config) []string { return []string{"x"} }, Processor: countStage().Processor},
		"no processor":         {Name: "x", Inputs: func(Config) []string { return []string{"x"} }},
		"stateful, two inputs": {Name: "x", Inputs: func(Config) []string { return []string{"a", "b"} }, Stores: countStage().Stores, Processor: countStage().Processor},
		"no input":             {Name: "x", Inputs: func(Config) []string { return nil }, Processor: countStage().Processor},
		"store, no changelogs": {Name: "x", Inputs: func(Config) []string { return []string{"x"} }, Stores: []StoreSpec{{Name: "s"}}, Processor: countStage().Processor},
		"store, empty changelogs": {Name: "x", Inputs: func(Config) []string { return []string{"x"} },
			Stores: []StoreSpec{{Name: "s", Changelogs: func(Config) []kafka.TopicSpec { return nil }}}, Processor: countStage().Processor},
	} {
		if _, err := Describe(cfg, s); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// A stage whose processor does not attach every store it declares, or
// opens one it does not declare, is refused when it is built: a store
// missing from the runtime would be missing from the changelogs and from
// every restore.
func TestStoresMustBeDeclaredAndAttached(t *testing.T) {
	cfg := Default()
	cfg.State.Dir = t.TempDir()
	for name, c := range map[string]struct {
		proc func(*StageContext) (Processor, error)
		want string
	}{
		"declared, not attached": {func(sc *StageContext) (Processor, error) {
			_, err := sc.OpenStore("counts")
			return &countProc{}, err
		}, "0 of its 1 declared stores attached"},
		"opened, not declared": {func(sc *StageContext) (Processor, error) {
			_, err := sc.OpenStore("other")
			return &countProc{}, err
		}, `store "other" is not declared`},
		"attached, not declared": {func(sc *StageContext) (Processor, error) {
			st, err := sc.OpenStore("counts")
			if err != nil {
				return nil, err
			}
			return &countProc{}, sc.Attach("other", state.NewTxStore(st))
		}, `store "other" is not declared`},
	} {
		s := countStage()
		s.Processor = c.proc
		p, err := New(cfg, WithBrokers([]string{"127.0.0.1:1"}), WithInstance("x"), WithStage(s))
		if err != nil {
			t.Fatal(err)
		}
		def, info, _ := p.Topology().stage("count")
		if _, _, err := p.build(def, info); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: built with error %v, want %q", name, err, c.want)
		}
	}
}

// docs/ARCHITECTURE.md shows the stage list as `stitch topology` prints it
// for the default config.
func TestArchitectureShowsTheTopology(t *testing.T) {
	doc, err := os.ReadFile("../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	const open, end = "<!-- topology:", "<!-- /topology -->"
	i, j := bytes.Index(doc, []byte(open)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/ARCHITECTURE.md has no %q ... %q block", open, end)
	}
	block := string(doc[i:j])
	block = block[strings.Index(block, "```\n")+4 : strings.LastIndex(block, "```")]
	topo, err := Describe(Default())
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	if err := topo.WriteText(&want); err != nil {
		t.Fatal(err)
	}
	if block != want.String() {
		t.Fatalf("docs/ARCHITECTURE.md shows an old topology; replace its block with the output of\n\tgo run ./cmd/stitch topology\ngot:\n%s\nwant:\n%s", block, want.String())
	}
}

// testPipeline is a pipeline of a test on the broker at addrs, its topics
// created.
type testPipeline struct {
	*Pipeline
	t     *testing.T
	addrs []string
	stop  context.CancelFunc
	done  chan error // Run's error; nil while not started
}

// newTestPipeline builds the pipeline of cfg on the broker at addrs as
// instance (a later run with the same instance takes the previous one's
// static membership at once) and creates its topics.
func newTestPipeline(t *testing.T, ctx context.Context, cfg Config, addrs []string, instance string, opts ...Option) *testPipeline {
	t.Helper()
	p, err := New(cfg, append([]Option{WithBrokers(addrs), WithInstance(instance)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	return &testPipeline{Pipeline: p, t: t, addrs: addrs}
}

// produce writes recs to the broker, each acknowledged before it returns.
func (p *testPipeline) produce(ctx context.Context, recs ...*kgo.Record) {
	p.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.addrs...))
	if err != nil {
		p.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		p.t.Fatal(err)
	}
}

// start runs the pipeline in the background until halt, or until the test
// ends: an error of Run then fails the test.
func (p *testPipeline) start(ctx context.Context) {
	runCtx, stop := context.WithCancel(ctx)
	p.stop, p.done = stop, make(chan error, 1)
	go func() { p.done <- p.Run(runCtx) }()
	p.t.Cleanup(func() {
		if err := p.halt(); err != nil {
			p.t.Error(err)
		}
	})
}

// halt stops a started pipeline cleanly and returns Run's error.
func (p *testPipeline) halt() error {
	if p.done == nil {
		return nil
	}
	p.stop()
	err := <-p.done
	p.done = nil
	return err
}

// runUntilIdle runs the pipeline until every stage has committed all of
// its input, stops it cleanly and returns its totals.
func (p *testPipeline) runUntilIdle(ctx context.Context) Snapshot {
	p.t.Helper()
	p.start(ctx)
	if err := p.WaitIdle(ctx, 100*time.Millisecond); err != nil {
		p.t.Fatal(err)
	}
	if err := p.halt(); err != nil {
		p.t.Fatal(err)
	}
	return p.Totals()
}
