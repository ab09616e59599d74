package simulator

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// columns reads the advanced-hunting column reference (table -> column ->
// type) from the shared public data, or skips the test when it is absent.
func columns(t *testing.T) map[string]map[string]string {
	t.Helper()
	path := shareddata.Path(t, "m365d/advanced-hunting-tables/columns.tsv")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Split(line, "\t")
		if i == 0 || len(f) < 3 {
			continue
		}
		if out[f[0]] == nil {
			out[f[0]] = map[string]string{}
		}
		out[f[0]][f[1]] = f[2]
	}
	return out
}

func TestDeterministicForASeed(t *testing.T) {
	var stories [][]Story
	gen := func(opts ...Option) []byte {
		s := New(append([]Option{AttackEvery(500)}, opts...)...)
		defer func() { stories = append(stories, s.Stories()) }()
		var all []byte
		for range 5000 {
			var k []byte
			k, all = s.Next(all)
			all = append(all, k...)
			all = append(all, '\n')
		}
		return all
	}
	a, b := gen(Seed(7)), gen(Seed(7))
	if !bytes.Equal(a, b) {
		t.Fatal("two simulators with the same seed produced different streams")
	}
	if !reflect.DeepEqual(stories[0], stories[1]) || len(stories[0]) != 10 {
		t.Fatalf("stories differ between runs of one seed, or not one per 500 records: %d and %d", len(stories[0]), len(stories[1]))
	}
	if bytes.Equal(a, gen(Seed(8))) {
		t.Fatal("different seeds produced the same stream")
	}
}

type row struct {
	key   string
	table string
	v     *fastjson.Value
}

// run produces n records and parses each one, failing on anything that is
// not a well-formed streaming-API record.
func run(t *testing.T, s *Simulator, n int) []row {
	t.Helper()
	var rows []row
	var buf []byte
	var lastTime time.Time
	for i := range n {
		var key []byte
		key, buf = s.Next(buf[:0])
		v, err := fastjson.ParseBytes(buf)
		if err != nil {
			t.Fatalf("record %d is not JSON: %v\n%s", i, err, buf)
		}
		if string(v.GetStringBytes("tenantId")) != string(key) {
			t.Fatalf("record %d: key %q is not its tenantId", i, key)
		}
		if string(v.GetStringBytes("operationName")) != "Publish" {
			t.Fatalf("record %d: operationName is not Publish", i)
		}
		cat := string(v.GetStringBytes("category"))
		table, ok := strings.CutPrefix(cat, "AdvancedHunting-")
		if !ok {
			t.Fatalf("record %d: category %q", i, cat)
		}
		tm, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes("time")))
		if err != nil {
			t.Fatalf("record %d: time: %v", i, err)
		}
		if tm.Before(lastTime) {
			t.Fatalf("record %d: receipt time went back from %v to %v", i, lastTime, tm)
		}
		lastTime = tm
		p := v.GetObject("properties")
		if p == nil {
			t.Fatalf("record %d: no properties object", i)
		}
		if _, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes("properties", "Timestamp"))); err != nil {
			t.Fatalf("record %d: Timestamp: %v\n%s", i, err, buf)
		}
		rows = append(rows, row{string(key), table, v})
		buf = append([]byte(nil), buf...) // rows keep referencing the parsed bytes
	}
	return rows
}

