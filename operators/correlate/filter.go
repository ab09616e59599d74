package correlate

import (
	"bytes"
	"hash/maphash"
	"slices"
)

// Lookup filters. Most lookups of a new alert find nothing: its entities'
// index prefixes in each window bucket, their sightings in each prevalence
// bucket, their identity class, the alert's own record, its pending
// evidence. In a store of 10⁶ entities each such miss was a Pebble seek of
// 5-10 µs through every level (BenchmarkCorrelate), 30 or more an alert.
//
// So the correlator keeps, in memory, Bloom filters of the lookup units of
// its committed state and asks them first: a unit is a key up to the end of
// the first string component after the tenant,
//
//	B 'x' bucket tenant 0x00 entity 0x00        (the index: entity -> alerts)
//	B 'v' bucket tenant 0x00 entity 0x00        (sightings of an entity)
//	B 'e' bucket tenant 0x00 alertId 0x00       (evidence before its alert)
//	T 'a' tenant 0x00 alertId 0x00              (an alert record)
//	T 'i' tenant 0x00 incidentId 0x00           (an incident)
//	T 'u' tenant 0x00 identifier 0x00           (a parent in the union-find)
//	T 'm' tenant 0x00 root 0x00                 (the members of a class)
//
// (exactly the prefixes and keys those lookups read), and a filter that
// says no spares the seek. A filter covers one group: the units of one
// tenant in one space (and bucket), the key up to the tenant's NUL.
//
// The filters never give a wrong no, which is all correctness needs:
//   - they are built from the committed store (a scan of the group, the
//     first time a lookup needs the group) and fed the units of each
//     committed transaction after its commit, so they hold every unit of
//     the committed state (and units since deleted, which only cost a seek);
//   - the open transaction's own writes are answered from its pending set
//     (hashes of the units it wrote, Set or Restore), dropped with it on
//     Abort: nothing of an aborted transaction reaches a filter;
//   - a failed commit drops every filter (the store says what landed).
//
// Memory is bounded: all filters together hold at most maxFilterBytes
// (16 bits per unit). A group that would pass it is marked full and says
// maybe to everything (the lookups of the old layout), and is built again
// once as many units were written to it as it held, so that deletions
// (idle close, expiry) can bring it back under the bound. Expired buckets'
// groups are dropped with the bucket.
const maxFilterBytes = 32 << 20

// minFilterUnits is the least capacity of a group's first layer; a group
// grows by layers of twice the capacity, up to maxFilterLayers (each a
// block a lookup reads), and is then built again from the store with room
// for twice what it holds.
const (
	minFilterUnits  = 64
	maxFilterLayers = 4
)

// filtered says whether space's keys are lookup units of the filters.
func filtered(space byte) bool {
	switch space {
	case spaceIndex, spaceSightings, spacePending, spaceAlerts, spaceIncidents, spaceParent, spaceMembers:
		return true
	}
	return false
}

// unitOf appends the filter key of k to dst: its unit, and the length of
// its group in it; whole says whether k is the unit itself (a lookup can
// be answered only for a whole unit), ok is false for keys of other
// spaces. For the pending evidence the bucket is left out (the unit is
// 'B' 'e' tenant 0x00 alertId 0x00): an alert claims its evidence from
// every bucket, and one filter says whether there is any.
func unitOf(dst, k []byte) (unit []byte, group int, whole, ok bool) {
	from, gl, ul, ok := unitBounds(k)
	if !ok {
		return dst, 0, false, false
	}
	if from == 10 && k[1] == spacePending {
		dst = append(append(dst, k[:2]...), k[from:ul]...)
		return dst, 2 + gl - from, ul == len(k), true
	}
	return append(dst, k[:ul]...), gl, ul == len(k), true
}

// unitIn is unitOf without the copy for every key but the pending
// evidence's (whose unit leaves the bucket out): the unit is k[:ul] itself.
// The lookups of the hot path (index, sightings, records) take it.
func unitIn(buf, k []byte) (unit, newBuf []byte, group int, whole, ok bool) {
	from, gl, ul, ok := unitBounds(k)
	switch {
	case !ok:
		return nil, buf, 0, false, false
	case from == 10 && k[1] == spacePending:
		unit, group, whole, ok = unitOf(buf[:0], k)
		return unit, unit, group, whole, ok
	}
	return k[:ul], buf, gl, ul == len(k), true
}

