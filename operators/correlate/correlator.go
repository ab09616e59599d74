package correlate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

type config struct {
	window, lookback, idle, lateness, grace time.Duration
	prevalenceN                             int
	sync                                    bool
	owns                                    func(tenant string) bool
	partitionOf                             func(tenant string) int32
	filterBudget, filterLayers              int // filter.go
	recentBudget                            int // recent.go
}

// Option configures New.
type Option func(*config)

// WithWindow sets the correlation window: alerts sharing a linking entity
// join when their times are at most d apart (default 24h).
func WithWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithPrevalence sets the prevalence threshold n (an entity seen by more than
// n distinct devices or users is prevalent; default 10, at most
// MaxObservers-1) and the lookback over which sightings count (default 7 days).
func WithPrevalence(n int, lookback time.Duration) Option {
	return func(c *config) { c.prevalenceN, c.lookback = n, lookback }
}

// WithIdleClose sets how long (event time) an incident may go without a new
// alert before it is closed and its state released (default 7 days).
func WithIdleClose(d time.Duration) Option { return func(c *config) { c.idle = d } }

// WithLateness sets the allowed lateness behind the watermark (default 1h).
func WithLateness(d time.Duration) Option { return func(c *config) { c.lateness = d } }

// WithEvidenceGrace sets how long evidence may precede its alert (default 1h).
func WithEvidenceGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// WithOwnership tells Tick which tenants this correlator currently owns:
// after a rebalance the store still holds the state of tenants whose facts
// partition moved to another process, and only the owner may close their
// incidents (default: every tenant in the store).
func WithOwnership(owns func(tenant string) bool) Option { return func(c *config) { c.owns = owns } }

// WithPartitioner tells the correlator which facts partition each tenant's
// facts come from (the facts producer's partitioner), so that the idle close
// and expiry of a tenant's state follow that partition's clock from the
// start; without it the correlator learns the partition from the facts it
// applies, and until it has seen a tenant's facts treats the tenant by the
// highest clock of any partition.
func WithPartitioner(partitionOf func(tenant string) int32) Option {
	return func(c *config) { c.partitionOf = partitionOf }
}

// WithSync makes every Commit fsync its batch (default off: state and offsets
// are committed atomically, so a lost tail is replayed from Kafka).
func WithSync(on bool) Option { return func(c *config) { c.sync = on } }

// Stats counts what the correlator did since New.
type Stats struct {
	Facts, Alerts, Evidence int64
	// PendingEvidence is evidence held because its alert had not arrived.
	PendingEvidence int64
	// Incidents created, Merges (incidents redirected), Closed (idle).
	Incidents, Merges, Closed int64
	// Late alerts arrived behind the watermark (still placed).
	Late int64
	// NonLinking counts entities skipped as well-known or prevalent.
	NonLinking int64
	// IdentityRefused counts identity links refused to bound class size.
	IdentityRefused int64
}

// Correlator places alerts into incidents. Apply and Tick are serialised.
//
// All work happens in transactions, the one commit path production and tests
// share: between Begin and Commit (or Abort) Apply, ApplyOffset, Skip and
// Tick write one pending batch, read back through it (read-your-writes), so
// that the state changes of one Kafka transaction become durable only once
// that transaction has committed, with the input offsets they cover, and
// vanish with it when it aborts. Outside a transaction they fail.
type Correlator struct {
	mu    sync.Mutex
	store *state.Store
	cfg   config
	clock clock
	stats Stats
	pend  *pending
	// parts is the facts partition of each tenant seen (see WithPartitioner).
	parts map[string]int32
	// linked are identity links already applied by committed transactions
	// (see tx.link), sighted the sightings they recorded (see
	// tx.recordSighting): caches, so each is bounded and dropped when full.
	linked, sighted map[string]struct{}
	observers       map[string]observerCount // beside sighted: per bucket and entity
	// filt says which lookups may find something (filter.go); fbuf is
	// its scratch buffer.
	filt filters
	fbuf []byte
	// kbuf, pbuf and ibuf are scratch for the keys of one lookup or write
	// at a time (tx.key; candidates' prefixes; index and idle keys): the
	// batch copies what it stages, and nothing keeps a lookup's key.
	kbuf, pbuf, ibuf []byte
	// rbuf is scratch for the state record of one write (record.go).
	rbuf []byte
	// recent are committed values of recent alerts and incidents (recent.go).
	recent recentValues
	// ops counts the store work of every ended transaction (StateOps).
	ops StateOps
}

// StateOps counts what the correlator's transactions asked of the store
// since New: reads through their batches (gets, iterators, positionings)
// and writes staged (sets and deletions), committed or aborted alike. Per
// alert, it is the LSM work an alert costs (bench/correlate_test.go).
type StateOps struct {
	state.Reads
	Writes int64
	// FilterBuilds are the lookup filters built from the store (filter.go:
	// a group's first lookup, or one that ran out of layers), and
	// FilterUnits the units they read: a scan of the group each, outside
	// any transaction's batch.
	FilterBuilds, FilterUnits int64
}

// StateOps reports the store work of the transactions ended so far.
func (c *Correlator) StateOps() StateOps {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// count adds the store work of p's batch to c.ops (once: at its end).
func (c *Correlator) count(p *pending) {
	c.ops.Reads = c.ops.Reads.Add(p.b.Reads())
	c.ops.Writes += p.b.Writes()
}

// maxLinked and maxSighted bound the caches of applied identity links and
// recorded sightings (about 100 bytes an entry).
const (
	maxLinked  = 1 << 17
	maxSighted = 1 << 18
)

// pending is an open transaction: its batch, the offsets it covers, and what
// Abort puts back in memory.
type pending struct {
	b       *state.Batch
	offsets map[state.TopicPartition]int64
	stats   Stats
	marks   map[int32]time.Time
	parts   []string            // tenants whose partition it recorded
	linked  map[string]struct{} // identity links it applied (Correlator.linked once it commits)
	sighted map[string]struct{} // sightings it recorded (Correlator.sighted once it commits)
	// observers counts the observers it recorded per bucket and entity.
	observers map[string]observerCount
	// units are the hashes of the lookup units it wrote (filter.go).
	units map[uint64]struct{}
	// incs are the incident states it wrote (by key, in the record
	// encoding), not yet in its batch: an incident that several alerts of
	// a transaction change is written once, with its last state, when the
	// transaction's changes are read (Changes) or it commits (putIncidents),
	// instead of once per alert into the batch, the WAL and the memtable.
	// Reads of the transaction see them (tx.incident); incOrder is the
	// order they were first written in, so the batch is the same on every
	// replay.
	incs     map[string][]byte
	incOrder []string
}

// stageIncident holds key=val (an incident state) as the transaction's
// latest write of key.
func (p *pending) stageIncident(key, val []byte) {
	if v, ok := p.incs[string(key)]; ok {
		p.incs[string(key)] = append(v[:0], val...)
		return
	}
	if p.incs == nil {
		p.incs = map[string][]byte{}
	}
	k := string(key)
	p.incs[k] = bytes.Clone(val)
	p.incOrder = append(p.incOrder, k)
}

// putIncidents writes the held incident states into the batch (after
// every other write of the transaction so far: each is its key's latest,
// since a deletion or restore of the key drops it from incs).
func (p *pending) putIncidents() error {
	for _, k := range p.incOrder {
		v, ok := p.incs[k]
		if !ok {
			continue // deleted (or restored) since, or a second entry of a key
		}
		delete(p.incs, k)
		if err := p.b.Set([]byte(k), v); err != nil {
			return err
		}
	}
	p.incOrder = p.incOrder[:0]
	return nil
}

// New returns a correlator over store.
func New(store *state.Store, opts ...Option) (*Correlator, error) {
	cfg := config{window: 24 * time.Hour, lookback: 7 * 24 * time.Hour, idle: 7 * 24 * time.Hour,
		lateness: time.Hour, grace: time.Hour, prevalenceN: 10,
		filterBudget: maxFilterBytes, filterLayers: maxFilterLayers, recentBudget: maxRecentBytes}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case store == nil:
		return nil, fmt.Errorf("correlate: nil store")
	case cfg.window <= 0 || cfg.idle <= 0 || cfg.grace <= 0 || cfg.lookback <= 0 || cfg.lateness < 0:
		return nil, fmt.Errorf("correlate: durations must be positive")
	case cfg.prevalenceN < 1 || cfg.prevalenceN >= MaxObservers:
		return nil, fmt.Errorf("correlate: prevalence threshold %d outside 1..%d", cfg.prevalenceN, MaxObservers-1)
	}
	c := &Correlator{store: store, cfg: cfg, clock: clock{lateness: cfg.lateness},
		filt:   filters{budget: cfg.filterBudget, layers: max(cfg.filterLayers, 1), off: cfg.filterBudget < 0},
		recent: recentValues{budget: cfg.recentBudget}}
	marks, err := loadMarks(store)
	if err != nil {
		return nil, err
	}
	c.clock.marks = marks
	if c.parts, err = loadParts(store); err != nil {
		return nil, err
	}
	return c, nil
}

// Watermarks are kept beside the offsets (state.WatermarkKey), so that a
// restarted correlator has the event-time clock it had (idle close and
// expiry depend on it).
func loadMarks(store *state.Store) (map[int32]time.Time, error) {
	it, err := store.NewIter(state.WatermarkPrefix)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	marks := map[int32]time.Time{}
	for ok := it.First(); ok; ok = it.Next() {
		p, ok := state.ParseWatermarkKey(it.Key())
		if !ok || len(it.Value()) != 8 {
			return nil, fmt.Errorf("correlate: bad watermark record %q", it.Key())
		}
		marks[p] = time.Unix(0, state.ReadInt64(it.Value())).UTC()
	}
	return marks, it.Error()
}

func (c *Correlator) saveMark(b *state.Batch, partition int32) error {
	t, ok := c.clock.marks[partition]
	if !ok {
		return nil
	}
	return b.Set(state.WatermarkKey(partition), state.AppendInt64(nil, t.UnixNano()))
}

// Begin opens a transaction: until Commit or Abort, Apply, ApplyOffset, Skip
// and Tick stage their changes in one pending batch (and see them), and
// nothing reaches the store.
func (c *Correlator) Begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend != nil {
		return fmt.Errorf("correlate: transaction already open")
	}
	c.pend = &pending{b: c.store.NewBatch(), offsets: map[state.TopicPartition]int64{},
		stats: c.stats, marks: maps.Clone(c.clock.marks)}
	return nil
}

