// Package kafka is stitch's Kafka connector: the embedded Kafka-protocol
// broker (franz-go kfake) that stitch runs on by default, the client
// configuration shared by every command that talks to a cluster, topic
// administration, replay-file reading and producing, and draining a topic.
//
// Everything here speaks the real Kafka protocol over TCP, so the same code
// paths run against the embedded broker and against a production cluster.
package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultMaxMessageBytes is the embedded broker's message.max.bytes. It is far
// above Kafka's 1 MiB default so that an oversized input line (up to 64 MiB)
// still reaches the normalizer, which dead-letters it as too_large instead of
// the producer failing the whole replay.
const DefaultMaxMessageBytes = MaxLineBytes + 1<<20

// Broker is a running embedded Kafka-protocol cluster.
type Broker struct {
	c     *kfake.Cluster
	addrs []string
	once  sync.Once
}

type brokerConfig struct {
	listen     string
	dataDir    string
	numBrokers int
	partitions int
	logger     *slog.Logger
	maxMessage int
	sasl       []saslUser
	latency    time.Duration
	noFsync    bool
}

type saslUser struct{ mechanism, user, pass string }

// BrokerOption configures StartBroker.
type BrokerOption func(*brokerConfig)

// ProduceLatency delays every produce request by d before the broker
// handles it: a slow or distant cluster, to see that a slow downstream
// slows stitch down without losing or duplicating anything.
func ProduceLatency(d time.Duration) BrokerOption { return func(c *brokerConfig) { c.latency = d } }

// Listen sets the address of the first broker, "host:port". Port 0 picks any
// free port; with several brokers and a fixed port, broker i listens on
// port+i. The default is "127.0.0.1:0". The host is also the address the
// broker advertises in metadata, so it must be reachable by clients.
func Listen(addr string) BrokerOption {
	return func(c *brokerConfig) { c.listen = addr }
}

// DataDir makes the broker persist topics, records, committed offsets and
// transaction state in dir, with every produced batch fsynced before it is
// acknowledged, so a restart over the same dir resumes where it stopped.
// Without it the broker keeps everything in memory.
func DataDir(dir string) BrokerOption {
	return func(c *brokerConfig) { c.dataDir = dir }
}

// NoFsync makes a broker with a DataDir write every batch to its files
// before acknowledging it, as always, but fsync only on segment roll and
// close (Kafka's own default): the log survives its process being killed,
// not the machine losing power. For a broker embedded in the process whose
// data it holds, where an fsync per batch only costs.
func NoFsync() BrokerOption { return func(c *brokerConfig) { c.noFsync = true } }

// NumBrokers sets how many brokers the cluster has (default 1).
func NumBrokers(n int) BrokerOption {
	return func(c *brokerConfig) { c.numBrokers = n }
}

// DefaultPartitions sets the partition count of topics created with the
// broker default (-1) or auto-created (default 10).
func DefaultPartitions(n int) BrokerOption {
	return func(c *brokerConfig) { c.partitions = n }
}

// BrokerLogger routes the broker's logs to l (default: discarded).
func BrokerLogger(l *slog.Logger) BrokerOption {
	return func(c *brokerConfig) { c.logger = l }
}

// MaxMessageBytes sets the broker's message.max.bytes (default
// DefaultMaxMessageBytes).
func MaxMessageBytes(n int) BrokerOption {
	return func(c *brokerConfig) { c.maxMessage = n }
}

// SASLUser requires SASL authentication and adds a superuser with the given
// mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512). Repeat it for more users.
func SASLUser(mechanism, user, pass string) BrokerOption {
	return func(c *brokerConfig) { c.sasl = append(c.sasl, saslUser{mechanism, user, pass}) }
}

// StartBroker starts an embedded cluster and returns once it accepts
// connections. Transactions and read-committed fetches are supported.
func StartBroker(opts ...BrokerOption) (*Broker, error) {
	cfg := brokerConfig{listen: "127.0.0.1:0", numBrokers: 1, maxMessage: DefaultMaxMessageBytes}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.numBrokers < 1 {
		return nil, fmt.Errorf("start broker: need at least one broker, got %d", cfg.numBrokers)
	}
	host, portStr, err := net.SplitHostPort(cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("start broker: listen address %q: %w", cfg.listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("start broker: listen address %q: bad port", cfg.listen)
	}

	kopts := []kfake.Opt{
		kfake.NumBrokers(cfg.numBrokers),
		// Each new cluster has an id of its own (one restarted over its
		// DataDir keeps the one it persisted), so state recorded against
		// one embedded broker is told apart from another's.
		kfake.ClusterID(newClusterID()),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(cfg.maxMessage)}),
		// kfake always listens on 127.0.0.1:<port>; we substitute the
		// configured host and hand out consecutive ports when fixed.
		kfake.ListenFn(listenOn(host, port)),
	}
	if cfg.partitions > 0 {
		kopts = append(kopts, kfake.DefaultNumPartitions(cfg.partitions))
	}
	if cfg.dataDir != "" {
		kopts = append(kopts, kfake.DataDir(cfg.dataDir))
		if !cfg.noFsync {
			kopts = append(kopts, kfake.SyncWrites())
		}
	}
	if cfg.logger != nil {
		kopts = append(kopts, kfake.WithLogger(slogAdapter{cfg.logger}))
	}
	if len(cfg.sasl) > 0 {
		kopts = append(kopts, kfake.EnableSASL())
		for _, u := range cfg.sasl {
			if _, err := saslMechanism(u.mechanism, u.user, u.pass); err != nil {
				return nil, fmt.Errorf("start broker: %w", err)
			}
			kopts = append(kopts, kfake.Superuser(strings.ToUpper(u.mechanism), u.user, u.pass))
		}
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("start broker on %s: %w", cfg.listen, err)
	}
	if d := cfg.latency; d > 0 {
		c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			c.SleepControl(func() { time.Sleep(d) }) // other connections go on meanwhile
			return nil, nil, false                   // then the broker handles it as usual
		})
	}
	return &Broker{c: c, addrs: c.ListenAddrs()}, nil
}

// newClusterID is a random cluster id, "stitch-" and 16 hex digits.
func newClusterID() string {
	var b [8]byte
	rand.Read(b[:])
	return "stitch-" + hex.EncodeToString(b[:])
}

// listenOn returns a kfake listen function binding host, with port, port+1,
// ... for successive brokers when port is fixed, or any free port when 0.
func listenOn(host string, port int) func(network, address string) (net.Listener, error) {
	var mu sync.Mutex
	next := port
	return func(network, _ string) (net.Listener, error) {
		mu.Lock()
		p := next
		if next != 0 {
			next++
		}
		mu.Unlock()
		return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(p)))
	}
}

// Addrs returns the brokers' host:port addresses, to be used as seed brokers.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Close stops the cluster, persisting its state when it has a DataDir. It is
// safe to call more than once.
func (b *Broker) Close() {
	b.once.Do(b.c.Close)
}

// slogAdapter feeds kfake's printf-style logs into slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelInfo
	case kfake.LogLevelDebug:
		lv = slog.LevelDebug
	default:
		return
	}
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	a.l.Log(ctx, lv, fmt.Sprintf(msg, args...), "component", "broker")
}
