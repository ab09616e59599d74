package main

import (
	"context"
	"fmt"
	"os"

	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "topology",
		summary:  "Print the stages, topics, consumer groups, transactional ids and state stores a config runs, with no broker.",
		synopsis: "[--config FILE] [--format text|json]",
		details:  "Prints each stage of the pipeline under a config: its input and output topics, consumer\ngroup, transactional id prefix and state stores with their changelog topics; then every\ntopic with the partitions, replication and configs stitch creates it with. Nothing is\nstarted and no broker is needed; a config stitch run refuses is refused with the same errors.",
		example:  "stitch topology --config configs/stitch.yaml --format json",
		run:      topologyCmd,
	})
}

// topologyCmd prints the declared topology for a configuration, as Kafka
// Streams' Topology#describe() does: what an operator creates topics and
// ACLs from by hand (topics.create: false).
func topologyCmd(_ context.Context, args []string) error {
	fs := newFlagSet("topology")
	var pf pipelineFlags
	pf.add(fs)
	format := fs.String("format", "text", "output format: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	cfg, err := pf.load()
	if err != nil {
		return err
	}
	if err := validate(cfg); err != nil {
		return err // what run would refuse is not a topology to create topics from
	}
	topo, err := pipeline.Describe(cfg.Config)
	if err != nil {
		return err
	}
	switch *format {
	case "text":
		return topo.WriteText(os.Stdout)
	case "json":
		return topo.WriteJSON(os.Stdout)
	}
	return fmt.Errorf("%w: --format %q is not text or json", errUsage, *format)
}
