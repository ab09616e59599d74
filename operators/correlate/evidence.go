package correlate

import (
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

const graphNS = "#microsoft.graph.security."

// graphTypes maps advanced-hunting EntityType to the Graph evidence type.
var graphTypes = map[string]string{
	"machine": "deviceEvidence", "device": "deviceEvidence",
	"user": "userEvidence", "account": "userEvidence",
	"file": "fileEvidence", "process": "processEvidence",
	"ip": "ipEvidence", "url": "urlEvidence",
	"mailmessage": "analyzedMessageEvidence", "mailbox": "mailboxEvidence",
	"mailcluster":      "mailClusterEvidence",
	"cloudapplication": "cloudApplicationEvidence", "oauthapplication": "oauthApplicationEvidence",
	"registrykey": "registryKeyEvidence", "registryvalue": "registryValueEvidence",
	"securitygroup": "securityGroupEvidence",
}

// GraphEvidenceType is the Graph @odata.type of an advanced-hunting or
// Defender API entity type.
func GraphEvidenceType(entityType string) string {
	if t, ok := graphTypes[strings.ToLower(entityType)]; ok {
		return graphNS + t
	}
	return graphNS + "alertEvidence"
}

// roles maps EvidenceRole/EvidenceDirection to Graph evidenceRole values.
func roles(role, direction string) []string {
	out := []string{}
	switch strings.ToLower(role) {
	case "impacted":
		out = append(out, "compromised")
	case "related":
		out = append(out, "contextual")
	case "":
	default:
		out = append(out, strings.ToLower(role[:1])+role[1:])
	}
	switch strings.ToLower(direction) {
	case "source":
		out = append(out, "source")
	case "destination":
		out = append(out, "destination")
	}
	return out
}

type evCols struct {
	alertID, entityType, role, dir                     normalize.StringColumn
	devID, devName, sha1, sha256, fileName, folder     normalize.StringColumn
	remoteIP, remoteURL, netMsg, subject, upn, cmdline normalize.StringColumn
	accName, accDomain, sid, oid, oauth, app           normalize.StringColumn
	regKey, regName, regData                           normalize.StringColumn
	fileSize, appID                                    normalize.Int64Column
}

func evidenceCols(rec arrow.Record) evCols {
	s := func(c string) normalize.StringColumn { return normalize.Strings(rec, c) }
	return evCols{
		alertID: s("AlertId"), entityType: s("EntityType"), role: s("EvidenceRole"), dir: s("EvidenceDirection"),
		devID: s("DeviceId"), devName: s("DeviceName"), sha1: s("SHA1"), sha256: s("SHA256"),
		fileName: s("FileName"), folder: s("FolderPath"), remoteIP: s("RemoteIP"), remoteURL: s("RemoteUrl"),
		netMsg: s("NetworkMessageId"), subject: s("EmailSubject"), upn: s("AccountUpn"), cmdline: s("ProcessCommandLine"),
		accName: s("AccountName"), accDomain: s("AccountDomain"), sid: s("AccountSid"), oid: s("AccountObjectId"),
		oauth: s("OAuthApplicationId"), app: s("Application"),
		regKey: s("RegistryKey"), regName: s("RegistryValueName"), regData: s("RegistryValueData"),
		fileSize: normalize.Int64s(rec, "FileSize"), appID: normalize.Int64s(rec, "ApplicationId"),
	}
}

// evidence renders row i as Graph evidence and returns the non-user entities
// it names (user identifiers are collected by the caller).
func (c evCols) evidence(i int, t time.Time) (Evidence, []Entity) {
	et := c.entityType.Value(i)
	ev := Evidence{ODataType: GraphEvidenceType(et), CreatedDateTime: t, Roles: roles(c.role.Value(i), c.dir.Value(i))}
	var ents []Entity
	add := func(e Entity, ok bool) {
		if ok {
			ents = append(ents, e)
		}
	}
	if v := c.devID.Value(i); v != "" {
		ev.MdeDeviceID = v
		add(DeviceID(v))
	}
	if v := c.devName.Value(i); v != "" {
		ev.DeviceDNSName = v
		add(DeviceName(v))
	}
	if c.sha1.Value(i) != "" || c.sha256.Value(i) != "" || c.fileName.Value(i) != "" {
		ev.FileDetails = &FileDetails{SHA1: c.sha1.Value(i), SHA256: c.sha256.Value(i),
			FileName: c.fileName.Value(i), FilePath: c.folder.Value(i), FileSize: c.fileSize.Value(i)}
		add(FileHash(c.sha256.Value(i)))
		add(FileHash(c.sha1.Value(i)))
	}
	if v := c.remoteIP.Value(i); v != "" {
		ev.IPAddress = v
		add(IP(v))
	}
	if v := c.remoteURL.Value(i); v != "" {
		ev.URL = v
		add(URL(v))
	}
	if v := c.netMsg.Value(i); v != "" {
		ev.NetworkMessageID, ev.Subject = v, c.subject.Value(i)
		add(MailMessage(v))
	}
	if c.upn.Value(i) != "" || c.sid.Value(i) != "" || c.oid.Value(i) != "" || c.accName.Value(i) != "" {
		ev.UserAccount = &UserAccount{AccountName: c.accName.Value(i), DomainName: c.accDomain.Value(i),
			UserSID: c.sid.Value(i), AzureAdUserID: c.oid.Value(i), UserPrincipalName: c.upn.Value(i)}
	}
	if strings.EqualFold(et, "Mailbox") {
		ev.PrimaryAddress = c.upn.Value(i)
		add(Mailbox(c.upn.Value(i)))
	}
	if v := c.cmdline.Value(i); v != "" {
		ev.ProcessCommand = v
	}
	if id := c.appID.Value(i); id > 0 {
		ev.AppID, ev.DisplayName = strconv.FormatInt(id, 10), c.app.Value(i)
		add(CloudApp(id))
	}
	if v := c.oauth.Value(i); v != "" {
		ev.AppID, ev.DisplayName = v, c.app.Value(i)
		add(OAuthApp(v))
	}
	ev.RegistryKey, ev.RegistryValueName, ev.RegistryValue = c.regKey.Value(i), c.regName.Value(i), c.regData.Value(i)
	return ev, ents
}
