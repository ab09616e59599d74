package simulator

import (
	"fmt"
	"strconv"
	"time"
)

// StoryKind names a planted attack pattern.
type StoryKind string

const (
	// PhishToEndpoint: a malicious attachment is delivered, clicked, written
	// to disk and run. Defender for Office 365 and Defender for Endpoint
	// alert on the same mailbox, message, file hash, device and user.
	PhishToEndpoint StoryKind = "phish-to-endpoint"
	// IdentityCompromise: brute force against AD, then sign-ins from two
	// countries minutes apart. Defender for Identity names the user by SID,
	// Defender for Cloud Apps by Entra object id, Entra ID Protection by UPN,
	// and a Defender XDR alert lists all three.
	IdentityCompromise StoryKind = "identity-compromise"
	// LateralMovement: a hacking tool lands on the victim's workstation,
	// the victim's account logs on to a second device over the network and
	// the same binary encrypts files there. Defender for Endpoint alerts on
	// each device, joined by the account and the tool's SHA256; Defender for
	// Identity names the account by SID and both devices by name.
	LateralMovement StoryKind = "lateral-movement"
	// MaliciousURLClick: a credential-phishing link is delivered and
	// clicked, and the victim's browser reaches the page. Defender for Office
	// 365 alerts on the click and the removal of the message, Defender for
	// Endpoint on the connection, joined by the URL and the mailbox.
	MaliciousURLClick StoryKind = "malicious-url-click"
	// IllicitConsent: the victim consents to an OAuth app, which reads the
	// mailbox and creates an inbox rule from a hosting provider's address.
	// Defender for Cloud Apps alerts on the app (by object id) and the rule
	// (by mailbox), Entra ID Protection on the API traffic (by UPN), joined
	// by the account, the app and the attacker's address.
	IllicitConsent StoryKind = "illicit-consent"
)

// Kinds are the story kinds in planting order: story i is Kinds[i%5].
var Kinds = []StoryKind{PhishToEndpoint, IdentityCompromise, LateralMovement, MaliciousURLClick, IllicitConsent}

// StoryAlert is one alert a story raises.
type StoryAlert struct {
	ID            string
	Title         string
	ServiceSource string
	// Identifiers names the account identifiers its User evidence carries
	// ("AccountUpn", "AccountSid", "AccountObjectId", ...).
	Identifiers []string
}

// Story describes one planted attack, for tests that assert groupings.
type Story struct {
	Kind   StoryKind
	Tenant string
	// Start is the event time of the story's first row.
	Start  time.Time
	Alerts []StoryAlert
	// SameIncident lists the alert ids that must end up in one incident:
	// every alert of the story. Alerts of different stories never belong
	// together, even when they share a widespread value (powershell.exe's
	// hash, the tenant's egress proxy IP): a tenant's stories use distinct
	// victim users and devices until the tenant runs out of them.
	SameIncident []string
	// The victim, in each of its identifiers.
	User, UserSID, UserObjectID string
	// Device is the victim's device FQDN and DeviceID its id
	// (PhishToEndpoint, LateralMovement, MaliciousURLClick; for
	// IdentityCompromise the brute-force source; none for IllicitConsent).
	Device, DeviceID string
	// Target and TargetID are the device reached by lateral movement
	// (LateralMovement only).
	Target, TargetID string
	// SHA256 identifies the malicious attachment (PhishToEndpoint) or the
	// tool (LateralMovement); NetworkMessageID the message (PhishToEndpoint,
	// MaliciousURLClick).
	SHA256, NetworkMessageID string
	// URL is the phishing link (MaliciousURLClick).
	URL string
	// OAuthAppID is the consented app's id (IllicitConsent).
	OAuthAppID string
	// AttackerIPs are the attacker's addresses (sender IP and C2, the two
	// sign-in locations, the phishing page's host, the app's address).
	AttackerIPs []string
	// Complete is true once every row of the story has been produced.
	Complete bool
}

type alertDef struct {
	id, title, category, severity, service, detection, techniques string
}

// plant starts the next story. Kinds take turns (Kinds); tenants rotate
// every two stories, so each tenant sees every kind.
func (s *Simulator) plant() {
	i := len(s.stories)
	t := &s.tenants[(i/2)%len(s.tenants)]
	if len(t.users) == 0 || len(t.devices) == 0 {
		return
	}
	s.stories = append(s.stories, Story{Tenant: t.id})
	s.left = append(s.left, 0)
	t0 := s.clock() + 1e9
	s.stories[i].Start = time.Unix(0, t0).UTC()
	switch Kinds[i%len(Kinds)] {
	case PhishToEndpoint:
		s.plantPhish(i, t, t0)
	case IdentityCompromise:
		s.plantIdentity(i, t, t0)
	case LateralMovement:
		s.plantLateral(i, t, t0)
	case MaliciousURLClick:
		s.plantURLClick(i, t, t0)
	default:
		s.plantConsent(i, t, t0)
	}
	st := &s.stories[i]
	for _, a := range st.Alerts {
		st.SameIncident = append(st.SameIncident, a.ID)
	}
}

