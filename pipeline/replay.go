package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
)

// ReplayOptions say what to replay and where the results go.
type ReplayOptions struct {
	Inputs []string
	OutDir string
	// Timeout bounds the whole replay (default 10 minutes).
	Timeout time.Duration
	// Progress, when set, receives a line now and then on long replays.
	Progress func(line string)
	// Built, when set, is handed the pipeline before it runs (tests read
	// its metrics).
	Built func(*Pipeline)
}

// Summary is summary.json: what a replay read, normalized and dead-lettered.
type Summary struct {
	RecordsRead  int64            `json:"records_read"`
	Normalized   map[string]int64 `json:"normalized"`
	DeadLettered map[string]int64 `json:"dead_lettered"`
	// KafkaRecords is how many Kafka records the input files became (an
	// Event Hubs envelope is one Kafka record holding many signal records).
	KafkaRecords     int64            `json:"kafka_records"`
	HuntingRows      map[string]int64 `json:"hunting_rows"`
	Incidents        int              `json:"incidents"`
	IncidentVersions int64            `json:"incident_updates"`
	// Actions counts the response actions of actions.jsonl by type.
	Actions map[string]int `json:"actions"`
	Inputs  []string       `json:"inputs"`
	Import  *ImportSummary `json:"import,omitempty"`
	Seconds float64        `json:"duration_seconds"`
}

// ImportSummary says how export rows were assigned to tables.
type ImportSummary struct {
	Table    string `json:"table,omitempty"`
	Inferred bool   `json:"inferred"`
}

