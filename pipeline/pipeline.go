// Package pipeline is stitch's topology and its lifecycle: the stages that
// consume, process and produce in Kafka transactions, the topics between
// them, their metrics, and their orderly start and stop.
//
//	signals ──▶ [normalize] ──▶ hunting.<Table> ──▶ [hunting sink] ──▶ Parquet
//	                 │  └──────▶ deadletter
//	                 └─────────▶ stitch.facts (key: tenant) ──▶ [correlate] ──▶ incidents
//
// Each stage is a consumer group of its own, so that each scales by its own
// input partitions and a slow sink never stalls normalization.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// Pipeline is a built topology, ready to Run.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	mem     *countingAllocator
	metrics *Metrics
	totals  *Totals
	brokers []string

	instance string
	ready    atomic.Int32 // stages that have polled at least once
	nstages  int32
	running  atomic.Bool
	inputLag atomic.Int64 // -1: unknown

	stateOpts []state.Option

	adminMu sync.Mutex
	admin   *kgo.Client // lag checks while running
}

// Option adjusts a Pipeline.
type Option func(*Pipeline)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(p *Pipeline) { p.log = l } }

// WithAllocator sets the Arrow allocator underneath the pipeline's counting
// one (tests pass a checked allocator).
func WithAllocator(m memory.Allocator) Option {
	return func(p *Pipeline) { p.mem = newCountingAllocator(m) }
}

// WithBrokers overrides the configured brokers, e.g. with the address of an
// embedded broker started by the caller.
func WithBrokers(addrs []string) Option { return func(p *Pipeline) { p.brokers = addrs } }

// WithInstance names this process among the group's members; it becomes part
// of the transactional ids, which must be unique per live process.
func WithInstance(id string) Option { return func(p *Pipeline) { p.instance = id } }

// WithStateOptions adds options to the state store's (after those from the
// config), e.g. the file system it lives on.
func WithStateOptions(opts ...state.Option) Option {
	return func(p *Pipeline) { p.stateOpts = append(p.stateOpts, opts...) }
}

// New builds a pipeline from a validated config.
func New(cfg Config, opts ...Option) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	p := &Pipeline{cfg: cfg, log: slog.Default(), totals: newTotals(), brokers: cfg.Kafka.Brokers}
	for _, o := range opts {
		o(p)
	}
	if p.mem == nil {
		p.mem = newCountingAllocator(memory.NewGoAllocator())
	}
	if p.instance == "" {
		id, err := instanceID(cfg.State.Dir)
		if err != nil {
			return nil, err
		}
		p.instance = id
	}
	if len(p.brokers) == 0 {
		return nil, errors.New("no brokers: start an embedded broker or set kafka.brokers")
	}
	p.metrics = newMetrics(func() float64 { return float64(p.mem.Allocated()) })
	p.inputLag.Store(-1)
	return p, nil
}

// Metrics exposes the pipeline's Prometheus registry and series.
func (p *Pipeline) Metrics() *Metrics { return p.metrics }

// Totals are the committed counts so far.
func (p *Pipeline) Totals() Snapshot { return p.totals.Snapshot() }

// Config is the configuration the pipeline runs with.
func (p *Pipeline) Config() Config { return p.cfg }

// Brokers are the seed brokers the pipeline talks to.
func (p *Pipeline) Brokers() []string { return p.brokers }

// ArrowBytes is what Arrow buffers hold right now.
func (p *Pipeline) ArrowBytes() int64 { return p.mem.Allocated() }

// Ready reports whether every stage has joined its group and polled.
func (p *Pipeline) Ready() bool {
	return p.running.Load() && p.ready.Load() >= p.nstages
}

func (p *Pipeline) clientOpts(stage string) ([]kgo.Opt, error) {
	cc := p.cfg.Kafka.ClientConfig
	cc.Brokers = p.brokers
	opts, err := cc.Opts()
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return append(opts,
		kgo.ClientID(p.cfg.Kafka.ClientID+"-"+stage),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedBytes(int(p.cfg.Kafka.MaxBufferedBytes)),
		kgo.FetchMaxBytes(p.cfg.Kafka.FetchMaxBytes),
		kgo.ProducerBatchMaxBytes(8<<20),
		kgo.RecordRetries(20),
	), nil
}

