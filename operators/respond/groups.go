package respond

import (
	"strings"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Device groups scope automation as in Microsoft 365 Defender: a rule with
// deviceGroup sets the level of actions on devices of that group (servers
// semi-automated, workstations fully). The ledger keeps each device's
// latest group from DeviceInfo; an action takes the level of the group
// known when it is decided (devices report DeviceInfo regularly, so it is
// known before their alerts in practice).

func groupKey(tenant, deviceID string) []byte {
	return append(state.TenantKey(nil, spaceGroup, tenant), strings.ToLower(deviceID)...)
}

// deviceGroup records a device's group, keeping the latest by event time.
func (r *Responder) deviceGroup(tenant string, g *correlate.DeviceGroupFact) error {
	if g.DeviceID == "" || g.Group == "" || !validPart(g.DeviceID) {
		return nil
	}
	key := groupKey(tenant, g.DeviceID)
	var cur correlate.DeviceGroupFact
	if ok, err := r.get(key, &cur); err != nil || ok && (!g.Time.After(cur.Time) || cur.Group == g.Group) {
		return err
	}
	return r.put(key, g)
}

// groupOf is the known group of a device ("" when none is, or no device).
func (r *Responder) groupOf(tenant, deviceID string) (string, error) {
	if deviceID == "" {
		return "", nil
	}
	var g correlate.DeviceGroupFact
	if _, err := r.get(groupKey(tenant, deviceID), &g); err != nil {
		return "", err
	}
	return g.Group, nil
}