// victim picks a user no earlier story of the tenant used, whose primary
// workstation no earlier story used either, while there are any, so stories
// stay separate incidents (a phish victim's workstation is in its story).
func (s *Simulator) victim(t *tenant) int {
	u := s.rng.IntN(len(t.users))
	used := func(u int) bool { return t.usedUsers[u] || t.usedDevices[t.users[u].device] }
	for k := 0; k < len(t.users) && used(u); k++ {
		u = (u + 1) % len(t.users)
	}
	for k := 0; k < len(t.users) && t.usedUsers[u]; k++ {
		u = (u + 1) % len(t.users) // every workstation is used: any fresh user
	}
	t.usedUsers[u] = true
	return u
}

// victimAtDesk picks a victim as victim does and claims the victim's
// workstation for the story: the victim's index, user, workstation and
// account.
func (s *Simulator) victimAtDesk(t *tenant) (int, *user, *device, account) {
	ui := s.victim(t)
	u := &t.users[ui]
	t.usedDevices[u.device] = true
	return ui, u, &t.devices[u.device], t.account(ui)
}

// freeDevice picks a workstation no earlier story of the tenant used.
func (s *Simulator) freeDevice(t *tenant) int {
	n := len(t.devices) - t.wsFirst
	d := s.rng.IntN(n)
	for k := 0; k < n && t.usedDevices[t.wsFirst+d]; k++ {
		d = (d + 1) % n
	}
	t.usedDevices[t.wsFirst+d] = true
	return t.wsFirst + d
}

func (s *Simulator) alertID(prefix string) string {
	return fmt.Sprintf("%s%018d_%d", prefix, s.rng.Int64N(1e18), -s.rng.Int64N(1e10))
}

// publicIP draws an attacker address no earlier story used: two stories
// sharing one would rightly be one incident.
func (s *Simulator) publicIP(first ...int) string {
	for {
		ip := fmt.Sprintf("%d.%d.%d.%d", first[s.rng.IntN(len(first))], 1+s.rng.IntN(250), s.rng.IntN(256), 1+s.rng.IntN(250))
		if !s.usedIPs[ip] {
			s.usedIPs[ip] = true
			return ip
		}
	}
}

// at schedules one row of story i.
func (s *Simulator) at(i int, due int64, t *tenant, table string, w func(*Simulator, *rec, int64)) {
	s.schedule(due, t, i, table, w)
}

// alert schedules the AlertInfo row at due and each evidence row at due+lag
// (a negative lag emits evidence before its alert, as the service does).
func (s *Simulator) alert(i int, t *tenant, due, lag int64, a alertDef, ids []string, evidence ...func(r *rec)) {
	s.stories[i].Alerts = append(s.stories[i].Alerts, StoryAlert{ID: a.id, Title: a.title, ServiceSource: a.service, Identifiers: ids})
	s.at(i, due, t, "AlertInfo", func(_ *Simulator, r *rec, ts int64) {
		r.ts("Timestamp", ts)
		r.str("AlertId", a.id)
		r.str("Title", a.title)
		r.str("Category", a.category)
		r.str("Severity", a.severity)
		r.str("ServiceSource", a.service)
		r.str("DetectionSource", a.detection)
		r.str("AttackTechniques", a.techniques)
	})
	for _, ev := range evidence {
		s.at(i, due+lag, t, "AlertEvidence", func(_ *Simulator, r *rec, ts int64) {
			r.ts("Timestamp", ts)
			r.str("AlertId", a.id)
			r.str("Title", a.title)
			r.strs("Categories", `["`, a.category, `"]`)
			r.str("AttackTechniques", a.techniques)
			r.str("ServiceSource", a.service)
			r.str("DetectionSource", a.detection)
			ev(r)
			r.str("Severity", a.severity)
		})
		lag += 1e6 // keep evidence rows of one alert in a stable order
	}
}

func entity(r *rec, typ, role string) {
	r.str("EntityType", typ)
	r.str("EvidenceRole", role)
}

// lure is the inbound message that starts a mail story.
type lure struct {
	nmid, sender, senderName, domain, senderIP, subject, auth string
	attachments                                               int64
	latestLocation, latestAction                              string
}

