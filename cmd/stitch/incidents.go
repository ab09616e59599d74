package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

func init() {
	register(command{
		name:     "incidents",
		summary:  "List the incidents stitch has built, or show one with its alerts, entities and why they were joined.",
		synopsis: "[show ID] [--tenant T] [--status S] [--since DURATION] [--format text|json|ids] [--brokers HOST:PORT]",
		details: "Reads the incidents topic (the latest version of each incident) of a running 'stitch run'\n" +
			"(found through <state-dir>/brokers) or of the cluster given with --brokers.",
		example: "stitch incidents --status active --since 1h\nstitch incidents show inc-0123456789abcdef0123",
		run:     incidentsCmd,
	})
}

// brokersFile is where `stitch run` writes the brokers it runs on while it
// runs, so that the other commands find a running pipeline's broker.
const brokersFile = "brokers"

// clusterFlags are the flags of a command that reads a running pipeline's
// topics: the config (for topic names and the state directory) and the
// Kafka flags.
type clusterFlags struct {
	pf pipelineFlags
	kc *kafka.ClientConfig
	fs *flag.FlagSet
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	c := &clusterFlags{fs: fs}
	c.pf.add(fs)
	c.kc = addKafkaFlags(fs)
	return c
}

// load returns the config and the client config to reach its cluster: the
// Kafka flags, else the config's brokers, else those a running `stitch run`
// on the state directory wrote.
func (c *clusterFlags) load() (appconfig.Config, kafka.ClientConfig, error) {
	cfg, err := c.pf.load()
	if err != nil {
		return cfg, kafka.ClientConfig{}, err
	}
	mergeKafkaFlags(&cfg, c.fs, c.kc)
	kc := cfg.Kafka.ClientConfig
	if len(kc.Brokers) == 0 {
		path := filepath.Join(cfg.State.Dir, brokersFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, kc, fmt.Errorf("no --brokers, and no running 'stitch run' on state directory %s (%s: %v): start 'stitch run' or pass --brokers (and --state-dir if it runs elsewhere)",
				cfg.State.Dir, path, errors.Unwrap(err))
		}
		kc.Brokers = strings.Fields(string(b))
		if len(kc.Brokers) > 0 {
			// A run killed without a chance to clean up leaves the file.
			conn, err := net.DialTimeout("tcp", kc.Brokers[0], 2*time.Second)
			if err != nil {
				return cfg, kc, fmt.Errorf("no running 'stitch run' on state directory %s (its broker %s does not answer): start 'stitch run' or pass --brokers",
					cfg.State.Dir, kc.Brokers[0])
			}
			conn.Close()
		}
	}
	return cfg, kc, kc.Validate()
}

func incidentsCmd(ctx context.Context, args []string) error { return incidents(ctx, args, os.Stdout) }

// incidents is the command, writing to stdout.
func incidents(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("incidents")
	cf := addClusterFlags(fs)
	tenant := fs.String("tenant", "", "only this tenant's incidents")
	status := fs.String("status", "", "only incidents with these statuses (comma-separated: active, inProgress, resolved, redirected)")
	since := fs.Duration("since", 0, "only incidents updated this recently (e.g. 1h)")
	format := fs.String("format", "text", "text, json (one incident per line; show: the incident) or ids")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	show := ""
	switch rest := fs.Args(); {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "show":
		show = rest[1]
	default:
		return fmt.Errorf("%w: unexpected arguments %q (want nothing, or show ID)", errUsage, rest)
	}
	if !slices.Contains([]string{"text", "json", "ids"}, *format) {
		return fmt.Errorf("%w: --format %q is not text, json or ids", errUsage, *format)
	}
	statuses, err := statusSet(*status, correlate.StatusActive, correlate.StatusInProgress, correlate.StatusResolved, correlate.StatusRedirected)
	if err != nil {
		return err
	}
	cfg, kc, err := cf.load()
	if err != nil {
		return err
	}
	incs, err := readIncidents(ctx, kc, cfg.Topics.Incidents)
	if err != nil {
		return err
	}
	if show != "" {
		inc, ok := incs[show]
		if !ok {
			return fmt.Errorf("no incident %s in topic %s (%s there)", show, cfg.Topics.Incidents, english.Count(len(incs), "incident"))
		}
		if *format == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(inc)
		}
		writeIncident(stdout, inc)
		return nil
	}
	var list []correlate.Incident
	for _, inc := range incs {
		if *tenant != "" && inc.TenantID != *tenant ||
			len(statuses) > 0 && !statuses[inc.Status] ||
			*since > 0 && inc.LastUpdateDateTime.Before(time.Now().Add(-*since)) {
			continue
		}
		list = append(list, inc)
	}
	newestFirst(list, func(inc correlate.Incident) (time.Time, string) { return inc.LastUpdateDateTime, inc.ID })
	switch *format {
	case "ids":
		for _, inc := range list {
			fmt.Fprintln(stdout, inc.ID)
		}
	case "json":
		if err := writeJSONLines(stdout, list); err != nil {
			return err
		}
	default:
		writeIncidentList(stdout, list)
	}
	fmt.Fprintf(os.Stderr, "%s (of %d in %s); 'stitch incidents show ID' for one\n", english.Count(len(list), "incident"), len(incs), cfg.Topics.Incidents)
	return nil
}

