package correlate

import (
	"strings"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// canon is one column value canonicalised as an entity. A memoised one
// (keyed) carries its key, a fresh string that e.Value is a part of, so it
// never holds on to the batch's Arrow memory (a column's Value is a view
// of it); an unmemoised one makes its key when asked (k), as one row
// needs few of them.
type canon struct {
	e   Entity
	key string // e.Key() when keyed, else ""
	ok  bool
	wk  bool // WellKnown(e)
}

func newCanon(e Entity, ok bool) canon {
	if !ok {
		return canon{}
	}
	return canon{e: e, ok: true, wk: WellKnown(e)}
}

func keyedCanon(e Entity, ok bool) canon {
	c := newCanon(e, ok)
	if ok {
		c.key = e.Key()
		c.e.Value = c.key[len(e.Kind)+1:]
	}
	return c
}

// k is the entity's key: a fresh string either way.
func (c canon) k() string {
	if c.key != "" {
		return c.key
	}
	return c.e.Key()
}

// appendKey appends the entity's key to dst without allocating.
func (c canon) appendKey(dst []byte) []byte {
	return append(append(append(dst, c.e.Kind...), ':'), c.e.Value...)
}

// colMemo canonicalises one string column of a batch once per distinct
// value: a batch repeats a few devices, accounts and addresses on most of
// its rows, and canonicalising (trimming, case folding, parsing, the key's
// concatenation) cost more than a map lookup of the raw value.
//
// Its map is the batch's own, whose keys are views of the batch's Arrow
// memory (a colMemo lives only while Extract reads its batch), or, for an
// Extractor, a slot of its canonMemo, kept across batches, whose keys are
// copies.
type colMemo struct {
	col  normalize.StringColumn
	conv func(string) (Entity, bool)
	m    map[string]canon
	keep *canonMemo // m is a slot of keep
	null canon      // the value of "" (most rows leave most columns empty)
	set  bool       // null computed
}

// memoRows is the fewest rows of a batch whose columns are memoised
// without an Extractor: a small batch (a table with a few rows in a
// transaction of kafka.urgent_commit_interval) repeats too little to pay
// for the maps.
var memoRows = 128

// newColMemo memoises col's values in memo's slot (a name for the column
// and conversion, one conv a slot), or, with no memo, in a map of its own
// for a batch of memoRows or more.
func newColMemo(memo *canonMemo, slot string, col normalize.StringColumn, conv func(string) (Entity, bool), rows int) *colMemo {
	c := &colMemo{col: col, conv: conv}
	if memo != nil {
		c.m, c.keep = memo.slot(slot), memo
	} else if rows >= memoRows {
		c.m = map[string]canon{}
	}
	return c
}

func (c *colMemo) at(i int) canon {
	s := c.col.Value(i)
	if c.m == nil {
		return newCanon(c.conv(s))
	}
	if s == "" {
		if !c.set {
			c.null, c.set = keyedCanon(c.conv("")), true
		}
		return c.null
	}
	if v, ok := c.m[s]; ok {
		return v
	}
	v := keyedCanon(c.conv(s))
	if c.keep != nil {
		c.keep.put(c.m, strings.Clone(s), v, maxCanonMemo)
	} else {
		c.m[s] = v
	}
	return v
}

// pairMemo is colMemo for UserNT's two columns (domain, name).
type pairMemo struct {
	a, b    normalize.StringColumn
	m       map[string]canon
	keep    *canonMemo // m is a slot of keep
	scratch []byte
}

func (p *pairMemo) at(i int) canon {
	d, n := p.a.Value(i), p.b.Value(i)
	if p.m == nil {
		e, ok := UserNT(d, n)
		return newCanon(e, ok && d != "")
	}
	p.scratch = append(append(append(p.scratch[:0], d...), 0), n...)
	if v, ok := p.m[string(p.scratch)]; ok {
		return v
	}
	e, ok := UserNT(d, n)
	v := keyedCanon(e, ok && d != "") // DOMAIN\name only with a domain
	if p.keep != nil {
		p.keep.put(p.m, string(p.scratch), v, maxCanonMemo)
	} else {
		p.m[string(p.scratch)] = v
	}
	return v
}

// canonMemo is an Extractor's canonical entities of the column values it
// has seen, by slot (a column and its conversion) and raw value. The
// canons are keyed (their strings are their own, not the batch's), and so
// are the raw values it keeps. It holds at most maxCanonMemo values, about
// 200 bytes each; past it the largest slot starts empty again: a column of
// mostly distinct values (file hashes, message ids) churns on its own, and
// the devices and accounts that every batch repeats stay.
type canonMemo struct{ slotMemo[canon] }

var maxCanonMemo = 1 << 16 // a variable for tests

// slotMemo is values by slot and raw key, at most max together (canonMemo,
// identityMemo).
type slotMemo[V any] struct {
	slots   map[string]map[string]V
	entries int
}

// slot is the map of the slot named name.
func (m *slotMemo[V]) slot(name string) map[string]V {
	s := m.slots[name]
	if s == nil {
		if m.slots == nil {
			m.slots = map[string]map[string]V{}
		}
		s = map[string]V{}
		m.slots[name] = s
	}
	return s
}

// put adds a new key (entries is the slots' sizes together), and past max
// empties the largest slot (in place: a colMemo of the batch being read
// keeps its map).
func (m *slotMemo[V]) put(slot map[string]V, k string, v V, max int) {
	slot[k] = v
	m.entries++
	for m.entries > max {
		var largest map[string]V
		for _, s := range m.slots {
			if len(s) > len(largest) {
				largest = s
			}
		}
		m.entries -= len(largest)
		clear(largest)
	}
}

// mailboxUser is a recipient's mailbox as the user entity it observes
// with (user:upn:...).
func mailboxUser(s string) (Entity, bool) {
	if e, ok := Mailbox(s); ok {
		return Entity{KindUser, "upn:" + e.Value}, true
	}
	return Entity{}, false
}
