package pipeline

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A stage's input is behind while a fetch left more than a commit marker
// below a partition's end; an empty fetch changes nothing.
func TestInputPosition(t *testing.T) {
	fetch := func(p int32, last, hwm, lso int64) kgo.Fetches {
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{
			Partition: p, HighWatermark: hwm, LastStableOffset: lso, Records: []*kgo.Record{{Offset: last}},
		}}}}}}
	}
	var in inputPosition
	if in.behind() {
		t.Fatal("nothing read yet: behind")
	}
	in.observe(fetch(0, 99, 1000, 1000))
	if !in.behind() {
		t.Fatal("900 records left: not behind")
	}
	in.observe(kgo.Fetches{}) // an empty poll: a fetch in flight
	if !in.behind() {
		t.Fatal("an empty poll read as caught up")
	}
	in.observe(fetch(0, 998, 1000, 1000)) // the last record, then a commit marker
	if in.behind() {
		t.Fatal("caught up but behind")
	}
	in.observe(fetch(1, 10, 500, 12)) // read committed: the end is the last stable offset
	if in.behind() {
		t.Fatal("at the last stable offset but behind")
	}
	in.observe(fetch(1, 10, 500, 400))
	if !in.behind() {
		t.Fatal("below the last stable offset: not behind")
	}
}
