package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/httpapi"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "run",
		summary:  "Run the pipeline until Ctrl-C: on an embedded broker fed by the built-in simulator by default, or on a Kafka cluster with --brokers.",
		synopsis: "[--config FILE] [--brokers HOST:PORT,...] [flags]",
		details:  "With no --brokers, an embedded Kafka-protocol broker keeps its log in <state-dir>/broker and the\nsimulator plants attack stories; the progress line says how many incidents exist.\nSee them with 'stitch incidents' while it runs.",
		example:  "stitch run\nstitch run --brokers b1:9092 --tls --sasl-mechanism SCRAM-SHA-512 --sasl-user stitch --config configs/stitch.yaml",
		run:      runCmd,
	})
}

// pipelineFlags are the flags run and replay share: a config file and the
// keys people most often override on the command line.
type pipelineFlags struct {
	config string
	keys   keyFlags
}

func (f *pipelineFlags) add(fs *flag.FlagSet, keys ...string) {
	fs.StringVar(&f.config, "config", "", "YAML config file (see configs/README.md); defaults need none")
	f.keys.add(fs, append([]string{"state.dir", "log.level", "kafka.group"}, keys...)...)
}

// load builds the config: defaults, then the file, then the environment,
// then flags.
func (f *pipelineFlags) load() (appconfig.Config, error) {
	cfg := appconfig.Default()
	if f.config != "" {
		var err error
		if cfg, err = appconfig.Load(f.config); err != nil {
			return cfg, err
		}
	}
	if err := conf.ApplyEnv(&cfg, os.Getenv); err != nil {
		return cfg, err
	}
	return cfg, f.keys.apply(&cfg)
}

// validate reports every wrong key of cfg, one a line, as run and
// topology refuse it.
func validate(cfg appconfig.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config:\n%w", err)
	}
	return nil
}

func runCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("run")
	var pf pipelineFlags
	pf.add(fs, "state.reset", "http.addr", "simulate.mode", "simulate.rate")
	kc := addKafkaFlags(fs)
	brokerData := fs.String("broker-data", "", "directory of the embedded broker's log (default <state-dir>/broker, so a restart continues where it stopped; 'memory' keeps it in memory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := pf.load()
	if err != nil {
		return err
	}
	mergeKafkaFlags(&cfg, fs, kc)
	log, err := newLogger(cfg.Log)
	if err != nil {
		return err
	}
	if err := validate(cfg); err != nil {
		return err
	}

	var opts []pipeline.Option
	brokers := cfg.Kafka.Brokers
	if cfg.Embedded() {
		bopts := []kafka.BrokerOption{kafka.Listen("127.0.0.1:0"), kafka.DefaultPartitions(int(cfg.Topics.Partitions))}
		switch dir := *brokerData; dir {
		case "memory":
		case "":
			dir = filepath.Join(cfg.State.Dir, "broker")
			fallthrough
		default:
			bopts = append(bopts, kafka.DataDir(dir), kafka.NoFsync())
		}
		b, err := kafka.StartBroker(bopts...)
		if err != nil {
			return fmt.Errorf("start embedded broker: %w", err)
		}
		defer b.Close()
		brokers = b.Addrs()
		fmt.Fprintf(os.Stderr, "stitch: embedded Kafka-protocol broker on %s\n", strings.Join(brokers, ","))
	}
	opts = append(opts, pipeline.WithBrokers(brokers), pipeline.WithLogger(log))
	p, err := pipeline.New(cfg.Config, opts...)
	if err != nil {
		return err
	}
	hopts := []httpapi.Option{httpapi.Logger(log),
		httpapi.Ready(func() (bool, string) {
			if !p.Ready() {
				return false, "stages have not joined their groups yet"
			}
			return true, ""
		}),
		httpapi.Status(func() any { return p.Totals() })}
	api, closeAPI, err := newAPI(cfg, p, log)
	if err != nil {
		return err
	}
	defer closeAPI()
	hopts = append(hopts, httpapi.WithAPI(api))
	if cfg.HTTP.Pprof { // admin tokens, or loopback without tokens (Validate)
		hopts = append(hopts, httpapi.Pprof(api))
	}
	srv, err := httpapi.Listen(cfg.HTTP.Addr, p.Metrics().Registry, hopts...)
	if err != nil {
		return fmt.Errorf("http.addr (--http, $%s): %w", appconfig.Key("http.addr").Env, err)
	}
	defer srv.Close()
	fmt.Fprintf(os.Stderr, "stitch: metrics on http://%s/metrics, state in %s\n", srv.Addr(), cfg.State.Dir)
	announceAPI(srv.Addr(), api.Tokens.Len())
	if cfg.HTTP.Pprof {
		fmt.Fprintf(os.Stderr, "stitch: profiler on http://%s/debug/pprof/\n", srv.Addr())
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := p.EnsureTopics(runCtx); err != nil {
		return err
	}
	// Where the other commands (stitch incidents, deadletters) find the
	// brokers of this run while it runs.
	bpath := filepath.Join(cfg.State.Dir, brokersFile)
	if err := os.WriteFile(bpath, []byte(strings.Join(brokers, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer os.Remove(bpath)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	go announceIncidents(runCtx, p, cfg, len(cfg.Kafka.Brokers) == 0)
	go p.Progress(runCtx, os.Stderr, cfg.Log.ProgressEvery.D())
	if cfg.Simulating() {
		fmt.Fprintf(os.Stderr, "stitch: simulator producing %d records/s into %s (%s, %s, %s)\n",
			cfg.Simulate.Rate, cfg.Topics.Inputs[0], english.Count(cfg.Simulate.Tenants, "tenant"), english.Count(cfg.Simulate.Devices, "device"), english.Count(cfg.Simulate.Users, "user"))
		go func() {
			if err := runSimulator(runCtx, p, cfg); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("simulator stopped", "err", err)
			}
		}()
	}
	start := time.Now()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "stitch: stopping: committing work in flight")
		cancel()
		runErr = <-done
	}
	s := p.Totals()
	fmt.Fprintf(os.Stderr, "stitch: ran %s: read %s, normalized %s, dead-lettered %d, published %s, wrote %s\n",
		time.Since(start).Round(time.Millisecond), english.Count(s.RecordsRead, "record"), english.Count(s.NormalizedTotal(), "row"), s.DeadTotal(),
		english.Count(s.IncidentVersions, "incident version"), english.Count(s.HuntingTotal(), "Parquet row"))
	if errors.Is(runErr, pipeline.ErrStateMismatch) && cfg.Embedded() && *brokerData == "memory" {
		runErr = fmt.Errorf("%w.\n--broker-data memory starts an empty broker, a new cluster, on every run: without it the broker keeps its log "+
			"under the state directory and a restart continues", runErr)
	}
	return runErr
}

// announceIncidents says, once, how to see the incidents: on an embedded
// broker that kept earlier runs' incidents (a restart), how many there are
// (the progress line counts this run's new ones); otherwise when the first
// one is published.
func announceIncidents(ctx context.Context, p *pipeline.Pipeline, cfg appconfig.Config, embedded bool) {
	if embedded {
		kc := cfg.Kafka.ClientConfig
		kc.Brokers = p.Brokers()
		if incs, err := readIncidents(ctx, kc, cfg.Topics.Incidents); err == nil && len(incs) > 0 {
			fmt.Fprintf(os.Stderr, "stitch: %s from earlier runs on this state directory: see them with 'stitch incidents' "+
				"(the progress line counts the new ones)\n", english.Count(len(incs), "incident"))
			return
		}
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.Totals().IncidentVersions > 0 {
			fmt.Fprintln(os.Stderr, "stitch: the first incident is out: see it with 'stitch incidents' (and 'stitch incidents show ID')")
			return
		}
	}
}

// runSimulator produces the simulator's stream into the first input topic at the
// configured rate, keyed by tenant, until ctx is done.
func runSimulator(ctx context.Context, p *pipeline.Pipeline, cfg appconfig.Config) error {
	ccfg := cfg.Kafka.ClientConfig
	ccfg.Brokers = p.Brokers()
	kopts, err := ccfg.Opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ClientID("stitch-simulator"), kgo.DefaultProduceTopic(cfg.Topics.Inputs[0]))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	sim := simulator.New(
		simulator.Seed(uint64(cfg.Simulate.Seed)),
		simulator.Tenants(cfg.Simulate.Tenants),
		simulator.Devices(cfg.Simulate.Devices),
		simulator.Users(cfg.Simulate.Users),
		simulator.Start(time.Now().Add(-time.Minute).UTC()),
		simulator.EventsPerSecond(float64(cfg.Simulate.Rate)),
		simulator.AttackEvery(max(1, int(cfg.Simulate.AttackEvery.D().Seconds()*float64(cfg.Simulate.Rate)))),
		// The first story at once, so the first incident shows within
		// seconds rather than after a story's few minutes.
		simulator.AttackAtStart(),
	)
	const tick = 50 * time.Millisecond
	perTick := max(1, cfg.Simulate.Rate*int(tick)/int(time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for range perTick {
			k, v := sim.Next(nil)
			cl.Produce(ctx, &kgo.Record{Key: k, Value: v}, nil)
		}
	}
}

// mergeKafkaFlags lets command-line Kafka flags win over the config file,
// only for the flags actually given.
func mergeKafkaFlags(cfg *appconfig.Config, fs *flag.FlagSet, kc *kafka.ClientConfig) {
	fs.Visit(func(f *flag.Flag) {
		switch {
		case f.Name == "brokers":
			cfg.Kafka.Brokers = kc.Brokers
		case strings.HasPrefix(f.Name, "tls"):
			cfg.Kafka.TLS = kc.TLS
		case strings.HasPrefix(f.Name, "sasl"):
			pw := cfg.Kafka.SASL.Password
			cfg.Kafka.SASL = kc.SASL
			if cfg.Kafka.SASL.Password == "" {
				cfg.Kafka.SASL.Password = pw
			}
		}
	})
}

func newLogger(lc appconfig.LogConfig) (*slog.Logger, error) {
	l, err := lc.Logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(l)
	return l, nil
}