func TestRecordsUseOnlyDocumentedColumns(t *testing.T) {
	cols := columns(t)
	// 25 records a second: every kind's story (a few minutes of event
	// time) is written out within the records read.
	s := New(EventsPerSecond(25), AttackEvery(2000))
	rows := run(t, s, 20000)
	seen := map[string]int{}
	for i, r := range rows {
		tc := cols[r.table]
		if tc == nil {
			t.Fatalf("record %d: table %s is not an advanced-hunting table", i, r.table)
		}
		seen[r.table]++
		r.v.GetObject("properties").Visit(func(k []byte, v *fastjson.Value) {
			typ, ok := tc[string(k)]
			if !ok {
				t.Errorf("record %d: %s has no column %s", i, r.table, k)
				return
			}
			if v.Type() == fastjson.TypeNull {
				return
			}
			var good bool
			switch typ {
			case "string":
				good = v.Type() == fastjson.TypeString
			case "datetime":
				_, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes()))
				good = v.Type() == fastjson.TypeString && err == nil
			case "long", "int":
				_, err := v.Int64()
				good = err == nil
			case "bool", "boolean":
				good = v.Type() == fastjson.TypeTrue || v.Type() == fastjson.TypeFalse
			case "dynamic":
				good = v.Type() == fastjson.TypeObject || v.Type() == fastjson.TypeArray
			}
			if !good {
				t.Errorf("record %d: %s.%s is %s, got %s", i, r.table, k, typ, v)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
	}
	for _, table := range []string{"DeviceProcessEvents", "DeviceNetworkEvents", "DeviceFileEvents", "DeviceLogonEvents",
		"DeviceRegistryEvents", "DeviceImageLoadEvents", "DeviceEvents", "DeviceInfo", "EmailEvents", "EmailAttachmentInfo",
		"EmailUrlInfo", "UrlClickEvents", "IdentityLogonEvents", "IdentityQueryEvents", "IdentityDirectoryEvents",
		"IdentityInfo", "CloudAppEvents", "AlertInfo", "AlertEvidence"} {
		if seen[table] == 0 {
			t.Errorf("no %s record in %d records", table, len(rows))
		}
	}
}

func TestStoriesAppearWithTheirAlerts(t *testing.T) {
	// 25 records a second: a story's few minutes take about 6,000 records,
	// so most of the twelve planted complete, of every kind.
	s := New(EventsPerSecond(25), AttackEvery(2500), Tenants(2))
	rows := run(t, s, 30000)
	stories := s.Stories()
	complete := map[StoryKind]int{}
	type alertSeen struct {
		tenant     string
		pos        int
		evidence   []*fastjson.Value
		firstEvPos int
	}
	alerts := map[string]*alertSeen{}
	get := func(id string) *alertSeen {
		if alerts[id] == nil {
			alerts[id] = &alertSeen{pos: -1, firstEvPos: -1}
		}
		return alerts[id]
	}
	for i, r := range rows {
		switch r.table {
		case "AlertInfo":
			a := get(string(r.v.GetStringBytes("properties", "AlertId")))
			a.tenant, a.pos = r.key, i
		case "AlertEvidence":
			a := get(string(r.v.GetStringBytes("properties", "AlertId")))
			a.evidence = append(a.evidence, r.v.Get("properties"))
			if a.firstEvPos < 0 {
				a.firstEvPos = i
			}
		}
	}
	evidenceOf := map[string][]*fastjson.Value{}
	for id, a := range alerts {
		evidenceOf[id] = a.evidence
	}
	evidenceFirst := 0
	for _, st := range stories {
		if !st.Complete {
			continue
		}
		complete[st.Kind]++
		if len(st.SameIncident) != len(st.Alerts) || len(st.Alerts) < 2 {
			t.Fatalf("story %s: %d alerts, %d to group", st.Kind, len(st.Alerts), len(st.SameIncident))
		}
		services := map[string]bool{}
		for _, sa := range st.Alerts {
			a := alerts[sa.ID]
			if a == nil || a.pos < 0 {
				t.Fatalf("story %s: alert %s (%s) never emitted", st.Kind, sa.ID, sa.Title)
			}
			if a.tenant != st.Tenant {
				t.Fatalf("alert %s emitted for tenant %s, story is in %s", sa.ID, a.tenant, st.Tenant)
			}
			if len(a.evidence) == 0 {
				t.Fatalf("alert %s has no evidence", sa.ID)
			}
			if a.firstEvPos < a.pos {
				evidenceFirst++
			}
			services[sa.ServiceSource] = true
			// The identifiers the story promises are the ones on the User/Mailbox evidence.
			for _, ev := range a.evidence {
				et := string(ev.GetStringBytes("EntityType"))
				if et != "User" && et != "Mailbox" {
					continue
				}
				for _, id := range sa.Identifiers {
					if ev.Get(id) == nil {
						t.Errorf("alert %s (%s): %s evidence lacks %s", sa.ID, sa.Title, et, id)
					}
				}
				for _, k := range []string{"AccountUpn", "AccountSid", "AccountObjectId"} {
					got := string(ev.GetStringBytes(k))
					want := map[string]string{"AccountUpn": st.User, "AccountSid": st.UserSID, "AccountObjectId": st.UserObjectID}[k]
					if got != "" && got != want {
						t.Errorf("alert %s: %s %s, story victim is %s", sa.ID, k, got, want)
					}
				}
			}
		}
		switch st.Kind {
		case PhishToEndpoint:
			if !services["Microsoft Defender for Office 365"] || !services["Microsoft Defender for Endpoint"] {
				t.Errorf("phish story services: %v", services)
			}
			assertPhishTelemetry(t, rows, st)
		case IdentityCompromise:
			wantServices(t, st, services, "Microsoft Defender for Identity", "Microsoft Defender for Cloud Apps", "Microsoft Entra ID Protection")
		case LateralMovement:
			wantServices(t, st, services, "Microsoft Defender for Endpoint", "Microsoft Defender for Identity")
			assertLateralTelemetry(t, rows, st)
			// The tool's hash is what joins the two devices' alerts.
			for _, dev := range []string{st.DeviceID, st.TargetID} {
				if !evidenceHas(st, evidenceOf, func(ev *fastjson.Value) bool {
					return string(ev.GetStringBytes("SHA256")) == st.SHA256 && string(ev.GetStringBytes("DeviceId")) == dev
				}) {
					t.Errorf("lateral story: no alert names the tool %s on device %s", st.SHA256, dev)
				}
			}
		case MaliciousURLClick:
			wantServices(t, st, services, "Microsoft Defender for Office 365", "Microsoft Defender for Endpoint")
			assertClickTelemetry(t, rows, st)
			for _, sa := range st.Alerts {
				if !evidenceHas(Story{Alerts: []StoryAlert{sa}}, evidenceOf, func(ev *fastjson.Value) bool { return string(ev.GetStringBytes("RemoteUrl")) == st.URL }) {
					t.Errorf("url story: alert %s (%s) does not name the URL %s", sa.ID, sa.Title, st.URL)
				}
			}
		case IllicitConsent:
			wantServices(t, st, services, "Microsoft Defender for Cloud Apps", "Microsoft Entra ID Protection")
			assertConsentTelemetry(t, rows, st)
			if !evidenceHas(st, evidenceOf, func(ev *fastjson.Value) bool { return string(ev.GetStringBytes("OAuthApplicationId")) == st.OAuthAppID }) {
				t.Errorf("consent story: no alert names the app %s", st.OAuthAppID)
			}
		default:
			t.Errorf("story of unknown kind %q", st.Kind)
		}
	}
	for _, k := range Kinds {
		if complete[k] == 0 {
			t.Fatalf("complete stories per kind: %v of %d planted", complete, len(stories))
		}
	}
	if evidenceFirst == 0 {
		t.Error("no alert had evidence emitted before the alert itself")
	}
}

func wantServices(t *testing.T, st Story, services map[string]bool, want ...string) {
	t.Helper()
	for _, w := range want {
		if !services[w] {
			t.Errorf("%s story lacks an alert from %s: %v", st.Kind, w, services)
		}
	}
}

// evidenceHas says whether an evidence row of one of st's alerts satisfies ok.
func evidenceHas(st Story, evidence map[string][]*fastjson.Value, ok func(*fastjson.Value) bool) bool {
	for _, sa := range st.Alerts {
		for _, ev := range evidence[sa.ID] {
			if ok(ev) {
				return true
			}
		}
	}
	return false
}

// assertLateralTelemetry checks the trail of a lateral-movement story: the
// victim's account logs on to the target from the first device, and the
// tool's hash is written on both.
func assertLateralTelemetry(t *testing.T, rows []row, st Story) {
	t.Helper()
	var logon bool
	files := map[string]bool{}
	for _, r := range rows {
		p := r.v.Get("properties")
		switch r.table {
		case "DeviceLogonEvents":
			logon = logon || string(p.GetStringBytes("DeviceId")) == st.TargetID && string(p.GetStringBytes("AccountSid")) == st.UserSID &&
				strings.EqualFold(string(p.GetStringBytes("RemoteDeviceName"))+".", st.Device[:strings.IndexByte(st.Device, '.')+1])
		case "DeviceFileEvents":
			if string(p.GetStringBytes("SHA256")) == st.SHA256 {
				files[string(p.GetStringBytes("DeviceId"))] = true
			}
		}
	}
	if !logon || !files[st.DeviceID] || !files[st.TargetID] {
		t.Errorf("lateral story %s -> %s: network logon %v, tool on source %v, on target %v", st.Device, st.Target, logon, files[st.DeviceID], files[st.TargetID])
	}
}

// assertClickTelemetry checks that the URL was mailed, clicked by the victim
// and reached from the victim's device.
func assertClickTelemetry(t *testing.T, rows []row, st Story) {
	t.Helper()
	var mailed, click, conn bool
	for _, r := range rows {
		p := r.v.Get("properties")
		switch r.table {
		case "EmailUrlInfo":
			mailed = mailed || string(p.GetStringBytes("Url")) == st.URL && string(p.GetStringBytes("NetworkMessageId")) == st.NetworkMessageID
		case "UrlClickEvents":
			click = click || string(p.GetStringBytes("Url")) == st.URL && string(p.GetStringBytes("AccountUpn")) == st.User
		case "DeviceNetworkEvents":
			conn = conn || string(p.GetStringBytes("DeviceId")) == st.DeviceID && strings.Contains(st.URL, "://"+string(p.GetStringBytes("RemoteUrl"))+"/")
		}
	}
	if !mailed || !click || !conn {
		t.Errorf("url story %s: mailed %v, clicked %v, reached from the device %v", st.URL, mailed, click, conn)
	}
}

// assertConsentTelemetry checks that the victim consented to the app and
// the app then acted on the victim's mailbox.
func assertConsentTelemetry(t *testing.T, rows []row, st Story) {
	t.Helper()
	var consent, used bool
	for _, r := range rows {
		p := r.v.Get("properties")
		if r.table != "CloudAppEvents" || string(p.GetStringBytes("AccountObjectId")) != st.UserObjectID {
			continue
		}
		consent = consent || string(p.GetStringBytes("ActionType")) == "Consent to application." && string(p.GetStringBytes("ObjectId")) == st.OAuthAppID
		used = used || string(p.GetStringBytes("OAuthAppId")) == st.OAuthAppID
	}
	if !consent || !used {
		t.Errorf("consent story %s: consent %v, app activity %v", st.OAuthAppID, consent, used)
	}
}

// assertPhishTelemetry checks the cross-product trail of a phish story: the
// attachment's hash reaches the victim's device and the click names the message.
func assertPhishTelemetry(t *testing.T, rows []row, st Story) {
	t.Helper()
	var attach, file, click bool
	for _, r := range rows {
		p := r.v.Get("properties")
		switch r.table {
		case "EmailAttachmentInfo":
			attach = attach || string(p.GetStringBytes("SHA256")) == st.SHA256 && string(p.GetStringBytes("NetworkMessageId")) == st.NetworkMessageID
		case "DeviceFileEvents":
			file = file || string(p.GetStringBytes("SHA256")) == st.SHA256 && string(p.GetStringBytes("DeviceId")) == st.DeviceID
		case "UrlClickEvents":
			click = click || string(p.GetStringBytes("NetworkMessageId")) == st.NetworkMessageID && string(p.GetStringBytes("AccountUpn")) == st.User
		}
	}
	if !attach || !file || !click {
		t.Errorf("phish story %s: attachment %v, file on device %v, click %v", st.NetworkMessageID, attach, file, click)
	}
}

func TestWriteFileWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stream.jsonl")
	if err := WriteFile(path, 2000, Seed(3)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if err := fastjson.ValidateBytes(sc.Bytes()); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
	}
	if n != 2000 {
		t.Fatalf("wrote %d lines, want 2000", n)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "x.jsonl"), 1); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func BenchmarkSimulatorNext(b *testing.B) {
	s := New()
	var buf []byte
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		_, buf = s.Next(buf[:0])
		bytes += int64(len(buf))
	}
	b.SetBytes(bytes / int64(b.N))
}

