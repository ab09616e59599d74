package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// IdentityFile is the file, in the state directory and in the hunting
// directory, naming the Kafka cluster and the topic incarnations whose
// offsets the state there stands on.
const IdentityFile = "kafka-identity.json"

// Identity is what IdentityFile holds: the cluster id and, per topic, the
// topic id (KIP-516) it had when the state was first written. A topic
// deleted and created again under the same name gets a new id, and its
// offsets start over.
type Identity struct {
	ClusterID string            `json:"cluster_id"`
	Topics    map[string]string `json:"topics"`
	Recorded  time.Time         `json:"recorded"`
}

// ErrStateMismatch is the error of a state or hunting directory that
// belongs to another cluster, or to topics that were recreated since.
var ErrStateMismatch = errors.New("state belongs to another Kafka cluster or topic incarnation")

// describeIdentity asks the cluster for its id and the ids of topics.
func describeIdentity(ctx context.Context, cl *kgo.Client, topics []string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := kadm.NewClient(cl).Metadata(ctx, topics...)
	if err != nil {
		return Identity{}, fmt.Errorf("describe cluster: %w", err)
	}
	id := Identity{ClusterID: m.Cluster, Topics: map[string]string{}}
	for _, t := range m.Topics {
		if t.Err == nil && t.ID != (kadm.TopicID{}) {
			id.Topics[t.Topic] = t.ID.String()
		}
	}
	return id, nil
}

// mismatch lists how got (the cluster now) differs from the recorded
// identity: another cluster, or topics whose id changed. Topics the record
// does not name, or the cluster does not have, are no mismatch.
func (rec Identity) mismatch(got Identity) []string {
	var diffs []string
	if rec.ClusterID != "" && got.ClusterID != "" && rec.ClusterID != got.ClusterID {
		diffs = append(diffs, fmt.Sprintf("the cluster id is %s, the state was written against %s", got.ClusterID, rec.ClusterID))
		return diffs
	}
	var names []string
	for t := range rec.Topics {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		if now, ok := got.Topics[t]; ok && now != rec.Topics[t] {
			diffs = append(diffs, fmt.Sprintf("topic %s was recreated (id %s, the state has %s)", t, now, rec.Topics[t]))
		}
	}
	return diffs
}

func readIdentity(dir string) (Identity, bool, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, false, fmt.Errorf("%s: %w", filepath.Join(dir, IdentityFile), err)
	}
	return id, true, nil
}

func writeIdentity(dir string, id Identity) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	// A temporary file of its own: the instances of a group that share a
	// hunting directory may record the identity at the same moment, and
	// one fixed ".tmp" name let one rename the other's half-written file.
	f, err := os.CreateTemp(dir, IdentityFile+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, IdentityFile))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// checkIdentity compares the state directory, and those the stages keep
// (Stage.Dirs: hunting.dir), with the cluster: on first use it records the
// cluster and topic ids; later it refuses state written against another
// cluster or against topics since recreated, whose offsets would make the
// stages skip (or redo) records, unless state.reset is set, in which case
// it discards that state.
func (p *Pipeline) checkIdentity(ctx context.Context) error {
	cl, err := p.newAdminClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	var topics []string
	for _, t := range p.Topics() {
		topics = append(topics, t.Name)
	}
	now, err := describeIdentity(ctx, cl, topics)
	if err != nil {
		return err
	}
	now.Recorded = time.Now().UTC()
	for _, dir := range append([]string{p.cfg.State.Dir}, stageDirs(p.topo.defs, p.cfg)...) {
		if err := p.checkDir(dir, now); err != nil {
			return err
		}
	}
	return nil
}

// checkDir checks one directory against the cluster's identity now, and
// records it there (with topics new to the config added).
func (p *Pipeline) checkDir(dir string, now Identity) error {
	rec, ok, err := readIdentity(dir)
	if err != nil {
		return err
	}
	if ok {
		if diffs := rec.mismatch(now); len(diffs) > 0 {
			if !p.cfg.State.Reset {
				return fmt.Errorf("%w: %s: %s.\n"+
					"Its offsets and stores would make stitch skip or repeat records. Either start with a fresh --state-dir "+
					"(and hunting.dir), or pass --reset-state (state.reset: true) to discard this state and start over",
					ErrStateMismatch, dir, strings.Join(diffs, "; "))
			}
			p.log.Warn("state belongs to another cluster or topic incarnation: discarding it (state.reset)", "dir", dir, "why", strings.Join(diffs, "; "))
			if err := p.discardState(dir); err != nil {
				return err
			}
			ok = false
		}
	}
	if ok {
		changed := rec.ClusterID == "" && now.ClusterID != ""
		if changed {
			rec.ClusterID = now.ClusterID
		}
		if rec.Topics == nil {
			rec.Topics = map[string]string{}
		}
		for t, v := range now.Topics {
			if _, known := rec.Topics[t]; !known {
				rec.Topics[t] = v
				changed = true
			}
		}
		if !changed {
			return nil
		}
		now = rec
	}
	if err := writeIdentity(dir, now); err != nil {
		return fmt.Errorf("record the cluster identity: %w", err)
	}
	return nil
}

// discardState removes what a directory keeps of a former cluster: in the
// state directory the stores; in a directory a stage keeps (Stage.Dirs)
// what the stage's Discard removes (the hunting sink: its manifest and the
// tables' partitions, whose file names the new offsets would reuse).
// Anything else in them (an embedded broker's log, files stitch does not
// write) stays.
func (p *Pipeline) discardState(dir string) error {
	var remove []string
	if dir == p.cfg.State.Dir {
		for _, s := range p.topo.Stages {
			for _, st := range s.Stores {
				remove = append(remove, filepath.Join(dir, st.Name))
			}
		}
	}
	for _, d := range p.topo.defs {
		if d.Discard != nil && d.Dirs != nil && slices.Contains(d.Dirs(p.cfg), dir) {
			if err := d.Discard(p.cfg, dir); err != nil {
				return fmt.Errorf("state.reset: %s: %w", d.Name, err)
			}
		}
	}
	remove = append(remove, filepath.Join(dir, IdentityFile))
	for _, path := range remove {
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("state.reset: %w", err)
		}
	}
	return nil
}
