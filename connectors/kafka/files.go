package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// MaxLineBytes is the longest JSON line ReadRecords accepts. Lines up to this
// size are passed through whole however large, so that the normalizer can
// dead-letter an oversized record with a reason rather than it vanishing.
const MaxLineBytes = 64 << 20

// ReadRecords calls fn with every record of a replay input file. The file may
// be gzip-compressed (detected by its magic bytes) and holds either
//
//   - JSON lines: one record per line, blank lines skipped, invalid lines
//     passed through unchanged so the normalizer dead-letters them;
//   - one JSON array: each element is one record, compacted;
//   - one JSON object spanning several lines, such as an Event Hubs envelope
//     {"records":[...]}: kept as one compacted record, the normalizer splits
//     envelopes.
//
// A UTF-8 byte order mark at the start of the file (as Windows tools write
// it) is skipped: it is not part of the first record.
//
// The value passed to fn is only valid during the call. An error from fn
// stops reading and is returned as is.
func ReadRecords(path string, fn func(value []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	defer f.Close()
	br, closeGz, err := openMaybeGzip(f, path)
	if err != nil {
		return err
	}
	defer func() { closeGz() }() // closeGz changes when rewinding

	first, err := firstNonSpace(br)
	if err != nil {
		return fmt.Errorf("read records from %s: %w", path, err)
	}
	if first != '[' && first != '{' {
		return readLines(br, path, fn)
	}
	whole := isWholeValue(br, first)
	// Rewind: the detection pass consumed input.
	closeGz()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read records from %s: rewind: %w", path, err)
	}
	br, closeGz, err = openMaybeGzip(f, path)
	if err != nil {
		return err
	}
	if whole {
		return readWholeValue(br, path, first, fn)
	}
	return readLines(br, path, fn)
}

// openMaybeGzip wraps r in a gzip reader when it starts with the gzip magic.
func openMaybeGzip(f *os.File, path string) (*bufio.Reader, func(), error) {
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, func() {}, fmt.Errorf("read records from %s: gzip: %w", path, err)
		}
		br = bufio.NewReaderSize(zr, 1<<20)
		skipBOM(br)
		return br, func() { zr.Close() }, nil
	}
	skipBOM(br)
	return br, func() {}, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// skipBOM drops a UTF-8 byte order mark at the start of br.
func skipBOM(br *bufio.Reader) {
	if b, _ := br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
}

// isWholeValue reports whether the whole stream is exactly one JSON array or
// object (possibly spanning lines) followed only by whitespace. JSON lines
// fail that test at the second line, so detection stops early for them.
func isWholeValue(br *bufio.Reader, first byte) bool {
	// Validate token by token without keeping the value in memory, so a
	// large array costs only a pass over the file.
	dec := json.NewDecoder(br)
	if first == '{' {
		// An object on one line is the same record either way; a
		// JSON lines file's first object ends at its line.
		var raw json.RawMessage
		if dec.Decode(&raw) != nil || bytes.IndexByte(raw, '\n') < 0 {
			return false
		}
	} else {
		if _, err := dec.Token(); err != nil {
			return false
		}
		for dec.More() {
			var raw json.RawMessage
			if dec.Decode(&raw) != nil {
				return false
			}
		}
		if _, err := dec.Token(); err != nil {
			return false
		}
	}
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}

func firstNonSpace(br *bufio.Reader) (byte, error) {
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if len(b) < i {
			if errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil
			}
			return 0, err
		}
		switch c := b[i-1]; c {
		case ' ', '\t', '\r', '\n':
			continue
		default:
			return c, nil
		}
	}
}

func readWholeValue(br *bufio.Reader, path string, first byte, fn func([]byte) error) error {
	dec := json.NewDecoder(br)
	var out bytes.Buffer
	emit := func(raw json.RawMessage) error {
		out.Reset()
		if err := json.Compact(&out, raw); err != nil {
			return fmt.Errorf("read records from %s: %w", path, err)
		}
		return fn(out.Bytes())
	}
	if first == '{' {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("read records from %s: %w", path, err)
		}
		return emit(raw)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("read records from %s: %w", path, err)
	}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("read records from %s: array element at byte %d: %w", path, dec.InputOffset(), err)
		}
		if err := emit(raw); err != nil {
			return err
		}
	}
	return nil
}

func readLines(br *bufio.Reader, path string, fn func([]byte) error) error {
	var long []byte // reused for lines longer than the reader's buffer
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
				if len(long) > MaxLineBytes+2 { // +2: the line ending
					return fmt.Errorf("read records from %s: line %d is longer than %d bytes", path, lineNo, MaxLineBytes)
				}
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read records from %s: line %d: %w", path, lineNo, err)
		}
		rec := bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(rec)) > 0 {
			if ferr := fn(rec); ferr != nil {
				return ferr
			}
		}
		if err != nil { // io.EOF
			return nil
		}
	}
}

