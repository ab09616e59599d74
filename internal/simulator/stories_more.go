package simulator

import "strconv"

// The three later story kinds: lateral movement, a clicked phishing link
// and an illicit OAuth consent. Each owns its victim, devices, hashes,
// URLs, apps and addresses, so its alerts meet only each other.

// userEvidence is a User evidence row with the given identifiers
// ("AccountName", "AccountDomain", "AccountSid", "AccountObjectId",
// "AccountUpn") of u, domain being the AccountDomain spelling.
func userEvidence(role string, u *user, domain string, ids ...string) func(r *rec) {
	return func(r *rec) {
		entity(r, "User", role)
		for _, id := range ids {
			switch id {
			case "AccountName":
				r.str(id, u.name)
			case "AccountDomain":
				r.str(id, domain)
			case "AccountSid":
				r.str(id, u.sid)
			case "AccountObjectId":
				r.str(id, u.objectID)
			case "AccountUpn":
				r.str(id, u.upn)
			}
		}
	}
}

func ipEvidence(addr, direction string) func(r *rec) {
	return func(r *rec) {
		entity(r, "Ip", "Related")
		r.str("RemoteIP", addr)
		if direction != "" {
			r.str("EvidenceDirection", direction)
		}
	}
}

// fileEvidence is a File or Process evidence row of b on d; cmd, when
// given, is the process's command line.
func fileEvidence(typ, role string, d *device, b *binary, cmd string) func(r *rec) {
	return func(r *rec) {
		entity(r, typ, role)
		r.str("FileName", b.name)
		r.str("FolderPath", b.path)
		r.str("SHA1", b.sha1)
		r.str("SHA256", b.sha256)
		r.long("FileSize", b.size)
		r.str("DeviceId", d.id)
		r.str("DeviceName", d.name)
		if cmd != "" {
			r.str("ProcessCommandLine", cmd)
		}
	}
}

// allIDs are every identifier a User evidence row can name.
var allIDs = []string{"AccountName", "AccountDomain", "AccountSid", "AccountObjectId", "AccountUpn"}

// hostEvidence is a Machine evidence row naming the device as Defender for
// Identity does: by name and address, without a Defender device id.
func hostEvidence(role string, d *device) func(r *rec) {
	return func(r *rec) {
		entity(r, "Machine", role)
		r.str("DeviceName", d.name)
		r.str("LocalIP", d.ip)
	}
}

func machineEvidence(role string, d *device) func(r *rec) {
	return func(r *rec) {
		entity(r, "Machine", role)
		r.str("DeviceId", d.id)
		r.str("DeviceName", d.name)
		r.str("LocalIP", d.ip)
		r.strs("AdditionalFields", `{"OSFamily":"Windows","MachineGroup":"`, d.kind, `s"}`)
	}
}

var toolNames = []string{"netscan", "svcupd", "winsvc64", "sysmgr", "rclient", "updchk"}

