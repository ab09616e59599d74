package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/stitch-xdr/stitch/internal/auth"
)

func init() {
	register(command{
		name:     "token",
		summary:  "Make an API token: prints the token once, and the auth.tokens entry (its SHA-256, never the token) to paste into the config.",
		synopsis: "create --role viewer|analyst|responder|admin --tenant T [--tenant T2 ...] [--name NAME] [--device-group G ...]",
		details: "The token is shown only now: stitch keeps its SHA-256. Send it as 'Authorization: Bearer <token>'.\n" +
			"--tenant '*' scopes the token to every tenant. Roles: viewer reads; analyst also changes incidents\n" +
			"and hunts; responder also approves and rejects actions; admin does everything (docs/API.md).",
		example: "stitch token create --role analyst --tenant contoso --name alice",
		run:     func(ctx context.Context, args []string) error { return tokenCmd(ctx, args, os.Stdout) },
	})
}

// repeated is a flag given any number of times (or comma-separated).
type repeated []string

func (r *repeated) String() string { return strings.Join(*r, ",") }

func (r *repeated) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*r = append(*r, v)
		}
	}
	return nil
}

func tokenCmd(_ context.Context, args []string, stdout io.Writer) error {
	// -h and --help before the command show the help, as for every command.
	create := len(args) > 0 && args[0] == "create"
	if create {
		args = args[1:]
	} else if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: token needs the create command first", errUsage)
	}
	fs := newFlagSet("token")
	role := fs.String("role", "", "what the token may do: "+strings.Join(auth.Roles, ", ")+" (required)")
	name := fs.String("name", "", "the token's name, recorded with its changes and decisions (default <role>-<first tenant>)")
	var tenants, groups repeated
	fs.Var(&tenants, "tenant", "a tenant the token sees (repeat, or comma-separate; '*': every tenant) (required)")
	fs.Var(&groups, "device-group", "limit the token to a device group of auth.device_groups (repeat)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !create {
		return fmt.Errorf("%w: token needs the create command first", errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *role == "" || len(tenants) == 0 {
		return fmt.Errorf("%w: token create needs --role and --tenant", errUsage)
	}
	if *name == "" {
		*name = *role + "-" + strings.ReplaceAll(tenants[0], "*", "all")
	}
	tok, entry, err := auth.NewToken(*name, *role, tenants, groups)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	b, err := yaml.Marshal(map[string]any{"auth": map[string]any{"tokens": []auth.Token{entry}}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token (shown once; stitch keeps only its SHA-256):\n\n  %s\n\nadd to the config (under auth.tokens if it has some):\n\n%s", tok, b)
	return nil
}
