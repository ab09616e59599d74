package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline"
	"github.com/stitch-xdr/stitch/pipeline/pipelinetest"
)

// Block on sight of addresses through the whole pipeline: an endpoint
// alert names its C2 address and a mail alert its phishing URL, and
// playbooks block both. Later telemetry — another device connecting to
// the address (DeviceNetworkEvents, a hundred times), an account clicking
// the URL (UrlClickEvents), a new message carrying it (EmailEvents and
// EmailUrlInfo) — gets the playbooks' actions at once (RunAntivirusScan
// on the device, SoftDeleteEmail of the copy), each once, and a
// block-on-sight alert that the correlator places in the incident that
// blocked the address.
func TestRespondNetworkBlockOnSight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	playbooks := filepath.Join(t.TempDir(), "playbooks.yaml")
	if err := os.WriteFile(playbooks, []byte(`playbooks:
  - name: c2-address
    reason: a destination address named in an endpoint alert is treated as command and control
    when:
      serviceSource: [Microsoft Defender for Endpoint]
      evidence: [ip]
    actions: [BlockIndicator, RunAntivirusScan]
    indicators: [ip]
  - name: phishing-url
    reason: a URL named in a mail alert is treated as phishing
    when:
      serviceSource: [Microsoft Defender for Office 365]
      evidence: [url]
    actions: [BlockIndicator, SoftDeleteEmail]
    indicators: [url]
automation:
  default: full
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := pipelinetest.Start(t, ctx, "network-sight", func(c *pipeline.Config) { c.Respond.Playbooks = playbooks })
	topic := run.Config.Topics.Inputs[0]
	row := func(table, at, props string) *kgo.Record {
		return &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf(`{"time":%q,"tenantId":"t1","category":"AdvancedHunting-%s","properties":{"Timestamp":%q,%s}}`, at, table, at, props))}
	}
	const (
		t0  = "2024-05-04T08:00:00Z"
		c2  = "203.0.113.50"
		url = "https://login.phish.example/owa"
	)
	run.Produce(t, ctx,
		row("AlertEvidence", t0, `"AlertId":"da-n1","EntityType":"Machine","EvidenceRole":"Impacted","DeviceId":"dev-a","DeviceName":"ws-a.contoso.com"`),
		row("AlertEvidence", t0, `"AlertId":"da-n1","EntityType":"Ip","EvidenceRole":"Related","EvidenceDirection":"Destination","RemoteIP":"`+c2+`"`),
		row("AlertInfo", t0, `"AlertId":"da-n1","Title":"Connection to a command and control server","Category":"CommandAndControl","Severity":"High","ServiceSource":"Microsoft Defender for Endpoint","DetectionSource":"EDR"`),
		row("AlertEvidence", t0, `"AlertId":"fa-n1","EntityType":"MailMessage","EvidenceRole":"Impacted","NetworkMessageId":"m-n1","AccountUpn":"alice@contoso.com"`),
		row("AlertEvidence", t0, `"AlertId":"fa-n1","EntityType":"Url","EvidenceRole":"Related","RemoteUrl":"`+url+`"`),
		row("AlertInfo", t0, `"AlertId":"fa-n1","Title":"Phishing URL delivered","Category":"InitialAccess","Severity":"Medium","ServiceSource":"Microsoft Defender for Office 365","DetectionSource":"Microsoft Defender for Office 365"`),
	)
	// actions reads the actions topic until ok accepts the latest versions.
	actions := func(what string, ok func(map[string]respond.Action) bool) map[string]respond.Action {
		t.Helper()
		for {
			byTarget := map[string]respond.Action{}
			if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.Actions, 200*time.Millisecond, func(r *kgo.Record) error {
				var a respond.Action
				if err := json.Unmarshal(r.Value, &a); err != nil {
					return err
				}
				k, _ := a.Target.Key(a.Type)
				byTarget[a.Type+" "+k] = a
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if ok(byTarget) {
				return byTarget
			}
			if ctx.Err() != nil {
				t.Fatalf("never: %s (actions %v)", what, keys(byTarget))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	blocked := actions("both addresses blocked", func(m map[string]respond.Action) bool {
		_, ip := m["BlockIndicator indicator:IpAddress:"+c2]
		_, u := m["BlockIndicator indicator:Url:"+url]
		return ip && u
	})
	// Telemetry after the blocks were decided: a device beaconing, a
	// click, a new message to carol.
	var later []*kgo.Record
	for i := range 100 {
		at := fmt.Sprintf("2024-05-04T09:%02d:%02dZ", i/60, i%60)
		later = append(later, row("DeviceNetworkEvents", at, `"DeviceId":"dev-b","DeviceName":"ws-b.contoso.com","ActionType":"ConnectionSuccess","RemoteIP":"`+c2+`","RemotePort":443`))
	}
	const t1 = "2024-05-04T09:05:00Z"
	later = append(later,
		row("UrlClickEvents", t1, `"Url":"`+url+`","ActionType":"ClickAllowed","AccountUpn":"bob@contoso.com","NetworkMessageId":"m-n1","IPAddress":"198.51.100.9"`),
		row("EmailEvents", t1, `"NetworkMessageId":"m-n2","RecipientEmailAddress":"carol@contoso.com","RecipientObjectId":"o-carol","SenderFromAddress":"x@phish.example","UrlCount":1`),
		row("EmailUrlInfo", t1, `"NetworkMessageId":"m-n2","Url":"`+url+`","UrlDomain":"login.phish.example","UrlLocation":"Body"`),
	)
	run.Produce(t, ctx, later...)
	got := actions("the sighted device scanned and the new copy soft-deleted", func(m map[string]respond.Action) bool {
		_, scan := m["RunAntivirusScan device:dev-b"]
		_, del := m["SoftDeleteEmail mail:m-n2/carol@contoso.com"]
		return scan && del
	})
	scan, del := got["RunAntivirusScan device:dev-b"], got["SoftDeleteEmail mail:m-n2/carol@contoso.com"]
	if scan.IncidentID != blocked["BlockIndicator indicator:IpAddress:"+c2].IncidentID || scan.Version != 1 || scan.Status != respond.StatusApproved {
		t.Errorf("scan of dev-b: %+v", scan)
	}
	if del.IncidentID != blocked["BlockIndicator indicator:Url:"+url].IncidentID || del.Version != 1 {
		t.Errorf("soft-delete of carol's copy: %+v", del)
	}

	// The block-on-sight alerts join the incidents that blocked the
	// addresses, once each.
	deadline := time.Now().Add(60 * time.Second)
	for {
		incs := map[string]correlate.Incident{}
		if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.Incidents, 200*time.Millisecond, func(r *kgo.Record) error {
			var inc correlate.Incident
			if err := json.Unmarshal(r.Value, &inc); err != nil {
				return err
			}
			incs[inc.ID] = inc
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sights := map[string][]string{} // incident of the blocking alert -> sight alerts' titles
		for _, inc := range incs {
			if inc.Status == correlate.StatusRedirected {
				continue
			}
			var blocking string
			var titles []string
			for _, a := range inc.Alerts {
				switch {
				case a.ID == "da-n1" || a.ID == "fa-n1":
					blocking = a.ID
				case a.DetectionSource == respond.SightDetectionSource:
					titles = append(titles, a.Title)
				}
			}
			sights[blocking] = append(sights[blocking], titles...)
		}
		want := map[string]int{"da-n1": 1, "fa-n1": 2}
		ok := len(sights[""]) == 0
		for id, n := range want {
			ok = ok && len(sights[id]) == n
		}
		if ok {
			t.Logf("block-on-sight alerts by incident: %q", sights)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("block-on-sight alerts by the incident they joined: %q, want %v (none alone)", sights, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Nothing acted twice: every action of the topic is at its first
	// version but the blocks (which the sight alerts' incident versions
	// may add to).
	for k, a := range actions("settled", func(map[string]respond.Action) bool { return true }) {
		if a.Type != respond.BlockIndicator && a.Version != 1 {
			t.Errorf("%s at version %d", k, a.Version)
		}
		if strings.HasPrefix(k, "RunAntivirusScan device:dev-") && k != "RunAntivirusScan device:dev-a" && k != "RunAntivirusScan device:dev-b" {
			t.Errorf("unexpected %s", k)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
