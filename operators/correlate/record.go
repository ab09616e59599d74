package correlate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	gojson "github.com/goccy/go-json"
)

// State records. Alert records (T 'a') and incident states (T 'i') are a
// compact binary encoding: every alert rewrote its incident's state, and as
// JSON (1.4-2.1 KB an incident of BenchmarkCorrelate) encoding it and
// carrying it through the batch, the memtable, the WAL, flushes and
// compactions was a third of an alert's cost. The published incident stays
// JSON; only the state record changed.
//
// A record starts with its version byte, recordV1; one written before
// (JSON, starting with '{') is still read, so a store or a changelog of an
// earlier release restores as it is, and its records are rewritten in this
// encoding when they next change.
//
// Decoding gives what a JSON round trip of the value gave (the outputs are
// compared byte for byte with runs that read every value from the store):
// nil and empty slices stay apart except where JSON omits an empty one
// (omitempty: it comes back nil), times keep their instant and offset (a
// zero offset comes back UTC, another the local zone when it has that
// offset then, as time.Parse does).
const recordV1 = 1

// recCodec encodes (enc) or decodes a record's fields: each record's
// fields are listed once (incState, alertRec), for both directions, so
// that the two cannot drift apart. Decoding reads one string for the whole
// record, which the decoded strings share: one allocation for them all.
type recCodec struct {
	enc bool
	b   []byte // what an encode appends to
	s   string // what a decode has left
	err error
	// shareSlices has a decode carve []string values from shared blocks
	// (stringSlice: facts records).
	shareSlices bool
	block       []string
}

var errShortRecord = errors.New("truncated record")

func (c *recCodec) fail() {
	if c.err == nil {
		c.err = errShortRecord
	}
	c.s = ""
}

func (c *recCodec) uint(p *uint64) {
	if c.enc {
		c.b = binary.AppendUvarint(c.b, *p)
		return
	}
	var n uint64
	for i := 0; i < len(c.s) && i < binary.MaxVarintLen64; i++ {
		x := c.s[i]
		n |= uint64(x&0x7f) << (7 * i)
		if x < 0x80 {
			c.s, *p = c.s[i+1:], n
			return
		}
	}
	c.fail()
}

// int is zigzag, as binary.AppendVarint.
func (c *recCodec) int(p *int64) {
	u := uint64(*p<<1) ^ uint64(*p>>63)
	c.uint(&u)
	if !c.enc {
		*p = int64(u>>1) ^ -int64(u&1)
	}
}

func (c *recCodec) str(p *string) {
	n := uint64(len(*p))
	c.uint(&n)
	if c.enc {
		c.b = append(c.b, *p...)
		return
	}
	if n > uint64(len(c.s)) {
		c.fail()
		return
	}
	*p, c.s = c.s[:n], c.s[n:]
}

func (c *recCodec) strings(ps ...*string) {
	for _, p := range ps {
		c.str(p)
	}
}

func (c *recCodec) flag(p *bool) {
	if c.enc {
		c.b = append(c.b, boolByte(*p))
		return
	}
	if len(c.s) == 0 {
		c.fail()
		return
	}
	*p, c.s = c.s[0] != 0, c.s[1:]
}

func boolByte(ok bool) byte {
	if ok {
		return 1
	}
	return 0
}

// slice codes a slice's length (0 for nil, else length+1) and each element;
// omitEmpty encodes an empty slice as nil, as JSON's omitempty drops it.
func slice[T any](c *recCodec, p *[]T, omitEmpty bool, each func(*T)) {
	var n uint64
	if *p != nil && !(omitEmpty && len(*p) == 0) {
		n = uint64(len(*p)) + 1
	}
	c.uint(&n)
	if !c.enc {
		switch {
		case n == 0:
			*p = nil
			return
		case n-1 > uint64(len(c.s)): // every element takes a byte at least
			c.fail()
			return
		}
		if sp, ok := any(p).(*[]string); ok && c.shareSlices {
			*sp = c.stringSlice(int(n - 1))
		} else {
			*p = make([]T, n-1)
		}
	}
	for i := range *p {
		each(&(*p)[i])
	}
}

func (c *recCodec) strs(p *[]string) { slice(c, p, false, c.str) }

// ptr codes whether *p is nil and, if not, what it points to.
func ptr[T any](c *recCodec, p **T, each func(*T)) {
	set := *p != nil
	c.flag(&set)
	if !set {
		if !c.enc {
			*p = nil
		}
		return
	}
	if !c.enc {
		*p = new(T)
	}
	each(*p)
}

