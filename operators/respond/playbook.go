package respond

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
)

// Playbooks are the response rules: conditions on an incident's alerts →
// actions, and the automation level that decides whether an action is
// approved at once.
type Playbooks struct {
	Playbooks  []Playbook `yaml:"playbooks"`
	Automation Automation `yaml:"automation"`
	// IndicatorActions are what block on sight of an operator's network
	// indicator (IpAddress, Url, DomainName) decides beside its alert: its
	// device actions on a device seen reaching the address, its account
	// actions on an account that clicked the URL, SoftDeleteEmail on a
	// delivered message that carries it. Unset: DefaultIndicatorActions;
	// [] for the alert alone.
	IndicatorActions []string `yaml:"indicatorActions"`
}

// DefaultIndicatorActions are the indicatorActions when no playbooks file
// sets them.
var DefaultIndicatorActions = []string{SoftDeleteEmail, RunAntivirusScan}

func (p *Playbooks) indicatorActions() []string {
	if p.IndicatorActions == nil {
		return sightTypes(DefaultIndicatorActions)
	}
	return sightTypes(p.IndicatorActions)
}

// Playbook is one rule: when an alert of an incident matches When, the
// actions are decided on the targets its evidence names.
type Playbook struct {
	Name string `yaml:"name"`
	// Reason says in words why the actions are taken; it starts every
	// action's reason.
	Reason  string   `yaml:"reason"`
	When    When     `yaml:"when"`
	Actions []string `yaml:"actions"`
	// Indicators are the kinds BlockIndicator blocks: file, ip, url,
	// domain (default: file).
	Indicators []string `yaml:"indicators"`
}

// When is a playbook's condition on one alert; every field set must match
// (a list matches any of its values, case-insensitively).
type When struct {
	MinSeverity     string   `yaml:"minSeverity"`
	ServiceSource   []string `yaml:"serviceSource"`
	DetectionSource []string `yaml:"detectionSource"`
	Category        []string `yaml:"category"`
	// Evidence: the alert has evidence of one of these types (device,
	// user, file, process, ip, url, mailMessage, mailbox, cloudApplication).
	Evidence []string `yaml:"evidence"`
	// Title and AlertID are regular expressions (RE2) over the alert's
	// title and id (the id's prefix names the detector: "da" Defender for
	// Endpoint, "fa" Defender for Office 365, ...).
	Title   string `yaml:"title"`
	AlertID string `yaml:"alertId"`
	// MinIncidentSeverity is a condition on the incident.
	MinIncidentSeverity string `yaml:"minIncidentSeverity"`

	title, alertID *regexp.Regexp
}

// Automation is the level per scope: the last rule that matches an action
// wins, Default when none does.
type Automation struct {
	Default string           `yaml:"default"`
	Rules   []AutomationRule `yaml:"rules"`
}

// AutomationRule sets the level of the actions in its scope; the fields
// set must all match (none set: every action).
type AutomationRule struct {
	Tenant string `yaml:"tenant"`
	// DeviceGroup matches actions on a device of that group (DeviceInfo's
	// MachineGroup, as known when the action is decided; case-insensitive).
	DeviceGroup string `yaml:"deviceGroup"`
	EntityType  string `yaml:"entityType"`
	Action      string `yaml:"action"`
	Playbook    string `yaml:"playbook"`
	Level       string `yaml:"level"`
}

//go:embed defaults.yaml
var defaultPlaybooks []byte

// DefaultYAML is the shipped playbooks file (configs/playbooks.yaml is it
// written out).
func DefaultYAML() []byte { return slices.Clone(defaultPlaybooks) }

// Default returns the shipped playbooks.
func Default() *Playbooks {
	p, err := Parse("defaults.yaml", defaultPlaybooks)
	if err != nil {
		panic(err)
	}
	return p
}