// Topics are the topics the pipeline reads and writes, with their settings.
func (p *Pipeline) Topics() []kafka.TopicSpec {
	t := p.cfg.Topics
	spec := func(name string) kafka.TopicSpec {
		return kafka.TopicSpec{Name: name, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor}
	}
	var specs []kafka.TopicSpec
	for _, in := range t.Inputs {
		specs = append(specs, spec(in))
	}
	specs = append(specs, spec(t.DeadLetter), spec(t.Facts), spec(t.Actions), spec(t.ActionResults))
	if p.cfg.Correlate.Enabled {
		specs = append(specs, p.changelogSpecs()...)
	}
	inc := spec(t.Incidents)
	// Every incident version is the full incident keyed by id: compaction
	// keeps the latest, which is all a consumer that starts late needs.
	inc.Configs = map[string]string{"cleanup.policy": "compact"}
	specs = append(specs, inc)
	if p.cfg.Hunting.Enabled {
		for _, table := range normalize.Tables() {
			specs = append(specs, spec(t.HuntingPrefix+table))
		}
	}
	return specs
}

// EnsureTopics creates the pipeline's topics where absent.
func (p *Pipeline) EnsureTopics(ctx context.Context) error {
	if !p.cfg.Topics.Create {
		return nil
	}
	opts, err := p.clientOpts("admin")
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	return kafka.EnsureTopics(ctx, cl, p.Topics()...)
}

func (p *Pipeline) newNormalizer() *normalize.Normalizer {
	n := p.cfg.Normalize
	opts := []normalize.Option{
		normalize.WithAllocator(p.mem),
		normalize.WithBatchRows(n.BatchRows),
		normalize.WithBatchBytes(n.BatchBytes),
		normalize.WithBatchAge(n.BatchAge.D()),
		normalize.WithMaxRecordBytes(n.MaxRecordBytes),
		normalize.WithMaxDepth(n.MaxDepth),
		normalize.WithDeadLetterValueLimit(n.DeadLetterMaxBytes),
		normalize.WithDefaultTenant(n.DefaultTenant),
	}
	if n.Import {
		opts = append(opts, normalize.WithImport(n.ImportTable))
	}
	return normalize.New(opts...)
}

func (p *Pipeline) newStage(name string, topics []string, proc processor, tickEach time.Duration) (*stage, error) {
	opts, err := p.clientOpts(name)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.ConsumerGroup(p.cfg.Kafka.Group+"-"+name),
		kgo.ConsumeTopics(topics...),
		kgo.TransactionalID(p.cfg.Kafka.Group+"-"+name+"-"+p.instance),
		// A process killed mid-transaction leaves it open, and read-committed
		// readers wait behind it until it is fenced (by the same
		// transactional id starting again: see instanceID) or times out.
		kgo.TransactionTimeout(15*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(30*time.Second),
		p.staticMember(name),
	)
	if k, ok := proc.(interface{ kafkaOpts() []kgo.Opt }); ok {
		opts = append(opts, k.kafkaOpts()...) // e.g. the correlate stage's restore on assignment
	}
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: kafka session: %w", name, err)
	}
	var once sync.Once
	return &stage{
		name: name, sess: sess, proc: proc,
		interval: p.cfg.Kafka.CommitInterval.D(), tickEach: tickEach, maxPoll: p.cfg.Kafka.MaxPollRecords,
		metrics: p.metrics, totals: p.totals, log: p.log,
		ready: func() { once.Do(func() { p.ready.Add(1) }) },
	}, nil
}

