package main

import (
	"flag"
	"os"
	"strings"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// saslPasswordEnv holds the SASL password. It is never a flag, so that it
// does not show up in shell history or the process list.
const saslPasswordEnv = "STITCH_SASL_PASSWORD"

// addKafkaFlags registers the flags that say how to reach a Kafka cluster and
// returns the config they fill in once fs is parsed. Any TLS flag turns TLS on.
func addKafkaFlags(fs *flag.FlagSet) *kafka.ClientConfig {
	c := &kafka.ClientConfig{SASL: kafka.SASLConfig{Password: os.Getenv(saslPasswordEnv)}}
	fs.Func("brokers", "Kafka seed brokers, host:port[,host:port...]", func(s string) error {
		c.Brokers = c.Brokers[:0]
		for _, b := range strings.Split(s, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.Brokers = append(c.Brokers, b)
			}
		}
		return nil
	})
	tlsOn := func(set func(string)) func(string) error {
		return func(s string) error { c.TLS.Enabled = true; set(s); return nil }
	}
	fs.BoolFunc("tls", "connect to the brokers over TLS", func(s string) error {
		c.TLS.Enabled = s != "false"
		return nil
	})
	fs.Func("tls-ca", "PEM file of the CA that signed the brokers' certificates (implies --tls)", tlsOn(func(s string) { c.TLS.CAFile = s }))
	fs.Func("tls-cert", "PEM client certificate for mutual TLS (implies --tls)", tlsOn(func(s string) { c.TLS.CertFile = s }))
	fs.Func("tls-key", "PEM client key for mutual TLS (implies --tls)", tlsOn(func(s string) { c.TLS.KeyFile = s }))
	fs.Func("tls-server-name", "server name to verify the brokers' certificates against (implies --tls)", tlsOn(func(s string) { c.TLS.ServerName = s }))
	fs.BoolFunc("tls-insecure", "do not verify the brokers' certificates (test clusters only; implies --tls)", func(s string) error {
		c.TLS.InsecureSkipVerify = s != "false"
		c.TLS.Enabled = c.TLS.Enabled || c.TLS.InsecureSkipVerify
		return nil
	})
	fs.StringVar(&c.SASL.Mechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from $"+saslPasswordEnv+")")
	fs.StringVar(&c.SASL.Username, "sasl-user", "", "SASL user name")
	return c
}
