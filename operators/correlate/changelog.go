package correlate

import (
	"fmt"

	"github.com/stitch-xdr/stitch/state"
)

// ChangelogRoute says where one state change (as Changes reports it) belongs
// in the store's changelog: the facts partition whose state it is, and
// whether it is windowed (a bucketed key, which expires with its bucket and
// so needs no tombstone) or timeless. Tenant keys go to the partition that
// the tenant's facts go to (partitionOf must be the facts producer's
// partitioner); offsets and watermarks name their partition.
func ChangelogRoute(key []byte, partitionOf func(tenant []byte) int32) (partition int32, windowed bool, err error) {
	if tp, ok := state.ParseOffsetKey(key); ok {
		return tp.Partition, false, nil
	}
	if p, ok := state.ParseWatermarkKey(key); ok {
		return p, false, nil
	}
	if tenant, bucketed, ok := state.KeyTenant(key); ok {
		return partitionOf(tenant), bucketed, nil
	}
	return 0, false, fmt.Errorf("correlate: state key %q has no changelog partition", key)
}