// lureRow writes the EmailEvents row of a lure delivered to u, carrying
// one URL.
func lureRow(s *Simulator, r *rec, ts int64, u *user, l *lure) {
	r.ts("Timestamp", ts)
	r.str("NetworkMessageId", l.nmid)
	r.str("InternetMessageId", "<"+l.nmid[:13]+"@"+l.domain+">")
	r.str("SenderMailFromAddress", l.sender)
	r.str("SenderFromAddress", l.sender)
	r.str("SenderDisplayName", l.senderName)
	r.str("SenderMailFromDomain", l.domain)
	r.str("SenderFromDomain", l.domain)
	r.str("SenderIPv4", l.senderIP)
	r.str("RecipientEmailAddress", u.upn)
	r.str("RecipientObjectId", u.objectID)
	r.str("Subject", l.subject)
	r.long("EmailClusterId", s.rng.Int64N(1<<40))
	r.str("EmailDirection", "Inbound")
	r.str("DeliveryAction", "Delivered")
	r.str("DeliveryLocation", "Inbox/folder")
	r.null("ThreatTypes")
	r.long("BulkComplaintLevel", 0)
	r.str("AuthenticationDetails", l.auth)
	r.long("AttachmentCount", l.attachments)
	r.long("UrlCount", 1)
	r.str("EmailLanguage", "en")
	r.strInt("ReportId", l.nmid+"-", s.nextReportID(), "-0")
	r.str("LatestDeliveryLocation", l.latestLocation)
	r.str("LatestDeliveryAction", l.latestAction)
}

// fileCreated schedules a DeviceFileEvents row of story i: process init
// (child of parent) run by a writes f on d.
func (s *Simulator) fileCreated(i int, t *tenant, due int64, d *device, f, init, parent *binary, a account) {
	s.at(i, due, t, "DeviceFileEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, d, "FileCreated")
		fileCols(r, f)
		s.initiating(r, ts, init, parent, a, true)
		r.long("ReportId", s.nextReportID())
	})
}

// processCreated schedules a DeviceProcessEvents row of story i: process
// init (child of parent) run by ia starts b as a with cmd on d.
func (s *Simulator) processCreated(i int, t *tenant, due int64, d *device, b *binary, a account, cmd string, init, parent *binary, ia account) {
	s.at(i, due, t, "DeviceProcessEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, d, "ProcessCreated")
		s.processCols(r, ts, b, a, cmd)
		s.initiating(r, ts, init, parent, ia, true)
		r.long("ReportId", s.nextReportID())
	})
}