// unitBounds finds k's unit in k: from is where the tenant starts, gl the
// length of the group (up to the tenant's NUL) and ul of the unit (up to
// the next NUL, or all of k).
func unitBounds(k []byte) (from, gl, ul int, ok bool) {
	switch {
	case len(k) > 10 && k[0] == 'B' && filtered(k[1]):
		from = 10
	case len(k) > 2 && k[0] == 'T' && filtered(k[1]):
		from = 2
	default:
		return 0, 0, 0, false
	}
	i := bytes.IndexByte(k[from:], 0)
	if i < 0 {
		return 0, 0, 0, false
	}
	gl = from + i + 1
	ul = len(k)
	if j := bytes.IndexByte(k[gl:], 0); j >= 0 {
		ul = gl + j + 1
	}
	return from, gl, ul, true
}

// scanPrefix is the prefix of the keys whose units a group's filter holds.
func scanPrefix(group []byte) []byte {
	if group[0] == 'B' && group[1] == spacePending {
		return group[:2] // every bucket
	}
	return group
}

var filterSeed = maphash.MakeSeed()

func unitHash(unit []byte) uint64 { return maphash.Bytes(filterSeed, unit) }

// filters are the lookup filters of one correlator (guarded by its mutex).
type filters struct {
	groups map[string]*groupFilter
	bytes  int // held by all groups' layers
	// budget and layers are maxFilterBytes and maxFilterLayers (tests
	// set others: withFilters); off makes every lookup read the store.
	budget, layers int
	off            bool
	sbuf           []byte // stage's scratch
}

// groupFilter is the filter of one group: layers of doubling capacity, the
// newest taking the adds.
type groupFilter struct {
	key    string
	layers []bloom
	units  int // added (while not full)
	full   bool
	stale  bool // out of layers: to be built again
	// skipped counts units written since the group went full; past units
	// the group is dropped and built again from the store.
	skipped int
}

// bloom is a blocked Bloom filter: 8 probes in one 512-bit block, 16 bits
// a unit at capacity (under 0.2% false positives).
type bloom struct {
	blocks [][8]uint64
	n, cap int
}

func newBloom(capacity int) bloom {
	nb := 1
	for nb*32 < capacity {
		nb <<= 1
	}
	return bloom{blocks: make([][8]uint64, nb), cap: nb * 32}
}

func (b *bloom) bytes() int { return len(b.blocks) * 64 }

func (b *bloom) add(h uint64) {
	blk := &b.blocks[(h>>40)&uint64(len(b.blocks)-1)]
	x := h
	for range 8 {
		x *= 0x9E3779B97F4A7C15
		bit := x >> 55
		blk[bit>>6] |= 1 << (bit & 63)
	}
	b.n++
}

