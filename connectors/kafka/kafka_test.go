package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startBroker(t *testing.T, opts ...BrokerOption) *Broker {
	t.Helper()
	b, err := StartBroker(opts...)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func newClient(t *testing.T, cfg ClientConfig, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := cfg.NewClient(extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func drainValues(t *testing.T, ctx context.Context, cfg ClientConfig, topic string) []string {
	t.Helper()
	var got []string
	if _, err := Drain(ctx, cfg, topic, 150*time.Millisecond, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	}); err != nil {
		t.Fatalf("drain %s: %v", topic, err)
	}
	sort.Strings(got)
	return got
}

func produceSync(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, values ...string) {
	t.Helper()
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %q: %v", v, err)
		}
	}
}

func TestBrokerRestartOverDataDirKeepsRecords(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	b, err := StartBroker(DataDir(dir), DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	cfg := ClientConfig{Brokers: b.Addrs()}
	cl, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, cl, TopicSpec{Name: "signals", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produceSync(t, ctx, cl, "signals", `{"a":1}`, `{"a":2}`)
	cl.Close()
	b.Close()
	b.Close() // idempotent

	b2 := startBroker(t, DataDir(dir))
	got := drainValues(t, ctx, ClientConfig{Brokers: b2.Addrs()}, "signals")
	if want := []string{`{"a":1}`, `{"a":2}`}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart got %v, want %v", got, want)
	}
}

func TestListenFixedPortsAndBadAddress(t *testing.T) {
	if _, err := StartBroker(Listen("nonsense")); err == nil {
		t.Fatal("want an error for a listen address without a port")
	}
	b := startBroker(t, NumBrokers(2))
	if len(b.Addrs()) != 2 || !strings.HasPrefix(b.Addrs()[0], "127.0.0.1:") {
		t.Fatalf("addrs %v", b.Addrs())
	}
}

func TestEnsureTopicsIdempotentWithConfigs(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	cl := newClient(t, ClientConfig{Brokers: b.Addrs()})
	specs := []TopicSpec{
		{Name: "signals", Partitions: 3},
		{Name: "incidents", Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
	}
	for i := 0; i < 2; i++ {
		if err := EnsureTopics(ctx, cl, specs...); err != nil {
			t.Fatalf("ensure topics, round %d: %v", i, err)
		}
	}
	// Asking for more partitions than exist warns and leaves the topic alone.
	if err := EnsureTopics(ctx, cl, TopicSpec{Name: "signals", Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, "signals")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td["signals"].Partitions); n != 3 {
		t.Fatalf("signals has %d partitions, want 3", n)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "incidents")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("incidents", nil)
	if err != nil {
		t.Fatal(err)
	}
	var policy string
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		t.Fatalf("cleanup.policy = %q, want compact", policy)
	}
	// The broker refuses three replicas on a one-broker cluster.
	err = EnsureTopics(ctx, cl, TopicSpec{Name: "bad", Partitions: 1, ReplicationFactor: 3})
	if err == nil || !strings.Contains(err.Error(), "create topic bad") || !strings.Contains(err.Error(), "REPLICATION_FACTOR") {
		t.Fatalf("want an error naming the topic and the broker's reason, got %v", err)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, path string) []string {
	t.Helper()
	var got []string
	if err := ReadRecords(path, func(v []byte) error {
		got = append(got, string(v))
		return nil
	}); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return got
}

func gz(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadRecordsFormats(t *testing.T) {
	lines := "{\"tenantId\":\"t1\",\"a\":1}\r\n\n   \n{\"tenantId\":\"t2\"}\nnot json at all\n[1,2]\n{\"last\":true}"
	wantLines := []string{`{"tenantId":"t1","a":1}`, `{"tenantId":"t2"}`, `not json at all`, `[1,2]`, `{"last":true}`}
	envelope := "{\n  \"records\": [\n    {\"tenantId\": \"t1\", \"x\": 1},\n    {\"tenantId\": \"t2\"}\n  ]\n}\n"
	tests := []struct {
		name string
		file string
		data []byte
		want []string
	}{
		{"json lines", "a.json", []byte(lines), wantLines},
		{"json lines gz", "a.json.gz", gz(t, []byte(lines)), wantLines},
		{"array", "b.json", []byte("[\n {\"a\": 1},\n {\"b\": [1, 2]},\n \"x\"\n]\n"), []string{`{"a":1}`, `{"b":[1,2]}`, `"x"`}},
		{"one-line array", "c.json", []byte(`[{"a":1},{"a":2}]`), []string{`{"a":1}`, `{"a":2}`}},
		{"envelope", "d.json", []byte(envelope), []string{`{"records":[{"tenantId":"t1","x":1},{"tenantId":"t2"}]}`}},
		{"envelope gz", "d.json.gz", gz(t, []byte(envelope)), []string{`{"records":[{"tenantId":"t1","x":1},{"tenantId":"t2"}]}`}},
		{"broken multi-line object falls back to lines", "e.json", []byte("{\n\"a\":\n"), []string{`{`, `"a":`}},
		{"empty", "f.json", nil, nil},
		// Windows tools start files with a UTF-8 byte order mark.
		{"array after a BOM", "g.json", []byte("\uFEFF[\n {\"a\": 1},\n {\"b\": 2}\n]\n"), []string{`{"a":1}`, `{"b":2}`}},
		{"array after a BOM gz", "g.json.gz", gz(t, []byte("\uFEFF[\n {\"a\": 1}\n]\n")), []string{`{"a":1}`}},
		{"lines after a BOM", "h.json", []byte("\uFEFF{\"a\":1}\n{\"b\":2}\n"), []string{`{"a":1}`, `{"b":2}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, writeFile(t, tc.file, tc.data))
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReadRecordsPassesLongLinesWhole(t *testing.T) {
	big := `{"tenantId":"t1","blob":"` + strings.Repeat("x", 2<<20) + `"}`
	got := readAll(t, writeFile(t, "big.json", []byte(`{"small":1}`+"\n"+big+"\n"+`{"small":2}`+"\n")))
	if len(got) != 3 || got[1] != big || got[2] != `{"small":2}` {
		t.Fatalf("got %d records, middle one %d bytes; want the 2 MiB line passed whole between the small ones", len(got), len(got[1]))
	}
	if err := ReadRecords(filepath.Join(t.TempDir(), "missing.json"), func([]byte) error { return nil }); err == nil {
		t.Fatal("want an error for a missing file")
	}
	stop := errors.New("stop")
	if err := ReadRecords(writeFile(t, "x.json", []byte("1\n2\n")), func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("want the callback's error back, got %v", err)
	}
}

func TestTenantKey(t *testing.T) {
	for in, want := range map[string]string{
		`{"tenantId":"t1","properties":{}}`:                "t1",
		`{"records":[{"tenantId":"t2"},{"tenantId":"x"}]}`: "t2",
		`{"records":[]}`: "",
		`not json`:       "",
		`{"tenantId":5}`: "",
	} {
		if got := string(TenantKey([]byte(in))); got != want {
			t.Errorf("TenantKey(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestProduceFilesAndDrainRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	cfg := ClientConfig{Brokers: b.Addrs(), ClientID: "stitch-test"}
	cl := newClient(t, cfg)
	if err := EnsureTopics(ctx, cl, TopicSpec{Name: "signals", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&lines, `{"tenantId":"tenant-%d","i":%d}`+"\n", i%5, i)
	}
	f1 := writeFile(t, "a.json", []byte(lines.String()))
	f2 := writeFile(t, "b.json.gz", gz(t, []byte("[{\"tenantId\":\"tenant-9\",\"i\":300},{\"i\":301}]")))
	var progress []int64
	n, err := ProduceFiles(ctx, cl, "signals", []string{f1, f2}, KeyByTenant(), Progress(func(n int64) { progress = append(progress, n) }), MaxInFlightBytes(1024))
	if err != nil || n != 302 {
		t.Fatalf("produced %d, err %v; want 302", n, err)
	}
	if len(progress) == 0 || progress[len(progress)-1] != 302 {
		t.Fatalf("progress %v should end at 302", progress)
	}

	partOf := map[string]int32{}
	count := 0
	got, err := Drain(ctx, cfg, "signals", 150*time.Millisecond, func(r *kgo.Record) error {
		count++
		key := string(r.Key)
		if key == "" {
			if string(r.Value) != `{"i":301}` {
				t.Errorf("record without tenant got no key but should have: %s", r.Value)
			}
			return nil
		}
		if !strings.Contains(string(r.Value), `"tenantId":"`+key+`"`) {
			t.Errorf("key %q does not match value %s", key, r.Value)
		}
		if p, ok := partOf[key]; ok && p != r.Partition {
			t.Errorf("tenant %s spread over partitions %d and %d", key, p, r.Partition)
		}
		partOf[key] = r.Partition
		return nil
	})
	if err != nil || got != 302 || count != 302 {
		t.Fatalf("drained %d (%d callbacks), err %v; want 302", got, count, err)
	}

	lag, err := Lag(ctx, cl, "nobody", "signals")
	if err != nil || lag != 302 {
		t.Fatalf("lag of a group that never committed = %d, %v; want 302", lag, err)
	}
}

func TestProduceFilesLargeRecords(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	big := writeFile(t, "big.json", []byte(`{"blob":"`+strings.Repeat("x", 2<<20)+`"}`+"\n"))
	small := newClient(t, ClientConfig{Brokers: b.Addrs()})
	if err := EnsureTopics(ctx, small, TopicSpec{Name: "signals", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ProduceFiles(ctx, small, "signals", []string{big}); err == nil || !strings.Contains(err.Error(), "max_message_bytes") {
		t.Fatalf("a 2 MiB record with the default 1 MiB limit should fail with a hint, got %v", err)
	}
	// With the limit raised, the embedded broker takes it whole.
	large := newClient(t, ClientConfig{Brokers: b.Addrs(), MaxMessageBytes: 4 << 20})
	if n, err := ProduceFiles(ctx, large, "signals", []string{big}); err != nil || n != 1 {
		t.Fatalf("produced %d, %v", n, err)
	}
}

func TestProduceFilesReportsMissingFile(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	cl := newClient(t, ClientConfig{Brokers: b.Addrs()})
	_, err := ProduceFiles(ctx, cl, "signals", []string{filepath.Join(t.TempDir(), "nope.json")})
	if err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("want an error naming the missing file, got %v", err)
	}
}

func TestReadCommittedSkipsAbortedTransactions(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	cfg := ClientConfig{Brokers: b.Addrs()}
	admCl := newClient(t, cfg)
	if err := EnsureTopics(ctx, admCl, TopicSpec{Name: "alerts", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	tx := newClient(t, cfg, kgo.TransactionalID("stitch-test-tx"), kgo.DefaultProduceTopic("alerts"))
	run := func(commit bool, values ...string) {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produceSync(t, ctx, tx, "alerts", values...)
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit=%v): %v", commit, err)
		}
	}
	run(true, "committed-1")
	run(false, "aborted-1", "aborted-2")
	run(true, "committed-2")
	run(false, "aborted-3") // the log ends in an abort marker

	got := drainValues(t, ctx, cfg, "alerts")
	if want := []string{"committed-1", "committed-2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read-committed drain got %v, want %v", got, want)
	}
}

func TestSASLMechanisms(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t,
		SASLUser("PLAIN", "plainuser", "p1"),
		SASLUser("SCRAM-SHA-256", "scram256", "p2"),
		SASLUser("SCRAM-SHA-512", "scram512", "p3"),
	)
	for _, s := range []SASLConfig{
		{Mechanism: "PLAIN", Username: "plainuser", Password: "p1"},
		{Mechanism: "scram-sha-256", Username: "scram256", Password: "p2"},
		{Mechanism: "SCRAM-SHA-512", Username: "scram512", Password: "p3"},
	} {
		cl := newClient(t, ClientConfig{Brokers: b.Addrs(), SASL: s})
		if err := EnsureTopics(ctx, cl, TopicSpec{Name: "t-" + strings.ToLower(s.Mechanism), Partitions: 1}); err != nil {
			t.Fatalf("%s: %v", s.Mechanism, err)
		}
	}
	badCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	bad := newClient(t, ClientConfig{Brokers: b.Addrs(), SASL: SASLConfig{Mechanism: "PLAIN", Username: "plainuser", Password: "wrong"}})
	if err := bad.Ping(badCtx); err == nil {
		t.Fatal("a wrong password must not authenticate")
	}
}

func TestClientConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  ClientConfig
		want string
	}{
		{ClientConfig{}, "brokers"},
		{ClientConfig{Brokers: []string{"x:1"}, SASL: SASLConfig{Mechanism: "GSSAPI", Username: "u"}}, `unknown mechanism "GSSAPI"`},
		{ClientConfig{Brokers: []string{"x:1"}, SASL: SASLConfig{Mechanism: "PLAIN"}}, "needs a username"},
		{ClientConfig{Brokers: []string{"x:1"}, TLS: TLSConfig{CertFile: "c.pem"}}, "cert_file and key_file"},
		{ClientConfig{Brokers: []string{"x:1"}, TLS: TLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"}}, "ca_file"},
	} {
		_, err := tc.cfg.Opts()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Opts(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	opts, err := ClientConfig{Brokers: []string{"x:1"}, TLS: TLSConfig{Enabled: true}, SASL: SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"}}.Opts()
	if err != nil || len(opts) != 3 {
		t.Fatalf("opts %d, err %v", len(opts), err)
	}
}

// Every kafka.compression a producer may be given round-trips through the
// embedded broker, on a compacted topic as the changelogs are, with each
// record's key (a tenant) still on its own value; a name Kafka does not
// know is refused, naming the ones it does.
func TestCompressionRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t)
	cfg := ClientConfig{Brokers: b.Addrs()}
	adm := newClient(t, cfg)
	for _, name := range strings.Split(Compressions, ", ") {
		codec, err := ParseCompression(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		topic := "changelog-" + name
		if err := EnsureTopics(ctx, adm, TopicSpec{Name: topic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}}); err != nil {
			t.Fatal(err)
		}
		cl := newClient(t, cfg, kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(50*time.Millisecond))
		want := map[string]string{}
		var recs []*kgo.Record
		for i := range 200 {
			tenant := fmt.Sprintf("tenant-%d", i%2)
			v := fmt.Sprintf("%s %s %03d %s", name, tenant, i, strings.Repeat("sighting ", 20))
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("%s/%03d", tenant, i)), Value: []byte(v)})
			want[fmt.Sprintf("%s/%03d", tenant, i)] = v
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("%s: produce: %v", name, err)
		}
		got := map[string]string{}
		if _, err := Drain(ctx, cfg, topic, 150*time.Millisecond, func(r *kgo.Record) error {
			got[string(r.Key)] = string(r.Value)
			return nil
		}); err != nil {
			t.Fatalf("%s: drain: %v", name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: read back %d records, not the %d written with their keys", name, len(got), len(want))
		}
	}
	for _, bad := range []string{"", "LZ4", "brotli", "lz4 ", "none,lz4"} {
		if _, err := ParseCompression(bad); err == nil || !strings.Contains(err.Error(), Compressions) {
			t.Errorf("ParseCompression(%q) = %v, want an error naming %s", bad, err, Compressions)
		}
	}
}
