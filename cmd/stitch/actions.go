package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/operators/respond"
)

func init() {
	register(command{
		name:     "actions",
		summary:  "List the response actions stitch decided, or approve, reject or undo one: the decision is a record on the approvals topic, applied by the running pipeline.",
		synopsis: "[list] [--status S] [--incident ID] [--tenant T] [--format text|json] | approve|reject|undo ID --by NAME [--comment TEXT]",
		details: "Reads the actions topic (the latest version of each action) of a running 'stitch run'\n" +
			"(found through <state-dir>/brokers) or of the cluster given with --brokers. approve and reject\n" +
			"write a decision to 'respond.approvals'; the respond stage appends it to the action's approvals\n" +
			"and publishes the action's new status as a new version. undo takes back an action that was\n" +
			"carried out, where it can be reversed (IsolateDevice, RestrictAppExecution, BlockIndicator): the\n" +
			"reversing action (ReleaseDevice, RemoveAppRestriction, UnblockIndicator) is decided, approved.",
		example: "stitch actions --status pending\nstitch actions approve act-0123456789abcdef01234567 --by alice --comment 'confirmed with the user'\n" +
			"stitch actions undo act-0123456789abcdef01234567 --by alice --comment 'device reimaged'",
		run: func(ctx context.Context, args []string) error { return actionsCmd(ctx, args, os.Stdout) },
	})
}

func actionsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	verb, id := "list", ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if !slices.Contains([]string{"list", "approve", "reject", "undo"}, verb) {
		return fmt.Errorf("%w: unknown actions command %q (list, approve, reject or undo)", errUsage, verb)
	}
	fs := newFlagSet("actions")
	cf := addClusterFlags(fs)
	status := fs.String("status", "", "list: only actions with these statuses (comma-separated: pending, approved, rejected, sent, succeeded, failed, expired)")
	incident := fs.String("incident", "", "list: only the actions of this incident")
	tenant := fs.String("tenant", "", "list: only this tenant's actions")
	format := fs.String("format", "text", "list: text or json (one action per line)")
	by := fs.String("by", "", "approve/reject/undo: who decides (required)")
	comment := fs.String("comment", "", "approve/reject/undo: why")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case verb == "list" && fs.NArg() > 0, verb != "list" && fs.NArg() > 1:
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	case verb != "list" && fs.NArg() == 0:
		return fmt.Errorf("%w: %s needs the action id", errUsage, verb)
	case verb != "list":
		id = fs.Arg(0)
	}
	if verb != "list" && strings.TrimSpace(*by) == "" {
		return fmt.Errorf("%w: %s needs --by NAME (decisions are audited)", errUsage, verb)
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format %q is not text or json", errUsage, *format)
	}
	statuses, err := statusSet(*status, respond.StatusPending, respond.StatusApproved, respond.StatusRejected,
		respond.StatusSent, respond.StatusSucceeded, respond.StatusFailed, respond.StatusExpired)
	if err != nil {
		return err
	}
	cfg, kc, err := cf.load()
	if err != nil {
		return err
	}
	acts, err := readActions(ctx, kc, cfg.Topics.Actions)
	if err != nil {
		return err
	}
	if verb != "list" {
		a, ok := acts[id]
		if !ok {
			return fmt.Errorf("no action %s in topic %s (%s there)", id, cfg.Topics.Actions, english.Count(len(acts), "action"))
		}
		d := respond.Decision{TenantID: a.TenantID, ActionID: a.ID, Decision: respond.StatusApproved, By: *by, Comment: *comment, Time: time.Now().UTC()}
		switch verb {
		case "reject":
			d.Decision = respond.StatusRejected
		case "undo":
			if _, ok := respond.Reverses[a.Type]; !ok {
				return fmt.Errorf("action %s is %s, which cannot be undone (reversible: %s)", a.ID, a.Type, strings.Join(respond.ReversibleTypes(), ", "))
			}
			d.Decision = respond.DecisionUndo
		}
		if err := produceJSON(ctx, kc, cfg.Respond.Approvals, a.RecordKey(), &d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s %s (%s, now %s) by %s\n", d.Decision, a.ID, a.Type, respond.Describe(a.Type, a.Target), a.Status, d.By)
		fmt.Fprintf(os.Stderr, "recorded on %s; the respond stage applies it ('stitch actions --incident %s' shows the new status)\n", cfg.Respond.Approvals, a.IncidentID)
		return nil
	}
	var list []respond.Action
	for _, a := range acts {
		if *tenant != "" && a.TenantID != *tenant || *incident != "" && a.IncidentID != *incident || len(statuses) > 0 && !statuses[a.Status] {
			continue
		}
		list = append(list, a)
	}
	newestFirst(list, func(a respond.Action) (time.Time, string) { return a.LastUpdateDateTime, a.ID })
	if *format == "json" {
		if err := writeJSONLines(stdout, list); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tTYPE\tSTATUS\tINCIDENT\tUPDATED\tACTION")
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.TenantID, a.Type, a.Status, a.IncidentID,
				a.LastUpdateDateTime.UTC().Format(time.RFC3339), respond.Describe(a.Type, a.Target))
		}
		tw.Flush()
	}
	fmt.Fprintf(os.Stderr, "%s (of %d in %s)\n", english.Count(len(list), "action"), len(acts), cfg.Topics.Actions)
	return nil
}

// readActions reads the actions topic to its end: the latest version of
// each action, by id.
func readActions(ctx context.Context, kc kafka.ClientConfig, topic string) (map[string]respond.Action, error) {
	return readLatest(ctx, kc, topic, "an action", func(a respond.Action) (string, int64) { return a.ID, a.Version })
}

// produceJSON records v as JSON on topic, keyed by key: a decision or an
// indicator, which the running pipeline applies.
func produceJSON(ctx context.Context, kc kafka.ClientConfig, topic, key string, v any) error {
	if err := topicExists(ctx, kc, topic); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("record on %s: %w", topic, err)
	}
	return nil
}
