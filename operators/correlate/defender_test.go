package correlate

import (
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// sharedData finds ../shared/data relative to the module root, or skips.
func sharedData(t *testing.T, rel string) string {
	t.Helper()
	return shareddata.Path(t, rel)
}

// The three incidents of the Defender incidents API example keep their
// documented fields when read into Incident and written back out.
func TestDefenderIncidentsRoundTrip(t *testing.T) {
	raw, err := os.ReadFile(sharedData(t, "m365d/m365d-incidents-api/api-list-incidents.response.json"))
	if err != nil {
		t.Fatal(err)
	}
	incs, err := FromDefenderAPI("b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c", raw)
	if err != nil {
		t.Fatal(err)
	}
	var src struct {
		Value []map[string]any `json:"value"`
	}
	if err := json.Unmarshal(raw, &src); err != nil {
		t.Fatal(err)
	}
	if len(incs) != 3 || len(src.Value) != 3 {
		t.Fatalf("got %d incidents, want 3", len(incs))
	}
	v := newValidator(t)
	for i, inc := range incs {
		v.validate(t, inc)
		out, err := json.Marshal(inc)
		if err != nil {
			t.Fatal(err)
		}
		var back Incident
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, inc) {
			t.Errorf("incident %s changes when marshalled and read back", inc.ID)
		}
		var got map[string]any
		_ = json.Unmarshal(out, &got)
		want := src.Value[i]
		eqs := func(gk, wk string, norm func(string) string) {
			w, _ := want[wk].(string)
			if f, ok := want[wk].(float64); ok {
				w = strconv.FormatInt(int64(f), 10)
			}
			g, _ := got[gk].(string)
			if norm != nil {
				w = norm(w)
			}
			if g != w {
				t.Errorf("incident %v: %s = %q, want %s %q", want["incidentId"], gk, g, wk, w)
			}
		}
		eqs("id", "incidentId", nil)
		eqs("displayName", "incidentName", nil)
		eqs("severity", "severity", strings.ToLower)
		eqs("status", "status", lowerFirst)
		eqs("classification", "classification", lowerFirst)
		eqs("determination", "determination", lowerFirst)
		sameTime(t, got["createdDateTime"], want["createdTime"])
		sameTime(t, got["lastUpdateDateTime"], want["lastUpdateTime"])
		if got["redirectIncidentId"] != want["redirectIncidentId"] || got["assignedTo"] != want["assignedTo"] {
			t.Errorf("incident %v: redirect/assignedTo %v/%v", want["incidentId"], got["redirectIncidentId"], got["assignedTo"])
		}
		wa, ga := want["alerts"].([]any), got["alerts"].([]any)
		if len(wa) != len(ga) {
			t.Fatalf("incident %v: %d alerts, want %d", want["incidentId"], len(ga), len(wa))
		}
		for j := range wa {
			w, g := wa[j].(map[string]any), ga[j].(map[string]any)
			for gk, wk := range map[string]string{"id": "alertId", "title": "title", "serviceSource": "serviceSource",
				"detectionSource": "detectionSource", "category": "category"} {
				if g[gk] != w[wk] {
					t.Errorf("alert %v: %s = %v, want %v", w["alertId"], gk, g[gk], w[wk])
				}
			}
			sameTime(t, g["firstActivityDateTime"], w["firstActivity"])
			sameTime(t, g["lastActivityDateTime"], w["lastActivity"])
			we, ge := w["entities"].([]any), g["evidence"].([]any)
			if len(we) != len(ge) {
				t.Fatalf("alert %v: %d evidence, want %d entities", w["alertId"], len(ge), len(we))
			}
			for k := range we {
				checkEvidence(t, we[k].(map[string]any), ge[k].(map[string]any))
			}
		}
	}
	// What the example documents about each incident's assets.
	if a := incs[0].ImpactedAssets; len(a.Users) != 1 || len(a.IPs) != 1 || a.IPs[0] != "62.216.203.204" {
		t.Errorf("ransomware incident assets = %+v", a)
	}
	if a := incs[1].ImpactedAssets; len(a.Files) == 0 {
		t.Errorf("mimikatz incident has no file: %+v", a)
	}
	if a := incs[2].ImpactedAssets; len(a.Mailboxes) == 0 || len(a.IPs) != 1 {
		t.Errorf("phish incident assets = %+v", a)
	}
}

func sameTime(t *testing.T, got, want any) {
	t.Helper()
	g, _ := time.Parse(time.RFC3339Nano, got.(string))
	w, err := time.Parse(time.RFC3339Nano, want.(string))
	if err != nil || !g.Equal(w) {
		t.Errorf("time %v, want %v", got, want)
	}
}

// checkEvidence compares an API entity with its Graph evidence rendering.
func checkEvidence(t *testing.T, ent, ev map[string]any) {
	t.Helper()
	typ := ent["entityType"].(string)
	if want := GraphEvidenceType(typ); ev["@odata.type"] != want {
		t.Errorf("entity %s: @odata.type %v, want %s", typ, ev["@odata.type"], want)
	}
	ua, _ := ev["userAccount"].(map[string]any)
	fd, _ := ev["fileDetails"].(map[string]any)
	for ek, get := range map[string]func() any{
		"sha1":              func() any { return fd["sha1"] },
		"fileName":          func() any { return fd["fileName"] },
		"ipAddress":         func() any { return ev["ipAddress"] },
		"userSid":           func() any { return ua["userSid"] },
		"aadUserId":         func() any { return ua["azureAdUserId"] },
		"userPrincipalName": func() any { return ua["userPrincipalName"] },
		"mailboxAddress":    func() any { return ev["primaryAddress"] },
		"subject":           func() any { return ev["subject"] },
		"clusterBy":         func() any { return ev["clusterBy"] },
	} {
		if w, ok := ent[ek].(string); ok && w != "" && get() != w {
			t.Errorf("entity %s: %s = %v, want %q", typ, ek, get(), w)
		}
	}
}
