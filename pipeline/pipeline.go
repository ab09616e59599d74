// Package pipeline is stitch's topology and its lifecycle: the stages that
// consume, process and produce in Kafka transactions, the topics between
// them, their state stores, their metrics, and their orderly start and stop.
//
//	signals ──▶ [normalize] ──▶ hunting.<Table> ──▶ [hunting sink] ──▶ Parquet
//	                 │  └──────▶ deadletter
//	                 └─────────▶ stitch.facts (key: tenant) ──▶ [correlate] ──▶ incidents
//
// The topology is data (topology.go): each stage is declared once, and
// every part of the lifecycle reads the declarations. Each stage is a
// consumer group of its own, so that each scales by its own input
// partitions and a slow sink never stalls normalization. `stitch topology`
// prints it.
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
	cache     *state.SharedCache // state.cache_bytes, for every store together
	extra     []Stage            // stages added with WithStage
	topo      *Topology

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
	p := &Pipeline{cfg: cfg, log: slog.Default(), totals: newTotals(), brokers: cfg.Kafka.Brokers,
		cache: state.NewSharedCache(cfg.State.CacheBytes)}
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
	topo, err := Describe(cfg, p.extra...)
	if err != nil {
		return nil, err
	}
	p.topo = topo
	for _, s := range topo.Stages {
		p.totals.declare(s.Name)
	}
	p.metrics = newMetrics(func() float64 { return float64(p.mem.Allocated()) })
	p.inputLag.Store(-1)
	return p, nil
}

// Topology is the pipeline's resolved topology.
func (p *Pipeline) Topology() *Topology { return p.topo }

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
	codec, err := kafka.ParseCompression(p.cfg.Kafka.Compression)
	if err != nil {
		return nil, fmt.Errorf("kafka.compression: %w", err)
	}
	opts = append(opts,
		kgo.ClientID(p.cfg.Kafka.ClientID+"-"+stage),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedBytes(int(p.cfg.Kafka.MaxBufferedBytes)),
		kgo.FetchMaxBytes(p.cfg.Kafka.FetchMaxBytes),
		kgo.RecordRetries(20),
	)
	return append(opts, batchOpts(p.cfg)...), nil
}

// Topics are the topics the pipeline reads and writes, with their settings:
// every input, output and changelog of its stages.
func (p *Pipeline) Topics() []kafka.TopicSpec { return p.topo.specs }

// EnsureTopics creates the pipeline's topics where absent.
func (p *Pipeline) EnsureTopics(ctx context.Context) error {
	if !p.cfg.Topics.Create {
		return nil
	}
	cl, err := p.newAdminClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	return kafka.EnsureTopics(ctx, cl, p.Topics()...)
}

// newAdminClient is a short-lived client for topic and cluster admin.
func (p *Pipeline) newAdminClient() (*kgo.Client, error) {
	opts, err := p.clientOpts("admin")
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	return cl, nil
}

// StageContext is what a stage's constructor gets: its configuration and
// the pipeline's shared parts, and the means to open and attach its stores.
type StageContext struct {
	Name   string
	Group  string
	Config Config
	Log    *slog.Logger
	// Metrics are the pipeline's series; a stage counts through Txn.Count.
	Metrics *Metrics
	// Alloc is the Arrow allocator (counted: stitch_arrow_allocated_bytes).
	Alloc memory.Allocator

	p       *Pipeline
	info    StageInfo
	def     Stage
	stores  *stateful
	closers []func()
}

// OpenStore opens the Pebble store of a declared store, under
// state.dir/<name>. The pipeline closes it after the stage stopped. Every
// store of the pipeline shares one block cache of state.cache_bytes.
func (sc *StageContext) OpenStore(name string) (*state.Store, error) {
	if !sc.declared(name) {
		return nil, fmt.Errorf("%s: store %q is not declared in the stage's Stores", sc.Name, name)
	}
	dir := filepath.Join(sc.Config.State.Dir, name)
	st, err := state.Open(dir, append([]state.Option{state.WithSharedCache(sc.p.cache),
		state.WithMemTableSize(uint64(sc.Config.State.MemtableBytes))}, sc.p.stateOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("open %s state in %s: %w", name, dir, err)
	}
	sc.OnClose(func() { st.Close() })
	sc.OnClose(sc.Metrics.watchStore(name, st)) // closers run last first: sampling stops before the store closes
	return st, nil
}

// Attach hands a declared store to the stage runtime, which keeps it in
// step with the stage's transactions, writes its changelogs and restores it.
func (sc *StageContext) Attach(name string, st StateStore) error {
	if !sc.declared(name) {
		return fmt.Errorf("%s: store %q is not declared in the stage's Stores", sc.Name, name)
	}
	for _, s := range sc.info.Stores {
		if s.Name == name {
			sc.stores.attach(name, st, s.Changelogs)
		}
	}
	return nil
}

func (sc *StageContext) declared(name string) bool {
	for _, s := range sc.info.Stores {
		if s.Name == name {
			return sc.stores != nil
		}
	}
	return false
}

// OwnsKey says whether this process owns the input partition that key
// goes to now (false for a stage without stores: it has no use for it).
func (sc *StageContext) OwnsKey(key []byte) bool {
	return sc.stores != nil && sc.stores.OwnsKey(key)
}

// PartitionOf is the input partition key goes to (the producer's default
// partitioner), or -1 while the partition count is not known or for a
// stage without stores.
func (sc *StageContext) PartitionOf(key []byte) int32 {
	if sc.stores == nil {
		return -1
	}
	return sc.stores.partitionOfKey(key)
}

// OnClose runs f once the stage stopped (in reverse order of declaration).
func (sc *StageContext) OnClose(f func()) { sc.closers = append(sc.closers, f) }

func (sc *StageContext) close() {
	if sc.stores != nil {
		sc.stores.close() // no restore runs on, or comes to, a closed store
	}
	for i := len(sc.closers) - 1; i >= 0; i-- {
		sc.closers[i]()
	}
}

// ready counts the stage as started once.
func (sc *StageContext) readyFunc() func() {
	var once sync.Once
	return func() { once.Do(func() { sc.p.ready.Add(1) }) }
}

// build makes the runner of one declared stage.
func (p *Pipeline) build(def Stage, info StageInfo) (Runner, *StageContext, error) {
	sc := &StageContext{Name: info.Name, Group: info.Group, Config: p.cfg, Log: p.log, Metrics: p.metrics,
		Alloc: p.mem, p: p, info: info, def: def}
	if def.Sink != nil {
		r, err := def.Sink(sc)
		if err != nil {
			sc.close()
			return nil, nil, fmt.Errorf("%s: %w", info.Name, err)
		}
		return r, sc, nil
	}
	if len(info.Stores) > 0 {
		sc.stores = newStateful(p, info.Name, info.Group, info.Inputs[0])
	}
	proc, err := def.Processor(sc)
	if err != nil {
		sc.close()
		return nil, nil, fmt.Errorf("%s: %w", info.Name, err)
	}
	if c, ok := proc.(Closer); ok {
		sc.OnClose(c.Close)
	}
	if sc.stores != nil {
		if got, want := len(sc.stores.stores), len(info.Stores); got != want {
			sc.close()
			return nil, nil, fmt.Errorf("%s: %d of its %d declared stores attached", info.Name, got, want)
		}
		sc.stores.listener, _ = proc.(Assignments)
	}
	var tick time.Duration
	if def.TickEvery != nil {
		tick = def.TickEvery(p.cfg)
	}
	st, err := p.newStage(sc, proc, tick)
	if err != nil {
		sc.close()
		return nil, nil, err
	}
	return st, sc, nil
}

func (p *Pipeline) newStage(sc *StageContext, proc Processor, tickEach time.Duration) (*stage, error) {
	opts, err := p.clientOpts(sc.Name)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.ConsumerGroup(sc.Group),
		kgo.ConsumeTopics(sc.info.Inputs...),
		kgo.TransactionalID(sc.info.TransactionalID+p.instance),
		// A process killed mid-transaction leaves it open, and read-committed
		// readers wait behind it until it is fenced (by the same
		// transactional id starting again: see instanceID) or times out.
		kgo.TransactionTimeout(15*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(30*time.Second),
		p.staticMember(sc.Name),
	)
	if sc.stores != nil {
		opts = append(opts, sc.stores.kafkaOpts()...) // restore on assignment, changelog partitions
	}
	open := func() (*kgo.GroupTransactSession, error) {
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return nil, fmt.Errorf("%s: kafka session: %w", sc.Name, err)
		}
		return sess, nil
	}
	sess, err := open()
	if err != nil {
		return nil, err
	}
	return &stage{
		name: sc.Name, sess: sess, reopen: open, proc: proc, stores: sc.stores,
		interval: p.cfg.Kafka.CommitInterval.D(), urgent: p.cfg.Kafka.UrgentCommit.D(), tickEach: tickEach, maxPoll: p.cfg.Kafka.MaxPollRecords,
		metrics: p.metrics, totals: p.totals, log: p.log, ready: sc.readyFunc(),
	}, nil
}

// Run runs every stage until ctx is done or one fails. On a clean stop each
// stage commits what it has done, so a restart does not redo it.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.EnsureTopics(ctx); err != nil {
		return err
	}
	// Before any store opens or offset is read: state of another cluster
	// would skip or repeat records silently.
	if err := p.checkIdentity(ctx); err != nil {
		return err
	}
	defer p.limitMemory()()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var runners []Runner
	var contexts []*StageContext
	closeAll := func() {
		for i := len(contexts) - 1; i >= 0; i-- {
			contexts[i].close()
		}
	}
	for i, info := range p.topo.Stages {
		r, sc, err := p.build(p.topo.defs[i], info)
		if err != nil {
			// The stages built so far have joined their groups, and may be
			// restoring an assignment: stop them before their stores close.
			stopBuilt(runners)
			closeAll()
			return err
		}
		runners = append(runners, r)
		contexts = append(contexts, sc)
	}
	p.nstages = int32(len(runners))

	go p.lagLoop(ctx, 5*time.Second)
	var wg sync.WaitGroup
	errs := make([]error, len(runners))
	p.running.Store(true)
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				errs[i] = err
				cancel(err)
			}
		}()
	}
	wg.Wait()
	p.running.Store(false)
	p.closeAdmin()
	closeAll()
	return errors.Join(errs...)
}

// stopBuilt stops runners that were built but not run (a later stage
// failed to start): Run with a context already done releases what a runner
// holds, its Kafka session first.
func stopBuilt(runners []Runner) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Run(done) // nothing to report: the start failed already
		}()
	}
	wg.Wait()
}

// Groups are the consumer groups of the stages and the topics each reads.
func (p *Pipeline) Groups() map[string][]string { return p.topo.Groups() }

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
