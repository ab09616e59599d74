package detect

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// process is a DeviceProcessEvents streaming record.
func process(props map[string]any) []byte {
	p := map[string]any{"Timestamp": "2026-01-02T03:04:05Z", "DeviceId": "dev1", "DeviceName": "host1", "ActionType": "ProcessCreated"}
	for k, v := range props {
		p[k] = v
	}
	b, _ := json.Marshal(map[string]any{"time": "2026-01-02T03:04:05Z", "tenantId": "t1", "category": "AdvancedHunting-DeviceProcessEvents", "properties": p})
	return b
}

func rule(detection string) string {
	return "title: test\nid: r1\nlevel: high\ntags: [attack.execution, attack.t1059.001]\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n" + detection
}

// matches compiles one rule and says which of the rows it matches.
func matches(t *testing.T, r string, rows ...map[string]any) []int {
	t.Helper()
	s := NewSet()
	s.Add("rule.yml", []byte(r))
	if len(s.Problems) > 0 {
		t.Fatalf("rule does not load: %v", s.Problems)
	}
	tester := NewTester(s)
	defer tester.Close()
	var got []int
	for k, row := range rows {
		tester.OnMatch = func(Match) { got = append(got, k) }
		tester.Add(process(row))
		tester.Flush()
	}
	if tester.Skipped > 0 {
		t.Fatalf("rows skipped: %s", tester.LastSkip)
	}
	return got
}

