package correlate

import (
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// DeviceGroupFact is a device's group (the MachineGroup of a DeviceInfo
// row), as Defender for Endpoint's device groups scope automation and
// access. Correlation does not use it; automated response keeps the latest
// group of each device to choose the automation level of actions on it.
type DeviceGroupFact struct {
	DeviceID string    `json:"deviceId"`
	Group    string    `json:"group"`
	Time     time.Time `json:"time"`
}

// extractDeviceGroups reads the groups of a DeviceInfo batch, once per
// device per batch (the latest row's); rows without a device id or group
// say nothing.
func extractDeviceGroups(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int) {
	dev, grp := str(rec, "DeviceId"), str(rec, "MachineGroup")
	at := map[string]int{}
	for i := 0; i < n; i++ {
		d, g := strings.ToLower(dev.Value(i)), grp.Value(i)
		if d == "" || g == "" || ts.IsNull(i) {
			continue
		}
		t := ts.Value(i)
		if j, ok := at[d]; ok {
			if t.After(f.DeviceGroups[j].Time) {
				f.DeviceGroups[j].Group, f.DeviceGroups[j].Time = g, t
			}
			continue
		}
		at[d] = len(f.DeviceGroups)
		f.DeviceGroups = append(f.DeviceGroups, DeviceGroupFact{DeviceID: d, Group: g, Time: t})
	}
}