// InTransaction says whether Begin was called without Commit or Abort.
func (c *Correlator) InTransaction() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pend != nil
}

// Commit makes the open transaction's changes durable in one atomic batch,
// together with the highest offset it saw per topic/partition and the
// watermarks of those partitions. Call it only once the outputs of the
// transaction are committed downstream (the Kafka transaction committed):
// the store must never get ahead of what consumers saw.
func (c *Correlator) Commit() error { return c.CommitAt(nil) }

// CommitAt is Commit that also records positions (offsets of other topics,
// e.g. how far the store's changelog goes) in the same atomic batch. They
// are recorded as they are, not reported by Changes.
func (c *Correlator) CommitAt(positions map[state.TopicPartition]int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pend
	if p == nil {
		return fmt.Errorf("correlate: commit without a transaction")
	}
	c.pend = nil
	err := p.putIncidents()
	c.count(p) // its writes too; seal's offsets below are bookkeeping
	if err != nil {
		p.b.Close()
		return err
	}
	if err := c.seal(p); err != nil {
		p.b.Close()
		return err
	}
	for tp, off := range positions {
		if err := p.b.SetOffset(tp.Topic, tp.Partition, off); err != nil {
			p.b.Close()
			return err
		}
	}
	if p.b.Empty() {
		// Nothing to write, but a store that failed in the background (a
		// log write of an earlier commit) must still stop the caller: a
		// quiet transaction is no proof that the state is safe.
		p.b.Close()
		return c.store.Failed()
	}
	adds, writes, err := c.staged(p.b)
	if err != nil {
		p.b.Close()
		return err
	}
	if err := p.b.Commit(c.cfg.sync); err != nil {
		// What landed is the store's to say.
		c.filt.reset()
		c.recent.reset()
		return fmt.Errorf("correlate: commit transaction: %w", err)
	}
	c.filt.committed(adds)
	c.recent.committed(writes)
	c.linked = keepCommitted(c.linked, p.linked, maxLinked)
	c.keepSightings(p)
	return nil
}