// readIncidents reads the incidents topic to its end: the latest version of
// each incident, by id.
func readIncidents(ctx context.Context, kc kafka.ClientConfig, topic string) (map[string]correlate.Incident, error) {
	return readLatest(ctx, kc, topic, "an incident", func(inc correlate.Incident) (string, int64) { return inc.ID, inc.Version })
}

// readLatest reads a topic of versioned JSON documents (incidents, actions)
// to its end and keeps the highest version of each id.
func readLatest[T any](ctx context.Context, kc kafka.ClientConfig, topic, what string, key func(T) (id string, version int64)) (map[string]T, error) {
	if err := topicExists(ctx, kc, topic); err != nil {
		return nil, err
	}
	out := map[string]T{}
	_, err := kafka.Drain(ctx, kc, topic, 500*time.Millisecond, func(r *kgo.Record) error {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("%s partition %d offset %d: not %s: %w", r.Topic, r.Partition, r.Offset, what, err)
		}
		id, version := key(v)
		if prev, ok := out[id]; !ok {
			out[id] = v
		} else if _, pv := key(prev); version >= pv {
			out[id] = v
		}
		return nil
	})
	return out, err
}

func writeIncidentList(w io.Writer, list []correlate.Incident) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tSTATUS\tSEVERITY\tALERTS\tUPDATED\tTITLE")
	for _, inc := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", inc.ID, inc.TenantID, inc.Status, inc.Severity, len(inc.Alerts),
			inc.LastUpdateDateTime.UTC().Format(time.RFC3339), inc.DisplayName)
	}
	tw.Flush()
}

// writeIncident writes one incident for a person: what it is, its alerts
// with their evidence, the entities it touches and why its alerts are one
// incident.
func writeIncident(w io.Writer, inc correlate.Incident) {
	fmt.Fprintf(w, "%s  %s\n", inc.ID, inc.DisplayName)
	fmt.Fprintf(w, "tenant %s | status %s | severity %s | version %d\n", inc.TenantID, inc.Status, inc.Severity, inc.Version)
	fmt.Fprintf(w, "created %s | updated %s\n", inc.CreatedDateTime.UTC().Format(time.RFC3339), inc.LastUpdateDateTime.UTC().Format(time.RFC3339))
	if inc.RedirectIncidentID != nil {
		fmt.Fprintf(w, "merged into %s\n", *inc.RedirectIncidentID)
	}
	if inc.Description != "" {
		fmt.Fprintf(w, "\n%s\n", inc.Description)
	}
	fmt.Fprintf(w, "\nAlerts (%d):\n", len(inc.Alerts))
	for _, a := range inc.Alerts {
		fmt.Fprintf(w, "  %s  [%s] %s (%s, %s)\n", a.ID, a.Severity, a.Title, a.ServiceSource, a.FirstActivityDateTime.UTC().Format(time.RFC3339))
		for _, e := range a.Evidence {
			fmt.Fprintf(w, "      %s\n", evidenceText(e))
		}
	}
	fmt.Fprintf(w, "\nEntities:\n")
	ia := inc.ImpactedAssets
	for _, l := range []struct {
		name string
		v    []string
	}{{"devices", ia.Devices}, {"users", ia.Users}, {"mailboxes", ia.Mailboxes}, {"files", ia.Files}, {"ips", ia.IPs}, {"urls", ia.URLs}, {"apps", ia.Apps}} {
		if len(l.v) > 0 {
			fmt.Fprintf(w, "  %-10s %s\n", l.name, strings.Join(l.v, ", "))
		}
	}
	fmt.Fprintf(w, "\nWhy these alerts are one incident:\n")
	if len(inc.CorrelationReasons) == 0 {
		fmt.Fprintf(w, "  one alert, nothing joined yet\n")
	}
	for _, r := range inc.CorrelationReasons {
		line := fmt.Sprintf("  %s and %s share %s", r.Alerts[0], r.Alerts[1], r.Entity)
		if r.Merged != "" {
			line += " (merged incident " + r.Merged + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func evidenceText(e correlate.Evidence) string {
	kind := strings.TrimSuffix(strings.TrimPrefix(e.ODataType, "#microsoft.graph.security."), "Evidence")
	var parts []string
	add := func(k, v string) {
		switch {
		case v == "":
		case k == kind:
			parts = append(parts, v)
		default:
			parts = append(parts, k+" "+v)
		}
	}
	add("device", e.DeviceDNSName)
	if u := e.UserAccount; u != nil {
		add("user", cmp.Or(u.UserPrincipalName, u.AccountName, u.UserSID, u.AzureAdUserID))
	}
	if f := e.FileDetails; f != nil {
		add("file", cmp.Or(f.FileName, f.SHA256, f.SHA1))
	}
	add("command", e.ProcessCommand)
	add("ip", e.IPAddress)
	add("url", e.URL)
	add("mail", cmp.Or(e.Subject, e.NetworkMessageID))
	add("mailbox", e.PrimaryAddress)
	add("app", cmp.Or(e.DisplayName, e.AppID))
	add("registry", e.RegistryKey)
	return kind + ": " + strings.Join(parts, "; ")
}