func (b *bloom) has(h uint64) bool {
	blk := &b.blocks[(h>>40)&uint64(len(b.blocks)-1)]
	x := h
	for range 8 {
		x *= 0x9E3779B97F4A7C15
		bit := x >> 55
		if blk[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

func (g *groupFilter) has(h uint64) bool {
	if g.full {
		return true
	}
	for i := len(g.layers) - 1; i >= 0; i-- {
		if g.layers[i].has(h) {
			return true
		}
	}
	return false
}

// add puts h in g, growing it by a layer of twice the capacity when the
// newest is full; past the budget g goes full.
func (f *filters) add(g *groupFilter, h uint64) {
	if g.full {
		g.skipped++
		return
	}
	if g.has(h) {
		return // there already (or a false positive, which stays one)
	}
	if len(g.layers) == 0 || g.layers[len(g.layers)-1].n >= g.layers[len(g.layers)-1].cap {
		capacity := minFilterUnits
		if len(g.layers) > 0 {
			capacity = 2 * g.layers[len(g.layers)-1].cap
		}
		if len(g.layers) == f.layers {
			f.release(g)
			g.stale, g.full = true, true // says maybe until it is dropped
			return
		}
		if !f.grow(g, capacity) {
			return
		}
	}
	g.layers[len(g.layers)-1].add(h)
	g.units++
}

// grow adds a layer of capacity units to g, or makes g full when that
// would pass maxFilterBytes.
func (f *filters) grow(g *groupFilter, capacity int) bool {
	l := newBloom(capacity)
	if f.bytes+l.bytes() > f.budget {
		f.release(g)
		g.full = true
		return false
	}
	f.bytes += l.bytes()
	g.layers = append(g.layers, l)
	return true
}

func (f *filters) release(g *groupFilter) {
	for _, l := range g.layers {
		f.bytes -= l.bytes()
	}
	g.layers = nil
}

// drop forgets the groups whose key starts with prefix (a bucket or a
// tenant's part of one expired): a later lookup builds them again.
func (f *filters) drop(prefix []byte) {
	for k, g := range f.groups {
		if len(k) >= len(prefix) && k[:len(prefix)] == string(prefix) {
			f.release(g)
			delete(f.groups, k)
		}
	}
}

// reset forgets every filter.
func (f *filters) reset() {
	f.groups, f.bytes = nil, 0
}

// withFilters sets the filters' budget in bytes and their most layers a
// group (tests: a small budget or few layers make groups go full and be
// built again often); a negative budget turns them off.
func withFilters(budget, layers int) Option {
	return func(c *config) { c.filterBudget, c.filterLayers = budget, layers }
}

// unitAdd is a unit of a transaction for the filter of its group.
type unitAdd struct {
	g *groupFilter
	h uint64
}

// stage adds to adds the unit of a write of a transaction (read by
// Correlator.staged before its batch commits, while Changes can read it),
// for a group that has a filter: committed adds them once the commit
// succeeded.
func (f *filters) stage(adds []unitAdd, del bool, k []byte) []unitAdd {
	if del || len(f.groups) == 0 {
		return adds
	}
	var u []byte
	var gl int
	var ok bool
	u, f.sbuf, gl, _, ok = unitIn(f.sbuf, k)
	if !ok {
		return adds
	}
	if g := f.groups[string(u[:gl])]; g != nil {
		adds = append(adds, unitAdd{g, unitHash(u)})
	} // a group not built yet reads the store when it is
	return adds
}

// committed adds the units of a committed transaction (staged).
func (f *filters) committed(adds []unitAdd) {
	for _, a := range adds {
		if f.groups[a.g.key] != a.g {
			continue // dropped meanwhile
		}
		f.add(a.g, a.h)
		if a.g.stale || a.g.full && a.g.skipped > max(a.g.units, minFilterUnits) {
			delete(f.groups, a.g.key) // built again on its next lookup
		}
	}
}

// noteWrite records a unit written by the open transaction.
func (c *Correlator) noteWrite(k []byte) {
	var u []byte
	var ok bool
	u, c.fbuf, _, _, ok = unitIn(c.fbuf, k)
	if ok {
		p := c.pend
		if p.units == nil {
			p.units = map[uint64]struct{}{}
		}
		p.units[unitHash(u)] = struct{}{}
	}
}

// wrote says whether the open transaction wrote or deleted key's unit (or
// one with the same hash).
func (c *Correlator) wrote(key []byte) bool {
	var unit []byte
	var ok bool
	unit, c.fbuf, _, _, ok = unitIn(c.fbuf, key)
	if !ok {
		return true
	}
	_, w := c.pend.units[unitHash(unit)]
	return w
}

// mayHave says whether unit (a key or prefix that unitOf splits whole) may
// hold keys, in the store or in the open transaction: false only when
// neither has any.
func (c *Correlator) mayHave(key []byte) (bool, error) {
	if c.filt.off {
		return true, nil
	}
	var unit []byte
	var gl int
	var whole, ok bool
	unit, c.fbuf, gl, whole, ok = unitIn(c.fbuf, key)
	if !ok || !whole {
		return true, nil
	}
	h := unitHash(unit)
	if _, ok := c.pend.units[h]; ok {
		return true, nil
	}
	g := c.filt.groups[string(unit[:gl])]
	if g == nil {
		var err error
		if g, err = c.buildFilter(bytes.Clone(unit[:gl])); err != nil {
			return true, err
		}
	}
	return g.has(h), nil
}

// buildFilter reads the committed units of group from the store.
func (c *Correlator) buildFilter(group []byte) (*groupFilter, error) {
	f := &c.filt
	it, err := c.store.NewIter(scanPrefix(group))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var hashes []uint64
	var u, last []byte
	limit := (f.budget - f.bytes) / 2 // 16 bits a unit
	for ok := it.First(); ok; ok = it.Next() {
		var gl int
		var uok bool
		u, gl, _, uok = unitOf(u[:0], it.Key())
		if !uok || !bytes.Equal(u[:gl], group) || bytes.Equal(u, last) {
			continue // another tenant's (pending evidence), or the same unit
		}
		last = append(last[:0], u...)
		hashes = append(hashes, unitHash(u))
		if len(hashes) > limit {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	c.ops.FilterBuilds++
	c.ops.FilterUnits += int64(len(hashes))
	slices.Sort(hashes)
	hashes = slices.Compact(hashes) // pending evidence: one unit in several buckets
	g := &groupFilter{key: string(group), units: len(hashes)}
	if f.groups == nil {
		f.groups = map[string]*groupFilter{}
	}
	f.groups[string(group)] = g
	if f.grow(g, 2*len(hashes)) {
		for _, h := range hashes {
			g.layers[0].add(h)
		}
	}
	return g, nil
}
