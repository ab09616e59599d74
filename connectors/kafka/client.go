package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ClientConfig is how stitch reaches a Kafka cluster. It is shared by the
// pipeline configuration file (yaml) and the command-line flags; its tags
// document each key (see internal/conf).
type ClientConfig struct {
	Brokers         []string   `yaml:"brokers" flag:"brokers" env:"STITCH_BROKERS" doc:"Seed brokers of a Kafka-compatible cluster ('host:port'). Empty starts the embedded broker in-process on loopback."`
	ClientID        string     `yaml:"client_id" default:"stitch" doc:"Client id prefix; each stage appends its name."`
	TLS             TLSConfig  `yaml:"tls"`
	SASL            SASLConfig `yaml:"sasl"`
	MaxMessageBytes int32      `yaml:"max_message_bytes" doc:"Largest record the producers send; 0 keeps the client default (1 MB). The cluster's 'message.max.bytes' must allow it."`
}

// TLSConfig enables TLS to the brokers. Files are PEM.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled" flag:"tls" doc:"Use TLS to the brokers."`
	CAFile             string `yaml:"ca_file" flag:"tls-ca" doc:"PEM file of the CA(s) to trust; empty uses the system pool."`
	CertFile           string `yaml:"cert_file" flag:"tls-cert" doc:"PEM client certificate for mutual TLS."`
	KeyFile            string `yaml:"key_file" flag:"tls-key" doc:"PEM key of the client certificate."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" flag:"tls-insecure" doc:"Do not verify the brokers' certificates (testing only)."`
	ServerName         string `yaml:"server_name" flag:"tls-server-name" doc:"Server name to verify, when it differs from the broker host."`
}

// SASLConfig authenticates to the brokers. The password is never a flag, so
// that it does not show up in shell history or the process list.
type SASLConfig struct {
	Mechanism string `yaml:"mechanism" flag:"sasl-mechanism" doc:"'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'; empty disables SASL. Event Hubs' Kafka endpoint uses 'PLAIN' with user '$ConnectionString'."`
	Username  string `yaml:"username" flag:"sasl-user" env:"STITCH_SASL_USERNAME" doc:"SASL user."`
	Password  string `yaml:"password" env:"STITCH_SASL_PASSWORD" doc:"SASL password; better set in the environment than written in a file."`
}

// Validate reports configuration mistakes without touching files or the
// network, so a bad config fails at startup with a message naming the field.
func (c ClientConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one host:port is required"))
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, errors.New("brokers: empty broker address"))
		}
	}
	if c.MaxMessageBytes < 0 {
		errs = append(errs, fmt.Errorf("max_message_bytes: %d is negative", c.MaxMessageBytes))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert_file and key_file must be given together"))
	}
	if c.SASL.Mechanism != "" {
		if _, err := saslMechanism(c.SASL.Mechanism, c.SASL.Username, c.SASL.Password); err != nil {
			errs = append(errs, err)
		}
		if c.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("sasl: mechanism %s needs a username", c.SASL.Mechanism))
		}
	}
	return errors.Join(errs...)
}

// Opts returns the franz-go options that connect and authenticate as
// configured. Callers append their own (consumer group, transactional ID).
func (c ClientConfig) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.MaxMessageBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(c.MaxMessageBytes))
	}
	if c.TLS.Enabled || c.TLS.CAFile != "" || c.TLS.CertFile != "" {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL.Mechanism != "" {
		m, err := saslMechanism(c.SASL.Mechanism, c.SASL.Username, c.SASL.Password)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// NewClient is a convenience for kgo.NewClient(c.Opts()..., extra...).
func (c ClientConfig) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", strings.Join(c.Brokers, ","), err)
	}
	return cl, nil
}

func (t TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit user opt-in for test clusters
		ServerName:         t.ServerName,
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load cert_file %s / key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// saslMechanism maps a mechanism name (case-insensitive) to franz-go's
// implementation.
func saslMechanism(name, user, pass string) (sasl.Mechanism, error) {
	switch strings.ToUpper(name) {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("sasl: unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", name)
	}
}

// Compressions are the producer batch compressions ParseCompression knows.
const Compressions = "lz4, zstd, snappy, gzip, none"

// ParseCompression is the producer batch compression named s (Kafka's
// compression.type: lz4, zstd, snappy, gzip or none).
func ParseCompression(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("%q is not one of %s", s, Compressions)
}
