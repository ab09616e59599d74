package respond

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// TestScenarios runs every testdata/scenarios/*.txt, a datadriven file: a
// new case is a new file. Signals go through a responder over a real
// transactional store; each directive prints the actions (new versions)
// and problems it produced, so a file says which actions fire, and that
// they fire once. `go test ./operators/respond -run Scenarios -rewrite`
// rewrites the answers after a deliberate change. Directives:
//
//	playbooks             the YAML below replaces the playbooks (empty: the defaults)
//	incident id=I [tenant=T] [status=S] [severity=S]
//	                      an incident version; its alerts and evidence below:
//	                        alert <id> sev=<S> svc=<service> cat=<category> [det=<source>] [title=<t>] [at=<RFC3339>]
//	                          file|process sha256=<h> [sha1=<h>] [name=<n>] [device=<id>] [host=<name>]
//	                          device [id=<id>] [host=<name>]
//	                          user [oid=<o>] [upn=<u>] [sid=<s>]
//	                          mail nmid=<m> upn=<recipient>
//	                          ip <addr> | url <url>
//	attachments [tenant=T]  delivered copies: sha256=<h> nmid=<m> to=<recipient> [at=<RFC3339>]
//	files [tenant=T]      sightings: hash=<h> device=<id> [host=<name>] [at=<RFC3339>]
//	devices [tenant=T]    device groups (DeviceInfo): device=<id> group=<g> [at=<RFC3339>]
//	decide [tenant=T]     analysts' decisions: <approved|rejected|undo> type=<T> target=<key> incident=<I> [id=<action id>] by=<who> [comment=<c>] [at=<RFC3339>]
//	outcome [tenant=T]    executors' reports: <sent|succeeded|failed> type=<T> target=<key> incident=<I> [error=<e>] [at=<RFC3339>]
//	indicators [tenant=T] operators' indicators: <add|remove> type=<FileSha256|FileSha1|IpAddress|Url|DomainName> value=<v> by=<who> [comment=<c>] [at=<RFC3339>] [expires=<RFC3339>]
//	network [tenant=T] [repeat=N every=<duration>]
//	                      addresses seen (sightings): <ip=<addr>|url=<url>> <device=<id>|host=<name>|user=<upn>>... [at=<RFC3339>];
//	                      repeat applies the signal N times, each every later
//	mail [tenant=T]       messages' halves: nmid=<m> <to=<recipient>|url=<url>> [at=<RFC3339>]
//	sweep                 Sweep (owning every tenant): how many index entries it deleted
//	commit | abort        end the store transaction (and open the next)
//	ledger [tenant=T]     every action of the ledger, with status, version and reason
func TestScenarios(t *testing.T) { runScenarios(t, "testdata/scenarios/*.txt") }

// Every scenario again with every file hash (and address) looked up in
// the store, as for a tenant with more file blocks than a batch reads
// into a set: the same answers.
func TestScenariosWithoutKeySet(t *testing.T) {
	defer func(n int) { maxKeySet = n }(maxKeySet)
	maxKeySet = 0
	runScenarios(t, "testdata/scenarios/*.txt")
}