func TestModifiers(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString([]byte("IEX (New-Object Net.WebClient)"))
	cases := []struct {
		name, det string
		rows      []map[string]any
		want      []int
	}{
		{"equals is case-insensitive", "  sel:\n    Image: 'C:\\Windows\\System32\\cmd.exe'\n  condition: sel",
			[]map[string]any{{"FolderPath": `c:\windows\system32\CMD.exe`}, {"FolderPath": `C:\Windows\System32\cmd.exe.bak`}}, []int{0}},
		{"endswith", "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
			[]map[string]any{{"FolderPath": `C:\x\CMD.EXE`}, {"FolderPath": `C:\x\notcmd.exe2`}}, []int{0}},
		{"startswith and contains", "  sel:\n    Image|startswith: 'C:\\Users\\'\n    CommandLine|contains: 'http'\n  condition: sel",
			[]map[string]any{{"FolderPath": `C:\Users\a\x.exe`, "ProcessCommandLine": "x HTTP://a"}, {"FolderPath": `C:\Windows\x.exe`, "ProcessCommandLine": "http"}}, []int{0}},
		{"all", "  sel:\n    CommandLine|contains|all:\n      - ' -enc '\n      - ' -nop'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "ps -nop -enc AAA"}, {"ProcessCommandLine": "ps -enc AAA"}}, []int{0}},
		{"wildcards inside", "  sel:\n    CommandLine: '*rundll32*,#?*'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "RUNDLL32 a.dll,#1"}, {"ProcessCommandLine": "rundll32 a.dll,#"}}, []int{0}},
		{"stars inside", "  sel:\n    CommandLine: '*\\temp\\\\*.ps1'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": `ps C:\TEMP\x\a.PS1`}, {"ProcessCommandLine": `ps C:\temp\a.ps1 x`}, {"ProcessCommandLine": `a.ps1 \temp\`}}, []int{0}},
		{"escaped wildcard", "  sel:\n    CommandLine: 'a\\*b'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "a*b"}, {"ProcessCommandLine": "axxb"}}, []int{0}},
		{"re is case-sensitive, re|i is not", "  a:\n    CommandLine|re: '^Get-[A-Z]'\n  b:\n    CommandLine|re|i: 'invoke-mimikatz'\n  condition: a or b",
			[]map[string]any{{"ProcessCommandLine": "Get-Item"}, {"ProcessCommandLine": "get-item"}, {"ProcessCommandLine": "x INVOKE-MIMIKATZ"}}, []int{0, 2}},
		{"cased", "  sel:\n    CommandLine|cased|contains: 'Secret'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "a Secret"}, {"ProcessCommandLine": "a secret"}}, []int{0}},
		{"base64", "  sel:\n    CommandLine|base64|contains: 'IEX (New-Object Net.WebClient)'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "powershell -e " + enc}, {"ProcessCommandLine": "powershell -e " + strings.ToLower(enc)}}, []int{0}},
		{"base64offset", "  sel:\n    CommandLine|base64offset|contains: 'Net.WebClient'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "powershell -e " + enc}, {"ProcessCommandLine": "plain Net.WebClient"}}, []int{0}},
		{"wide base64offset", "  sel:\n    CommandLine|wide|base64offset|contains: 'ping'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "powershell -enc " + base64.StdEncoding.EncodeToString([]byte("x\x00p\x00i\x00n\x00g\x00"))}, {"ProcessCommandLine": "ping"}}, []int{0}},
		{"windash", "  sel:\n    CommandLine|windash|contains: ' -exec bypass'\n  condition: sel",
			[]map[string]any{{"ProcessCommandLine": "ps /exec bypass"}, {"ProcessCommandLine": "ps –exec bypass"}, {"ProcessCommandLine": "ps exec bypass"}}, []int{0, 1}},
		{"cidr", "  sel:\n    ParentProcessId|gt: 0\n  net:\n    CommandLine|contains: x\n  condition: sel and net",
			[]map[string]any{{"InitiatingProcessId": 5, "ProcessCommandLine": "x"}, {"InitiatingProcessId": 0, "ProcessCommandLine": "x"}}, []int{0}},
		{"numeric", "  sel:\n    ProcessId|gte: 100\n    ProcessId|lt: 200\n  condition: sel",
			[]map[string]any{{"ProcessId": 100}, {"ProcessId": 200}, {"ProcessId": 99}}, []int{0}},
		{"exists", "  sel:\n    OriginalFileName|exists: true\n  none:\n    Company|exists: false\n  condition: sel and none",
			[]map[string]any{{"ProcessVersionInfoOriginalFileName": "a.exe"}, {"ProcessVersionInfoOriginalFileName": "a.exe", "ProcessVersionInfoCompanyName": "MS"}, {}}, []int{0}},
		{"null", "  sel:\n    OriginalFileName: null\n  condition: sel",
			[]map[string]any{{"ProcessVersionInfoOriginalFileName": "a.exe"}, {}}, []int{1}},
		{"neq", "  sel:\n    IntegrityLevel|neq: High\n  condition: sel",
			[]map[string]any{{"ProcessIntegrityLevel": "high"}, {"ProcessIntegrityLevel": "Medium"}}, []int{1}},
		{"fieldref", "  sel:\n    Image|fieldref: ParentImage\n  condition: sel",
			[]map[string]any{{"FolderPath": `C:\a.exe`, "InitiatingProcessFolderPath": `c:\A.exe`}, {"FolderPath": `C:\a.exe`, "InitiatingProcessFolderPath": `C:\b.exe`}}, []int{0}},
		{"derived User", "  sel:\n    User|contains: 'AUTHORI'\n  condition: sel",
			[]map[string]any{{"AccountDomain": "NT AUTHORITY", "AccountName": "SYSTEM"}, {"AccountDomain": "CORP", "AccountName": "bob"}}, []int{0}},
		{"Hashes", "  sel:\n    Hashes|contains: 'SHA256=ABCD'\n  condition: sel",
			[]map[string]any{{"SHA256": "abcd12"}, {"SHA1": "abcd"}}, []int{0}},
		{"1 of, all of, not, them", "  sel_a:\n    Image|endswith: '\\a.exe'\n  sel_b:\n    CommandLine|contains: b\n  filter:\n    CommandLine|contains: z\n  condition: 1 of sel_* and not filter",
			[]map[string]any{{"FolderPath": `C:\a.exe`}, {"ProcessCommandLine": "b"}, {"ProcessCommandLine": "bz"}, {"ProcessCommandLine": "q"}}, []int{0, 1}},
		{"all of them", "  sel_a:\n    Image|endswith: '\\a.exe'\n  sel_b:\n    CommandLine|contains: b\n  condition: all of them",
			[]map[string]any{{"FolderPath": `C:\a.exe`, "ProcessCommandLine": "b"}, {"FolderPath": `C:\a.exe`}}, []int{0}},
		{"list of maps is or", "  sel:\n    - Image|endswith: '\\a.exe'\n    - CommandLine: b\n  condition: sel",
			[]map[string]any{{"FolderPath": `C:\a.exe`}, {"ProcessCommandLine": "B"}, {"ProcessCommandLine": "bb"}}, []int{0, 1}},
		{"several conditions", "  a:\n    CommandLine: a\n  b:\n    CommandLine: b\n  condition:\n    - a\n    - b",
			[]map[string]any{{"ProcessCommandLine": "a"}, {"ProcessCommandLine": "b"}, {"ProcessCommandLine": "c"}}, []int{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := matches(t, rule(c.det), c.rows...)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("matched rows %v, want %v", got, c.want)
			}
		})
	}
}

func TestCIDR(t *testing.T) {
	r := "title: net\nid: n1\nlogsource:\n  category: network_connection\n  product: windows\ndetection:\n  sel:\n    DestinationIp|cidr:\n      - 10.0.0.0/8\n      - 'fd00::/8'\n  condition: sel\n"
	s := NewSet()
	s.Add("net.yml", []byte(r))
	if len(s.Rules) != 1 {
		t.Fatal(s.Problems)
	}
	tester := NewTester(s)
	defer tester.Close()
	for _, ip := range []string{"10.1.2.3", "11.1.2.3", "fd00::1", "::ffff:10.0.0.1"} {
		b, _ := json.Marshal(map[string]any{"time": "2026-01-02T03:04:05Z", "tenantId": "t1", "category": "AdvancedHunting-DeviceNetworkEvents",
			"properties": map[string]any{"Timestamp": "2026-01-02T03:04:05Z", "RemoteIP": ip, "DeviceName": "h", "ActionType": "ConnectionSuccess"}})
		tester.Add(b)
	}
	tester.Flush()
	if tester.Counts["n1"] != 3 {
		t.Errorf("matches %d, want 3", tester.Counts["n1"])
	}
}

// TestProblems: a rule that cannot load is reported with file, line and
// reason, the others load; unmapped fields and logsources are unsupported.
func TestProblems(t *testing.T) {
	cases := []struct {
		name, rule  string
		line        int
		unsupported bool
		reason      string
	}{
		{"unmapped field", rule("  sel:\n    CurrentDirectory|contains: x\n  condition: sel\n"), 10, true, "field CurrentDirectory has no column in DeviceProcessEvents"},
		{"unknown modifier", rule("  sel:\n    Image|sortof: x\n  condition: sel\n"), 10, false, `unknown modifier "sortof"`},
		{"undefined search", rule("  sel:\n    Image: x\n  condition: sel and other\n"), 11, false, `search "other" is not defined`},
		{"bad condition", rule("  sel:\n    Image: x\n  condition: sel and and\n"), 11, false, "condition"},
		{"unknown logsource", strings.Replace(rule("  sel:\n    Image: x\n  condition: sel\n"), "process_creation", "webserver", 1), 5, true, `logsource category "webserver" maps to no table`},
		{"keywords", rule("  kw:\n    - mimikatz\n  condition: kw\n"), 9, true, "keyword lists"},
		{"bad regexp", rule("  sel:\n    CommandLine|re: '(?<=a)b'\n  condition: sel\n"), 10, true, "regular expression"},
		{"expand", rule("  sel:\n    CommandLine|expand: '%x%'\n  condition: sel\n"), 10, true, "expand"},
		{"all with one value", rule("  sel:\n    CommandLine|contains|all: x\n  condition: sel\n"), 10, false, "all modifier needs a list"},
		{"not yaml", "title: [\n", 1, false, "not YAML"},
		{"no condition", rule("  sel:\n    Image: x\n"), 8, false, "no condition"},
		{"correlation without rules", "title: c\ncorrelation:\n  type: event_count\n", 1, false, "names no rules"},
		{"value_sum without field", "title: c\ncorrelation:\n  type: value_sum\n  rules: [x]\n  timespan: 1h\n  condition: {gt: 5}\n", 1, false, "value_sum needs condition.field"},
		{"value_avg without condition", "title: c\ncorrelation:\n  type: value_avg\n  rules: [x]\n  timespan: 1h\n", 1, false, "value_avg needs a condition"},
		{"fraction of a count", "title: c\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1h\n  condition: {gt: 2.5}\n", 1, false, "needs a whole number"},
		{"percentage over 100", "title: c\ncorrelation:\n  type: value_percentile\n  rules: [x]\n  timespan: 1h\n  condition: {field: Image, gt: 120}\n", 1, false, "a percentage, 0 to 100"},
		{"pySigma percentile", "title: c\ncorrelation:\n  type: value_percentile\n  rules: [x]\n  timespan: 1h\n  condition: {field: Image, percentile: 95, gt: 10}\n", 1, true, "condition.percentile is not in the Sigma correlation specification 2.1.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewSet()
			s.Add("r.yml", []byte(c.rule))
			s.Add("good.yml", []byte(rule("  sel:\n    Image: x\n  condition: sel\n")))
			if len(s.Rules) != 1 || len(s.Problems) != 1 {
				t.Fatalf("rules %d, problems %v", len(s.Rules), s.Problems)
			}
			p := s.Problems[0]
			if p.File != "r.yml" || p.Line != c.line || p.Unsupported != c.unsupported || !strings.Contains(p.Reason, c.reason) {
				t.Errorf("got %s (line %d, unsupported %v), want line %d, unsupported %v, reason with %q", p, p.Line, p.Unsupported, c.line, c.unsupported, c.reason)
			}
		})
	}
}

func TestRuleMetadata(t *testing.T) {
	s := NewSet()
	s.Add("r.yml", []byte(rule("  sel:\n    Image: x\n  condition: sel\n")))
	r := s.Rules[0]
	if r.Table != "DeviceProcessEvents" || r.Level != "high" || fmt.Sprint(r.Techniques) != "[T1059.001]" || r.ID != "r1" {
		t.Errorf("rule %+v", r)
	}
}

// TestGenericLogsources: rules of the logsources whose events have no
// dedicated table read the generic WindowsEvent rows by the events' own
// field names, narrowed to their channel and event ids; a security rule
// mixing logons with other events is unsupported, with the reason.
func TestGenericLogsources(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"svcctl.yml": "title: svcctl\nlogsource: {product: windows, service: security}\ndetection:\n  sel:\n    EventID: 5145\n    RelativeTargetName: svcctl\n  condition: sel\n",
		"access.yml": "title: lsass access\nlogsource: {product: windows, category: process_access}\ndetection:\n  sel:\n    TargetImage|endswith: '\\lsass.exe'\n  condition: sel\n",
		"mixed.yml":  "title: mixed\nlogsource: {product: windows, service: security}\ndetection:\n  sel:\n    EventID: [4624, 4688]\n  condition: sel\n",
	})
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 2 || len(set.Problems) != 1 || !set.Problems[0].Unsupported || !strings.Contains(set.Problems[0].Reason, "mix logons") {
		t.Fatalf("rules %d, problems %v: want svcctl and lsass access loaded, mixed unsupported", len(set.Rules), set.Problems)
	}
	tester := NewTester(set)
	got := map[string]int{}
	tester.OnMatch = func(m Match) { got[m.Title]++ }
	for _, ev := range []string{
		`{"EventID":5145,"Channel":"Security","Hostname":"ws6","TimeCreated":"2020-08-06T05:20:46Z","RelativeTargetName":"svcctl"}`,
		`{"EventID":5145,"Channel":"Security","Hostname":"ws6","TimeCreated":"2020-08-06T05:20:46Z","RelativeTargetName":"srvsvc"}`,
		`{"EventID":10,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"ws5","UtcTime":"2020-10-19 02:56:14","TargetImage":"C:\\Windows\\system32\\lsass.exe"}`,
		// the same field in another channel's event is not a process access
		`{"EventID":10,"Channel":"Security","Hostname":"ws5","TimeCreated":"2020-10-19 02:56:14","TargetImage":"C:\\Windows\\system32\\lsass.exe"}`,
	} {
		tester.Add([]byte(ev))
	}
	tester.Flush()
	tester.Close()
	if got["svcctl"] != 1 || got["lsass access"] != 1 {
		t.Errorf("matches %v, want one of each", got)
	}
}

// TestExpandPlaceholders: the expand modifier takes the values of a
// placeholder from placeholders.yml beside the rules, every combination an
// alternative; \% is a plain percent; a placeholder with no values makes
// the rule unsupported, naming it.
func TestExpandPlaceholders(t *testing.T) {
	dir := t.TempDir()
	// a rule named before the placeholder file in the walk
	writeFiles(t, dir, map[string]string{
		"a_admins.yml":     "title: admin tool\nlogsource: {category: process_creation}\ndetection:\n  sel:\n    User|expand: '%Domain%\\\\%Admins%'\n    CommandLine|expand|contains: '\\%TEMP\\%\\\\%Tool%'\n  condition: sel\n",
		"b_missing.yml":    "title: missing\nlogsource: {category: process_creation}\ndetection:\n  sel:\n    User|expand: '%Nobody%'\n  condition: sel\n",
		"placeholders.yml": "placeholders:\n  Domain: CORP\n  Admins: [admin, 'adm-*']\n  Tool: [x.exe, y.exe]\n",
	})
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 1 || len(set.Problems) != 1 || !set.Problems[0].Unsupported || !strings.Contains(set.Problems[0].Reason, "%Nobody%") {
		t.Fatalf("rules %d, problems %v", len(set.Rules), set.Problems)
	}
	for _, c := range []struct {
		domain, name, cmd string
		want              bool
	}{
		{"CORP", "admin", `run %TEMP%\x.exe now`, true},
		{"corp", "adm-joe", `%TEMP%\y.exe`, true},
		{"CORP", "joe", `%TEMP%\x.exe`, false},
		{"CORP", "admin", `%TEMP%\z.exe`, false},
		{"CORP", "admin", `C:\x.exe`, false},
	} {
		tester := NewTester(set)
		got := false
		tester.OnMatch = func(Match) { got = true }
		tester.Add(process(map[string]any{"AccountDomain": c.domain, "AccountName": c.name, "ProcessCommandLine": c.cmd}))
		tester.Flush()
		tester.Close()
		if got != c.want {
			t.Errorf("%s\\%s %q: match %v, want %v", c.domain, c.name, c.cmd, got, c.want)
		}
	}
}

// writeFiles writes name → body files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTimeModifiers: minute ... year take a part of a date field (the
// event's UtcTime), compared as a number, alone or with lt/lte/gt/gte.
func TestTimeModifiers(t *testing.T) {
	at := func(ts string) map[string]any { return map[string]any{"Timestamp": ts, "FolderPath": `C:\x\a.exe`} }
	rows := []map[string]any{at("2026-01-02T03:04:05Z"), at("2026-01-02T23:30:00Z"), at("2025-12-29T12:00:00Z")}
	for _, c := range []struct {
		sel  string
		want []int
	}{
		{"UtcTime|hour: 3", []int{0}},
		{"UtcTime|hour|gte: 22", []int{1}},
		{"UtcTime|minute: [4, 30]", []int{0, 1}},
		{"UtcTime|year: 2025", []int{2}},
		{"UtcTime|week: 1", []int{0, 1, 2}}, // ISO week 1 of 2026 starts on 29 December 2025
		{"UtcTime|month|lt: 12", []int{0, 1}},
	} {
		got := matches(t, rule("  sel:\n    "+c.sel+"\n  condition: sel\n"), rows...)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: rows %v, want %v", c.sel, got, c.want)
		}
	}
	s := NewSet()
	s.Add("r.yml", []byte(rule("  sel:\n    UtcTime|hour|contains: 3\n  condition: sel\n")))
	if len(s.Problems) != 1 || !strings.Contains(s.Problems[0].Reason, "hour") {
		t.Errorf("hour with contains: %v", s.Problems)
	}
}
