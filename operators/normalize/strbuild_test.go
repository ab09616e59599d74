package normalize

import (
	"testing"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// A burst after a quiet period: the builder was presized for fewer rows than
// arrive. Every size around the allocator's padding must grow safely and
// read back exactly (this once wrote past the validity bitmap and panicked).
func TestStrBuilderOutgrowsItsReservation(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, reserved := range []int{0, 1, 7, 8, 63, 64, 100, 1024} {
		for extra := 1; extra <= 40; extra++ {
			s := newStrBuilder(mem)
			s.reserve(reserved, 16)
			n := reserved + extra
			for i := range n {
				if i%5 == 3 {
					s.appendNull()
				} else {
					s.append([]byte{byte('a' + i%26)})
				}
			}
			arr := s.newArray().(*array.String)
			if arr.Len() != n {
				t.Fatalf("reserved %d, appended %d: len %d", reserved, n, arr.Len())
			}
			for i := range n {
				if i%5 == 3 {
					if !arr.IsNull(i) {
						t.Fatalf("reserved %d: row %d should be null", reserved, i)
					}
				} else if arr.IsNull(i) || arr.Value(i) != string(rune('a'+i%26)) {
					t.Fatalf("reserved %d: row %d = %q", reserved, i, arr.Value(i))
				}
			}
			arr.Release()
			s.release()
		}
	}
}