func (s *Simulator) plantPhish(i int, t *tenant, t0 int64) {
	ui, u, d, a := s.victimAtDesk(t)
	domain := "secure-docs-" + string(appendHex(nil, 4, s.rng)) + ".com"
	sender, senderName := "accounts@"+domain, "Accounts Payable"
	senderIP, c2IP := s.publicIP(185, 193, 45), s.publicIP(91, 146, 194)
	nmid := guid(s.rng)
	sha256, sha1 := string(appendHex(nil, 64, s.rng)), string(appendHex(nil, 40, s.rng))
	n := strconv.Itoa(10000 + s.rng.IntN(90000))
	file, size := "Invoice_"+n+".docm", int64(40_000+s.rng.IntN(200_000))
	subject := "Overdue invoice " + n + " - action required"
	url := "https://" + domain + "/invoice/" + string(appendHex(nil, 12, s.rng))
	cache := `C:\Users\` + u.name + `\AppData\Local\Microsoft\Windows\INetCache\Content.Outlook\` + string(appendHex(nil, 8, s.rng)) + `\`
	psCmd := `powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA`
	st := &s.stories[i]
	st.Kind, st.User, st.UserSID, st.UserObjectID = PhishToEndpoint, u.upn, u.sid, u.objectID
	st.Device, st.DeviceID, st.SHA256, st.NetworkMessageID = d.name, d.id, sha256, nmid
	st.AttackerIPs = []string{senderIP, c2IP}
	docm := &binary{name: file, folder: cache, path: cache + file, sha1: sha1, sha256: sha256, md5: string(appendHex(nil, 32, s.rng)), size: size}

	mail := &lure{nmid: nmid, sender: sender, senderName: senderName, domain: domain, senderIP: senderIP, subject: subject,
		auth: `{"SPF":"pass","DKIM":"none","DMARC":"none","CompAuth":"softpass"}`, attachments: 1,
		latestLocation: "Quarantine", latestAction: "Moved to quarantine"}
	s.at(i, t0, t, "EmailEvents", func(s *Simulator, r *rec, ts int64) { lureRow(s, r, ts, u, mail) })
	s.at(i, t0+2e6, t, "EmailAttachmentInfo", func(s *Simulator, r *rec, ts int64) {
		attachmentRow(s, r, ts, t, nmid, sender, senderName, ui, file, sha256, size, true)
	})
	s.at(i, t0+3e6, t, "EmailUrlInfo", func(s *Simulator, r *rec, ts int64) { urlInfoRow(s, r, ts, nmid, url, domain) })
	s.at(i, t0+40e9, t, "UrlClickEvents", func(s *Simulator, r *rec, ts int64) { clickRow(s, r, ts, t, nmid, url, ui, true) })
	s.fileCreated(i, t, t0+55e9, d, docm, binOutlook, binExplorer, a)
	s.processCreated(i, t, t0+70e9, d, binWord, a, `"WINWORD.EXE" /n "`+docm.path+`" /o ""`, binOutlook, binExplorer, a)
	s.processCreated(i, t, t0+80e9, d, binPowerShell, a, psCmd, binWord, binOutlook, a)
	s.at(i, t0+85e9, t, "DeviceNetworkEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, d, "ConnectionSuccess")
		r.str("RemoteIP", c2IP)
		r.long("RemotePort", 443)
		r.str("RemoteUrl", "cdn."+domain)
		s.netTail(r, d, "Public")
		s.initiating(r, ts, binPowerShell, binWord, a, true)
		r.long("ReportId", s.nextReportID())
	})

	user := userEvidence("Impacted", u, t.org, allIDs...)
	attachment := func(r *rec) {
		entity(r, "File", "Related")
		r.str("FileName", file)
		r.str("SHA256", sha256)
		r.long("FileSize", size)
		r.str("ThreatFamily", "Donoff")
	}
	// Endpoint first: the process alert fires before mail ZAP catches up.
	mde := alertDef{s.alertID("da"), "Suspicious process executed", "Execution", "Medium", "Microsoft Defender for Endpoint", "EDR",
		`["Command and Scripting Interpreter (T1059)","PowerShell (T1059.001)"]`}
	s.alert(i, t, t0+95e9, 1e9, mde, allIDs,
		fileEvidence("Process", "Related", d, binPowerShell, psCmd),
		fileEvidence("File", "Related", d, docm, ""),
		func(r *rec) {
			entity(r, "Machine", "Impacted")
			r.str("DeviceId", d.id)
			r.str("DeviceName", d.name)
			r.str("LocalIP", d.ip)
			r.str("AdditionalFields", `{"OSFamily":"Windows","MachineGroup":"Workstations"}`)
		},
		user,
		ipEvidence(c2IP, "Destination"),
	)
	mdo := alertDef{s.alertID("fa"), "Email messages containing malicious file removed after delivery", "InitialAccess", "Medium",
		"Microsoft Defender for Office 365", "Microsoft Defender for Office 365", `["Phishing (T1566)","Spearphishing Attachment (T1566.001)"]`}
	s.alert(i, t, t0+150e9, -2e9, mdo, []string{"AccountUpn", "AccountObjectId"},
		func(r *rec) {
			entity(r, "MailMessage", "Impacted")
			r.str("NetworkMessageId", nmid)
			r.str("EmailSubject", subject)
			r.str("AccountUpn", u.upn)
			r.str("AdditionalFields", `{"Sender":"`+sender+`","SenderIP":"`+senderIP+`","DeliveryAction":"Delivered"}`)
		},
		func(r *rec) {
			entity(r, "Mailbox", "Impacted")
			r.str("AccountUpn", u.upn)
			r.str("AccountObjectId", u.objectID)
		},
		attachment,
		func(r *rec) {
			entity(r, "Url", "Related")
			r.str("RemoteUrl", url)
		},
		ipEvidence(senderIP, "Source"),
	)
}

func (s *Simulator) plantIdentity(i int, t *tenant, t0 int64) {
	ui := s.victim(t)
	u := &t.users[ui]
	src := &t.devices[s.freeDevice(t)]
	dc := &t.devices[t.dcs[0]]
	ipA, ipB := s.publicIP(77, 145, 185), s.publicIP(103, 128, 139)
	st := &s.stories[i]
	st.Kind, st.User, st.UserSID, st.UserObjectID = IdentityCompromise, u.upn, u.sid, u.objectID
	st.Device, st.DeviceID, st.AttackerIPs = src.name, src.id, []string{ipA, ipB}

	s.at(i, t0, t, "IdentityInfo", func(s *Simulator, r *rec, ts int64) { identityInfoRow(s, r, ts, t, ui, false) })
	logon := func(ok bool, cloud bool, ip, country string) func(*Simulator, *rec, int64) {
		return func(s *Simulator, r *rec, ts int64) {
			r.ts("Timestamp", ts)
			if ok {
				r.str("ActionType", "LogonSuccess")
			} else {
				r.str("ActionType", "LogonFailed")
			}
			identityAccount(r, t, u)
			if cloud {
				r.str("Application", "Microsoft Exchange Online")
				r.str("LogonType", "Login:login")
				r.str("IPAddress", ip)
				r.str("Location", country)
				r.str("Isp", "hosting provider")
			} else {
				r.str("Application", "Active Directory")
				r.str("LogonType", "Credentials validation")
				r.str("Protocol", "Ntlm")
				if !ok {
					r.str("FailureReason", "WrongPassword")
				}
				r.str("DeviceName", src.name)
				r.str("IPAddress", src.ip)
				r.long("Port", 49152+s.rng.Int64N(16000))
				r.str("DestinationDeviceName", dc.name)
				r.str("DestinationIPAddress", dc.ip)
				r.long("DestinationPort", 445)
			}
			r.strInt("ReportId", "il-", s.nextReportID(), "")
			r.raw("AdditionalFields", `{}`)
		}
	}
	for k := range 12 {
		s.at(i, t0+int64(1+k*4)*1e9, t, "IdentityLogonEvents", logon(false, false, "", ""))
	}
	s.at(i, t0+50e9, t, "IdentityLogonEvents", logon(true, false, "", ""))
	s.at(i, t0+90e9, t, "IdentityLogonEvents", logon(true, true, ipA, "NL"))
	cloud := func(ip, country, city, action string) func(*Simulator, *rec, int64) {
		return func(s *Simulator, r *rec, ts int64) {
			cloudAppCols(r, ts, t, u, "Microsoft Exchange Online", 20893, action, ip, country, city)
			r.str("ObjectType", "Mailbox")
			r.strInt("ReportId", "ca-", s.nextReportID(), "")
		}
	}
	s.at(i, t0+100e9, t, "CloudAppEvents", cloud(ipA, "NL", "Amsterdam", "MailItemsAccessed"))
	s.at(i, t0+160e9, t, "CloudAppEvents", cloud(ipB, "SG", "Singapore", "MailItemsAccessed"))
	s.at(i, t0+170e9, t, "CloudAppEvents", cloud(ipB, "SG", "Singapore", "New-InboxRule"))

	ip := func(addr string) func(r *rec) { return ipEvidence(addr, "") }
	mdi := alertDef{s.alertID("aa"), "Suspected Brute Force attack (Kerberos, NTLM)", "CredentialAccess", "Medium",
		"Microsoft Defender for Identity", "Microsoft Defender for Identity", `["Brute Force (T1110)","Password Guessing (T1110.001)"]`}
	s.alert(i, t, t0+60e9, -1e9, mdi, []string{"AccountSid"},
		userEvidence("Impacted", u, "", "AccountSid"),
		hostEvidence("Related", src),
	)
	entra := alertDef{s.alertID("ad"), "Unfamiliar sign-in properties", "InitialAccess", "Medium",
		"Microsoft Entra ID Protection", "Microsoft Entra ID Protection", `["Valid Accounts (T1078)"]`}
	s.alert(i, t, t0+120e9, -3e9, entra, []string{"AccountUpn"},
		userEvidence("Impacted", u, "", "AccountUpn"),
		ip(ipA),
	)
	mdca := alertDef{s.alertID("ca"), "Impossible travel activity", "InitialAccess", "Medium",
		"Microsoft Defender for Cloud Apps", "Microsoft Defender for Cloud Apps", `["Valid Accounts (T1078)","Cloud Accounts (T1078.004)"]`}
	s.alert(i, t, t0+200e9, 1e9, mdca, []string{"AccountObjectId"},
		userEvidence("Impacted", u, "", "AccountObjectId"),
		ip(ipA), ip(ipB),
		func(r *rec) {
			entity(r, "CloudApplication", "Related")
			r.str("Application", "Microsoft Exchange Online")
			r.long("ApplicationId", 20893)
		},
	)
	xdr := alertDef{s.alertID("ed"), "Compromised user account in a recognized attack pattern", "CredentialAccess", "High",
		"Microsoft Defender XDR", "Microsoft Defender XDR", `["Valid Accounts (T1078)","Brute Force (T1110)"]`}
	s.alert(i, t, t0+240e9, 2e9, xdr, allIDs,
		userEvidence("Impacted", u, t.dns, allIDs...),
	)
}