// time codes an instant and its zone offset.
func (c *recCodec) time(p *time.Time) {
	var sec, off int64
	var nsec uint64
	if c.enc {
		_, o := p.Zone()
		sec, nsec, off = p.Unix(), uint64(p.Nanosecond()), int64(o)
	}
	c.int(&sec)
	c.uint(&nsec)
	c.int(&off)
	if c.enc {
		return
	}
	if nsec >= 1e9 {
		c.fail()
		return
	}
	t := time.Unix(sec, int64(nsec)) // in the local zone
	if off == 0 {
		*p = t.UTC()
	} else if _, local := t.Zone(); int64(local) == off {
		*p = t
	} else {
		*p = t.In(time.FixedZone("", int(off)))
	}
}

func (c *recCodec) alertRec(r *alertRec) {
	c.str(&r.Inc)
	c.time(&r.T)
	c.strs(&r.E)
}

func (c *recCodec) incState(s *incState) {
	in := &s.Inc
	c.strings(&in.ID, &in.TenantID, &in.DisplayName, &in.Description, &in.Severity, &in.Status,
		&in.Classification, &in.Determination)
	c.time(&in.CreatedDateTime)
	c.time(&in.LastUpdateDateTime)
	ptr(c, &in.RedirectIncidentID, c.str)
	ptr(c, &in.AssignedTo, c.str)
	c.strs(&in.Tags)
	slice(c, &in.Comments, true, c.comment)
	slice(c, &in.Alerts, false, c.alert)
	a := &in.ImpactedAssets
	for _, l := range [...]*[]string{&a.Devices, &a.Users, &a.Mailboxes, &a.Files, &a.IPs, &a.URLs, &a.Apps} {
		c.strs(l)
	}
	slice(c, &in.CorrelationReasons, false, func(r *CorrelationReason) {
		c.strings(&r.Entity, &r.Alerts[0], &r.Alerts[1], &r.Merged)
	})
	c.int(&in.Version)
	c.strs(&s.Entities)
	c.time(&s.LastAlert)
	c.int(&s.Rev)
}

func (c *recCodec) alert(a *Alert) {
	c.strings(&a.ID, &a.Title, &a.Description, &a.Severity, &a.Status, &a.ServiceSource,
		&a.DetectionSource, &a.Category)
	c.strs(&a.MitreTechniques)
	c.time(&a.CreatedDateTime)
	c.time(&a.FirstActivityDateTime)
	c.time(&a.LastActivityDateTime)
	slice(c, &a.Evidence, false, c.evidence)
}

func (c *recCodec) evidence(v *Evidence) {
	c.str(&v.ODataType)
	c.time(&v.CreatedDateTime)
	c.strs(&v.Roles)
	ptr(c, &v.UserAccount, func(u *UserAccount) {
		c.strings(&u.AccountName, &u.DomainName, &u.UserSID, &u.AzureAdUserID, &u.UserPrincipalName)
	})
	ptr(c, &v.FileDetails, func(f *FileDetails) {
		c.strings(&f.SHA1, &f.SHA256, &f.FileName, &f.FilePath)
		c.int(&f.FileSize)
	})
	c.strings(&v.MdeDeviceID, &v.DeviceDNSName, &v.ProcessCommand, &v.IPAddress, &v.URL, &v.NetworkMessageID,
		&v.Subject, &v.PrimaryAddress, &v.ClusterBy, &v.AppID, &v.DisplayName, &v.RegistryKey,
		&v.RegistryValueName, &v.RegistryValue)
}

// appendAlertRec appends r's record to dst.
func appendAlertRec(dst []byte, r *alertRec) []byte {
	c := recCodec{enc: true, b: append(dst, recordV1)}
	c.alertRec(r)
	return c.b
}

// appendIncState appends s's record to dst.
func appendIncState(dst []byte, s *incState) []byte {
	c := recCodec{enc: true, b: append(dst, recordV1)}
	c.incState(s)
	return c.b
}

// decodeAlertRec reads an alert record (either encoding).
func decodeAlertRec(v []byte, r *alertRec) error {
	return decodeRecord(v, r, (*recCodec).alertRec)
}

// decodeIncState reads an incident state record (either encoding).
func decodeIncState(v []byte, s *incState) error {
	return decodeRecord(v, s, (*recCodec).incState)
}

// decodeRecord reads a record into x: JSON (an earlier release's), or
// this encoding after its version byte, every byte of it.
func decodeRecord[T any](v []byte, x *T, fields func(*recCodec, *T)) error {
	if len(v) > 0 && v[0] == '{' {
		return gojson.Unmarshal(v, x)
	}
	if len(v) == 0 || v[0] != recordV1 {
		return fmt.Errorf("unknown record encoding %q", v[:min(len(v), 1)])
	}
	c := recCodec{s: string(v[1:])}
	fields(&c, x)
	if c.err == nil && c.s != "" {
		c.err = errors.New("record longer than its fields")
	}
	return c.err
}
