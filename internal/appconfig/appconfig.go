// Package appconfig is the configuration of the stitch binary: the
// pipeline's keys (pipeline.Config) and the settings only the binary uses
// (the HTTP endpoint, the simulator, logging), read from one YAML file.
//
// Every key is described once, by the tags of its field (see internal/conf):
// the defaults, the flag help, configs/stitch.yaml and the key tables of
// configs/README.md all come from them. After adding or changing a key, run
// go generate ./internal/appconfig; TestGeneratedFilesInStep fails until then.
package appconfig

//go:generate go run ./gen ../../configs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/pipeline"
)

// Config is the whole file: the pipeline's keys at the top level, next to the
// binary's own sections.
type Config struct {
	pipeline.Config `yaml:",inline"`
	HTTP            HTTPConfig     `yaml:"http"`
	Auth            AuthConfig     `yaml:"auth"`
	Simulate        SimulateConfig `yaml:"simulate"`
	Log             LogConfig      `yaml:"log"`
}

// HTTPConfig is the operational endpoint.
type HTTPConfig struct {
	Addr  string `yaml:"addr" default:"127.0.0.1:8080" flag:"http" env:"STITCH_HTTP_ADDR" doc:"Address of '/metrics', '/healthz', '/readyz' and '/status'."`
	Pprof bool   `yaml:"pprof" default:"false" doc:"Serve Go's profiler (net/http/pprof) under '/debug/pprof/' on http.addr. Only admin tokens (auth.tokens) may read it; with no tokens it is refused unless http.addr is a loopback address, and answers only loopback requests."`
}

// AuthConfig is who may use the API (/api/) on http.addr, and what each
// may see and do (internal/auth, docs/API.md).
type AuthConfig struct {
	Tokens       []auth.Token       `yaml:"tokens" doc:"The API's bearer tokens: each a name (recorded with its changes and decisions), a role ('viewer', 'analyst', 'responder' or 'admin'), its tenants ('*': all), optional device_groups, and the token's sha256; 'stitch token create' prints an entry. None: the API answers only on loopback, as admin."`
	DeviceGroups []auth.DeviceGroup `yaml:"device_groups" doc:"Device groups a token may be limited to: each a name and its devices (name patterns such as 'ws-*'). A token with device_groups sees only the incidents, actions and entities that touch a device of its groups, and cannot hunt."`
}

// SimulateConfig drives the built-in signal simulator.
type SimulateConfig struct {
	Mode        string            `yaml:"mode" default:"auto" flag:"simulate" doc:"Run the built-in signal simulator: 'auto' (only on the embedded broker), 'true' or 'false'."`
	Rate        int               `yaml:"rate" default:"2000" flag:"rate" doc:"Records per second."`
	Tenants     int               `yaml:"tenants" default:"2" doc:"Tenants simulated."`
	Devices     int               `yaml:"devices" default:"300" doc:"Devices per tenant."`
	Users       int               `yaml:"users" default:"200" doc:"Users per tenant."`
	Seed        int64             `yaml:"seed" default:"1" doc:"Seed: the same seed gives the same stream."`
	AttackEvery pipeline.Duration `yaml:"attack_every" default:"30s" doc:"How often an attack story starts (phish to endpoint, identity compromise, in turn); a story unfolds over a few minutes of stream time, so incidents appear a few minutes after start."`
}

// LogConfig configures log/slog and the progress line.
type LogConfig struct {
	Level         string            `yaml:"level" default:"warn" flag:"log-level" doc:"'debug', 'info', 'warn' or 'error'."`
	Format        string            `yaml:"format" default:"text" doc:"'text' or 'json' (log/slog handlers, on stderr)."`
	ProgressEvery pipeline.Duration `yaml:"progress_every" default:"5s" doc:"Interval of the progress line on stderr; '0s' turns it off."`
}

// Default is the configuration of a run with no config file: the default
// tags of every key, the pipeline's included (so Default().Config is
// pipeline.Default()).
func Default() Config { return conf.Default[Config]() }

// Load reads a YAML config file over the defaults. The file is strict: an
// unknown key is an error that names it and its line.
func Load(path string) (Config, error) { return conf.Load[Config](path) }

// Key is the description of the key at a dotted path (its doc, default,
// flag); a path no field has panics, as it is a mistake in the source.
func Key(path string) conf.Key { return conf.MustLookup(Config{}, path) }

// Simulating resolves the simulate mode against the broker choice.
func (c *Config) Simulating() bool {
	switch strings.ToLower(c.Simulate.Mode) {
	case "true", "on", "yes":
		return true
	case "false", "off", "no":
		return false
	}
	return c.Embedded()
}

// Validate reports every problem at once, each naming its key: the
// pipeline's, then the binary's.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	bad := func(key, why string) { errs = append(errs, fmt.Errorf("%s: %s", key, why)) }
	switch strings.ToLower(c.Simulate.Mode) {
	case "auto", "true", "false", "on", "off", "yes", "no":
	default:
		bad("simulate.mode", fmt.Sprintf("%q is not one of auto, true, false", c.Simulate.Mode))
	}
	for _, r := range []struct {
		key    string
		v      int64
		lo, hi int64
	}{
		{"simulate.rate", int64(c.Simulate.Rate), 1, 1_000_000},
		{"simulate.tenants", int64(c.Simulate.Tenants), 1, 1000},
		{"simulate.devices", int64(c.Simulate.Devices), 1, 1_000_000},
		{"simulate.users", int64(c.Simulate.Users), 1, 1_000_000},
	} {
		if r.v < r.lo || r.v > r.hi {
			bad(r.key, fmt.Sprintf("%d is out of range: must be between %d and %d", r.v, r.lo, r.hi))
		}
	}
	if c.Simulate.AttackEvery.D() < time.Second {
		bad("simulate.attack_every", fmt.Sprintf("%s is out of range: must be at least 1s", c.Simulate.AttackEvery))
	}
	if err := auth.Validate(c.Auth.Tokens, c.Auth.DeviceGroups); err != nil {
		errs = append(errs, err)
	}
	if err := c.HTTP.validatePprof(len(c.Auth.Tokens)); err != nil {
		bad("http.pprof", err.Error())
	}
	if c.Log.ProgressEvery < 0 {
		bad("log.progress_every", fmt.Sprintf("%s is out of range: must be 0s (off) or more", c.Log.ProgressEvery))
	}
	if _, err := c.Log.level(); err != nil {
		bad("log.level", err.Error())
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", fmt.Sprintf("%q is not one of text, json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// Logger builds the logger the section describes, writing to w.
func (l LogConfig) Logger(w io.Writer) (*slog.Logger, error) {
	level, err := l.level()
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if l.Format == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	return slog.New(h), nil
}

func (l LogConfig) level() (slog.Level, error) {
	var v slog.Level
	if err := v.UnmarshalText([]byte(l.Level)); err != nil {
		return v, fmt.Errorf("%q is not one of debug, info, warn, error", l.Level)
	}
	return v, nil
}

// validatePprof refuses the profiler on an address others can reach
// unless the API's tokens guard it: its profiles show the process's code
// paths, memory and command line. With tokens, only an admin token may
// read them (httpapi.Pprof); without, only loopback requests.
func (h HTTPConfig) validatePprof(tokens int) error {
	if !h.Pprof || tokens > 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(h.Addr)
	if err != nil {
		return fmt.Errorf("on, but http.addr %q is not host:port", h.Addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("on, but http.addr %q is not a loopback address and no auth.tokens are configured: the profiler is served only on 127.0.0.1 or ::1, or to admin tokens", h.Addr)
}