func TestTinyWorldsStillTellStories(t *testing.T) {
	s := New(Tenants(5), Devices(1), Users(1), EventsPerSecond(10), AttackEvery(50))
	rows := run(t, s, 3000)
	tenants := map[string]bool{}
	for _, r := range rows {
		tenants[r.key] = true
	}
	if len(tenants) != 5 {
		t.Fatalf("records from %d tenants, want 5", len(tenants))
	}
	done := 0
	for _, st := range s.Stories() {
		if st.Complete {
			done++
		}
	}
	if done < 10 {
		t.Fatalf("%d complete stories with one device and one user, want at least 10", done)
	}
}

// AttackAtStart: the first story's rows, alerts included, are among the
// first records, dated before the start.
func TestAttackAtStart(t *testing.T) {
	start := time.Date(2024, 6, 3, 8, 0, 0, 0, time.UTC)
	s := New(Start(start), AttackAtStart(), AttackEvery(0))
	alerts := 0
	for range 100 {
		_, v := s.Next(nil)
		if strings.Contains(string(v), `"AdvancedHunting-AlertInfo"`) {
			alerts++
		}
	}
	st := s.Stories()
	if len(st) != 1 || !st[0].Start.Before(start) || alerts != len(st[0].Alerts) || alerts == 0 {
		t.Fatalf("stories %+v, %d alerts in the first 100 records", st, alerts)
	}
}
