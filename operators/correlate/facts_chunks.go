package correlate

// MarshalChunks encodes the facts as record values of at most max bytes
// each: one value when the facts fit (the common case, one Marshal), else
// several, so that a batch of telemetry with many distinct entities never
// makes a record the producer or the cluster refuses (which would fail the
// transaction on every retry and stop the stage).
//
// The chunks keep the order in which the correlator applies facts (links,
// sightings, attachments, files, device groups, alerts, evidence,
// updates), and an alert travels with the evidence that names it, so that
// applying the chunks one after the other gives the incidents one value
// would. Only the last chunk carries MaxTime: the watermark moves once the
// whole batch is in.
//
// An element that alone exceeds max (an entity value of megabytes) cannot
// be carried; it is left out and counted in dropped, for the caller to
// report. A max of 0 or less means no limit.
func (f *Facts) MarshalChunks(max int) (chunks [][]byte, dropped int, err error) {
	v, err := f.Marshal()
	if err != nil || len(v) <= max || max <= 0 {
		return [][]byte{v}, 0, err
	}
	units := f.units()
	// A chunk's record is at most the sum of its units' (each measured
	// as a Facts of its own, with both MaxTimes: units): the envelope is
	// counted once per unit, which pays for the longer element counts of
	// a chunk of many units (a byte for each 7 bits: 127 units and more).
	var cur *Facts
	size := 0
	emit := func() error {
		if cur == nil {
			return nil
		}
		b, err := cur.Marshal()
		if err != nil {
			return err
		}
		chunks = append(chunks, b)
		cur, size = nil, 0
		return nil
	}
	for _, u := range units {
		if u.size > max {
			dropped += u.n
			continue
		}
		if cur != nil && size+u.size > max {
			if err := emit(); err != nil {
				return nil, 0, err
			}
		}
		if cur == nil {
			cur = &Facts{Tenant: f.Tenant}
		}
		cur.add(u.f)
		size += u.size
	}
	if cur == nil {
		cur = &Facts{Tenant: f.Tenant} // everything dropped: still move the watermark
	}
	cur.MaxTime = f.MaxTime
	if err := emit(); err != nil {
		return nil, 0, err
	}
	return chunks, dropped, nil
}

// unit is the smallest part of a Facts that a chunk boundary may not cut.
type unit struct {
	f    *Facts
	n    int // elements in it
	size int // its record as a Facts of its own, and its MaxTime's
}

// units are f's units in the order of its record. Each is measured with
// a zero MaxTime (what a chunk but the last carries) and the length of
// f's added (what the last carries).
func (f *Facts) units() []unit {
	var units []unit
	var buf []byte
	maxTime := timeLen(f.MaxTime)
	each := func(n int, mk func(i int) *Facts) {
		for i := range n {
			u := mk(i)
			u.Tenant = f.Tenant
			buf = appendFacts(buf[:0], u)
			units = append(units, unit{f: u, size: len(buf) + maxTime})
		}
	}
	each(len(f.Links), func(i int) *Facts { return &Facts{Links: f.Links[i : i+1]} })
	each(len(f.Sightings), func(i int) *Facts { return &Facts{Sightings: f.Sightings[i : i+1]} })
	each(len(f.Attachments), func(i int) *Facts { return &Facts{Attachments: f.Attachments[i : i+1]} })
	each(len(f.Files), func(i int) *Facts { return &Facts{Files: f.Files[i : i+1]} })
	each(len(f.DeviceGroups), func(i int) *Facts { return &Facts{DeviceGroups: f.DeviceGroups[i : i+1]} })
	each(len(f.Mail), func(i int) *Facts { return &Facts{Mail: f.Mail[i : i+1]} })
	// Each alert with its evidence; evidence of alerts not in these facts
	// (AlertEvidence batches) one by one.
	byAlert := map[string][]EvidenceFact{}
	alerts := map[string]bool{}
	for _, a := range f.Alerts {
		alerts[a.ID] = true
	}
	var orphans []EvidenceFact
	for _, ev := range f.Evidence {
		if alerts[ev.AlertID] {
			byAlert[ev.AlertID] = append(byAlert[ev.AlertID], ev)
		} else {
			orphans = append(orphans, ev)
		}
	}
	each(len(f.Alerts), func(i int) *Facts {
		a := f.Alerts[i]
		evs := byAlert[a.ID]
		delete(byAlert, a.ID) // a duplicate alert id takes its evidence once
		return &Facts{Alerts: f.Alerts[i : i+1], Evidence: evs}
	})
	each(len(orphans), func(i int) *Facts { return &Facts{Evidence: orphans[i : i+1]} })
	each(len(f.Updates), func(i int) *Facts { return &Facts{Updates: f.Updates[i : i+1]} })
	// An alert's unit counts its evidence too.
	for i := range units {
		units[i].n = len(units[i].f.Links) + len(units[i].f.Sightings) + len(units[i].f.Attachments) +
			len(units[i].f.Files) + len(units[i].f.DeviceGroups) + len(units[i].f.Mail) + len(units[i].f.Alerts) +
			len(units[i].f.Evidence) + len(units[i].f.Updates)
	}
	return units
}

func (f *Facts) add(u *Facts) {
	f.Links = append(f.Links, u.Links...)
	f.Sightings = append(f.Sightings, u.Sightings...)
	f.Attachments = append(f.Attachments, u.Attachments...)
	f.Files = append(f.Files, u.Files...)
	f.DeviceGroups = append(f.DeviceGroups, u.DeviceGroups...)
	f.Mail = append(f.Mail, u.Mail...)
	f.Alerts = append(f.Alerts, u.Alerts...)
	f.Evidence = append(f.Evidence, u.Evidence...)
	f.Updates = append(f.Updates, u.Updates...)
}
