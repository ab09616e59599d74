package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "indicators",
		summary:  "List, add or remove custom indicators: file hashes stitch blocks on sight (every copy soft-deleted and quarantined) until they expire, and IP addresses, URLs and domains for the products to block, which stitch blocks on sight too (an alert and the playbooks' indicatorActions).",
		synopsis: "[list] [--tenant T] | add|remove --tenant T --type FileSha256|FileSha1|IpAddress|Url|DomainName --value V --by NAME [--comment TEXT] [--expires DURATION]",
		details: "Indicators are records on 'respond.indicators' of a running 'stitch run' (found through\n" +
			"<state-dir>/brokers) or of the cluster given with --brokers; the respond stage applies them.\n" +
			"Each is a BlockIndicator action for the executors to push to the products; remove makes an\n" +
			"UnblockIndicator. stitch also blocks them on sight itself: a file hash on every copy, an\n" +
			"address on the devices that reach it, the accounts that click it and the messages that carry it.",
		example: "stitch indicators add --tenant contoso --type FileSha256 --value 4f...e1 --by alice --comment 'loader' --expires 30d",
		run:     func(ctx context.Context, args []string) error { return indicatorsCmd(ctx, args, os.Stdout) },
	})
}

func indicatorsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	verb := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if verb != "list" && verb != "add" && verb != "remove" {
		return fmt.Errorf("%w: unknown indicators command %q (list, add or remove)", errUsage, verb)
	}
	fs := newFlagSet("indicators")
	cf := addClusterFlags(fs)
	tenant := fs.String("tenant", "", "the tenant (add, remove: required)")
	typ := fs.String("type", respond.IndicatorSHA256, strings.Join(respond.IndicatorTypes, ", "))
	value := fs.String("value", "", "the hash, IP address, URL or domain (add, remove: required)")
	by := fs.String("by", "", "who sets it (add, remove: required)")
	comment := fs.String("comment", "", "why")
	var expires pipeline.Duration
	fs.TextVar(&expires, "expires", pipeline.Duration(0), "add: how long it matches (e.g. 30d); 0: until removed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	cfg, kc, err := cf.load()
	if err != nil {
		return err
	}
	topic := cfg.Respond.Indicators
	if verb != "list" {
		now := time.Now().UTC()
		in := respond.Indicator{TenantID: *tenant, Type: *typ, Value: *value, By: *by, Comment: *comment, Time: now,
			Removed: verb == "remove"}
		if expires > 0 {
			in.Expires = now.Add(expires.D())
		}
		if err := in.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if err := produceJSON(ctx, kc, topic, in.ID(), &in); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s %s %s\n", map[bool]string{true: "removed", false: "added"}[in.Removed], in.ID(), in.Type, in.Value)
		return nil
	}
	if err := topicExists(ctx, kc, topic); err != nil {
		return err
	}
	latest := map[string]respond.Indicator{}
	if _, err := kafka.Drain(ctx, kc, topic, 500*time.Millisecond, func(r *kgo.Record) error {
		var in respond.Indicator
		if err := json.Unmarshal(r.Value, &in); err != nil {
			return fmt.Errorf("%s partition %d offset %d: not an indicator: %w", r.Topic, r.Partition, r.Offset, err)
		}
		latest[in.ID()] = in
		return nil
	}); err != nil {
		return err
	}
	var list []respond.Indicator
	for _, in := range latest {
		if !in.Removed && (*tenant == "" || in.TenantID == *tenant) {
			list = append(list, in)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Time.After(list[j].Time) })
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tTYPE\tVALUE\tBY\tSET\tEXPIRES\tCOMMENT")
	for _, in := range list {
		exp := "never"
		if !in.Expires.IsZero() {
			exp = in.Expires.Format(time.RFC3339)
			if in.Expires.Before(time.Now()) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID(), in.TenantID, in.Type, in.Value, in.By, in.Time.Format(time.RFC3339), exp, in.Comment)
	}
	return tw.Flush()
}
