package correlate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// Facts records (the stitch.facts topic) are a compact binary encoding, in
// the state records' codec (record.go): every telemetry batch's facts are
// encoded by normalize and decoded twice (correlate, respond-feed), and
// decoding them as JSON was 5.7% of the process's CPU at 20,000 records/s.
//
// A record starts with its version byte, factsV1, which no JSON text
// starts with; any other record is read as JSON, as an earlier release
// wrote it, so a topic holding such records is read as it is.
//
// Every part is encoded natively: the telemetry facts (sightings, links,
// files, device groups, mail, attachments) are the volume, and the rare
// ones (alerts, evidence, analysts' updates) reuse the state records'
// codecs of the same types (evidence, comments). Decoding gives what a
// JSON round trip gave (record.go says how: nil and empty slices, times
// and offsets); TestFactsDecodeAsJSONDid fills every field to check it.
//
// The decoded strings share one allocation (the record's bytes, copied
// once), and their lists blocks of a few (stringSlice), which live as long
// as any of them: the correlator keeps none of them past the record but
// the tenant (the key of its partition map), so the tenant has an
// allocation of its own.
//
// (Its value is not the state records' recordV1, so that neither kind of
// record decodes as the other.)
const factsV1 = 2

// facts codes a Facts' fields, in the order the correlator applies them.
func (c *recCodec) facts(f *Facts) {
	c.str(&f.Tenant)
	if !c.enc {
		f.Tenant = strings.Clone(f.Tenant)
	}
	slice(c, &f.Links, true, c.strs)
	slice(c, &f.Sightings, true, func(s *Sighting) {
		c.str(&s.Entity)
		c.int(&s.Bucket)
		c.strs(&s.Observers)
	})
	slice(c, &f.Attachments, true, func(a *AttachmentFact) {
		c.strings(&a.SHA256, &a.NetworkMessageID, &a.Recipient, &a.RecipientID, &a.FileName)
		c.time(&a.Time)
	})
	slice(c, &f.Files, true, func(x *FileFact) {
		c.strings(&x.SHA256, &x.DeviceID, &x.DeviceName)
		c.time(&x.Time)
	})
	slice(c, &f.DeviceGroups, true, func(g *DeviceGroupFact) {
		c.strings(&g.DeviceID, &g.Group)
		c.time(&g.Time)
	})
	slice(c, &f.Mail, true, func(m *MailFact) {
		c.strings(&m.NetworkMessageID, &m.Recipient, &m.URL)
		c.time(&m.Time)
	})
	slice(c, &f.Alerts, true, func(a *AlertFact) {
		c.str(&a.ID)
		c.time(&a.Time)
		c.strings(&a.Title, &a.Severity, &a.Category, &a.ServiceSource, &a.DetectionSource)
		slice(c, &a.Techniques, true, c.str)
	})
	slice(c, &f.Evidence, true, func(e *EvidenceFact) {
		c.str(&e.AlertID)
		c.time(&e.Time)
		c.strs(&e.Entities)
		c.evidence(&e.Evidence)
	})
	slice(c, &f.Updates, true, func(u *AnalystUpdate) {
		c.str(&u.IncidentID)
		c.int(&u.Revision)
		c.strings(&u.Status, &u.Classification, &u.Determination)
		ptr(c, &u.AssignedTo, c.str)
		slice(c, &u.Tags, true, c.str)
		slice(c, &u.Comments, true, c.comment)
		c.str(&u.By)
		c.time(&u.Time)
	})
	c.time(&f.MaxTime)
}

func (c *recCodec) comment(m *Comment) {
	c.str(&m.By)
	c.time(&m.Time)
	c.str(&m.Text)
}

// appendFacts appends f's record to dst.
func appendFacts(dst []byte, f *Facts) []byte {
	c := recCodec{enc: true, b: append(dst, factsV1)}
	c.facts(f)
	return c.b
}

// decodeFacts reads a facts record: this encoding after its version byte,
// every byte of it, or JSON (an earlier release's).
func decodeFacts(b []byte, f *Facts) error {
	if len(b) == 0 {
		return errors.New("empty record")
	}
	switch v := b[0]; {
	case v == factsV1:
		c := recCodec{s: string(b[1:]), shareSlices: true}
		c.facts(f)
		if c.err == nil && c.s != "" {
			c.err = errors.New("record longer than its fields")
		}
		return c.err
	case v < ' ' && v != '\t' && v != '\n' && v != '\r':
		// Not JSON either (which may start with white space): a record
		// of a later release, or not facts at all.
		return fmt.Errorf("unknown facts encoding %d", v)
	}
	return json.Unmarshal(b, f)
}

// timeLen is the length of t's encoding (recCodec.time).
func timeLen(t time.Time) int {
	c := recCodec{enc: true}
	c.time(&t)
	return len(c.b)
}

// stringSlice is room for a decoded []string of n, carved from a block
// that the record's next slices share: a telemetry batch's facts are
// hundreds of short lists (links, observers), and an allocation each made
// a decode up to a third slower. A block is sized by what the record has
// left.
func (c *recCodec) stringSlice(n int) []string {
	if n == 0 {
		return []string{} // empty, not nil (a nil block's [:0:0] is)
	}
	if len(c.block) < n {
		c.block = make([]string, max(n, min(len(c.s)/16, 1024)))
	}
	s := c.block[:n:n]
	c.block = c.block[n:]
	return s
}
