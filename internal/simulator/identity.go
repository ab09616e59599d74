package simulator

// Mail, identity and cloud-app background telemetry.

var externalSenders = []struct{ addr, name, domain, ip string }{
	{"news@updates.linkedin.com", "LinkedIn", "updates.linkedin.com", "108.174.0.215"},
	{"noreply@github.com", "GitHub", "github.com", "192.30.252.201"},
	{"billing@northwindtraders.com", "Northwind Billing", "northwindtraders.com", "52.101.68.12"},
	{"events@wingtiptoys.com", "Wingtip Events", "wingtiptoys.com", "40.107.22.91"},
	{"support@adventure-works.com", "Adventure Works Support", "adventure-works.com", "40.92.18.33"},
}

var subjects = []string{"Weekly sync", "Re: contract renewal", "Your invoice is ready", "Updated: project timeline", "Lunch on Friday?", "FW: travel request", "Quarterly results", "Action required: review access"}

// emailEvent writes an EmailEvents row and schedules, for the same
// NetworkMessageId, the attachment, URL and click rows that follow it.
func (s *Simulator) emailEvent(t *tenant, ts int64) {
	rcpt := s.rng.IntN(len(t.users))
	ru := &t.users[rcpt]
	nmid := string(appendGUID(nil, s.rng))
	r := &s.r
	r.begin(s.clock(), t.id, "EmailEvents")
	r.ts("Timestamp", ts)
	r.str("NetworkMessageId", nmid)
	r.strs("InternetMessageId", "<", nmid[:13], "@", t.mail, ">")
	inbound := s.rng.IntN(3) > 0
	if inbound {
		x := externalSenders[s.rng.IntN(len(externalSenders))]
		r.str("SenderMailFromAddress", x.addr)
		r.str("SenderFromAddress", x.addr)
		r.str("SenderDisplayName", x.name)
		r.null("SenderObjectId")
		r.str("SenderMailFromDomain", x.domain)
		r.str("SenderFromDomain", x.domain)
		r.str("SenderIPv4", x.ip)
		r.str("EmailDirection", "Inbound")
	} else {
		su := &t.users[s.rng.IntN(len(t.users))]
		r.str("SenderMailFromAddress", su.upn)
		r.str("SenderFromAddress", su.upn)
		r.str("SenderDisplayName", su.display)
		r.str("SenderObjectId", su.objectID)
		r.str("SenderMailFromDomain", t.mail)
		r.str("SenderFromDomain", t.mail)
		r.str("SenderIPv4", t.proxyIP)
		r.str("EmailDirection", "Intra-org")
	}
	r.null("SenderIPv6")
	r.str("RecipientEmailAddress", ru.upn)
	r.str("RecipientObjectId", ru.objectID)
	subj := subjects[s.rng.IntN(len(subjects))]
	r.str("Subject", subj)
	r.long("EmailClusterId", s.rng.Int64N(1<<40))
	r.str("DeliveryAction", "Delivered")
	r.str("DeliveryLocation", "Inbox/folder")
	r.null("ThreatTypes")
	r.null("DetectionMethods")
	attach := s.rng.IntN(5) == 0
	urls := s.rng.IntN(3) == 0
	r.long("BulkComplaintLevel", s.rng.Int64N(4))
	r.str("AuthenticationDetails", `{"SPF":"pass","DKIM":"pass","DMARC":"pass","CompAuth":"pass"}`)
	r.long("AttachmentCount", b2i(attach))
	r.long("UrlCount", b2i(urls))
	r.str("EmailLanguage", "en")
	r.str("Connectors", "")
	r.strInt("ReportId", nmid+"-", s.nextReportID(), "-0")
	r.str("LatestDeliveryLocation", "Inbox/folder")
	r.str("LatestDeliveryAction", "Delivered")
	r.end()
	if attach {
		name := docNames[s.rng.IntN(len(docNames))]
		sha := string(appendHex(nil, 64, s.rng))
		size := 20_000 + s.rng.Int64N(2_000_000)
		s.schedule(ts+2e6, t, -1, "EmailAttachmentInfo", func(s *Simulator, r *rec, ts int64) {
			attachmentRow(s, r, ts, t, nmid, "", "", rcpt, name, sha, size, false)
		})
	}
	if urls {
		host := []string{"contoso.sharepoint.com", "www.linkedin.com", "github.com", "aka.ms"}[s.rng.IntN(4)]
		url := "https://" + host + "/" + string(appendHex(nil, 10, s.rng))
		s.schedule(ts+3e6, t, -1, "EmailUrlInfo", func(s *Simulator, r *rec, ts int64) {
			urlInfoRow(s, r, ts, nmid, url, host)
		})
		if s.rng.IntN(3) == 0 {
			s.schedule(ts+int64(30+s.rng.IntN(600))*1e9, t, -1, "UrlClickEvents", func(s *Simulator, r *rec, ts int64) {
				clickRow(s, r, ts, t, nmid, url, rcpt, false)
			})
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func attachmentRow(s *Simulator, r *rec, ts int64, t *tenant, nmid, from, fromName string, rcpt int, name, sha string, size int64, malware bool) {
	u := &t.users[rcpt]
	r.ts("Timestamp", ts)
	r.str("NetworkMessageId", nmid)
	if from == "" {
		x := externalSenders[s.rng.IntN(len(externalSenders))]
		from, fromName = x.addr, x.name
	}
	r.str("SenderFromAddress", from)
	r.str("SenderDisplayName", fromName)
	r.null("SenderObjectId")
	r.str("RecipientEmailAddress", u.upn)
	r.str("RecipientObjectId", u.objectID)
	r.str("FileName", name)
	r.str("FileType", name[len(name)-4:])
	r.str("SHA256", sha)
	r.long("FileSize", size)
	if malware {
		r.str("ThreatTypes", "Malware")
		r.str("ThreatNames", "TrojanDownloader:O97M/Donoff")
		r.str("DetectionMethods", `{"Malware":["File detonation"]}`)
	} else {
		r.null("ThreatTypes")
		r.null("ThreatNames")
		r.null("DetectionMethods")
	}
	r.strInt("ReportId", nmid+"-", s.nextReportID(), "")
}

func urlInfoRow(s *Simulator, r *rec, ts int64, nmid, url, host string) {
	r.ts("Timestamp", ts)
	r.str("NetworkMessageId", nmid)
	r.str("Url", url)
	r.str("UrlDomain", host)
	r.str("UrlLocation", "Body")
	r.strInt("ReportId", nmid+"-", s.nextReportID(), "")
}

func clickRow(s *Simulator, r *rec, ts int64, t *tenant, nmid, url string, u int, suspicious bool) {
	r.ts("Timestamp", ts)
	r.str("Url", url)
	r.str("ActionType", "ClickAllowed")
	r.str("AccountUpn", t.users[u].upn)
	r.str("Workload", "Email")
	r.str("NetworkMessageId", nmid)
	if suspicious {
		r.str("ThreatTypes", "Phish")
		r.str("DetectionMethods", "URL detonation reputation")
	} else {
		r.null("ThreatTypes")
		r.null("DetectionMethods")
	}
	r.str("IPAddress", t.proxyIP)
	r.boolean("IsClickedThrough", suspicious)
	r.strs("UrlChain", `["`, url, `"]`)
	r.strInt("ReportId", "clk-", s.nextReportID(), "")
}

// identity writes the account columns Identity* tables share.
func identityAccount(r *rec, t *tenant, u *user) {
	r.str("AccountName", u.name)
	r.str("AccountDomain", t.dns)
	r.str("AccountUpn", u.upn)
	r.str("AccountSid", u.sid)
	r.str("AccountObjectId", u.objectID)
	r.str("AccountDisplayName", u.display)
}

func (s *Simulator) identityLogon(t *tenant, ts int64) {
	u := &t.users[s.rng.IntN(len(t.users))]
	d := &t.devices[u.device]
	r := &s.r
	r.begin(s.clock(), t.id, "IdentityLogonEvents")
	r.ts("Timestamp", ts)
	r.str("ActionType", "LogonSuccess")
	if s.rng.IntN(2) == 0 { // on-premises Kerberos, seen by Defender for Identity
		dc := &t.devices[t.dcs[s.rng.IntN(len(t.dcs))]]
		r.str("Application", "Active Directory")
		r.str("LogonType", "Resource access")
		r.str("Protocol", "Kerberos")
		r.null("FailureReason")
		identityAccount(r, t, u)
		r.str("DeviceName", d.name)
		r.str("DeviceType", "Desktop")
		r.str("OSPlatform", d.os)
		r.str("IPAddress", d.ip)
		r.long("Port", 49152+s.rng.Int64N(16000))
		r.str("DestinationDeviceName", dc.name)
		r.str("DestinationIPAddress", dc.ip)
		r.long("DestinationPort", 88)
		r.str("TargetDeviceName", dc.name)
		r.null("Location")
		r.null("Isp")
	} else { // cloud sign-in through the egress proxy
		r.str("Application", []string{"Office 365", "Microsoft Teams", "Microsoft Exchange Online"}[s.rng.IntN(3)])
		r.str("LogonType", "Login:login")
		r.null("Protocol")
		r.null("FailureReason")
		identityAccount(r, t, u)
		r.null("DeviceName")
		r.str("DeviceType", "Desktop")
		r.str("OSPlatform", "Windows 10")
		r.str("IPAddress", t.proxyIP)
		r.null("Port")
		r.null("DestinationDeviceName")
		r.null("DestinationIPAddress")
		r.null("DestinationPort")
		r.null("TargetDeviceName")
		r.str("Location", u.country)
		r.str("Isp", "Microsoft Corporation")
	}
	r.strInt("ReportId", "il-", s.nextReportID(), "")
	r.raw("AdditionalFields", `{"Pre-Authentication Type":"PA-ENC-TIMESTAMP"}`)
	r.end()
}

func (s *Simulator) identityQuery(t *tenant, ts int64) {
	u := &t.users[s.rng.IntN(len(t.users))]
	d := &t.devices[u.device]
	dc := &t.devices[t.dcs[s.rng.IntN(len(t.dcs))]]
	r := &s.r
	r.begin(s.clock(), t.id, "IdentityQueryEvents")
	r.ts("Timestamp", ts)
	switch s.rng.IntN(2) {
	case 0:
		r.str("ActionType", "DNS query")
		r.str("Application", "Active Directory")
		r.str("QueryType", "A")
		r.str("QueryTarget", dc.name)
		r.str("Query", dc.name)
		r.str("Protocol", "Dns")
	default:
		r.str("ActionType", "LDAP query")
		r.str("Application", "Active Directory")
		r.str("QueryType", "Users")
		r.str("QueryTarget", u.display)
		r.strs("Query", "Search Scope: WholeSubtree, Base Object:DC=", t.org, ",DC=local, Search Filter:(&(objectCategory=person)(sAMAccountName=", u.name, "))")
		r.str("Protocol", "Ldap")
	}
	identityAccount(r, t, u)
	r.str("DeviceName", d.name)
	r.str("IPAddress", d.ip)
	r.long("Port", 49152+s.rng.Int64N(16000))
	r.str("DestinationDeviceName", dc.name)
	r.str("DestinationIPAddress", dc.ip)
	r.long("DestinationPort", 389)
	r.str("TargetDeviceName", dc.name)
	r.strInt("ReportId", "iq-", s.nextReportID(), "")
	r.raw("AdditionalFields", `{}`)
	r.end()
}

func (s *Simulator) identityDirectory(t *tenant, ts int64) {
	u := &t.users[s.rng.IntN(len(t.users))]
	dc := &t.devices[t.dcs[s.rng.IntN(len(t.dcs))]]
	r := &s.r
	r.begin(s.clock(), t.id, "IdentityDirectoryEvents")
	r.ts("Timestamp", ts)
	r.str("ActionType", []string{"Account Password changed", "Group Membership changed", "Account Unlock changed"}[s.rng.IntN(3)])
	r.str("Application", "Active Directory")
	r.str("TargetAccountUpn", u.upn)
	r.str("TargetAccountDisplayName", u.display)
	r.str("DestinationDeviceName", dc.name)
	r.str("Protocol", "Ldap")
	identityAccount(r, t, u)
	r.str("DeviceName", t.devices[u.device].name)
	r.str("IPAddress", t.devices[u.device].ip)
	r.strInt("ReportId", "id-", s.nextReportID(), "")
	r.raws("AdditionalFields", `{"TARGET_OBJECT.USER":"`, u.display, `","TO.GROUP":"`, u.dept, `"}`)
	r.end()
}

// identityInfo writes the account snapshot that ties a user's UPN, object id
// and on-premises SID together.
func (s *Simulator) identityInfo(t *tenant, ts int64) {
	identityInfoRow(s, &s.r, ts, t, s.rng.IntN(len(t.users)), true)
}

func identityInfoRow(s *Simulator, r *rec, ts int64, t *tenant, ui int, envelope bool) {
	u := &t.users[ui]
	if envelope {
		r.begin(s.clock(), t.id, "IdentityInfo")
	}
	r.ts("Timestamp", ts)
	r.strInt("ReportId", "ii-", s.nextReportID(), "")
	r.str("AccountObjectId", u.objectID)
	r.str("AccountUpn", u.upn)
	r.str("OnPremSid", u.sid)
	r.str("AccountDisplayName", u.display)
	r.str("AccountName", u.name)
	r.str("AccountDomain", t.dns)
	r.str("Type", "User")
	r.strs("DistinguishedName", "CN=", u.display, ",OU=Users,DC=", t.org, ",DC=local")
	r.str("GivenName", u.first)
	r.str("Surname", u.last)
	r.str("Department", u.dept)
	r.str("JobTitle", u.title)
	r.str("EmailAddress", u.upn)
	r.str("City", u.city)
	r.str("Country", u.country)
	r.boolean("IsAccountEnabled", true)
	r.str("SourceProvider", "AzureActiveDirectory")
	r.raw("Tags", `[]`)
	r.raw("AssignedRoles", `[]`)
	r.str("TenantId", t.id)
	if envelope {
		r.end()
	}
}

var cloudApps = []struct {
	name   string
	id     int64
	action string
	obj    string
}{
	{"Microsoft Exchange Online", 20893, "MailItemsAccessed", "Mailbox"},
	{"Microsoft SharePoint Online", 20892, "FileAccessed", "File"},
	{"Microsoft OneDrive for Business", 15600, "FileModified", "File"},
	{"Microsoft Teams", 28375, "MessageSent", "Chat"},
}

func (s *Simulator) cloudApp(t *tenant, ts int64) {
	u := &t.users[s.rng.IntN(len(t.users))]
	a := cloudApps[s.rng.IntN(len(cloudApps))]
	r := &s.r
	r.begin(s.clock(), t.id, "CloudAppEvents")
	cloudAppCols(r, ts, t, u, a.name, a.id, a.action, t.proxyIP, u.country, u.city)
	r.str("ObjectName", docNames[s.rng.IntN(len(docNames))])
	r.str("ObjectType", a.obj)
	r.strInt("ReportId", "ca-", s.nextReportID(), "")
	r.end()
}

func cloudAppCols(r *rec, ts int64, t *tenant, u *user, app string, appID int64, action, ip, country, city string) {
	r.ts("Timestamp", ts)
	r.str("ActionType", action)
	r.str("Application", app)
	r.long("ApplicationId", appID)
	r.long("AppInstanceId", 0)
	r.str("AccountObjectId", u.objectID)
	r.str("AccountId", u.objectID)
	r.str("AccountDisplayName", u.display)
	r.boolean("IsAdminOperation", false)
	r.str("DeviceType", "Desktop")
	r.str("OSPlatform", "Windows 10")
	r.str("IPAddress", ip)
	r.boolean("IsAnonymousProxy", false)
	r.str("CountryCode", country)
	r.str("City", city)
	r.str("Isp", "microsoft corporation")
	r.str("UserAgent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0")
	r.str("ActivityType", "Basic")
	r.raw("ActivityObjects", `[]`)
	r.str("AccountType", "Regular")
	r.boolean("IsExternalUser", false)
	r.boolean("IsImpersonated", false)
	r.raw("IPTags", `null`)
	r.raws("RawEventData", `{"Workload":"`, app, `","Operation":"`, action, `"}`)
	r.str("AuditSource", "Defender for Cloud Apps access control")
}
