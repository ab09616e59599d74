package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicSpec is a topic stitch needs.
type TopicSpec struct {
	Name string
	// Partitions is the partition count; 0 or -1 uses the broker default.
	Partitions int32
	// ReplicationFactor is the replica count; 0 or -1 uses the broker default.
	ReplicationFactor int16
	// Configs are topic configs such as cleanup.policy=compact.
	Configs map[string]string
}

// EnsureTopics creates the topics that do not exist yet. Topics that already
// exist are accepted as they are, including when another process creates one
// concurrently. An existing topic with fewer partitions than asked for is
// only logged as a warning: adding partitions changes which partition a key
// maps to, which would split a tenant's records across partitions behind the
// user's back on a live topic, so that decision is left to an operator.
func EnsureTopics(ctx context.Context, cl *kgo.Client, specs ...TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	adm := kadm.NewClient(cl) // not closed: closing would close cl
	names := make([]string, len(specs))
	for i, s := range specs {
		if s.Name == "" {
			return errors.New("ensure topics: empty topic name")
		}
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(fresh(ctx), names...)
	if err != nil {
		return fmt.Errorf("ensure topics: list topics: %w", err)
	}
	for _, s := range specs {
		if d, ok := existing[s.Name]; ok && d.Err == nil {
			if got := int32(len(d.Partitions)); s.Partitions > 0 && got < s.Partitions {
				slog.Warn("topic has fewer partitions than configured; not repartitioning a live topic, add partitions deliberately if wanted",
					"topic", s.Name, "partitions", got, "wanted", s.Partitions)
			}
			continue
		} else if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("ensure topic %s: describe: %w", s.Name, d.Err)
		}
		if err := createTopic(ctx, adm, s); err != nil {
			return err
		}
	}
	return nil
}

func createTopic(ctx context.Context, adm *kadm.Client, s TopicSpec) error {
	parts, rf := s.Partitions, s.ReplicationFactor
	if parts <= 0 {
		parts = -1
	}
	if rf <= 0 {
		rf = -1
	}
	var configs map[string]*string
	if len(s.Configs) > 0 {
		configs = make(map[string]*string, len(s.Configs))
		for k, v := range s.Configs {
			configs[k] = kadm.StringPtr(v)
		}
	}
	resp, err := adm.CreateTopic(ctx, parts, rf, configs, s.Name)
	switch {
	case err == nil, errors.Is(err, kerr.TopicAlreadyExists):
		return nil
	case resp.ErrMessage != "":
		return fmt.Errorf("create topic %s: %w: %s", s.Name, err, resp.ErrMessage)
	default:
		return fmt.Errorf("create topic %s: %w", s.Name, err)
	}
}

// Lag returns the total consumer lag of group over topics: for every
// partition, the end offset minus the group's committed offset, counting a
// partition the group never committed from its log start offset. Members need
// not be running. In topics written by transactional producers every commit
// marker takes an offset, so a caught-up group can show a small residual lag
// there; the topics stitch consumes from outside are produced plainly.
func Lag(ctx context.Context, cl *kgo.Client, group string, topics ...string) (int64, error) {
	if len(topics) == 0 {
		return 0, nil
	}
	adm := kadm.NewClient(cl)
	ctx = fresh(ctx)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: list end offsets: %w", group, err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("lag of group %s: list end offsets: %w", group, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: list start offsets: %w", group, err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a group that never committed lags by everything
	}
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: fetch committed offsets: %w", group, err)
	}
	var total int64
	var ferr error
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(end.Topic, end.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(end.Topic, end.Partition); ok {
			if c.Err != nil && ferr == nil {
				ferr = fmt.Errorf("lag of group %s: committed offset of %s/%d: %w", group, end.Topic, end.Partition, c.Err)
			}
			if c.Err == nil && c.At >= 0 && c.At > from {
				from = c.At
			}
		}
		if end.Offset > from {
			total += end.Offset - from
		}
	})
	return total, ferr
}

// fresh makes kadm bypass the client's metadata cache (asking for authorized
// operations forces a direct request). The cache keeps answers, including
// "unknown topic", for 5s, which would hide a topic created a moment ago.
func fresh(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }
