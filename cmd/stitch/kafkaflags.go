package main

import (
	"flag"
	"os"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/conf"
)

// addKafkaFlags registers the flags that say how to reach a Kafka cluster and
// returns the config they fill in once fs is parsed. Their names and help are
// those of the kafka.* config keys. Any TLS flag turns TLS on. The SASL
// password is never a flag, so that it does not show up in shell history or
// the process list: it comes from the key's environment variable.
func addKafkaFlags(fs *flag.FlagSet) *kafka.ClientConfig {
	password := appconfig.Key("kafka.sasl.password").Env
	c := &kafka.ClientConfig{SASL: kafka.SASLConfig{Password: os.Getenv(password)}}
	keyFunc := func(key, extra string, set func(string)) {
		name, usage := keyFlag(fs, key)
		fs.Func(name, usage+extra, func(s string) error { set(s); return nil })
	}
	keyBool := func(key, extra string, set func(bool)) {
		name, usage := keyFlag(fs, key)
		fs.BoolFunc(name, usage+extra, func(s string) error { set(s != "false"); return nil })
	}
	keyFunc("kafka.brokers", " Comma-separated.", func(s string) { c.Brokers = conf.SplitList(s) })
	keyBool("kafka.tls.enabled", "", func(on bool) { c.TLS.Enabled = on })
	tlsOn := func(set func(string)) func(string) {
		return func(s string) { c.TLS.Enabled = true; set(s) }
	}
	const implies = " Implies --tls."
	keyFunc("kafka.tls.ca_file", implies, tlsOn(func(s string) { c.TLS.CAFile = s }))
	keyFunc("kafka.tls.cert_file", implies, tlsOn(func(s string) { c.TLS.CertFile = s }))
	keyFunc("kafka.tls.key_file", implies, tlsOn(func(s string) { c.TLS.KeyFile = s }))
	keyFunc("kafka.tls.server_name", implies, tlsOn(func(s string) { c.TLS.ServerName = s }))
	keyBool("kafka.tls.insecure_skip_verify", implies, func(on bool) {
		c.TLS.InsecureSkipVerify = on
		c.TLS.Enabled = c.TLS.Enabled || on
	})
	keyFunc("kafka.sasl.mechanism", " The password comes from $"+password+".", func(s string) { c.SASL.Mechanism = s })
	keyFunc("kafka.sasl.username", "", func(s string) { c.SASL.Username = s })
	return c
}