// Load reads playbooks from a YAML file, or from every *.yaml and *.yml
// file of a directory (their playbooks together; automation from the one
// file that has it). An empty path is the shipped defaults.
func Load(path string) (*Playbooks, error) {
	if path == "" {
		return Default(), nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("playbooks: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(path, pat))
			files = append(files, m...)
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("playbooks: %s: no .yaml files", path)
		}
	}
	all := &Playbooks{}
	var automationFrom, indicatorsFrom string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("playbooks: %w", err)
		}
		p, err := Parse(f, data)
		if err != nil {
			return nil, err
		}
		if p.Automation.Default != "" || len(p.Automation.Rules) > 0 {
			if automationFrom != "" {
				return nil, fmt.Errorf("%s: automation: also set in %s; set it in one file", f, automationFrom)
			}
			automationFrom, all.Automation = f, p.Automation
		}
		if p.IndicatorActions != nil {
			if indicatorsFrom != "" {
				return nil, fmt.Errorf("%s: indicatorActions: also set in %s; set them in one file", f, indicatorsFrom)
			}
			indicatorsFrom, all.IndicatorActions = f, p.IndicatorActions
		}
		for _, pb := range p.Playbooks {
			if i := slices.IndexFunc(all.Playbooks, func(o Playbook) bool { return o.Name == pb.Name }); i >= 0 {
				return nil, fmt.Errorf("%s: playbook %q is also defined in another file", f, pb.Name)
			}
			all.Playbooks = append(all.Playbooks, pb)
		}
	}
	if all.Automation.Default == "" {
		all.Automation.Default = LevelSemi
	}
	return all, nil
}

var yamlPos = regexp.MustCompile(`^\[(\d+):(\d+)\] `)

var severities = map[string]int{"informational": 1, "low": 2, "medium": 3, "high": 4}

func severityRank(s string) int { return severities[strings.ToLower(s)] }

var evidenceTypes = []string{"device", "user", "file", "process", "ip", "url", "mailMessage", "mailbox", "mailCluster",
	"cloudApplication", "oauthApplication", "registryKey", "registryValue", "securityGroup"}

var indicatorKinds = []string{"file", "ip", "url", "domain"}

var levels = []string{LevelFull, LevelSemi, LevelNone}

var entityTypes = []string{EntityDevice, EntityFile, EntityMail, EntityUser, EntityIndicator}