// staged reads a transaction's writes once, before its batch commits, for
// what the filters (filter.go) and the recent values (recent.go) take from
// it after the commit.
func (c *Correlator) staged(b *state.Batch) ([]unitAdd, []recentWrite, error) {
	var adds []unitAdd
	var writes []recentWrite
	err := b.Changes(func(del bool, k, v []byte) error {
		adds = c.filt.stage(adds, del, k)
		writes = c.recent.stage(writes, del, k, v)
		return nil
	})
	return adds, writes, err
}

// keepCommitted adds a committed transaction's entries to a cache, which
// starts over when it would pass max.
func keepCommitted(cache, committed map[string]struct{}, max int) map[string]struct{} {
	if len(cache)+len(committed) > max {
		cache = nil
	}
	if cache == nil {
		cache = make(map[string]struct{}, len(committed))
	}
	for k := range committed {
		cache[k] = struct{}{}
	}
	return cache
}

// seal stages the offsets the transaction covers and the watermarks of their
// partitions, so that they travel with its state changes.
func (c *Correlator) seal(p *pending) error {
	for tp, off := range p.offsets {
		if err := p.b.SetOffset(tp.Topic, tp.Partition, off); err != nil {
			return err
		}
		if err := c.saveMark(p.b, tp.Partition); err != nil {
			return err
		}
	}
	return nil
}

// Changes reports every point write of the open transaction so far, in
// order, including the offsets it covers and their partitions' watermarks:
// what a changelog of the store must carry for the transaction (see
// state.Batch.Changes). Call it once the transaction's work is done and
// before its outputs commit; the slices are valid until Commit or Abort.
func (c *Correlator) Changes(fn func(del bool, key, val []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend == nil {
		return fmt.Errorf("correlate: changes without a transaction")
	}
	if err := c.pend.putIncidents(); err != nil {
		return err
	}
	if err := c.seal(c.pend); err != nil {
		return err
	}
	return c.pend.b.Changes(fn)
}

// Restore stages one changelog entry (as Changes reported it) in the open
// transaction: a write of another replica of this state, applied as it is.
func (c *Correlator) Restore(del bool, key, val []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend == nil {
		return fmt.Errorf("correlate: restore without a transaction")
	}
	if p, ok := state.ParseWatermarkKey(key); ok {
		if del {
			delete(c.clock.marks, p)
		} else if len(val) == 8 {
			c.clock.marks[p] = time.Unix(0, state.ReadInt64(val)).UTC()
		}
	}
	if tenant, p, ok := parsePartitionRecord(key, val); ok && !del {
		c.parts[tenant] = p
	}
	c.noteWrite(key)
	delete(c.pend.incs, string(key)) // this write is the key's latest
	if del {
		return c.pend.b.Delete(key)
	}
	return c.pend.b.Set(key, val)
}

// Abort discards the open transaction: its batch, and the counters and
// watermarks it moved. A no-op without one.
func (c *Correlator) Abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pend
	if p == nil {
		return
	}
	c.pend = nil
	c.count(p)
	_ = p.b.Close()
	c.stats = p.stats
	c.clock.marks = p.marks
	for _, tenant := range p.parts {
		// What the store says (or nothing): the next facts record it again.
		delete(c.parts, tenant)
		if v, ok, err := c.store.Get(state.TenantKey(nil, spacePartition, tenant)); err == nil && ok && len(v) == 4 {
			c.parts[tenant] = int32(binary.BigEndian.Uint32(v))
		}
	}
}

// Skip records that topic/partition/offset was consumed without facts to
// apply (an undecodable record), so that the store's offset covers it.
func (c *Correlator) Skip(topic string, partition int32, offset int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend == nil {
		return errNoTransaction("skip")
	}
	c.pend.cover(topic, partition, offset)
	return nil
}

func (p *pending) cover(topic string, partition int32, offset int64) {
	tp := state.TopicPartition{Topic: topic, Partition: partition}
	if cur, ok := p.offsets[tp]; !ok || offset > cur {
		p.offsets[tp] = offset
	}
}

// Offsets are the committed offsets of the store: per topic/partition, the
// last input offset its state reflects.
func (c *Correlator) Offsets() (map[state.TopicPartition]int64, error) {
	return c.store.Offsets()
}

