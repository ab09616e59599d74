package correlate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FromDefenderAPI converts the Microsoft 365 Defender incidents API response
// (GET /api/incidents: {"value":[{incidentId, incidentName, alerts[{alertId,
// entities[]}]}]}) into Incidents, so incidents already triaged in Defender
// can be compared with, or seeded into, stitch's output. The API response
// carries no tenant id, so the caller names it.
func FromDefenderAPI(tenant string, data []byte) ([]Incident, error) {
	var doc struct {
		Value []defIncident `json:"value"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("correlate: defender incidents: %w", err)
	}
	out := make([]Incident, 0, len(doc.Value))
	for _, d := range doc.Value {
		inc := Incident{
			ID: strconv.FormatInt(d.IncidentID, 10), TenantID: tenant, DisplayName: d.IncidentName, Description: d.IncidentName,
			Severity: Severity(d.Severity), Status: lowerFirst(d.Status),
			Classification: lowerFirst(d.Classification), Determination: lowerFirst(d.Determination),
			CreatedDateTime: d.CreatedTime, LastUpdateDateTime: d.LastUpdateTime, AssignedTo: d.AssignedTo,
			Tags: append([]string{}, d.Tags...), Alerts: []Alert{}, CorrelationReasons: []CorrelationReason{}, Version: 1,
		}
		if d.RedirectIncidentID != nil {
			s := strconv.FormatInt(*d.RedirectIncidentID, 10)
			inc.RedirectIncidentID = &s
		}
		var ents []Entity
		for _, a := range d.Alerts {
			al := Alert{ID: a.AlertID, Title: a.Title, Description: a.Description, Severity: Severity(a.Severity),
				Status: lowerFirst(a.Status), ServiceSource: a.ServiceSource, DetectionSource: a.DetectionSource,
				Category: a.Category, MitreTechniques: append([]string{}, a.MitreTechniques...),
				CreatedDateTime: a.CreationTime, FirstActivityDateTime: a.FirstActivity, LastActivityDateTime: a.LastActivity,
				Evidence: []Evidence{}}
			for _, e := range a.Entities {
				ev, es := e.evidence(a.CreationTime)
				al.Evidence = append(al.Evidence, ev)
				ents = append(ents, es...)
			}
			inc.Alerts = append(inc.Alerts, al)
		}
		for _, e := range ents {
			inc.ImpactedAssets.add(e)
		}
		inc.ImpactedAssets.sort()
		out = append(out, inc)
	}
	return out, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

type defIncident struct {
	IncidentID         int64      `json:"incidentId"`
	RedirectIncidentID *int64     `json:"redirectIncidentId"`
	IncidentName       string     `json:"incidentName"`
	CreatedTime        time.Time  `json:"createdTime"`
	LastUpdateTime     time.Time  `json:"lastUpdateTime"`
	AssignedTo         *string    `json:"assignedTo"`
	Classification     string     `json:"classification"`
	Determination      string     `json:"determination"`
	Status             string     `json:"status"`
	Severity           string     `json:"severity"`
	Tags               []string   `json:"tags"`
	Alerts             []defAlert `json:"alerts"`
}

type defAlert struct {
	AlertID         string      `json:"alertId"`
	ServiceSource   string      `json:"serviceSource"`
	CreationTime    time.Time   `json:"creationTime"`
	FirstActivity   time.Time   `json:"firstActivity"`
	LastActivity    time.Time   `json:"lastActivity"`
	Title           string      `json:"title"`
	Description     string      `json:"description"`
	Category        string      `json:"category"`
	Status          string      `json:"status"`
	Severity        string      `json:"severity"`
	DetectionSource string      `json:"detectionSource"`
	MitreTechniques []string    `json:"mitreTechniques"`
	Entities        []defEntity `json:"entities"`
}

type defEntity struct {
	EntityType        string `json:"entityType"`
	SHA1              string `json:"sha1"`
	SHA256            string `json:"sha256"`
	FileName          string `json:"fileName"`
	FilePath          string `json:"filePath"`
	ProcessCommand    string `json:"processCommandLine"`
	IPAddress         string `json:"ipAddress"`
	URL               string `json:"url"`
	AccountName       string `json:"accountName"`
	DomainName        string `json:"domainName"`
	UserSID           string `json:"userSid"`
	AadUserID         string `json:"aadUserId"`
	UserPrincipalName string `json:"userPrincipalName"`
	MailboxAddress    string `json:"mailboxAddress"`
	ClusterBy         string `json:"clusterBy"`
	Subject           string `json:"subject"`
	DeviceID          string `json:"deviceId"`
	RegistryKey       string `json:"registryKey"`
	RegistryValue     string `json:"registryValue"`
}

func (e defEntity) evidence(t time.Time) (Evidence, []Entity) {
	ev := Evidence{ODataType: GraphEvidenceType(e.EntityType), CreatedDateTime: t, Roles: []string{},
		IPAddress: e.IPAddress, URL: e.URL, ProcessCommand: e.ProcessCommand, ClusterBy: e.ClusterBy,
		Subject: e.Subject, MdeDeviceID: e.DeviceID, PrimaryAddress: e.MailboxAddress,
		RegistryKey: e.RegistryKey, RegistryValue: e.RegistryValue}
	var ents []Entity
	add := func(x Entity, ok bool) {
		if ok {
			ents = append(ents, x)
		}
	}
	if e.SHA1 != "" || e.SHA256 != "" || e.FileName != "" {
		ev.FileDetails = &FileDetails{SHA1: e.SHA1, SHA256: e.SHA256, FileName: e.FileName, FilePath: e.FilePath}
		add(FileHash(e.SHA256))
		add(FileHash(e.SHA1))
	}
	if e.AccountName != "" || e.UserSID != "" || e.AadUserID != "" || e.UserPrincipalName != "" {
		ev.UserAccount = &UserAccount{AccountName: e.AccountName, DomainName: e.DomainName, UserSID: e.UserSID,
			AzureAdUserID: e.AadUserID, UserPrincipalName: e.UserPrincipalName}
		if x, ok := UserUPN(e.UserPrincipalName); ok {
			ents = append(ents, x)
		} else if x, ok := UserNT(e.DomainName, e.AccountName); ok {
			ents = append(ents, x)
		}
	}
	add(IP(e.IPAddress))
	add(URL(e.URL))
	add(Mailbox(e.MailboxAddress))
	add(DeviceID(e.DeviceID))
	return ev, ents
}
