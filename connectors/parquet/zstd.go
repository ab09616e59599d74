package parquet

import (
	"sync"

	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// Arrow Go v17's zstd codec builds a new encoder for every page it writes
// (EncodeLevel calls zstd.NewWriter each time; the page writer always goes
// through EncodeLevel), and each encoder zeroes megabytes of tables: that
// was two thirds of the CPU of a replay. This codec keeps one encoder per
// level (EncodeAll is safe for concurrent use) and leaves everything else to
// Arrow's codec. It replaces the registered zstd codec for the whole
// process, readers included, which is harmless: decoding is unchanged.
func init() {
	base, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		return // Arrow without zstd: nothing to speed up
	}
	compress.RegisterCodec(compress.Codecs.Zstd, &pooledZstd{Codec: base, enc: map[int]*zstd.Encoder{}})
}

type pooledZstd struct {
	compress.Codec
	mu  sync.Mutex
	enc map[int]*zstd.Encoder
}

func (z *pooledZstd) encoder(level int) *zstd.Encoder {
	z.mu.Lock()
	defer z.mu.Unlock()
	if e, ok := z.enc[level]; ok {
		return e
	}
	l := zstd.SpeedDefault
	if level != compress.DefaultCompressionLevel {
		l = zstd.EncoderLevelFromZstd(level)
	}
	e, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil
	}
	z.enc[level] = e
	return e
}

func (z *pooledZstd) Encode(dst, src []byte) []byte {
	return z.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

func (z *pooledZstd) EncodeLevel(dst, src []byte, level int) []byte {
	e := z.encoder(level)
	if e == nil {
		return z.Codec.EncodeLevel(dst, src, level)
	}
	return e.EncodeAll(src, dst[:0])
}
