package correlate

import (
	"encoding/binary"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// identity is what one row's identifiers of one host (DeviceId and
// DeviceName) or of one account group (userIDs) come to: their canonical
// entities, best first, and the identity link they make. An Extractor
// keeps it by the row's raw values (identityMemo), so that a row of a host
// or account seen before costs one lookup, instead of a lookup a column,
// a sort and a signature for its link: the accounts were most of what
// Extract did at a live stream's batch sizes (bench/RESULTS.md, "Facts
// extraction").
type identity struct {
	ids  []canon
	link []string // the link's keys, sorted; nil: fewer than two that are not well known
	sig  string   // the link's keys NUL-separated: what the batch's linker dedupes by
	// linked is the Extractor's batch (Extractor.batch) whose linker last
	// took the link: a row of the same identity later in the batch skips
	// the linker's map.
	linked uint64
}

// identityMemo is an Extractor's identities by slot (the hosts' columns,
// an account group's) and the row's raw values, at most maxIdentityMemo
// together, about 600 bytes each (past it the largest slot starts empty
// again). Its identities hold keyed canons only, never the batch's
// memory.
type identityMemo struct{ slotMemo[*identity] }

var maxIdentityMemo = 1 << 14 // a variable for tests

// identityCols reads one identity's columns of a batch through an
// Extractor's memory.
type identityCols struct {
	raw   []normalize.StringColumn         // the columns whose values make the memo key
	canon func(dst []canon, i int) []canon // row i's canonical identifiers, best first
	m     map[string]*identity
	memo  *identityMemo
	lk    *linker // the batch's, for its scratch (sortedLink)
	batch uint64  // the Extractor's batch
	key   []byte  // scratch: the row's memo key
}

// identities read one identity's columns of a batch (a host's, an account
// group's) row by row: row gives the row's identity link to the batch's
// linker and returns its identifiers, best first, to be read before the
// next call.
type identities interface{ row(i int) []canon }

// row gives row i's identity's link to the batch's linker, once a batch.
func (c *identityCols) row(i int) []canon {
	id := c.at(i)
	if id.link != nil && id.linked != c.batch {
		id.linked = c.batch
		c.lk.addKnown(id.link, id.sig)
	}
	return id.ids
}

// freshIdentities are identities without an Extractor: canonicalised and
// linked again on every row.
type freshIdentities struct {
	canon func(dst []canon, i int) []canon
	lk    *linker
	ids   []canon
}

func (f *freshIdentities) row(i int) []canon {
	f.ids = f.canon(f.ids[:0], i)
	f.lk.add(f.ids)
	return f.ids
}

// at is row i's identity.
func (c *identityCols) at(i int) *identity {
	c.key = c.key[:0]
	for _, r := range c.raw {
		v := r.Value(i)
		c.key = append(binary.AppendUvarint(c.key, uint64(len(v))), v...) // length-prefixed: no two rows' keys collide
	}
	if id, ok := c.m[string(c.key)]; ok {
		return id
	}
	id := &identity{ids: c.canon(nil, i)}
	if c.lk.sortedLink(id.ids) {
		id.link, id.sig = c.lk.keys(), string(c.lk.sig)
	}
	c.memo.put(c.m, string(c.key), id, maxIdentityMemo)
	return id
}

// hostIDs are a row's host identifiers, DeviceId then DeviceName.
func hostIDs(devID, devName *colMemo) func(dst []canon, i int) []canon {
	return func(dst []canon, i int) []canon {
		if did := devID.at(i); did.ok {
			dst = append(dst, did)
		}
		if dname := devName.at(i); dname.ok {
			dst = append(dst, dname)
		}
		return dst
	}
}

// hostIdentities reads a batch's DeviceId and DeviceName columns.
func hostIdentities(devID, devName *colMemo, x *Extractor, lk *linker) *identityCols {
	return &identityCols{
		raw:   []normalize.StringColumn{devID.col, devName.col},
		canon: hostIDs(devID, devName),
		m:     x.idents.slot("host"), memo: &x.idents, lk: lk, batch: x.batch,
	}
}

// accountIdentities reads one account group's columns (userCols).
func accountIdentities(u userCols, x *Extractor, lk *linker) *identityCols {
	return &identityCols{
		raw:   []normalize.StringColumn{u.oid.col, u.sid.col, u.upn.col, u.nt.a, u.nt.b},
		canon: u.ids,
		m:     x.idents.slot(u.slot), memo: &x.idents, lk: lk, batch: x.batch,
	}
}
