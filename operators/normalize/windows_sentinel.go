package normalize

import (
	"fmt"
	"net"
	"strings"

	"github.com/valyala/fastjson"
)

// Beside Windows events, a Sentinel workspace export holds the identity and
// cloud-app signals of the same attack: the Entra ID audit (AuditLogs) and
// the Microsoft 365 unified audit (OfficeActivity). Both become rows of
// CloudAppEvents, as Defender for Cloud Apps shows them: the operation as
// ActionType, the actor as AccountObjectId/AccountId, the client address as
// IPAddress, the OAuth application acting as OAuthAppId, the target as
// ObjectName/ObjectId/ObjectType, and the whole row as RawEventData. So
// detection rules and correlation see a mailbox read through an app from
// an address like any other cloud activity.

// The Sentinel log kinds AddLog reads besides Windows events.
const (
	sentinelAuditLogs      = "AuditLogs"
	sentinelOfficeActivity = "OfficeActivity"
)

// sentinelKind recognises an AuditLogs or OfficeActivity row: by its Type,
// or (where the export tool overwrote Type with a column of the same name)
// by the columns only that log has.
func sentinelKind(root *fastjson.Value) string {
	switch str(root.Get("Type")) {
	case sentinelAuditLogs:
		return sentinelAuditLogs
	case sentinelOfficeActivity:
		return sentinelOfficeActivity
	}
	has := func(k string) bool { return root.Get(k) != nil }
	switch {
	case has("OperationName") && has("LoggedByService") && (has("InitiatedBy") || has("TargetResources")):
		return sentinelAuditLogs
	case has("Operation") && (has("OfficeWorkload") || has("RecordType")) && has("UserId"):
		return sentinelOfficeActivity
	}
	return ""
}

// officeApps names the Defender for Cloud Apps application of an
// OfficeActivity workload.
var officeApps = map[string]string{
	"exchange":             "Microsoft Exchange Online",
	"sharepoint":           "Microsoft SharePoint Online",
	"onedrive":             "Microsoft OneDrive for Business",
	"microsoftteams":       "Microsoft Teams",
	"azureactivedirectory": "Microsoft Entra ID",
}

// sentinelRow maps an AuditLogs or OfficeActivity row to CloudAppEvents.
func sentinelRow(kind string, root *fastjson.Value) (string, map[string]any, string, error) {
	p := map[string]any{"RawEventData": root, "AuditSource": "Sentinel " + kind}
	get := func(k string) string {
		v := root.Get(k)
		if v == nil {
			return ""
		}
		if v.Type() == fastjson.TypeString {
			return str(v)
		}
		return string(v.MarshalTo(nil))
	}
	ts := ""
	switch kind {
	case sentinelOfficeActivity:
		op := get("Operation")
		if op == "" {
			return "", nil, "", fmt.Errorf("OfficeActivity row has no Operation")
		}
		p["ActionType"], p["ObjectName"] = op, op
		wl := get("OfficeWorkload")
		if wl == "" {
			wl = get("Workload")
		}
		if app, ok := officeApps[strings.ToLower(wl)]; ok {
			p["Application"] = app
		} else if wl != "" {
			p["Application"] = "Microsoft 365 " + wl
		}
		p["AccountId"], p["AccountDisplayName"] = get("UserId"), get("UserId")
		p["IPAddress"] = clientIP(first2(get("Client_IPAddress"), get("ClientIP"), get("ClientIPAddress")))
		p["OAuthAppId"] = get("ClientAppId")
		p["UserAgent"] = get("ClientInfoString")
		ts = first2(get("TimeGenerated"), get("CreationTime"), get("Start_Time"))
	case sentinelAuditLogs:
		op := get("OperationName")
		if op == "" {
			return "", nil, "", fmt.Errorf("AuditLogs row has no OperationName")
		}
		p["ActionType"], p["Application"] = strings.TrimSpace(op), "Microsoft Entra ID"
		p["ActivityType"] = get("Category")
		// InitiatedBy and TargetResources are JSON in a string column of
		// the export, or objects.
		var sub fastjson.Parser
		if by := jsonField(&sub, root.Get("InitiatedBy")); by != nil {
			if u := by.Get("user"); u != nil && u.Type() == fastjson.TypeObject {
				p["AccountObjectId"], p["AccountId"] = str(u.Get("id")), str(u.Get("userPrincipalName"))
				p["AccountDisplayName"] = first2(str(u.Get("displayName")), str(u.Get("userPrincipalName")))
				p["IPAddress"] = clientIP(str(u.Get("ipAddress")))
			}
			if app := by.Get("app"); app != nil && app.Type() == fastjson.TypeObject {
				p["OAuthAppId"] = str(app.Get("appId"))
				if p["AccountDisplayName"] == "" {
					p["AccountDisplayName"] = str(app.Get("displayName"))
				}
			}
		}
		var sub2 fastjson.Parser
		if tr := jsonField(&sub2, root.Get("TargetResources")); tr != nil {
			if arr, err := tr.Array(); err == nil && len(arr) > 0 {
				p["ObjectName"], p["ObjectId"], p["ObjectType"] = str(arr[0].Get("displayName")), str(arr[0].Get("id")), str(arr[0].Get("type"))
			}
		}
		ts = first2(get("TimeGenerated"), get("ActivityDateTime"))
	}
	if ts == "" {
		return "", nil, "", fmt.Errorf("%w: %s row has no TimeGenerated", errNoTime, kind)
	}
	return "CloudAppEvents", p, ts, nil
}

// jsonField is v itself when it is an object or array, or the JSON a
// string v holds, parsed with p; nil otherwise.
func jsonField(p *fastjson.Parser, v *fastjson.Value) *fastjson.Value {
	if v == nil {
		return nil
	}
	switch v.Type() {
	case fastjson.TypeObject, fastjson.TypeArray:
		return v
	case fastjson.TypeString:
		if x, err := p.Parse(str(v)); err == nil {
			return x
		}
	}
	return nil
}

func first2(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// clientIP drops the port Office writes after some addresses
// (1.2.3.4:5678, [2001:db8::1]:443).
func clientIP(s string) string {
	if net.ParseIP(s) != nil {
		return s
	}
	if h, _, err := net.SplitHostPort(s); err == nil && net.ParseIP(h) != nil {
		return h
	}
	return s
}

// otherSentinelLog names the log of a Sentinel export row that AddLog does
// not read (SigninLogs, AzureActivity, ...): a Type that is no
// advanced-hunting table, beside TimeGenerated. "" for anything else,
// which Add judges (a Type naming a table is an export row of it).
func otherSentinelLog(root *fastjson.Value) string {
	typ := str(root.Get("Type"))
	if typ == "" || root.Get("TimeGenerated") == nil || tableIndex[typ] != nil {
		return ""
	}
	return typ
}