func runScenarios(t *testing.T, glob string) {
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			tx := openLedger(t)
			r := New(tx, nil)
			var err error
			datadriven.RunTest(t, f, func(t *testing.T, d *datadriven.TestData) string {
				tenant := "t1"
				for _, a := range d.CmdArgs {
					if a.Key == "tenant" {
						tenant = a.Vals[0]
					}
				}
				var sig *Signal
				switch d.Cmd {
				case "playbooks":
					pb := Default()
					if strings.TrimSpace(d.Input) != "" {
						if pb, err = Parse("scenario", []byte(d.Input)); err != nil {
							return err.Error() + "\n"
						}
					}
					r = New(tx, pb)
					return "ok\n"
				case "indicators":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						in := Indicator{TenantID: tenant, Type: kv["type"], Value: kv["value"], By: kv["by"], Comment: kv["comment"],
							Time: when(t, kv["at"]), Removed: kv[""] == "remove"}
						if kv["expires"] != "" {
							in.Expires = when(t, kv["expires"])
						}
						sig.Indicators = append(sig.Indicators, in)
					}
				case "sweep":
					n, err := r.Sweep(1000)
					if err != nil {
						t.Fatal(err)
					}
					return fmt.Sprintf("deleted %d\n", n)
				case "commit", "abort":
					if d.Cmd == "commit" {
						err = tx.CommitAt(nil)
					} else {
						tx.Abort()
					}
					if err == nil {
						err = tx.Begin()
					}
					if err != nil {
						t.Fatal(err)
					}
					return "ok\n"
				case "ledger":
					acts, err := r.Actions(tenant)
					if err != nil {
						t.Fatal(err)
					}
					var b strings.Builder
					for _, a := range sortActions(acts) {
						fmt.Fprintf(&b, "%s\n  reason: %s\n", line(a), a.Reason)
					}
					return b.String()
				case "incident":
					sig = &Signal{Tenant: tenant, Incident: parseIncident(t, d, tenant)}
				case "attachments":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						sig.Attachments = append(sig.Attachments, correlate.AttachmentFact{SHA256: kv["sha256"],
							NetworkMessageID: kv["nmid"], Recipient: kv["to"], Time: when(t, kv["at"])})
					}
				case "files":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						sig.Files = append(sig.Files, FileSeen{Hash: kv["hash"], DeviceID: kv["device"], DeviceName: kv["host"], Time: when(t, kv["at"])})
					}
				case "devices":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						sig.DeviceGroups = append(sig.DeviceGroups, correlate.DeviceGroupFact{DeviceID: kv["device"], Group: kv["group"], Time: when(t, kv["at"])})
					}
				case "network":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						var e correlate.Entity
						var ok bool
						if kv["ip"] != "" {
							e, ok = correlate.IP(kv["ip"])
						} else {
							e, ok = correlate.URL(kv["url"])
						}
						if !ok {
							t.Fatalf("no address in %q", l)
						}
						x := Reach{Entity: e.Key(), Time: when(t, kv["at"])}
						if v := kv["device"]; v != "" {
							x.Observers = append(x.Observers, "device:id:"+v)
						} else if v := kv["host"]; v != "" {
							x.Observers = append(x.Observers, "device:name:"+v)
						}
						if v := kv["user"]; v != "" {
							x.Observers = append(x.Observers, "user:upn:"+v)
						}
						sig.Network = append(sig.Network, x)
					}
				case "mail":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						sig.Mail = append(sig.Mail, correlate.MailFact{NetworkMessageID: kv["nmid"], Recipient: kv["to"], URL: kv["url"], Time: when(t, kv["at"])})
					}
				case "decide", "outcome":
					sig = &Signal{Tenant: tenant}
					for _, l := range lines(d.Input) {
						kv := fields(t, l)
						id := ActionID(tenant, kv["incident"], kv["type"], kv["target"])
						if kv["id"] != "" {
							id = kv["id"] // an action id as given (another tenant's)
						}
						if d.Cmd == "decide" {
							sig.Decisions = append(sig.Decisions, Decision{TenantID: tenant, ActionID: id, Decision: kv[""], By: kv["by"], Comment: kv["comment"], Time: when(t, kv["at"])})
						} else {
							sig.Outcomes = append(sig.Outcomes, Outcome{TenantID: tenant, ActionID: id, Status: kv[""], Error: kv["error"], Time: when(t, kv["at"])})
						}
					}
				default:
					t.Fatalf("unknown directive %q", d.Cmd)
				}
				// repeat=N applies the signal N times, each every later.
				repeat, every := 1, time.Duration(0)
				for _, a := range d.CmdArgs {
					switch a.Key {
					case "repeat":
						fmt.Sscan(a.Vals[0], &repeat)
					case "every":
						if every, err = time.ParseDuration(a.Vals[0]); err != nil {
							t.Fatal(err)
						}
					}
				}
				var res Result
				for i := range repeat {
					one := *sig
					one.Network = slices.Clone(sig.Network)
					for j := range one.Network {
						one.Network[j].Time = one.Network[j].Time.Add(time.Duration(i) * every)
					}
					got, err := r.Apply(&one)
					if err != nil {
						return "error: " + err.Error() + "\n"
					}
					res.Actions = append(res.Actions, got.Actions...)
					res.Problems = append(res.Problems, got.Problems...)
					res.Alerts = append(res.Alerts, got.Alerts...)
				}
				var b strings.Builder
				for _, a := range sortActions(res.Actions) {
					b.WriteString(line(a) + "\n")
				}
				for _, p := range res.Problems {
					fmt.Fprintf(&b, "problem: %s (%s, %s): %s\n", p.Type, p.Incident, p.Playbook, p.Error)
				}
				for _, a := range res.Alerts {
					fmt.Fprintf(&b, "alert %q %s/%s at=%s\n", a.Info.Title, a.Info.ServiceSource, a.Info.DetectionSource, a.Info.Time.Format(time.RFC3339))
					for _, e := range a.Evidence {
						fmt.Fprintf(&b, "  %s %s\n", strings.TrimPrefix(e.Evidence.ODataType, "#microsoft.graph.security."), strings.Join(e.Entities, " "))
					}
				}
				if b.Len() == 0 {
					return "no actions\n"
				}
				return b.String()
			})
		})
	}
}

