package correlate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/stitch-xdr/stitch/internal/english"
)

// Incident is one correlated incident, shaped after the Microsoft Graph
// security incident resource (ids, status and severity enums, alerts with
// Graph evidence) plus what stitch adds: impactedAssets, correlationReasons
// and version. Every output is the full current state; Version grows by one
// per change, so consumers keep the highest.
type Incident struct {
	ID                 string    `json:"id"`
	TenantID           string    `json:"tenantId"`
	DisplayName        string    `json:"displayName"`
	Description        string    `json:"description"`
	Severity           string    `json:"severity"`
	Status             string    `json:"status"`
	Classification     string    `json:"classification"`
	Determination      string    `json:"determination"`
	CreatedDateTime    time.Time `json:"createdDateTime"`
	LastUpdateDateTime time.Time `json:"lastUpdateDateTime"`
	RedirectIncidentID *string   `json:"redirectIncidentId"`
	AssignedTo         *string   `json:"assignedTo"`
	Tags               []string  `json:"tags"`
	// Comments are the analysts' latest notes (MaxIncidentComments).
	Comments           []Comment           `json:"comments,omitempty"`
	Alerts             []Alert             `json:"alerts"`
	ImpactedAssets     ImpactedAssets      `json:"impactedAssets"`
	CorrelationReasons []CorrelationReason `json:"correlationReasons"`
	Version            int64               `json:"version"`
}

// Incident statuses (Graph incidentStatus).
const (
	StatusActive     = "active"
	StatusInProgress = "inProgress"
	StatusResolved   = "resolved"
	StatusRedirected = "redirected"
)

// TagIdleClosed marks an incident stitch resolved because no alert joined it
// for the idle period; its state was released.
const TagIdleClosed = "stitch:idle-closed"

// Alert is one alert of an incident (Graph security alert, subset).
type Alert struct {
	ID                    string     `json:"id"`
	Title                 string     `json:"title"`
	Description           string     `json:"description,omitempty"`
	Severity              string     `json:"severity"`
	Status                string     `json:"status"`
	ServiceSource         string     `json:"serviceSource"`
	DetectionSource       string     `json:"detectionSource"`
	Category              string     `json:"category"`
	MitreTechniques       []string   `json:"mitreTechniques"`
	CreatedDateTime       time.Time  `json:"createdDateTime"`
	FirstActivityDateTime time.Time  `json:"firstActivityDateTime"`
	LastActivityDateTime  time.Time  `json:"lastActivityDateTime"`
	Evidence              []Evidence `json:"evidence"`
}

// Evidence is one Graph alertEvidence; ODataType says which derived type
// (deviceEvidence, userEvidence, fileEvidence, ...) and which fields apply.
type Evidence struct {
	ODataType         string       `json:"@odata.type"`
	CreatedDateTime   time.Time    `json:"createdDateTime"`
	Roles             []string     `json:"roles"`
	MdeDeviceID       string       `json:"mdeDeviceId,omitempty"`
	DeviceDNSName     string       `json:"deviceDnsName,omitempty"`
	UserAccount       *UserAccount `json:"userAccount,omitempty"`
	FileDetails       *FileDetails `json:"fileDetails,omitempty"`
	ProcessCommand    string       `json:"processCommandLine,omitempty"`
	IPAddress         string       `json:"ipAddress,omitempty"`
	URL               string       `json:"url,omitempty"`
	NetworkMessageID  string       `json:"networkMessageId,omitempty"`
	Subject           string       `json:"subject,omitempty"`
	PrimaryAddress    string       `json:"primaryAddress,omitempty"`
	ClusterBy         string       `json:"clusterBy,omitempty"`
	AppID             string       `json:"appId,omitempty"`
	DisplayName       string       `json:"displayName,omitempty"`
	RegistryKey       string       `json:"registryKey,omitempty"`
	RegistryValueName string       `json:"registryValueName,omitempty"`
	RegistryValue     string       `json:"registryValue,omitempty"`
}

// UserAccount is Graph's userAccount of user and mailbox evidence.
type UserAccount struct {
	AccountName       string `json:"accountName,omitempty"`
	DomainName        string `json:"domainName,omitempty"`
	UserSID           string `json:"userSid,omitempty"`
	AzureAdUserID     string `json:"azureAdUserId,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
}

// FileDetails is Graph's fileDetails of file and process evidence.
type FileDetails struct {
	SHA1     string `json:"sha1,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	FileName string `json:"fileName,omitempty"`
	FilePath string `json:"filePath,omitempty"`
	FileSize int64  `json:"fileSize,omitempty"`
}

// ImpactedAssets lists the canonical entities of an incident by kind.
type ImpactedAssets struct {
	Devices   []string `json:"devices"`
	Users     []string `json:"users"`
	Mailboxes []string `json:"mailboxes"`
	Files     []string `json:"files"`
	IPs       []string `json:"ips"`
	URLs      []string `json:"urls"`
	Apps      []string `json:"apps"`
}

