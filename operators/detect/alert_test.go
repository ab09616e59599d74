package detect

import (
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

func TestAlertOfMatch(t *testing.T) {
	s := NewSet()
	s.Add("r.yml", []byte(rule("  sel:\n    Image|endswith: '\\x.exe'\n  condition: sel\n")))
	tester := NewTester(s)
	defer tester.Close()
	var alerts []Alert
	for _, p := range []map[string]any{
		{"FolderPath": `C:\x.exe`, "AccountDomain": "CORP", "AccountName": "bob", "RemoteIP": "1.2.3.4"},
	} {
		tester.Add(process(p))
	}
	// Evaluate the batch ourselves to build the alert from the row.
	tester.norm.Flush(func(b normalize.Batch) {
		defer b.Release()
		tester.ev.Eval(b, func(r *Rule, row int) {
			alerts = append(alerts, NewAlert(r, b, row, time.Hour), NewAlert(r, b, row, time.Hour))
		})
	})
	if len(alerts) != 2 {
		t.Fatalf("%d alerts", len(alerts))
	}
	a := alerts[0]
	if a.Info.ID != alerts[1].Info.ID || a.Key != alerts[1].Key {
		t.Error("one match, two alert ids")
	}
	if a.Info.DetectionSource != "customDetection" || a.Info.Severity != "high" || a.Info.Category != "Execution" || len(a.Info.Techniques) != 1 {
		t.Errorf("alert %+v", a.Info)
	}
	if len(a.Evidence) != 3 || a.Evidence[2].Evidence.IPAddress != "1.2.3.4" || a.Evidence[0].Entities[0] != "device:id:dev1" || a.Evidence[1].Evidence.UserAccount.AccountName != "bob" {
		t.Errorf("evidence %+v", a.Evidence)
	}
	for level, want := range map[string]string{"critical": "high", "informational": "informational", "": "unknown"} {
		if got := Severity(level); got != want {
			t.Errorf("Severity(%q) = %q, want %q", level, got, want)
		}
	}
	if got := category([]string{"attack.t1003", "attack.g0016", "attack.credential-access"}); got != "CredentialAccess" {
		t.Errorf("category %q", got)
	}
}