// Run runs every stage until ctx is done or one fails. On a clean stop each
// stage commits what it has done, so a restart does not redo it.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.EnsureTopics(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	type runner struct {
		name string
		run  func(context.Context) error
		stop func()
	}
	var runners []runner

	np := newNormalizeProc(p)
	ns, err := p.newStage("normalize", p.cfg.Topics.Inputs, np, 0)
	if err != nil {
		return err
	}
	runners = append(runners, runner{"normalize", ns.run, np.close})

	if p.cfg.Correlate.Enabled {
		dir := filepath.Join(p.cfg.State.Dir, "correlate")
		store, err := state.Open(dir, append([]state.Option{state.WithCacheSize(p.cfg.State.CacheBytes),
			state.WithMemTableSize(uint64(p.cfg.State.MemtableBytes))}, p.stateOpts...)...)
		if err != nil {
			return fmt.Errorf("open correlation state in %s: %w", dir, err)
		}
		c := p.cfg.Correlate
		cp := &correlateProc{p: p}
		cor, err := correlate.New(store,
			correlate.WithOwnership(cp.owns),
			correlate.WithWindow(c.Window.D()),
			correlate.WithEvidenceGrace(c.Grace.D()),
			correlate.WithLateness(c.AllowedLateness.D()),
			correlate.WithPrevalence(c.PrevalenceThreshold, c.PrevalenceLookback.D()),
			correlate.WithIdleClose(c.IdleClose.D()),
		)
		if err != nil {
			store.Close()
			return fmt.Errorf("correlator: %w", err)
		}
		cp.c = cor
		cs, err := p.newStage("correlate", []string{p.cfg.Topics.Facts}, cp, c.TickEvery.D())
		if err != nil {
			store.Close()
			return err
		}
		runners = append(runners, runner{"correlate", cs.run, func() { store.Close() }})
	}

	if p.cfg.Hunting.Enabled {
		hs, err := newHuntingSink(p)
		if err != nil {
			return err
		}
		runners = append(runners, runner{"hunting", hs.run, nil})
		if every := p.cfg.Hunting.RetentionEvery.D(); every > 0 {
			runners = append(runners, runner{"retention", func(ctx context.Context) error {
				parquet.RetentionLoop(ctx, p.cfg.HuntingDir(), every, p.cfg.Hunting.Retention.D(), p.log)
				return nil
			}, nil})
		}
	}
	p.nstages = 0
	for _, r := range runners {
		if r.name != "retention" {
			p.nstages++
		}
	}

	go p.lagLoop(ctx, 5*time.Second)
	var wg sync.WaitGroup
	errs := make([]error, len(runners))
	p.running.Store(true)
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.run(ctx); err != nil {
				errs[i] = err
				cancel(err)
			}
		}()
	}
	wg.Wait()
	p.running.Store(false)
	p.closeAdmin()
	for _, r := range runners {
		if r.stop != nil {
			r.stop()
		}
	}
	return errors.Join(errs...)
}

// Groups are the consumer groups of the stages and the topics each reads.
func (p *Pipeline) Groups() map[string][]string {
	g := map[string][]string{p.cfg.Kafka.Group + "-normalize": p.cfg.Topics.Inputs}
	if p.cfg.Correlate.Enabled {
		g[p.cfg.Kafka.Group+"-correlate"] = []string{p.cfg.Topics.Facts}
	}
	if p.cfg.Hunting.Enabled {
		var ts []string
		for _, table := range normalize.Tables() {
			ts = append(ts, p.cfg.Topics.HuntingPrefix+table)
		}
		g[p.cfg.Kafka.Group+"-hunting"] = ts
	}
	return g
}

// Lag is the total uncommitted input of every stage, by group.
func (p *Pipeline) Lag(ctx context.Context) (map[string]int64, error) {
	cl, release, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	defer release()
	out := map[string]int64{}
	for g, topics := range p.Groups() {
		n, err := kafka.Lag(ctx, cl, g, topics...)
		if err != nil {
			return nil, fmt.Errorf("lag of %s: %w", g, err)
		}
		out[g] = n
		p.metrics.ConsumerLag.WithLabelValues(g).Set(float64(n))
	}
	return out, nil
}

// staticMember makes the process a static member of a stage's group, named
// like its transactional id: a process restarted after a crash takes its
// predecessor's place (and partitions, whose state it has) at once, instead
// of the group waiting out the dead member's session before anything moves.
// The price: a process that stops for good keeps its partitions until its
// session times out (30 s).
func (p *Pipeline) staticMember(stage string) kgo.Opt {
	return kgo.InstanceID(p.cfg.Kafka.Group + "-" + stage + "-" + p.instance)
}

// adminClient is the client for lag checks: one for the whole run (the
// progress line and replay's idle check ask every few hundred
// milliseconds), or a short-lived one outside Run.
func (p *Pipeline) adminClient() (*kgo.Client, func(), error) {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if p.admin != nil {
		return p.admin, func() {}, nil
	}
	opts, err := p.clientOpts("lag")
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	if p.running.Load() {
		p.admin = cl
		return cl, func() {}, nil
	}
	return cl, cl.Close, nil
}

func (p *Pipeline) closeAdmin() {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if p.admin != nil {
		p.admin.Close()
		p.admin = nil
	}
}

// instanceID is this state directory's stable name, kept in the directory:
// it makes the transactional ids stable across restarts, so that a restarted
// process fences and aborts the transactions its crashed predecessor left
// open at once, instead of read-committed consumers waiting for them to time
// out (Kafka Streams derives its ids from the state directory the same way).
// Two live processes never share a state directory (Pebble locks it).
func instanceID(stateDir string) (string, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(stateDir, "instance-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%s", host, hex.EncodeToString(raw[:]))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write instance id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write instance id: %w", err)
	}
	return id, nil
}

// String names the pipeline for logs.
func (p *Pipeline) String() string {
	return fmt.Sprintf("stitch pipeline (brokers %s, group %s)", strings.Join(p.brokers, ","), p.cfg.Kafka.Group)
}