func sortActions(acts []Action) []Action {
	slices.SortFunc(acts, func(a, b Action) int { return strings.Compare(line(a), line(b)) })
	return acts
}

func line(a Action) string {
	k, _ := a.Target.Key(a.Type)
	s := fmt.Sprintf("%s %s %s v%d %s incident=%s alerts=%s playbooks=%s", a.Type, k, a.Status, a.Version, a.Automation,
		a.IncidentID, strings.Join(a.Alerts, ","), strings.Join(a.Playbooks, ","))
	for _, ap := range a.Approvals {
		s += fmt.Sprintf(" [%s by %s: %s]", ap.Decision, ap.By, ap.Comment)
	}
	if a.Error != "" {
		s += " error=" + a.Error
	}
	return s
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// fields reads `word key=value key="quoted value"` into a map; the first
// bare word is under "".
func fields(t *testing.T, l string) map[string]string {
	kv := map[string]string{}
	l = strings.TrimSpace(l)
	for l != "" {
		var tok string
		i := 0
		for i < len(l) && l[i] != ' ' {
			if l[i] == '"' {
				j := strings.IndexByte(l[i+1:], '"')
				if j < 0 {
					t.Fatalf("unterminated quote in %q", l)
				}
				i += j + 1
			}
			i++
		}
		tok, l = l[:i], strings.TrimSpace(l[i:])
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			k, v = "", tok
		}
		kv[k] = strings.Trim(v, `"`)
	}
	return kv
}

func when(t *testing.T, s string) time.Time {
	if s == "" {
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parseIncident(t *testing.T, d *datadriven.TestData, tenant string) *correlate.Incident {
	inc := &correlate.Incident{TenantID: tenant, Status: correlate.StatusActive, Severity: "medium"}
	for _, a := range d.CmdArgs {
		switch a.Key {
		case "id":
			inc.ID = a.Vals[0]
		case "status":
			inc.Status = a.Vals[0]
		case "severity":
			inc.Severity = a.Vals[0]
		}
	}
	var al *correlate.Alert
	for _, l := range lines(d.Input) {
		kv := fields(t, l)
		word := strings.Fields(l)[0]
		if word == "alert" {
			inc.Alerts = append(inc.Alerts, correlate.Alert{ID: strings.Fields(l)[1], Severity: kv["sev"], ServiceSource: kv["svc"],
				Category: kv["cat"], DetectionSource: kv["det"], Title: kv["title"], CreatedDateTime: when(t, kv["at"])})
			al = &inc.Alerts[len(inc.Alerts)-1]
			continue
		}
		if al == nil {
			t.Fatalf("evidence before any alert: %q", l)
		}
		typ := map[string]string{"file": "File", "device": "Machine", "user": "User", "mail": "MailMessage", "ip": "Ip", "url": "Url", "process": "Process"}[word]
		if typ == "" {
			t.Fatalf("unknown evidence %q", l)
		}
		ev := correlate.Evidence{ODataType: correlate.GraphEvidenceType(typ), MdeDeviceID: kv["device"] + kv["id"], DeviceDNSName: kv["host"]}
		switch word {
		case "file", "process":
			ev.FileDetails = &correlate.FileDetails{SHA256: kv["sha256"], SHA1: kv["sha1"], FileName: kv["name"]}
		case "user", "mail":
			if kv["oid"]+kv["upn"]+kv["sid"] != "" {
				ev.UserAccount = &correlate.UserAccount{AzureAdUserID: kv["oid"], UserPrincipalName: kv["upn"], UserSID: kv["sid"]}
			}
			ev.NetworkMessageID = kv["nmid"]
		case "ip":
			ev.IPAddress = strings.Fields(l)[1]
		case "url":
			ev.URL = strings.Fields(l)[1]
		}
		al.Evidence = append(al.Evidence, ev)
	}
	return inc
}

// openLedger is a transactional store in a fresh directory, in a
// transaction.
func openLedger(t *testing.T) *state.TxStore {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tx := state.NewTxStore(st)
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tx.Abort()
		st.Close()
	})
	return tx
}
