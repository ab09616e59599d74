// Command stitch is the one binary of the stitch XDR correlation pipeline:
// run the pipeline, replay files through it, query hunting partitions and
// incidents, and the Kafka tools (broker, produce, consume) that tests and
// operators need.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Each lives in its own file and registers itself
// in an init function, so adding a subcommand never touches this file.
type command struct {
	name string
	// summary is one sentence saying what the command does: the first line
	// of its help and its line in `stitch help`.
	summary string
	// synopsis follows "Usage: stitch <name> " in the help.
	synopsis string
	// details, when set, is a paragraph after the synopsis.
	details string
	// example is one or more command lines, the last part of the help.
	example string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// errUsage marks an error whose message is a usage problem (exit status 2).
var errUsage = errors.New("usage")

// wantHelp is set when the command line asks for help (-h, --help, stitch
// help <command>): the help then goes to standard output.
var wantHelp bool

// newFlagSet is the flag set of a registered command, whose help starts
// with the command's summary and ends with its example.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// A bad flag is reported once, by main, with a pointer to the help;
	// the help itself is printed when asked for, on standard output.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		if wantHelp {
			commandHelp(os.Stdout, commands[name], fs)
		}
	}
	return fs
}

// parseFlags parses args; a bad flag is a usage error (exit status 2).
// Flags may follow the arguments, as users write them ("stitch incidents
// show ID --format json"); after "--" everything is an argument.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		left := fs.Args()
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" || len(left) == 0 {
			rest = append(rest, left...)
			break
		}
		rest, args = append(rest, left[0]), left[1:]
	}
	// fs.Args() is then the arguments, in order.
	if err := fs.Parse(append([]string{"--"}, rest...)); err != nil {
		return err
	}
	return notNegative(fs)
}

// notNegative refuses a negative number or duration given to a flag: no
// count, limit or duration of a command means anything below 0. (Config
// keys given as flags are checked with their own ranges.)
func notNegative(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || err != nil {
			return
		}
		v := reflect.Indirect(reflect.ValueOf(g.Get()))
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if v.Int() < 0 {
				err = fmt.Errorf("%w: --%s %s is negative: want 0 or more", errUsage, f.Name, f.Value)
			}
		case reflect.Float32, reflect.Float64:
			if v.Float() < 0 {
				err = fmt.Errorf("%w: --%s %s is negative: want 0 or more", errUsage, f.Name, f.Value)
			}
		}
	})
	return err
}

func commandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage: stitch %s %s\n", c.summary, c.name, c.synopsis)
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.details))
	}
	if fs != nil {
		has := false
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.SetOutput(w)
			fs.PrintDefaults()
		}
	}
	fmt.Fprintf(w, "\nExample:\n")
	for _, line := range strings.Split(strings.TrimSpace(c.example), "\n") {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(line))
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "stitch is an XDR correlation pipeline: it normalizes security signals from Kafka,\n"+
		"joins alerts into incidents and writes hunting partitions.\n\nUsage: stitch <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'stitch help <command>' (or 'stitch <command> -h') for a command's flags and an example.\n"+
		"Start with: stitch run\n")
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[1] != "help" { // stitch help <command>
			args = []string{args[1], "-h"}
		} else {
			usage(os.Stdout)
			return
		}
	}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		wantHelp = wantHelp || a == "-h" || a == "-help" || a == "--help"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "stitch: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "stitch %s: %v\n", cmd.name, err)
		if errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "Run 'stitch help %s' for its flags and an example.\n", cmd.name)
			os.Exit(2)
		}
		os.Exit(1)
	}
}