// Replay runs the pipeline offline over files, through an embedded broker
// exactly as a live run does: the files are produced into the input topic,
// every stage runs until it has committed all of its input, and the output
// topics are drained into OutDir (deadletter.jsonl, incidents.jsonl,
// summary.json; hunting/ is written by the hunting stage directly).
func Replay(ctx context.Context, cfg Config, ro ReplayOptions, opts ...Option) (Summary, error) {
	start := time.Now()
	var sum Summary
	if len(ro.Inputs) == 0 {
		return sum, errors.New("no input files")
	}
	for _, in := range ro.Inputs {
		if _, err := os.Stat(in); err != nil {
			return sum, fmt.Errorf("input: %w", err)
		}
	}
	if ro.OutDir == "" {
		return sum, errors.New("no output directory")
	}
	if err := os.MkdirAll(ro.OutDir, 0o755); err != nil {
		return sum, fmt.Errorf("output directory: %w", err)
	}
	if ro.Timeout <= 0 {
		ro.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, ro.Timeout)
	defer cancel()

	// A replay is self-contained: fresh state unless the caller placed it,
	// hunting partitions inside OutDir, no simulator.
	if cfg.State.Dir == "" || cfg.State.Dir == Default().State.Dir {
		dir, err := os.MkdirTemp("", "stitch-replay-*")
		if err != nil {
			return sum, err
		}
		defer os.RemoveAll(dir)
		cfg.State.Dir = dir
	}
	if cfg.Hunting.Dir == "" {
		cfg.Hunting.Dir = filepath.Join(ro.OutDir, "hunting")
	}
	cfg.Kafka.Brokers = nil
	// A replay is usually of old recordings: retention by event time would
	// delete what it writes.
	cfg.Hunting.RetentionEvery = 0
	if cfg.Hunting.RollAge.D() > time.Second {
		cfg.Hunting.RollAge = Duration(time.Second)
	}
	if cfg.Kafka.CommitInterval.D() > 500*time.Millisecond {
		cfg.Kafka.CommitInterval = Duration(500 * time.Millisecond)
	}

	// Records up to the configured limit (and a little over, so that the
	// normalizer, not the broker, rejects the oversized ones with a reason).
	maxMsg := kafka.MaxLineBytes
	// The broker keeps its log in files of its own inside the state
	// directory (no fsync: the log is this replay's alone, removed at its
	// end), not in memory, where the input and every output topic stayed
	// in this process's heap until the end: memory grew with the input and
	// the collector, held to runtime.memory_limit_bytes, ran without pause
	// (1M simulated records, 2.2 GB: peak RSS 2.1 GiB and 166 CPU s in
	// memory, 0.93 GiB and 51 CPU s on disk). The log takes disk space
	// instead, about 5 GB for the 6.4 GB of 3M such records.
	if err := os.MkdirAll(cfg.State.Dir, 0o755); err != nil {
		return sum, fmt.Errorf("state directory: %w", err)
	}
	brokerDir, err := os.MkdirTemp(cfg.State.Dir, "replay-broker-*")
	if err != nil {
		return sum, fmt.Errorf("embedded broker's directory: %w", err)
	}
	defer os.RemoveAll(brokerDir)
	b, err := kafka.StartBroker(kafka.Listen("127.0.0.1:0"), kafka.DefaultPartitions(int(cfg.Topics.Partitions)),
		kafka.DataDir(brokerDir), kafka.NoFsync())
	if err != nil {
		return sum, fmt.Errorf("start embedded broker: %w", err)
	}
	defer b.Close()
	p, err := New(cfg, append(opts, WithBrokers(b.Addrs()))...)
	if err != nil {
		return sum, err
	}
	if ro.Built != nil {
		ro.Built(p)
	}
	// A replay always runs on a new embedded broker, so an earlier
	// replay's outputs (its hunting offsets above all) cannot be continued:
	// start clean, and say so.
	if removed, err := clearReplayOutputs(p, ro.OutDir); err != nil {
		return sum, err
	} else if len(removed) > 0 && ro.Progress != nil {
		ro.Progress(fmt.Sprintf("replay: %s holds an earlier replay's outputs; starting clean (removed %s)", ro.OutDir, strings.Join(removed, ", ")))
	}
	if err := p.EnsureTopics(ctx); err != nil {
		return sum, err
	}
	// A --state-dir (or hunting.dir) of an earlier replay belongs to
	// another broker: refuse now, before producing the inputs.
	if err := p.checkIdentity(ctx); err != nil {
		return sum, err
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ProducerBatchMaxBytes(int32(maxMsg)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return sum, err
	}
	n, err := kafka.ProduceFiles(ctx, cl, cfg.Topics.Inputs[0], ro.Inputs, kafka.KeyByTenant())
	cl.Close()
	if err != nil {
		return sum, fmt.Errorf("produce inputs: %w", err)
	}
	sum.KafkaRecords = n

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	if ro.Progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					s := p.Totals()
					ro.Progress(fmt.Sprintf("replay: read %s, %s, %s", english.Count(s.RecordsRead, "record"),
						english.Count(s.NormalizedTotal(), "row"), english.Count(s.DeadTotal(), "dead letter")))
				}
			}
		}()
	}
	idle := make(chan error, 1)
	go func() { idle <- p.WaitIdle(runCtx, 100*time.Millisecond) }()
	select {
	case err := <-done:
		stop()
		if err == nil {
			err = errors.New("pipeline stopped before the replay finished")
		}
		return sum, err
	case err := <-idle:
		stop()
		if rerr := <-done; rerr != nil {
			return sum, rerr
		}
		if err != nil {
			return sum, fmt.Errorf("replay did not finish: %w", err)
		}
	}

	tot := p.Totals()
	sum.RecordsRead = tot.RecordsRead
	sum.Normalized = tot.Normalized
	sum.DeadLettered = map[string]int64{}
	for k, v := range tot.DeadLetters {
		sum.DeadLettered[string(k)] = v
	}
	sum.HuntingRows = tot.HuntingRows
	sum.IncidentVersions = tot.IncidentVersions
	sum.Inputs = ro.Inputs
	if cfg.Normalize.Import {
		sum.Import = &ImportSummary{Table: cfg.Normalize.ImportTable, Inferred: cfg.Normalize.ImportTable == ""}
	}

	counts, err := drainOutputs(ctx, p.Topology(), kafka.ClientConfig{Brokers: b.Addrs()}, ro.OutDir)
	if err != nil {
		return sum, err
	}
	sum.Incidents = counts["incidents.jsonl"]
	if sum.Actions, err = countActions(filepath.Join(ro.OutDir, "actions.jsonl")); err != nil {
		return sum, err
	}
	sum.Seconds = time.Since(start).Seconds()
	if err := writeJSON(filepath.Join(ro.OutDir, "summary.json"), sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// clearReplayOutputs removes from dir what an earlier replay wrote there:
// summary.json, the replay files of every declared stage's outputs (of a
// stage this config turns off too: its file would be stale) and the
// stages' directories that lie inside dir (hunting/). Other files stay. It
// returns the names it removed.
func clearReplayOutputs(p *Pipeline, dir string) ([]string, error) {
	declared := append(stages(), p.extra...)
	names := []string{"summary.json"}
	for _, o := range replayOutputs(declared, p.cfg) {
		if !slices.Contains(names, o.Replay) {
			names = append(names, o.Replay)
		}
	}
	for _, sd := range stageDirs(declared, p.cfg) {
		if rel, err := filepath.Rel(dir, sd); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
			names = append(names, rel+string(filepath.Separator))
		}
	}
	var removed []string
	for _, n := range names {
		path := filepath.Join(dir, n)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			return removed, fmt.Errorf("clear the earlier replay in %s: %w", dir, err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// drainOutputs drains every stage output that names a replay file into it,
// all at once, and says how many records (or, for a table, keys) each file
// got.
func drainOutputs(ctx context.Context, topo *Topology, cc kafka.ClientConfig, dir string) (map[string]int, error) {
	outs := replayOutputs(topo.defs, topo.cfg)
	counts := make([]int, len(outs))
	errs := make([]error, len(outs))
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = drainOutput(ctx, cc, o, filepath.Join(dir, o.Replay))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for i, o := range outs {
		out[o.Replay] = counts[i]
	}
	return out, nil
}

// drainOutput drains one output into path: every record, or for a table
// the last of each key.
func drainOutput(ctx context.Context, cc kafka.ClientConfig, o Output, path string) (int, error) {
	if !o.Latest {
		return drainJSONL(ctx, cc, o.Topic.Name, path)
	}
	latest := map[string]json.RawMessage{}
	if _, err := kafka.Drain(ctx, cc, o.Topic.Name, 300*time.Millisecond, func(r *kgo.Record) error {
		latest[string(r.Key)] = append(json.RawMessage(nil), r.Value...)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("drain %s: %w", o.Topic.Name, err)
	}
	return len(latest), writeLatest(path, latest)
}

func drainJSONL(ctx context.Context, cc kafka.ClientConfig, topic, path string) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	n := 0
	_, err = kafka.Drain(ctx, cc, topic, 300*time.Millisecond, func(r *kgo.Record) error {
		n++
		w.Write(r.Value)
		return w.WriteByte('\n')
	})
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("drain %s: %w", topic, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

// writeLatest writes the last version of each incident, in id order.
func writeLatest(path string, latest map[string]json.RawMessage) error {
	ids := make([]string, 0, len(latest))
	for id := range latest {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, id := range ids {
		w.Write(latest[id])
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