func (s *Simulator) plantLateral(i int, t *tenant, t0 int64) {
	ui, u, a, acct := s.victimAtDesk(t)
	b := &t.devices[s.freeDevice(t)]
	name := toolNames[s.rng.IntN(len(toolNames))] + ".exe"
	stage := `C:\ProgramData\` + string(appendHex(nil, 8, s.rng)) + `\`
	tool := &binary{name: name, folder: stage, path: stage + name,
		sha1: string(appendHex(nil, 40, s.rng)), sha256: string(appendHex(nil, 64, s.rng)), md5: string(appendHex(nil, 32, s.rng)),
		size: int64(300_000 + s.rng.IntN(2_000_000)), company: "", product: "", ver: "", desc: "",
		cmds: []string{name}, integrity: "High", tokenElevated: "TokenElevationTypeFull"}
	dropped := *tool
	dropped.folder = `C:\Windows\Temp\`
	dropped.path = dropped.folder + name
	note := "README-" + string(appendHex(nil, 6, s.rng)) + ".txt"
	st := &s.stories[i]
	st.Kind, st.User, st.UserSID, st.UserObjectID = LateralMovement, u.upn, u.sid, u.objectID
	st.Device, st.DeviceID, st.Target, st.TargetID, st.SHA256 = a.name, a.id, b.name, b.id, tool.sha256

	s.fileCreated(i, t, t0, a, tool, binPowerShell, binExplorer, acct)
	s.processCreated(i, t, t0+10e9, a, tool, acct, name+` -s 10.`+strconv.Itoa(t.subnet)+`.0.0/16 -p 445`, binPowerShell, binExplorer, acct)
	s.at(i, t0+30e9, t, "DeviceNetworkEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, a, "ConnectionSuccess")
		r.str("RemoteIP", b.ip)
		r.long("RemotePort", 445)
		r.str("RemoteUrl", b.name)
		s.netTail(r, a, "Private")
		s.initiating(r, ts, tool, binPowerShell, acct, true)
		r.long("ReportId", s.nextReportID())
	})
	s.at(i, t0+32e9, t, "DeviceLogonEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, b, "LogonSuccess")
		r.str("LogonType", "Network")
		r.str("AccountDomain", acct.domain)
		r.str("AccountName", acct.name)
		r.str("AccountSid", acct.sid)
		r.str("Protocol", "NTLM")
		r.null("FailureReason")
		r.boolean("IsLocalAdmin", true)
		r.long("LogonId", s.rng.Int64N(1<<32))
		r.str("RemoteDeviceName", a.short)
		r.str("RemoteIP", a.ip)
		r.str("RemoteIPType", "Private")
		r.long("RemotePort", 49152+s.rng.Int64N(16000))
		s.initiating(r, ts, binLsass, binServices, systemAccount, true)
		r.long("ReportId", s.nextReportID())
		r.str("AdditionalFields", `{"IsLocalLogon":false}`)
	})
	s.at(i, t0+35e9, t, "DeviceFileEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, b, "FileCreated")
		fileCols(r, &dropped)
		r.str("RequestSourceIP", a.ip)
		r.str("RequestAccountName", acct.name)
		r.str("RequestAccountDomain", acct.domain)
		r.str("RequestAccountSid", acct.sid)
		r.str("RequestProtocol", "SMB")
		s.initiating(r, ts, binServices, binServices, systemAccount, true)
		r.long("ReportId", s.nextReportID())
	})
	s.processCreated(i, t, t0+40e9, b, &dropped, acct, dropped.path+` -enc -n `+note, binServices, binServices, systemAccount)
	owner := &t.users[b.user]
	for k := range 3 {
		doc := docNames[(ui+k)%len(docNames)]
		s.at(i, t0+int64(60+k)*1e9, t, "DeviceFileEvents", func(s *Simulator, r *rec, ts int64) {
			s.head(r, ts, b, "FileRenamed")
			r.str("FileName", doc+".locked")
			r.strs("FolderPath", `C:\Users\`, owner.name, `\Documents\`, doc, ".locked")
			r.hex("SHA1", 40, s.rng)
			r.hex("SHA256", 64, s.rng)
			r.null("MD5")
			r.long("FileSize", 10_000+s.rng.Int64N(4_000_000))
			r.str("PreviousFileName", doc)
			s.initiating(r, ts, &dropped, binServices, acct, true)
			r.long("ReportId", s.nextReportID())
		})
	}

	mdeA := alertDef{s.alertID("da"), "Possible lateral movement using a hacking tool", "LateralMovement", "High",
		"Microsoft Defender for Endpoint", "EDR", `["Remote Services (T1021)","SMB/Windows Admin Shares (T1021.002)","Network Service Discovery (T1046)"]`}
	s.alert(i, t, t0+70e9, 1e9, mdeA, []string{"AccountName", "AccountDomain", "AccountSid"},
		machineEvidence("Impacted", a),
		fileEvidence("File", "Impacted", a, tool, ""),
		userEvidence("Impacted", u, t.org, "AccountName", "AccountDomain", "AccountSid"),
	)
	mdi := alertDef{s.alertID("aa"), "Remote code execution attempt", "LateralMovement", "High",
		"Microsoft Defender for Identity", "Microsoft Defender for Identity", `["Remote Services (T1021)","Service Execution (T1569.002)"]`}
	s.alert(i, t, t0+100e9, -1e9, mdi, []string{"AccountSid", "AccountName", "AccountDomain"},
		userEvidence("Impacted", u, t.dns, "AccountSid", "AccountName", "AccountDomain"),
		hostEvidence("Related", a),
		hostEvidence("Impacted", b),
	)
	mdeB := alertDef{s.alertID("da"), "Ransomware behavior detected in the file system", "Impact", "High",
		"Microsoft Defender for Endpoint", "EDR", `["Data Encrypted for Impact (T1486)","Service Execution (T1569.002)"]`}
	s.alert(i, t, t0+130e9, 2e9, mdeB, []string{"AccountName", "AccountDomain", "AccountSid"},
		machineEvidence("Impacted", b),
		fileEvidence("File", "Impacted", b, &dropped, dropped.path+` -enc -n `+note),
		userEvidence("Impacted", u, t.org, "AccountName", "AccountDomain", "AccountSid"),
	)
}

var lureWords = []string{"sharepoint-docs", "o365-verify", "mfa-reset", "payroll-portal", "secure-signin"}

func (s *Simulator) plantURLClick(i int, t *tenant, t0 int64) {
	ui, u, d, acct := s.victimAtDesk(t)
	host := lureWords[s.rng.IntN(len(lureWords))] + "-" + string(appendHex(nil, 6, s.rng)) + ".net"
	url := "https://" + host + "/auth/" + string(appendHex(nil, 16, s.rng))
	sender, senderName := "it-helpdesk@"+host, "IT Helpdesk"
	senderIP, hostIP := s.publicIP(45, 89, 194), s.publicIP(104, 172, 188)
	nmid := guid(s.rng)
	subject := "Password expires today: keep your current password"
	st := &s.stories[i]
	st.Kind, st.User, st.UserSID, st.UserObjectID = MaliciousURLClick, u.upn, u.sid, u.objectID
	st.Device, st.DeviceID, st.NetworkMessageID, st.URL = d.name, d.id, nmid, url
	st.AttackerIPs = []string{senderIP, hostIP}

	mail := &lure{nmid: nmid, sender: sender, senderName: senderName, domain: host, senderIP: senderIP, subject: subject,
		auth:           `{"SPF":"pass","DKIM":"pass","DMARC":"none","CompAuth":"pass"}`,
		latestLocation: "Deleted Items", latestAction: "Moved to deleted items"}
	s.at(i, t0, t, "EmailEvents", func(s *Simulator, r *rec, ts int64) { lureRow(s, r, ts, u, mail) })
	s.at(i, t0+3e6, t, "EmailUrlInfo", func(s *Simulator, r *rec, ts int64) { urlInfoRow(s, r, ts, nmid, url, host) })
	s.at(i, t0+45e9, t, "UrlClickEvents", func(s *Simulator, r *rec, ts int64) { clickRow(s, r, ts, t, nmid, url, ui, true) })
	s.at(i, t0+46e9, t, "DeviceNetworkEvents", func(s *Simulator, r *rec, ts int64) {
		s.head(r, ts, d, "ConnectionSuccess")
		r.str("RemoteIP", hostIP)
		r.long("RemotePort", 443)
		r.str("RemoteUrl", host)
		s.netTail(r, d, "Public")
		s.initiating(r, ts, binEdge, binOutlook, acct, true)
		r.long("ReportId", s.nextReportID())
	})

	urlEv := func(r *rec) {
		entity(r, "Url", "Related")
		r.str("RemoteUrl", url)
	}
	mailbox := func(r *rec) {
		entity(r, "Mailbox", "Impacted")
		r.str("AccountUpn", u.upn)
		r.str("AccountObjectId", u.objectID)
	}
	message := func(r *rec) {
		entity(r, "MailMessage", "Impacted")
		r.str("NetworkMessageId", nmid)
		r.str("EmailSubject", subject)
		r.str("AccountUpn", u.upn)
		r.str("AdditionalFields", `{"Sender":"`+sender+`","SenderIP":"`+senderIP+`","DeliveryAction":"Delivered"}`)
	}
	click := alertDef{s.alertID("fa"), "A potentially malicious URL click was detected", "InitialAccess", "High",
		"Microsoft Defender for Office 365", "Microsoft Defender for Office 365", `["Phishing (T1566)","Spearphishing Link (T1566.002)"]`}
	s.alert(i, t, t0+90e9, 1e9, click, []string{"AccountUpn", "AccountObjectId"}, mailbox, urlEv, message)
	mde := alertDef{s.alertID("da"), "Connection to a known phishing site", "InitialAccess", "Medium",
		"Microsoft Defender for Endpoint", "SmartScreen", `["Phishing (T1566)","User Execution (T1204)"]`}
	s.alert(i, t, t0+110e9, -2e9, mde, []string{"AccountName", "AccountDomain", "AccountSid", "AccountUpn"},
		machineEvidence("Impacted", d),
		userEvidence("Impacted", u, t.org, "AccountName", "AccountDomain", "AccountSid", "AccountUpn"),
		urlEv,
		ipEvidence(hostIP, "Destination"),
	)
	zap := alertDef{s.alertID("fa"), "Email messages containing malicious URL removed after delivery", "InitialAccess", "Medium",
		"Microsoft Defender for Office 365", "Microsoft Defender for Office 365", `["Phishing (T1566)","Spearphishing Link (T1566.002)"]`}
	s.alert(i, t, t0+180e9, -1e9, zap, []string{"AccountUpn", "AccountObjectId"}, message, mailbox, urlEv, ipEvidence(senderIP, "Source"))
}

var consentApps = []string{"Doc Viewer Pro", "PDF Sign Online", "Mail Organizer 365", "Team Calendar Sync", "Secure File Share"}

func (s *Simulator) plantConsent(i int, t *tenant, t0 int64) {
	ui := s.victim(t)
	u := &t.users[ui]
	appID, appName := guid(s.rng), consentApps[s.rng.IntN(len(consentApps))]
	attackerIP := s.publicIP(5, 45, 162)
	rule := "." + string(appendHex(nil, 3, s.rng))
	st := &s.stories[i]
	st.Kind, st.User, st.UserSID, st.UserObjectID = IllicitConsent, u.upn, u.sid, u.objectID
	st.OAuthAppID, st.AttackerIPs = appID, []string{attackerIP}

	s.at(i, t0, t, "IdentityInfo", func(s *Simulator, r *rec, ts int64) { identityInfoRow(s, r, ts, t, ui, false) })
	s.at(i, t0+1e9, t, "CloudAppEvents", func(s *Simulator, r *rec, ts int64) {
		cloudAppCols(r, ts, t, u, "Office 365", 11161, "Consent to application.", t.proxyIP, u.country, u.city)
		r.str("ObjectName", appName)
		r.str("ObjectType", "Application")
		r.str("ObjectId", appID)
		r.strInt("ReportId", "ca-", s.nextReportID(), "")
	})
	app := func(action, obj string) func(*Simulator, *rec, int64) {
		return func(s *Simulator, r *rec, ts int64) {
			cloudAppCols(r, ts, t, u, "Microsoft Exchange Online", 20893, action, attackerIP, "NL", "Amsterdam")
			r.str("ObjectName", obj)
			r.str("ObjectType", "Mailbox")
			r.str("OAuthAppId", appID)
			r.strInt("ReportId", "ca-", s.nextReportID(), "")
		}
	}
	for k := range 4 {
		s.at(i, t0+int64(60+k*15)*1e9, t, "CloudAppEvents", app("MailItemsAccessed", u.upn))
	}
	s.at(i, t0+150e9, t, "CloudAppEvents", app("New-InboxRule", rule))

	oauth := func(r *rec) {
		entity(r, "OAuthApplication", "Impacted")
		r.str("Application", appName)
		r.str("OAuthApplicationId", appID)
	}
	isp := alertDef{s.alertID("ca"), "Unusual ISP for an OAuth App", "Collection", "Medium",
		"Microsoft Defender for Cloud Apps", "Microsoft Defender for Cloud Apps", `["Email Collection (T1114)","Application Access Token (T1550.001)"]`}
	s.alert(i, t, t0+130e9, -2e9, isp, []string{"AccountObjectId"},
		oauth,
		userEvidence("Impacted", u, "", "AccountObjectId"),
		ipEvidence(attackerIP, ""),
	)
	api := alertDef{s.alertID("ad"), "Suspicious API traffic", "Collection", "Medium",
		"Microsoft Entra ID Protection", "Microsoft Entra ID Protection", `["Cloud Service Discovery (T1526)"]`}
	s.alert(i, t, t0+160e9, 1e9, api, []string{"AccountUpn"},
		userEvidence("Impacted", u, "", "AccountUpn"),
		ipEvidence(attackerIP, ""),
	)
	inbox := alertDef{s.alertID("ca"), "Suspicious inbox manipulation rule", "Exfiltration", "Medium",
		"Microsoft Defender for Cloud Apps", "Microsoft Defender for Cloud Apps", `["Email Forwarding Rule (T1114.003)","Hide Artifacts (T1564.008)"]`}
	s.alert(i, t, t0+200e9, 1e9, inbox, []string{"AccountUpn", "AccountObjectId"},
		func(r *rec) {
			entity(r, "Mailbox", "Impacted")
			r.str("AccountUpn", u.upn)
			r.str("AccountObjectId", u.objectID)
		},
		oauth,
		ipEvidence(attackerIP, ""),
	)
}