// Parse reads one playbooks file strictly: unknown keys, values of the
// wrong kind, unknown action types, evidence types, levels and severities,
// bad regular expressions and playbooks without a name or actions are
// errors naming the file, the line and the problem.
func Parse(name string, data []byte) (*Playbooks, error) {
	var p Playbooks
	if err := yaml.UnmarshalWithOptions(data, &p, yaml.Strict()); err != nil {
		msg := strings.TrimSpace(yaml.FormatError(err, false, false))
		// "[6:5] unknown field" -> "file:6:5: unknown field", as compilers say it.
		if m := yamlPos.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s:%s: %s", name, m[1], m[2], msg[len(m[0]):])
		}
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	file, _ := parser.ParseBytes(data, 0)
	var errs []error
	bad := func(path, format string, args ...any) {
		line := ""
		if file != nil {
			if yp, err := yaml.PathString(path); err == nil {
				if n, err := yp.FilterFile(file); err == nil && n != nil && n.GetToken() != nil && n.GetToken().Position != nil {
					line = fmt.Sprintf(":%d", n.GetToken().Position.Line)
				}
			}
		}
		where := strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
		errs = append(errs, fmt.Errorf("%s%s: %s: %s", name, line, where, fmt.Sprintf(format, args...)))
	}
	oneOf := func(path, what, v string, set []string) {
		if !slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(s, v) }) {
			bad(path, "unknown %s %q (one of %s)", what, v, strings.Join(set, ", "))
		}
	}
	names := map[string]bool{}
	for i := range p.Playbooks {
		pb := &p.Playbooks[i]
		at := fmt.Sprintf("$.playbooks[%d]", i)
		switch {
		case pb.Name == "":
			bad(at, "a playbook needs a name")
		case names[pb.Name]:
			bad(at+".name", "playbook %q is defined twice", pb.Name)
		}
		names[pb.Name] = true
		if len(pb.Actions) == 0 {
			bad(at, "playbook %q has no actions", pb.Name)
		}
		for j, a := range pb.Actions {
			if !slices.Contains(PlaybookTypes, a) {
				bad(fmt.Sprintf("%s.actions[%d]", at, j), "unknown action type %q (one of %s)", a, strings.Join(PlaybookTypes, ", "))
			}
		}
		for j, k := range pb.Indicators {
			oneOf(fmt.Sprintf("%s.indicators[%d]", at, j), "indicator kind", k, indicatorKinds)
		}
		if len(pb.Indicators) == 0 {
			pb.Indicators = []string{"file"}
		}
		w := &pb.When
		for _, s := range []struct{ key, v string }{{"minSeverity", w.MinSeverity}, {"minIncidentSeverity", w.MinIncidentSeverity}} {
			if s.v != "" && severityRank(s.v) == 0 {
				bad(at+".when."+s.key, "unknown severity %q (informational, low, medium or high)", s.v)
			}
		}
		for j, e := range w.Evidence {
			oneOf(fmt.Sprintf("%s.when.evidence[%d]", at, j), "evidence type", e, evidenceTypes)
		}
		var err error
		if w.Title != "" {
			if w.title, err = regexp.Compile(w.Title); err != nil {
				bad(at+".when.title", "bad regular expression: %v", err)
			}
		}
		if w.AlertID != "" {
			if w.alertID, err = regexp.Compile(w.AlertID); err != nil {
				bad(at+".when.alertId", "bad regular expression: %v", err)
			}
		}
	}
	for i, a := range p.IndicatorActions {
		at := fmt.Sprintf("$.indicatorActions[%d]", i)
		switch {
		case !slices.Contains(PlaybookTypes, a):
			bad(at, "unknown action type %q (one of %s)", a, strings.Join(PlaybookTypes, ", "))
		case EntityType(a) != EntityDevice && EntityType(a) != EntityUser && EntityType(a) != EntityMail:
			bad(at, "%s is not a device, account or mail action: block on sight of an address acts on what reached it", a)
		}
	}
	if p.Automation.Default != "" {
		oneOf("$.automation.default", "automation level", p.Automation.Default, levels)
	}
	for i, r := range p.Automation.Rules {
		at := fmt.Sprintf("$.automation.rules[%d]", i)
		if r.Level == "" {
			bad(at, "a rule needs a level (full, semi or none)")
		} else {
			oneOf(at+".level", "automation level", r.Level, levels)
		}
		if r.EntityType != "" {
			oneOf(at+".entityType", "entity type", r.EntityType, entityTypes)
		}
		if r.Action != "" {
			oneOf(at+".action", "action type", r.Action, PlaybookTypes)
		}
		if r.Playbook != "" && r.Playbook != indicatorPlaybook && !names[r.Playbook] && len(p.Playbooks) > 0 {
			bad(at+".playbook", "no playbook named %q in this file", r.Playbook)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &p, nil
}

// Level is the automation level of an action of type for tenant, asked
// for by playbook.
func (a Automation) Level(tenant, actionType, playbook, deviceGroup string) string {
	level := a.Default
	if level == "" {
		level = LevelSemi
	}
	for _, r := range a.Rules {
		if (r.Tenant == "" || r.Tenant == tenant) &&
			(r.DeviceGroup == "" || deviceGroup != "" && strings.EqualFold(r.DeviceGroup, deviceGroup)) &&
			(r.EntityType == "" || strings.EqualFold(r.EntityType, EntityType(actionType))) &&
			(r.Action == "" || strings.EqualFold(r.Action, actionType)) &&
			(r.Playbook == "" || r.Playbook == playbook) {
			level = strings.ToLower(r.Level)
		}
	}
	return level
}