// TenantKey returns the tenantId of a Defender record, or of the first record
// of an Event Hubs envelope, as a partitioning key: all of a tenant's records
// land in one partition, in order. It returns nil when there is none or the
// value is not JSON.
func TenantKey(value []byte) []byte {
	p := parserPool.Get()
	defer parserPool.Put(p)
	v, err := p.ParseBytes(value)
	if err != nil {
		return nil
	}
	if t := v.GetStringBytes("tenantId"); len(t) > 0 {
		return bytes.Clone(t)
	}
	if t := v.GetStringBytes("records", "0", "tenantId"); len(t) > 0 {
		return bytes.Clone(t)
	}
	return nil
}

var parserPool fastjson.ParserPool

type produceConfig struct {
	keyByTenant bool
	progress    func(int64)
	maxInFlight int64
}

// ProduceOption configures ProduceFiles.
type ProduceOption func(*produceConfig)

// KeyByTenant keys every record by TenantKey, so a tenant's records stay in
// order in one partition. Without it records have no key.
func KeyByTenant() ProduceOption { return func(c *produceConfig) { c.keyByTenant = true } }

// Progress calls fn with the number of records acknowledged so far, every
// 10,000 records and once at the end.
func Progress(fn func(n int64)) ProduceOption { return func(c *produceConfig) { c.progress = fn } }

// MaxInFlightBytes bounds the value bytes produced but not yet acknowledged
// (default 64 MiB), which bounds memory however large the input is.
func MaxInFlightBytes(n int64) ProduceOption { return func(c *produceConfig) { c.maxInFlight = n } }

const progressEvery = 10_000

// ProduceFiles produces every record of the replay files (see ReadRecords) to
// topic and waits until all are acknowledged. It returns how many records were
// acknowledged and the first error; after an error it stops reading input.
func ProduceFiles(ctx context.Context, cl *kgo.Client, topic string, paths []string, opts ...ProduceOption) (int64, error) {
	cfg := produceConfig{maxInFlight: 64 << 20}
	for _, o := range opts {
		o(&cfg)
	}
	var (
		acked    atomic.Int64
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool
		window   = newByteWindow(cfg.maxInFlight)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		failed.Store(true)
	}
	for _, path := range paths {
		var n int64
		err := ReadRecords(path, func(value []byte) error {
			if failed.Load() {
				return errStopped
			}
			n++
			rec := &kgo.Record{Topic: topic, Value: bytes.Clone(value)}
			if cfg.keyByTenant {
				rec.Key = TenantKey(value)
			}
			size := int64(len(rec.Value))
			if err := window.acquire(ctx, size); err != nil {
				return err
			}
			recNo := n
			cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
				window.release(size)
				if errors.Is(err, kerr.MessageTooLarge) {
					err = fmt.Errorf("%w; raise the client's max_message_bytes and the topic's max.message.bytes", err)
				}
				if err != nil {
					fail(fmt.Errorf("produce record %d of %s (%d bytes) to %s: %w", recNo, path, size, topic, err))
					return
				}
				if a := acked.Add(1); cfg.progress != nil && a%progressEvery == 0 {
					cfg.progress(a)
				}
			})
			return nil
		})
		if err != nil && !errors.Is(err, errStopped) {
			fail(err)
		}
		if failed.Load() {
			break
		}
	}
	if err := cl.Flush(ctx); err != nil {
		fail(fmt.Errorf("produce to %s: flush: %w", topic, err))
	}
	n := acked.Load()
	if cfg.progress != nil {
		cfg.progress(n)
	}
	mu.Lock()
	defer mu.Unlock()
	return n, firstErr
}

var errStopped = errors.New("produce stopped")

// byteWindow is a counting semaphore over bytes. A single value larger than
// the window is let through alone rather than blocking forever.
type byteWindow struct {
	mu   sync.Mutex
	cond *sync.Cond
	used int64
	max  int64
}

func newByteWindow(max int64) *byteWindow {
	w := &byteWindow{max: max}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *byteWindow) acquire(ctx context.Context, n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.used > 0 && w.used+n > w.max {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait() // every release broadcasts; kgo fails buffered records on ctx cancel
	}
	w.used += n
	return nil
}

func (w *byteWindow) release(n int64) {
	w.mu.Lock()
	w.used -= n
	w.mu.Unlock()
	w.cond.Broadcast()
}