// Stats returns a copy of the counters.
func (c *Correlator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// state spaces of the correlator (see state/LAYOUT.md).
const (
	spaceAlerts    = 'a'
	spaceIncidents = 'i'
	spaceIndex     = 'x' // bucketed: entity -> alerts
	spacePending   = 'e' // bucketed: evidence before its alert
	spaceIdle      = 'c' // bucketed: incidents by last alert day
	spacePartition = 'p' // the facts partition of a tenant
	idleBucket     = 24 * time.Hour
)

// alertRec is the small per-alert record: its incident and entity keys.
type alertRec struct {
	Inc string    `json:"i"`
	T   time.Time `json:"t"`
	E   []string  `json:"e"`
}

// incState is an incident as stored: the output plus what derives it.
type incState struct {
	Inc       Incident  `json:"inc"`
	Entities  []string  `json:"ents"`
	LastAlert time.Time `json:"last"`
	// Rev is the analysts' last revision applied (analyst.go).
	Rev     int64 `json:"rev,omitempty"`
	changed bool
}

// tx is one Apply or Tick: a read-your-writes batch and per-call caches.
type tx struct {
	c          *Correlator
	b          *state.Batch
	tenant     string
	buf        []byte
	classes    map[string][]string
	prevalence map[prevalenceMemo]bool
	alerts     map[string]*alertRec
	newAlerts  map[string]*Alert
	incs       map[string]*incState
	order      []string // incidents in first-touched order
}

// begin starts one call's work on the open transaction's batch.
func (c *Correlator) begin(tenant string) *tx {
	return &tx{c: c, b: c.pend.b, tenant: tenant, prevalence: map[prevalenceMemo]bool{},
		alerts: map[string]*alertRec{}, newAlerts: map[string]*Alert{}, incs: map[string]*incState{}}
}

// key is T space tenant 0x00 id 0x00 in the correlator's scratch buffer:
// valid until the next call, for a lookup or a write (never an iterator's
// bounds).
func (t *tx) key(space byte, id string) []byte {
	c := t.c
	c.kbuf = state.AppendString(state.TenantKey(c.kbuf[:0], space, t.tenant), id)
	return c.kbuf
}

func (t *tx) tkey(space byte, parts ...string) []byte {
	k := state.TenantKey(nil, space, t.tenant)
	for _, p := range parts {
		k = state.AppendString(k, p)
	}
	return k
}

// set stages key=val in the transaction, noting its lookup unit.
func (t *tx) set(key, val []byte) error {
	t.c.noteWrite(key)
	return t.b.Set(key, val)
}

// del stages the deletion of key in the transaction, noting its unit (so
// that no recent value of it is read while the transaction is open).
func (t *tx) del(key []byte) error {
	t.c.noteWrite(key)
	delete(t.c.pend.incs, string(key)) // a held incident state is older
	return t.b.Delete(key)
}

// get reads key through the transaction, unless the filters say it is
// absent or it is a recent value the transaction did not write. The value
// must not be modified.
func (t *tx) get(key []byte) ([]byte, bool, error) {
	if ok, err := t.c.mayHave(key); !ok || err != nil {
		return nil, false, err
	}
	if cached(key) && !t.c.wrote(key) {
		if v, ok := t.c.recent.get(key); ok {
			return v, true, nil
		}
	}
	return t.b.Get(key)
}

func (t *tx) alert(id string) (*alertRec, error) {
	if r, ok := t.alerts[id]; ok {
		return r, nil
	}
	v, ok, err := t.get(t.key(spaceAlerts, id))
	if err != nil || !ok {
		return nil, err
	}
	var r alertRec
	if err := decodeAlertRec(v, &r); err != nil {
		return nil, fmt.Errorf("correlate: alert %s record: %w", id, err)
	}
	t.alerts[id] = &r
	return &r, nil
}

func (t *tx) incident(id string) (*incState, error) {
	if s, ok := t.incs[id]; ok {
		return s, nil
	}
	k := t.key(spaceIncidents, id)
	v, ok := t.c.pend.incs[string(k)] // written by this transaction
	if !ok {
		var err error
		if v, ok, err = t.get(k); err != nil || !ok {
			return nil, err
		}
	}
	var s incState
	if err := decodeIncState(v, &s); err != nil {
		return nil, fmt.Errorf("correlate: incident %s record: %w", id, err)
	}
	t.incs[id] = &s
	t.order = append(t.order, id)
	return &s, nil
}

func (t *tx) touch(s *incState) {
	if _, ok := t.incs[s.Inc.ID]; !ok {
		t.incs[s.Inc.ID] = s
		t.order = append(t.order, s.Inc.ID)
	}
	s.changed = true
}

// Apply correlates one tenant's facts from partition of the repartition
// topic, in the open transaction.
func (c *Correlator) Apply(partition int32, f *Facts) ([]Incident, error) {
	return c.ApplyOffset(partition, f, "", -1)
}

// ApplyOffset is Apply that also records topic/partition/offset as covered
// by the open transaction (skipped when topic is ""), so that Commit stores
// it with the state changes and state.Store.Offsets says how far the store
// got. It needs an open transaction (Begin): there is one commit path.
func (c *Correlator) ApplyOffset(partition int32, f *Facts, topic string, offset int64) ([]Incident, error) {
	if f == nil {
		return nil, nil
	}
	if !state.ValidTenant(f.Tenant) {
		return nil, fmt.Errorf("correlate: facts with invalid tenant %q", f.Tenant)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend == nil {
		return nil, errNoTransaction("apply")
	}
	// A failure leaves the pending batch half written, so the caller must
	// Abort (as it must anyway: its outputs are lost).
	t := c.begin(f.Tenant)
	if err := t.notePartition(partition); err != nil {
		return nil, err
	}
	out, err := t.apply(partition, f)
	if err != nil {
		return nil, err
	}
	if topic != "" {
		c.pend.cover(topic, partition, offset)
	}
	c.clock.observe(partition, f.MaxTime)
	return out, nil
}

func errNoTransaction(what string) error {
	return fmt.Errorf("correlate: %s outside a transaction (Begin first)", what)
}

// notePartition records that the tenant's facts come from partition, in
// memory and, when that is news, in the store (T 'p' tenant), so that every
// replica restored from the changelog ages the tenant's state by the same
// clock (see window.go).
func (t *tx) notePartition(partition int32) error {
	c := t.c
	if p, ok := c.parts[t.tenant]; ok && p == partition {
		return nil
	}
	c.parts[t.tenant] = partition
	c.pend.parts = append(c.pend.parts, t.tenant)
	return t.set(t.tkey(spacePartition), binary.BigEndian.AppendUint32(nil, uint32(partition)))
}

// loadParts reads the facts partition of every tenant the store knows.
func loadParts(store *state.Store) (map[string]int32, error) {
	it, err := store.NewIter([]byte{'T', spacePartition})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	parts := map[string]int32{}
	for ok := it.First(); ok; ok = it.Next() {
		tenant, p, ok := parsePartitionRecord(it.Key(), it.Value())
		if !ok {
			return nil, fmt.Errorf("correlate: bad tenant partition record %q", it.Key())
		}
		parts[tenant] = p
	}
	return parts, it.Error()
}

func parsePartitionRecord(k, v []byte) (string, int32, bool) {
	tenant, bucketed, ok := state.KeyTenant(k)
	if !ok || bucketed || k[1] != spacePartition || len(k) != 2+len(tenant)+1 || len(v) != 4 {
		return "", 0, false
	}
	return string(tenant), int32(binary.BigEndian.Uint32(v)), true
}

func (t *tx) apply(partition int32, f *Facts) ([]Incident, error) {
	c := t.c
	c.stats.Facts++
	var moved []string
	for _, l := range f.Links {
		m, err := t.link(l)
		if err != nil {
			return nil, err
		}
		moved = appendNew(moved, m...)
	}
	if err := t.relink(moved); err != nil {
		return nil, err
	}
	for _, s := range f.Sightings {
		if err := t.recordSighting(s); err != nil {
			return nil, err
		}
	}
	type dirty struct {
		id   string
		ents []string
	}
	var work []dirty
	mark := func(id string, ents []string) {
		for i := range work {
			if work[i].id == id {
				work[i].ents = appendNew(work[i].ents, ents...)
				return
			}
		}
		work = append(work, dirty{id, ents})
	}
	for _, a := range f.Alerts {
		rec, err := t.alert(a.ID)
		if err != nil {
			return nil, err
		}
		if rec != nil || t.newAlerts[a.ID] != nil {
			continue // a replayed or duplicate alert
		}
		c.stats.Alerts++
		if c.clock.late(partition, a.Time) {
			c.stats.Late++
		}
		t.alerts[a.ID] = &alertRec{T: a.Time}
		t.newAlerts[a.ID] = newAlert(a)
		pending, err := t.takePending(a.ID)
		if err != nil {
			return nil, err
		}
		var ents []string
		for _, ev := range pending {
			t.newAlerts[a.ID].addEvidence(ev)
			ents = appendNew(ents, ev.Entities...)
		}
		mark(a.ID, ents)
	}
	for _, ev := range f.Evidence {
		c.stats.Evidence++
		rec, err := t.alert(ev.AlertID)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			c.stats.PendingEvidence++
			if err := t.putPending(ev); err != nil {
				return nil, err
			}
			continue
		}
		if a := t.newAlerts[ev.AlertID]; a != nil {
			a.addEvidence(ev)
		} else if s, err := t.incident(rec.Inc); err != nil {
			return nil, err
		} else if s != nil {
			for i := range s.Inc.Alerts {
				if s.Inc.Alerts[i].ID == ev.AlertID {
					s.Inc.Alerts[i].addEvidence(ev)
					t.touch(s)
				}
			}
		}
		var fresh []string
		for _, k := range ev.Entities {
			if !slices.Contains(rec.E, k) {
				fresh = append(fresh, k)
			}
		}
		mark(ev.AlertID, fresh)
	}
	for _, w := range work {
		if err := t.correlate(w.id, w.ents); err != nil {
			return nil, err
		}
	}
	for _, u := range f.Updates {
		if err := t.analyst(u); err != nil {
			return nil, err
		}
	}
	return t.flush()
}

func appendNew(dst []string, keys ...string) []string {
	for _, k := range keys {
		if !slices.Contains(dst, k) {
			dst = append(dst, k)
		}
	}
	return dst
}

func newAlert(a AlertFact) *Alert {
	tech := a.Techniques
	if tech == nil {
		tech = []string{}
	}
	return &Alert{ID: a.ID, Title: a.Title, Severity: Severity(a.Severity), Status: "new",
		ServiceSource: a.ServiceSource, DetectionSource: a.DetectionSource, Category: a.Category,
		MitreTechniques: tech, CreatedDateTime: a.Time, FirstActivityDateTime: a.Time,
		LastActivityDateTime: a.Time, Evidence: []Evidence{}}
}

func (a *Alert) addEvidence(ev EvidenceFact) {
	if len(a.Evidence) > 0 {
		// Equal means the same JSON (what the incident shows); the new
		// evidence is encoded once, not once per comparison.
		y, _ := json.Marshal(ev.Evidence)
		for _, have := range a.Evidence {
			if x, _ := json.Marshal(have); string(x) == string(y) {
				return
			}
		}
	}
	a.Evidence = append(a.Evidence, ev.Evidence)
	if ev.Time.Before(a.FirstActivityDateTime) {
		a.FirstActivityDateTime = ev.Time
	}
	if ev.Time.After(a.LastActivityDateTime) {
		a.LastActivityDateTime = ev.Time
	}
}

// correlate places alert id (new or with new entities ents) and merges the
// incidents its linking entities bridge.
func (t *tx) correlate(id string, ents []string) error {
	rec := t.alerts[id]
	linking, err := t.linking(ents, rec.T)
	if err != nil {
		return err
	}
	cands, err := t.candidates(id, rec, linking)
	if err != nil {
		return err
	}
	c := t.c
	w := c.cfg.window
	at := state.AppendInt64(nil, rec.T.UnixNano())
	for _, k := range linking {
		c.ibuf = append(state.AppendString(state.BucketKey(c.ibuf[:0], spaceIndex, state.Bucket(rec.T, w), t.tenant), k), id...)
		if err := t.set(c.ibuf, at); err != nil {
			return err
		}
	}
	rec.E = appendNew(rec.E, ents...)
	return t.place(id, rec, cands, ents)
}

// linking keeps the entities of ents that may link alerts at time at:
// neither well-known nor prevalent.
func (t *tx) linking(ents []string, at time.Time) ([]string, error) {
	var out []string
	for _, k := range ents {
		e, ok := ParseEntity(k)
		if !ok {
			continue
		}
		if WellKnown(e) {
			t.c.stats.NonLinking++
			continue
		}
		prev, err := t.prevalent(e, k, at)
		if err != nil {
			return nil, err
		}
		if prev {
			t.c.stats.NonLinking++
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// cand is an incident an alert joins, and why.
type cand struct {
	inc    string
	reason CorrelationReason
}

// candidates finds the incidents (other than the alert's own) holding an
// alert within the window of rec that is indexed under a member of the
// identity class of one of the linking keys.
func (t *tx) candidates(id string, rec *alertRec, linking []string) ([]cand, error) {
	w := t.c.cfg.window
	var cands []cand
	for _, k := range linking {
		class, err := t.expand(k)
		if err != nil {
			return nil, err
		}
		for _, m := range class {
			for b := state.Bucket(rec.T.Add(-w), w); b <= state.Bucket(rec.T.Add(w), w); b++ {
				// The correlator's scratch: the iterator that scan opens
				// on it is closed before the next prefix is built, and
				// nothing scan calls builds one.
				t.c.pbuf = state.AppendString(state.BucketKey(t.c.pbuf[:0], spaceIndex, b, t.tenant), m)
				pfx := t.c.pbuf
				err := t.scan(pfx, func(rest, val []byte) error {
					other := string(rest)
					if other == id || len(val) != 8 {
						return nil
					}
					at := time.Unix(0, state.ReadInt64(val))
					if d := at.Sub(rec.T); d > w || d < -w {
						return nil
					}
					orec, err := t.alert(other)
					if err != nil || orec == nil || orec.Inc == "" || orec.Inc == rec.Inc {
						return err
					}
					if !slices.ContainsFunc(cands, func(x cand) bool { return x.inc == orec.Inc }) {
						cands = append(cands, cand{orec.Inc, CorrelationReason{Entity: k, Alerts: [2]string{other, id}}})
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
			}
		}
	}
	return cands, nil
}

// place puts alert id (rec) into one incident with the candidates' ones:
// the oldest of them survives and the others are redirected into it; a new
// alert without candidates opens an incident. ents are entities the alert
// gained.
func (t *tx) place(id string, rec *alertRec, cands []cand, ents []string) error {
	c := t.c
	// The incidents this alert touches: its own (if placed) and candidates'.
	var group []*incState
	if rec.Inc != "" {
		s, err := t.incident(rec.Inc)
		if err != nil {
			return err
		}
		if s != nil {
			group = append(group, s)
		}
	}
	for _, cd := range cands {
		s, err := t.incident(cd.inc)
		if err != nil {
			return err
		}
		if s != nil && s.Inc.Status != StatusRedirected {
			group = append(group, s)
		}
	}
	var survivor *incState
	if len(group) == 0 {
		survivor = &incState{Inc: Incident{ID: IncidentID(t.tenant, id), TenantID: t.tenant, Status: StatusActive,
			Classification: "unknown", Determination: "unknown", Tags: []string{}, Alerts: []Alert{},
			CorrelationReasons: []CorrelationReason{}}}
		if old, err := t.incident(survivor.Inc.ID); err != nil {
			return err
		} else if old != nil {
			survivor = old // a closed-and-reopened id keeps its version line
			survivor.Inc.Status = StatusActive
		}
		c.stats.Incidents++
	} else {
		survivor = slices.MinFunc(group, func(a, b *incState) int {
			if a.Inc.CreatedDateTime.Equal(b.Inc.CreatedDateTime) {
				return compareStrings(a.Inc.ID, b.Inc.ID)
			}
			return a.Inc.CreatedDateTime.Compare(b.Inc.CreatedDateTime)
		})
	}
	t.touch(survivor)
	for _, cd := range cands {
		r := cd.reason
		if cd.inc != survivor.Inc.ID {
			r.Merged = cd.inc
		}
		if !slices.Contains(survivor.Inc.CorrelationReasons, r) {
			survivor.Inc.CorrelationReasons = append(survivor.Inc.CorrelationReasons, r)
		}
	}
	for _, s := range group {
		if s != survivor {
			if err := t.merge(s, survivor); err != nil {
				return err
			}
		}
	}
	if a := t.newAlerts[id]; a != nil && rec.Inc == "" {
		if len(survivor.Inc.Alerts) == 0 || a.CreatedDateTime.Before(survivor.Inc.CreatedDateTime) {
			// Kept current before flush refreshes it: the survivor of a
			// later merge in this call is chosen by it.
			survivor.Inc.CreatedDateTime = a.CreatedDateTime
		}
		survivor.Inc.Alerts = append(survivor.Inc.Alerts, *a)
		delete(t.newAlerts, id)
	}
	rec.Inc = survivor.Inc.ID
	survivor.Entities = appendNew(survivor.Entities, ents...)
	if rec.T.After(survivor.LastAlert) {
		survivor.LastAlert = rec.T
	}
	return t.saveAlert(id, rec)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// merge redirects from into to: alerts, entities, reasons and tags move; from
// keeps a record with status redirected.
func (t *tx) merge(from, to *incState) error {
	t.c.stats.Merges++
	for _, a := range from.Inc.Alerts {
		r, err := t.alert(a.ID)
		if err != nil {
			return err
		}
		if r != nil {
			r.Inc = to.Inc.ID
			if err := t.saveAlert(a.ID, r); err != nil {
				return err
			}
		}
	}
	to.Inc.Alerts = append(to.Inc.Alerts, from.Inc.Alerts...)
	to.Entities = appendNew(to.Entities, from.Entities...)
	to.Inc.Tags = appendNew(to.Inc.Tags, from.Inc.Tags...)
	for _, r := range from.Inc.CorrelationReasons {
		if !slices.Contains(to.Inc.CorrelationReasons, r) {
			to.Inc.CorrelationReasons = append(to.Inc.CorrelationReasons, r)
		}
	}
	if from.LastAlert.After(to.LastAlert) {
		to.LastAlert = from.LastAlert
	}
	id := to.Inc.ID
	from.Inc.Status, from.Inc.RedirectIncidentID = StatusRedirected, &id
	from.Inc.Alerts, from.Entities, from.Inc.CorrelationReasons = []Alert{}, nil, []CorrelationReason{}
	t.touch(from)
	return nil
}

// saveAlert stages alert id's record (record.go), encoded in the
// correlator's scratch: the batch copies it.
func (t *tx) saveAlert(id string, r *alertRec) error {
	c := t.c
	c.rbuf = appendAlertRec(c.rbuf[:0], r)
	return t.set(t.key(spaceAlerts, id), c.rbuf)
}

func (t *tx) scan(pfx []byte, fn func(rest, val []byte) error) error {
	if ok, err := t.c.mayHave(pfx); !ok || err != nil {
		return err
	}
	it, err := t.b.NewIter(pfx)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()[len(pfx):], it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// flush writes every changed incident with Version+1 and returns them.
func (t *tx) flush() ([]Incident, error) {
	var out []Incident
	for _, id := range t.order {
		s := t.incs[id]
		if !s.changed {
			continue
		}
		assets, err := t.assets(s.Entities)
		if err != nil {
			return nil, err
		}
		s.Inc.ImpactedAssets = ImpactedAssets{}
		s.Inc.Version++
		if s.Inc.Status == StatusRedirected {
			s.Inc.ImpactedAssets.sort()
		} else {
			s.Inc.refresh(assets)
		}
		if err := t.saveIncident(s); err != nil {
			return nil, err
		}
		// No copy: a call's incident states are its own (decoded from
		// the store for it, dropped when it returns), so nothing mutates
		// what it returns.
		out = append(out, s.Inc)
	}
	return out, nil
}

func (t *tx) saveIncident(s *incState) error {
	c := t.c
	c.rbuf = appendIncState(c.rbuf[:0], s)
	k := t.key(spaceIncidents, s.Inc.ID)
	c.noteWrite(k)
	c.pend.stageIncident(k, c.rbuf)
	c.ibuf = state.AppendString(state.BucketKey(c.ibuf[:0], spaceIdle, state.Bucket(s.LastAlert, idleBucket), t.tenant), s.Inc.ID)
	return t.set(c.ibuf, nil)
}

// putPending holds evidence whose alert has not arrived, bucketed by the
// grace period so unclaimed evidence expires with one DeleteRange.
func (t *tx) putPending(ev EvidenceFact) error {
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("correlate: encode evidence: %w", err)
	}
	k := state.AppendString(state.BucketKey(nil, spacePending, state.Bucket(ev.Time, t.c.cfg.grace), t.tenant), ev.AlertID)
	k = append(k, fmt.Sprintf("%x", hash(v))...)
	return t.set(k, v)
}

// takePending claims the evidence held for alertID, whatever its time: in
// every pending bucket not expired yet, so evidence that precedes its alert
// joins it as evidence that follows it does.
func (t *tx) takePending(alertID string) ([]EvidenceFact, error) {
	var out []EvidenceFact
	var found [][]byte
	err := t.everyBucket(spacePending, state.AppendString(nil, alertID), math.MaxInt64, func(key, _, val []byte) error {
		var ev EvidenceFact
		if err := json.Unmarshal(val, &ev); err != nil {
			return fmt.Errorf("correlate: pending evidence of %s: %w", alertID, err)
		}
		out = append(out, ev)
		found = append(found, bytes.Clone(key))
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Point deletes, not a range: every range deletion in an indexed batch
	// makes its next read re-fragment all of them, which a
	// transaction-long batch cannot afford.
	for _, k := range found {
		if err := t.del(k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// everyBucket calls fn for every key of space, in every bucket up to last,
// that continues the tenant prefix with rest: fn gets the key, what follows
// rest in it, and the value (valid until fn returns). It
// seeks bucket by bucket, so it costs one seek per live bucket of the space
// whatever their times (expiry keeps few).
func (t *tx) everyBucket(space byte, rest []byte, last int64, fn func(key, tail, val []byte) error) error {
	if space == spacePending {
		// One filter for every bucket (filter.go).
		if may, err := t.c.mayHave(append(state.BucketKey(nil, space, 0, t.tenant), rest...)); !may || err != nil {
			return err
		}
	}
	it, err := t.b.NewIter(state.BucketPrefix(nil, space, math.MinInt64)[:2])
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		b := state.ReadInt64(it.Key()[2:10])
		if b > last {
			break
		}
		pfx := append(state.BucketKey(nil, space, b, t.tenant), rest...)
		may := true
		if space != spacePending {
			if may, err = t.c.mayHave(pfx); err != nil {
				return err
			}
		}
		for ok = may && it.SeekGE(pfx); ok && bytes.HasPrefix(it.Key(), pfx); ok = it.Next() {
			if err := fn(it.Key(), it.Key()[len(pfx):], it.Value()); err != nil {
				return err
			}
		}
		if b == math.MaxInt64 {
			break
		}
		ok = it.SeekGE(state.BucketPrefix(nil, space, b+1))
	}
	return it.Error()
}

func hash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// Tick closes incidents idle for the idle period and expires buckets, by
// event time: each tenant's by the clock of its facts partition (see
// window.go), capped at now so a future-dated record cannot close
// everything. It needs an open transaction.
func (c *Correlator) Tick(now time.Time) ([]Incident, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pend == nil {
		return nil, errNoTransaction("tick")
	}
	clk := c.clock.now()
	if clk.IsZero() {
		return nil, nil
	}
	if !now.IsZero() && now.Before(clk) {
		clk = now
	}
	clocks := tenantClocks{c: c, global: clk, of: map[string]time.Time{}}
	out, err := c.closeIdle(c.pend.b, &clocks)
	if err == nil {
		err = c.expire(c.pend.b, &clocks)
	}
	return out, err
}

// tenantClocks are the clocks of one Tick: global is the highest (capped at
// now), which no tenant's exceeds.
type tenantClocks struct {
	c      *Correlator
	global time.Time
	of     map[string]time.Time
}

// tenant is the clock that ages tenant's state: its facts partition's
// (capped at global); the global one for a tenant whose partition is not
// known or that this process does not own (its state is not ours to keep);
// zero (nothing ages) for one whose partition has delivered nothing yet.
func (tc *tenantClocks) tenant(tenant string) time.Time {
	if t, ok := tc.of[tenant]; ok {
		return t
	}
	c := tc.c
	clk := tc.global
	p, known := c.parts[tenant]
	if !known && c.cfg.partitionOf != nil {
		p, known = c.cfg.partitionOf(tenant), true
	}
	if known && (c.cfg.owns == nil || c.cfg.owns(tenant)) {
		if pc := c.clock.of(p); pc.Before(clk) {
			clk = pc
		}
	}
	tc.of[tenant] = clk
	return clk
}

func (c *Correlator) closeIdle(b *state.Batch, clocks *tenantClocks) ([]Incident, error) {
	cutoff := state.Bucket(clocks.global.Add(-c.cfg.idle), idleBucket)
	start, end := state.BucketRange(spaceIdle, math.MinInt64, cutoff)
	it, err := b.NewIter(start[:2])
	if err != nil {
		return nil, err
	}
	var out []Incident
	type ref struct {
		tenant, id string
		key        []byte
		clk        time.Time
	}
	var refs []ref
	for ok := it.First(); ok && string(it.Key()) < string(end); ok = it.Next() {
		bucket, tenant, rest, err := state.ParseBucketKey(it.Key())
		if err != nil || len(rest) == 0 {
			continue
		}
		if c.cfg.owns != nil && !c.cfg.owns(tenant) {
			continue // another process owns this tenant now: its incidents are not ours to close
		}
		clk := clocks.tenant(tenant)
		if clk.IsZero() || bucket >= state.Bucket(clk.Add(-c.cfg.idle), idleBucket) {
			continue // not idle by the tenant's own clock
		}
		refs = append(refs, ref{tenant, string(rest[:len(rest)-1]), slices.Clone(it.Key()), clk})
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if err := b.Delete(r.key); err != nil {
			return nil, err
		}
		t := &tx{c: c, b: b, tenant: r.tenant, incs: map[string]*incState{}, alerts: map[string]*alertRec{}}
		s, err := t.incident(r.id)
		if err != nil {
			return nil, err
		}
		if s == nil || r.clk.Sub(s.LastAlert) < c.cfg.idle {
			continue // closed already, or a stale entry of a busy incident
		}
		for _, a := range s.Inc.Alerts {
			if err := t.del(t.tkey(spaceAlerts, a.ID)); err != nil {
				return nil, err
			}
		}
		if err := t.del(t.tkey(spaceIncidents, r.id)); err != nil {
			return nil, err
		}
		if s.Inc.Status == StatusRedirected {
			continue // already reported; nothing left to close
		}
		c.stats.Closed++
		s.Inc.Status = StatusResolved
		s.Inc.Tags = appendNew(s.Inc.Tags, TagIdleClosed)
		s.Inc.Version++
		out = append(out, s.Inc)
	}
	return out, nil
}

// expire drops the buckets that no future lookup can reach: per tenant by
// its clock, a whole bucket with one range deletion when it is past every
// tenant's in it. Only buckets that still hold keys are visited (a seek per
// tenant per bucket), so expiry costs nothing once a bucket is gone.
func (c *Correlator) expire(b *state.Batch, clocks *tenantClocks) error {
	for _, x := range []struct {
		space byte
		width time.Duration
		keep  time.Duration
	}{
		{spaceIndex, c.cfg.window, c.cfg.window + c.cfg.lateness},
		{spacePending, c.cfg.grace, c.cfg.grace + c.cfg.lateness},
		{spaceSightings, PrevalenceBucket, c.cfg.lookback + c.cfg.lateness},
	} {
		cutOf := func(clk time.Time) int64 {
			if clk.IsZero() {
				return math.MinInt64
			}
			return state.Bucket(clk.Add(-x.keep), x.width) - 1 // buckets below it go
		}
		if err := expireSpace(b, x.space, cutOf(clocks.global), func(tenant string) int64 {
			return cutOf(clocks.tenant(tenant))
		}, c.filt.drop); err != nil {
			return err
		}
	}
	return nil
}

// expireSpace deletes, in every bucket of space below cut, the keys of each
// tenant whose own cut is above the bucket.
// dropped is told the start of each range deleted (a bucket, or a tenant's
// part of one).
func expireSpace(b *state.Batch, space byte, cut int64, tenantCut func(string) int64, dropped func(start []byte)) error {
	it, err := b.NewIter([]byte{'B', space})
	if err != nil {
		return err
	}
	defer it.Close()
	type span struct{ start, end []byte }
	var dels []span
	for ok := it.First(); ok; {
		bucket, tenant, _, err := state.ParseBucketKey(it.Key())
		if err != nil {
			return err
		}
		if bucket >= cut {
			break
		}
		all, first := true, len(dels)
		for ok && bucket == state.ReadInt64(it.Key()[2:10]) {
			if _, tenant, _, err = state.ParseBucketKey(it.Key()); err != nil {
				return err
			}
			pfx := state.BucketKey(nil, space, bucket, tenant)
			if bucket < tenantCut(tenant) {
				dels = append(dels, span{pfx, state.PrefixEnd(pfx)})
			} else {
				all = false
			}
			ok = it.SeekGE(state.PrefixEnd(pfx))
		}
		if all {
			start, end := state.BucketRange(space, bucket, bucket+1)
			dels = append(dels[:first], span{start, end})
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	for _, d := range dels {
		if err := b.DeleteRange(d.start, d.end); err != nil {
			return err
		}
		dropped(d.start)
	}
	return nil
}
