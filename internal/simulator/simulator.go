// Package simulator generates a deterministic, realistic Microsoft 365
// Defender stream in the streaming-API shape
// ({"time","tenantId","operationName","category":"AdvancedHunting-<Table>","properties":{...}}):
// background telemetry from a few hundred devices and users per tenant, with
// attack stories planted at chosen moments, each made of telemetry plus
// AlertInfo and AlertEvidence rows. It feeds benchmarks and end-to-end tests,
// so it builds every record by appending bytes, never through encoding/json.
package simulator

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"
)

type config struct {
	seed        uint64
	tenants     int
	devices     int
	users       int
	start       time.Time
	eps         float64
	attackEvery int
	// attackAtStart plants a backdated story before the first record.
	attackAtStart bool
}

// Option configures a Simulator.
type Option func(*config)

// Seed picks the random seed; the same seed and options give the same stream
// byte for byte. Default 1.
func Seed(s uint64) Option { return func(c *config) { c.seed = s } }

// Tenants sets how many tenants the stream interleaves. Default 2.
func Tenants(n int) Option { return func(c *config) { c.tenants = max(1, n) } }

// Devices sets the devices per tenant (domain controllers and servers
// included). Default 300.
func Devices(n int) Option { return func(c *config) { c.devices = max(1, n) } }

// Users sets the users per tenant. Default 250.
func Users(n int) Option { return func(c *config) { c.users = max(1, n) } }

// Start sets the event time of the first record. Default 2024-06-03T08:00:00Z.
func Start(t time.Time) Option { return func(c *config) { c.start = t } }

// EventsPerSecond sets how fast event time advances: record i is received at
// Start + i/EventsPerSecond. It says nothing about generation speed. A lower
// rate makes stories (which span a few minutes of event time) complete in
// fewer records. Default 2000.
func EventsPerSecond(n float64) Option {
	return func(c *config) {
		if n > 0 {
			c.eps = n
		}
	}
}

// AttackEvery plants an attack story every n records; 0 plants none.
// Stories take the five kinds in turn and rotate over tenants. Default 100000.
func AttackEvery(n int) Option { return func(c *config) { c.attackEvery = max(0, n) } }

// AttackAtStart plants a first story before the first record, dated just
// before the start, so that all its rows (alerts included) come out in the
// first records instead of over the few minutes a story unfolds: a demo
// shows an incident within seconds.
func AttackAtStart() Option { return func(c *config) { c.attackAtStart = true } }

// storySpan is how long a story takes from its first row to its last alert,
// with a margin.
const storySpan = 5 * time.Minute

// pending is a record scheduled for a given event time: story steps and
// follow-ups of background mail (attachment, URL, click rows).
type pending struct {
	due   int64 // event time, Unix ns; also the row's Timestamp
	seq   uint64
	story int // index into stories, -1 for background
	write func(s *Simulator, r *rec, ts int64)
	table string
	ten   *tenant
}

// Simulator produces the stream one record at a time. It is not safe for
// concurrent use; run one per goroutine with different seeds.
type Simulator struct {
	cfg      config
	rng      *rand.Rand
	tenants  []tenant
	start    int64
	step     float64 // ns of event time per record
	n        int64   // records produced
	queue    []pending
	seq      uint64
	stories  []Story
	left     []int // per story: rows not emitted yet
	reportID int64
	usedIPs  map[string]bool // attacker addresses of the stories so far
	r        rec
}

// New builds a simulator and its world (tenants, devices, users).
func New(opts ...Option) *Simulator {
	c := config{seed: 1, tenants: 2, devices: 300, users: 250, start: time.Date(2024, 6, 3, 8, 0, 0, 0, time.UTC), eps: 2000, attackEvery: 100_000}
	for _, o := range opts {
		o(&c)
	}
	s := &Simulator{cfg: c, rng: rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15)), start: c.start.UnixNano(), step: 1e9 / c.eps, usedIPs: map[string]bool{}}
	for i := range c.tenants {
		s.tenants = append(s.tenants, buildTenant(s.rng, i, c.devices, c.users))
	}
	s.reportID = 10_000 + s.rng.Int64N(1_000_000)
	if c.attackAtStart {
		// Planted on a clock set back by a story's span: every row is due
		// at once, and comes out first, in time order.
		s.start -= int64(storySpan)
		s.plant()
		s.start += int64(storySpan)
	}
	return s
}

// clock is the event time of the record being produced.
func (s *Simulator) clock() int64 { return s.start + int64(float64(s.n)*s.step) }

// Next produces one record: key is the tenant id (owned by the simulator, do
// not modify) and value is dst with the record appended.
func (s *Simulator) Next(dst []byte) (key []byte, value []byte) {
	now := s.clock()
	s.r.b = dst
	if len(s.queue) > 0 && s.queue[len(s.queue)-1].due <= now {
		p := s.queue[len(s.queue)-1]
		s.queue = s.queue[:len(s.queue)-1]
		s.r.begin(now, p.ten.id, p.table)
		p.write(s, &s.r, p.due)
		s.r.end()
		key = p.ten.key
		if p.story >= 0 {
			s.left[p.story]--
			if s.left[p.story] == 0 {
				s.stories[p.story].Complete = true
			}
		}
	} else {
		key = s.background(now)
	}
	s.n++
	if s.cfg.attackEvery > 0 && s.n%int64(s.cfg.attackEvery) == 0 {
		s.plant()
	}
	value, s.r.b = s.r.b, nil
	return key, value
}

// schedule queues a row for event time due. The queue is kept sorted with the
// earliest row last so Next pops in O(1); it stays small (a few hundred rows).
func (s *Simulator) schedule(due int64, t *tenant, story int, table string, w func(*Simulator, *rec, int64)) {
	s.seq++
	p := pending{due: due, seq: s.seq, story: story, write: w, table: table, ten: t}
	i := sort.Search(len(s.queue), func(i int) bool {
		q := s.queue[i]
		return q.due < p.due || (q.due == p.due && q.seq < p.seq)
	})
	s.queue = append(s.queue, pending{})
	copy(s.queue[i+1:], s.queue[i:])
	s.queue[i] = p
	if story >= 0 {
		s.left[story]++
	}
}

// Stories describes the attack stories planted so far, in planting order.
// A story is Complete once all its rows have been produced.
func (s *Simulator) Stories() []Story {
	out := make([]Story, len(s.stories))
	copy(out, s.stories)
	return out
}

// WriteFile writes n records as JSON lines to path, for demos and benchmarks.
func WriteFile(path string, n int, opts ...Option) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simulator: create %s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	s := New(opts...)
	var buf []byte
	for range n {
		_, buf = s.Next(buf[:0])
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return fmt.Errorf("simulator: write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("simulator: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("simulator: close %s: %w", path, err)
	}
	return nil
}
