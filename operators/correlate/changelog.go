package correlate

import (
	"bytes"
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

// SightingGroup says whether a state change is a prevalence sighting (an
// empty value under bucket and tenant, then the entity and the observer)
// and returns the length of its key up to the entity: the changelog
// carries a transaction's new sightings of a tenant in a bucket as one
// record (pipeline: changelogWriter, which bounds a record's size), so the
// window changelog costs a few records per commit instead of one per new
// observer. 0 for any other change.
func SightingGroup(key, val []byte) int {
	if len(val) != 0 || len(key) < 12 || key[1] != spaceSightings {
		return 0
	}
	tenant, bucketed, ok := state.KeyTenant(key)
	if !ok || !bucketed {
		return 0
	}
	rest := 10 + len(tenant) + 1
	// The entity, its separator and an observer follow.
	if i := bytes.IndexByte(key[rest:], 0); i <= 0 || rest+i+1 >= len(key) {
		return 0
	}
	return rest
}