// CorrelationReason is why two alerts are in one incident: the shared entity
// (as an entity key) and the pair of alerts. It is what an analyst reads first.
type CorrelationReason struct {
	Entity string    `json:"entity"`
	Alerts [2]string `json:"alerts"`
	// Merged names the incident this link redirected into this one, if any.
	Merged string `json:"mergedIncidentId,omitempty"`
}

// IncidentID is the deterministic id of the incident whose first alert is
// alertID, so a replay of the same input gives the same ids.
func IncidentID(tenant, alertID string) string {
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(alertID))
	return "inc-" + hex.EncodeToString(h.Sum(nil)[:10])
}

var severityRank = map[string]int{"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4}

// Severity maps advanced-hunting and Defender API severities to Graph's
// lower-case enum.
func Severity(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if _, ok := severityRank[s]; ok && s != "" {
		return s
	}
	if s == "info" {
		return "informational"
	}
	return "unknown"
}

// refresh recomputes what derives from the alerts: severity, times,
// displayName, description and impacted assets.
func (inc *Incident) refresh(entities []Entity) {
	sev := "informational"
	var cats, sources []string
	for i, a := range inc.Alerts {
		if severityRank[a.Severity] > severityRank[sev] {
			sev = a.Severity
		}
		if i == 0 || a.CreatedDateTime.Before(inc.CreatedDateTime) {
			inc.CreatedDateTime = a.CreatedDateTime
		}
		if a.LastActivityDateTime.After(inc.LastUpdateDateTime) {
			inc.LastUpdateDateTime = a.LastActivityDateTime
		}
		if a.Category != "" && !slices.Contains(cats, a.Category) {
			cats = append(cats, a.Category)
		}
		if a.ServiceSource != "" && !slices.Contains(sources, a.ServiceSource) {
			sources = append(sources, a.ServiceSource)
		}
	}
	inc.Severity = sev
	for _, e := range entities {
		inc.ImpactedAssets.add(e)
	}
	inc.ImpactedAssets.sort()
	inc.DisplayName = displayName(inc, cats, sources)
	titles := make([]string, 0, len(inc.Alerts))
	for _, a := range inc.Alerts {
		if !slices.Contains(titles, a.Title) {
			titles = append(titles, a.Title)
		}
	}
	inc.Description = english.Count(len(inc.Alerts), "alert") + ": " + strings.Join(titles, "; ")
}

// displayName says what happened and where, in the style of Defender's names:
// "Multi-stage incident involving Initial access & Execution on 2 devices and
// 1 user reported by multiple sources".
func displayName(inc *Incident, cats, sources []string) string {
	where := inc.ImpactedAssets.where()
	if len(inc.Alerts) == 1 {
		return inc.Alerts[0].Title + " " + where
	}
	by := "reported by one source"
	if len(sources) > 1 {
		by = "reported by multiple sources"
	}
	switch len(cats) {
	case 0:
		return fmt.Sprintf("Incident with %d alerts %s %s", len(inc.Alerts), where, by)
	case 1:
		return fmt.Sprintf("%s incident %s %s", humanize(cats[0]), where, by)
	}
	names := make([]string, len(cats))
	for i, c := range cats {
		names[i] = humanize(c)
	}
	list := strings.Join(names[:len(names)-1], ", ") + " & " + names[len(names)-1]
	return fmt.Sprintf("Multi-stage incident involving %s %s %s", list, where, by)
}

// humanize turns "InitialAccess" into "Initial access".
func humanize(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte(' ')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (a *ImpactedAssets) add(e Entity) {
	v := e.Value
	var list *[]string
	switch e.Kind {
	case KindDevice:
		list, v = &a.Devices, strings.TrimPrefix(strings.TrimPrefix(v, "name:"), "id:")
	case KindUser:
		list = &a.Users
		if _, rest, ok := strings.Cut(v, ":"); ok {
			v = rest
		}
	case KindMailbox:
		list = &a.Mailboxes
	case KindFile:
		list = &a.Files
	case KindIP:
		list = &a.IPs
	case KindURL:
		list = &a.URLs
	case KindCloudApp:
		list = &a.Apps
	default:
		return
	}
	if !slices.Contains(*list, v) {
		*list = append(*list, v)
	}
}

func (a *ImpactedAssets) sort() {
	for _, l := range []*[]string{&a.Devices, &a.Users, &a.Mailboxes, &a.Files, &a.IPs, &a.URLs, &a.Apps} {
		if *l == nil {
			*l = []string{}
		}
		slices.Sort(*l)
	}
}

func (a *ImpactedAssets) where() string {
	var parts []string
	count := func(n int, one, many string) {
		switch {
		case n == 1:
			parts = append(parts, "1 "+one)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", n, many))
		}
	}
	count(len(a.Devices), "device", "devices")
	count(len(a.Users), "user", "users")
	count(len(a.Mailboxes), "mailbox", "mailboxes")
	if len(parts) == 0 {
		count(len(a.Apps), "cloud app", "cloud apps")
	}
	if len(parts) == 0 {
		return "with no impacted device or user"
	}
	if len(parts) == 1 {
		return "on " + parts[0]
	}
	return "on " + strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
