package parquet

import (
	"sync"

	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// Arrow Go v17's zstd codec builds a new encoder for every page it writes
// (EncodeLevel calls zstd.NewWriter each time; the page writer always goes
// through EncodeLevel), and each encoder zeroes megabytes of tables: that
// was two thirds of the CPU of a replay. This codec keeps encoders per
// level and leaves everything else to Arrow's codec. It replaces the
// registered zstd codec for the whole process, readers included, which is
// harmless: decoding is unchanged.
func init() {
	base, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		return // Arrow without zstd: nothing to speed up
	}
	compress.RegisterCodec(compress.Codecs.Zstd, &pooledZstd{Codec: base, idle: map[int][]*zstd.Encoder{}})
}

// pooledZstd hands each page to an idle encoder of its level, the one
// used last first: its tables are the ones still in the cache. (One
// encoder with several concurrent slots hands them out in turn, and the
// writer's pages then went through every slot's tables: zstd took half
// again as long.) Several files finishing at once (finishAll) take one
// each.
type pooledZstd struct {
	compress.Codec
	mu   sync.Mutex
	idle map[int][]*zstd.Encoder // by level, the last used last
}

func (z *pooledZstd) get(level int) *zstd.Encoder {
	z.mu.Lock()
	if l := z.idle[level]; len(l) > 0 {
		e := l[len(l)-1]
		z.idle[level] = l[:len(l)-1]
		z.mu.Unlock()
		return e
	}
	z.mu.Unlock()
	l := zstd.SpeedDefault
	if level != compress.DefaultCompressionLevel {
		l = zstd.EncoderLevelFromZstd(level)
	}
	// A window of 2 MiB holds any page (1 MiB of data) whole, so pages
	// compress as with the default 8 MiB, and an encoder's history (twice
	// the window) is a quarter of the default's.
	e, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(l),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(2<<20))
	if err != nil {
		return nil
	}
	return e
}

func (z *pooledZstd) put(level int, e *zstd.Encoder) {
	z.mu.Lock()
	z.idle[level] = append(z.idle[level], e)
	z.mu.Unlock()
}

func (z *pooledZstd) Encode(dst, src []byte) []byte {
	return z.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

func (z *pooledZstd) EncodeLevel(dst, src []byte, level int) []byte {
	e := z.get(level)
	if e == nil {
		return z.Codec.EncodeLevel(dst, src, level)
	}
	out := e.EncodeAll(src, dst[:0])
	z.put(level, e)
	return out
}
