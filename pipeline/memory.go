package pipeline

import (
	"os"
	"runtime/debug"
)

// limitMemory sets runtime.memory_limit_bytes as the Go heap's soft limit
// while the pipeline runs (unless GOMEMLIMIT is set, which the runtime
// already applied) and returns what puts the previous one back. Without
// it the heap grew to twice the live heap between collections: 1.0-1.2 GiB
// of peak RSS in a 300k-record drain whose live heap was under 450 MB
// (bench/RESULTS.md).
func (p *Pipeline) limitMemory() func() {
	limit := p.cfg.Runtime.MemoryLimitBytes
	if limit <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prev := debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(prev) }
}
