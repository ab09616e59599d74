package simulator

import "strconv"

// Background telemetry: what hundreds of ordinary devices and users produce
// all day. Tables are picked by weight, out of 100.
var tableWeights = []struct {
	w   int
	gen func(s *Simulator, t *tenant, now int64)
}{
	{20, (*Simulator).deviceProcess},
	{19, (*Simulator).deviceNetwork},
	{11, (*Simulator).deviceFile},
	{8, (*Simulator).deviceRegistry},
	{10, (*Simulator).deviceImageLoad},
	{5, (*Simulator).deviceEvent},
	{4, (*Simulator).deviceLogon},
	{1, (*Simulator).deviceInfo},
	{5, (*Simulator).emailEvent}, // follow-ups add attachment, URL and click rows
	{6, (*Simulator).identityLogon},
	{3, (*Simulator).identityQuery},
	{1, (*Simulator).identityDirectory},
	{1, (*Simulator).identityInfo},
	{6, (*Simulator).cloudApp},
}

var tablePick [100]uint8

func init() {
	i := 0
	for t, tw := range tableWeights {
		for range tw.w {
			tablePick[i] = uint8(t)
			i++
		}
	}
	if i != 100 {
		panic("simulator: table weights must add up to 100, got " + strconv.Itoa(i))
	}
}

// background writes one background record and returns its tenant key.
func (s *Simulator) background(now int64) []byte {
	t := &s.tenants[s.rng.IntN(len(s.tenants))]
	g := tableWeights[tablePick[s.rng.IntN(100)]].gen
	// Timestamp trails receipt time by up to 3 s, as sensor batching does.
	g(s, t, now-s.rng.Int64N(3e9))
	return t.key
}

type account struct{ domain, name, sid, upn, oid string }

var systemAccount = account{"nt authority", "system", "S-1-5-18", "", ""}

func (t *tenant) account(u int) account {
	x := &t.users[u]
	return account{t.org, x.name, x.sid, x.upn, x.objectID}
}

func (s *Simulator) nextReportID() int64 { s.reportID++; return s.reportID }

// workstation picks a workstation (most telemetry comes from them).
func (s *Simulator) workstation(t *tenant) *device {
	if s.rng.IntN(10) == 0 {
		return &t.devices[s.rng.IntN(len(t.devices))]
	}
	return &t.devices[t.wsFirst+s.rng.IntN(len(t.devices)-t.wsFirst)]
}

func (s *Simulator) pid() int64 { return 4 * (250 + s.rng.Int64N(15000)) }

func (s *Simulator) head(r *rec, ts int64, d *device, action string) {
	r.ts("Timestamp", ts)
	r.str("DeviceId", d.id)
	r.str("DeviceName", d.name)
	r.str("ActionType", action)
}

func fileCols(r *rec, b *binary) {
	r.str("FileName", b.name)
	r.str("FolderPath", b.path)
	r.str("SHA1", b.sha1)
	r.str("SHA256", b.sha256)
	r.str("MD5", b.md5)
	r.long("FileSize", b.size)
}

// initiating writes the InitiatingProcess* columns every Device* table has;
// integrity adds the two that DeviceEvents lacks.
func (s *Simulator) initiating(r *rec, ts int64, b, parent *binary, a account, integrity bool) {
	r.str("InitiatingProcessAccountDomain", a.domain)
	r.str("InitiatingProcessAccountName", a.name)
	r.str("InitiatingProcessAccountSid", a.sid)
	optStr(r, "InitiatingProcessAccountUpn", a.upn)
	optStr(r, "InitiatingProcessAccountObjectId", a.oid)
	r.str("InitiatingProcessSHA1", b.sha1)
	r.str("InitiatingProcessSHA256", b.sha256)
	r.str("InitiatingProcessMD5", b.md5)
	r.str("InitiatingProcessFileName", b.name)
	r.long("InitiatingProcessFileSize", b.size)
	r.str("InitiatingProcessVersionInfoCompanyName", b.company)
	r.str("InitiatingProcessVersionInfoProductName", b.product)
	r.str("InitiatingProcessVersionInfoProductVersion", b.ver)
	r.str("InitiatingProcessVersionInfoInternalFileName", b.name)
	r.str("InitiatingProcessVersionInfoOriginalFileName", b.name)
	r.str("InitiatingProcessVersionInfoFileDescription", b.desc)
	r.long("InitiatingProcessId", s.pid())
	r.str("InitiatingProcessCommandLine", b.cmds[s.rng.IntN(len(b.cmds))])
	created := ts - 1e9 - s.rng.Int64N(3600e9)
	r.ts("InitiatingProcessCreationTime", created)
	r.str("InitiatingProcessFolderPath", b.path)
	r.long("InitiatingProcessParentId", s.pid())
	r.str("InitiatingProcessParentFileName", parent.name)
	r.ts("InitiatingProcessParentCreationTime", created-s.rng.Int64N(7200e9))
	if integrity {
		if a.sid == systemAccount.sid {
			r.str("InitiatingProcessIntegrityLevel", "System")
			r.str("InitiatingProcessTokenElevation", "TokenElevationTypeDefault")
		} else {
			r.str("InitiatingProcessIntegrityLevel", b.integrity)
			r.str("InitiatingProcessTokenElevation", b.tokenElevated)
		}
	}
	if a.sid == systemAccount.sid {
		r.long("InitiatingProcessSessionId", 0)
	} else {
		r.long("InitiatingProcessSessionId", 1+s.rng.Int64N(3))
	}
	r.boolean("IsInitiatingProcessRemoteSession", false)
	r.null("InitiatingProcessRemoteSessionDeviceName")
	r.null("InitiatingProcessRemoteSessionIP")
}

func optStr(r *rec, name, v string) {
	if v == "" {
		r.null(name)
		return
	}
	r.str(name, v)
}

func (s *Simulator) acctFor(t *tenant, d *device, system bool) account {
	if system || len(t.users) == 0 {
		return systemAccount
	}
	return t.account(d.user)
}

func (s *Simulator) deviceProcess(t *tenant, ts int64) {
	d := s.workstation(t)
	p := procPairs[s.rng.IntN(len(procPairs))]
	a := s.acctFor(t, d, p.system)
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceProcessEvents")
	s.head(r, ts, d, "ProcessCreated")
	s.processCols(r, ts, p.child, a, p.child.cmds[s.rng.IntN(len(p.child.cmds))])
	s.initiating(r, ts, p.parent, binExplorer, a, true)
	r.long("InitiatingProcessLogonId", 999)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.end()
}

// processCols writes the created-process columns of DeviceProcessEvents.
func (s *Simulator) processCols(r *rec, ts int64, b *binary, a account, cmd string) {
	fileCols(r, b)
	r.str("ProcessVersionInfoCompanyName", b.company)
	r.str("ProcessVersionInfoProductName", b.product)
	r.str("ProcessVersionInfoProductVersion", b.ver)
	r.str("ProcessVersionInfoInternalFileName", b.name)
	r.str("ProcessVersionInfoOriginalFileName", b.name)
	r.str("ProcessVersionInfoFileDescription", b.desc)
	r.long("ProcessId", s.pid())
	r.str("ProcessCommandLine", cmd)
	if a.sid == systemAccount.sid {
		r.str("ProcessIntegrityLevel", "System")
		r.str("ProcessTokenElevation", "TokenElevationTypeDefault")
	} else {
		r.str("ProcessIntegrityLevel", b.integrity)
		r.str("ProcessTokenElevation", b.tokenElevated)
	}
	r.ts("ProcessCreationTime", ts)
	r.str("AccountDomain", a.domain)
	r.str("AccountName", a.name)
	r.str("AccountSid", a.sid)
	optStr(r, "AccountUpn", a.upn)
	optStr(r, "AccountObjectId", a.oid)
	r.long("LogonId", 999+s.rng.Int64N(1e6))
	r.strInt("AdditionalFields", `{"ProcessStartKey":`, s.rng.Int64N(1<<50), `}`)
	r.long("CreatedProcessSessionId", 1)
	r.boolean("IsProcessRemoteSession", false)
	r.null("ProcessRemoteSessionDeviceName")
	r.null("ProcessRemoteSessionIP")
}

func (s *Simulator) deviceNetwork(t *tenant, ts int64) {
	d := s.workstation(t)
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceNetworkEvents")
	if s.rng.IntN(5) == 0 { // domain traffic to a DC
		dc := &t.devices[t.dcs[s.rng.IntN(len(t.dcs))]]
		s.head(r, ts, d, "ConnectionSuccess")
		r.str("RemoteIP", dc.ip)
		r.long("RemotePort", []int64{88, 389, 445, 135}[s.rng.IntN(4)])
		r.str("RemoteUrl", dc.name)
		s.netTail(r, d, "Private")
		s.initiating(r, ts, binLsass, binServices, systemAccount, true)
	} else { // web traffic, all through the egress proxy
		app := netApps[s.rng.IntN(len(netApps))]
		system := app.b == binSense || app.b == binSvchost
		s.head(r, ts, d, "ConnectionSuccess")
		r.str("RemoteIP", t.proxyIP)
		r.long("RemotePort", 8080)
		r.str("RemoteUrl", app.hosts[s.rng.IntN(len(app.hosts))])
		s.netTail(r, d, "Public")
		s.initiating(r, ts, app.b, binExplorer, s.acctFor(t, d, system), true)
	}
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.str("AdditionalFields", "")
	r.end()
}

func (s *Simulator) netTail(r *rec, d *device, remoteType string) {
	r.str("LocalIP", d.ip)
	r.long("LocalPort", 49152+s.rng.Int64N(16000))
	r.str("Protocol", "Tcp")
	r.str("LocalIPType", "Private")
	r.str("RemoteIPType", remoteType)
}

var docNames = []string{"Q2 forecast.xlsx", "Board deck.pptx", "Travel policy.pdf", "Team offsite notes.docx", "Customer list.xlsx", "Architecture review.docx", "Invoice 2024-118.pdf", "Budget FY25.xlsx"}

func (s *Simulator) deviceFile(t *tenant, ts int64) {
	d := s.workstation(t)
	u := &t.users[d.user]
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceFileEvents")
	doc := docNames[s.rng.IntN(len(docNames))]
	init, parent := binOneDrive, binExplorer
	folder := `\OneDrive - ` + t.org + `\Documents\`
	switch s.rng.IntN(3) {
	case 0:
		init, folder = binChrome, `\Downloads\`
	case 1:
		init, parent, folder = binWord, binExplorer, `\AppData\Roaming\Microsoft\Word\`
	}
	s.head(r, ts, d, []string{"FileCreated", "FileModified", "FileModified", "FileRenamed"}[s.rng.IntN(4)])
	r.str("FileName", doc)
	r.strs("FolderPath", `C:\Users\`, u.name, folder, doc)
	r.hex("SHA1", 40, s.rng)
	r.hex("SHA256", 64, s.rng)
	r.null("MD5")
	if init == binChrome {
		r.strs("FileOriginUrl", "https://", t.mail, "/files/", doc)
		r.strs("FileOriginReferrerUrl", "https://", t.mail, "/")
		r.str("FileOriginIP", t.proxyIP)
	}
	r.long("FileSize", 10_000+s.rng.Int64N(4_000_000))
	s.initiating(r, ts, init, parent, t.account(d.user), true)
	r.null("SensitivityLabel")
	r.boolean("IsAzureInfoProtectionApplied", false)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.strs("AdditionalFields", `{"FileType":"`, doc[len(doc)-4:], `"}`)
	r.end()
}

var regKeys = []struct {
	key, name, typ, data string
	b                    *binary
	user                 bool
}{
	{`HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows Defender\Signature Updates`, "SignaturesLastUpdated", "Binary", "a0c5b2e1f3b5da01", binMsMpEng, false},
	{`HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Services\bam\State\UserSettings`, "", "Binary", "", binSvchost, false},
	{`HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Explorer\RecentDocs`, "MRUListEx", "Binary", "0300000002000000", binExplorer, true},
	{`HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Common\Roaming\Identities`, "ADUserName", "String", "", binOutlook, true},
	{`HKEY_CURRENT_USER\Software\Microsoft\OneDrive\Accounts\Business1`, "LastSignInTime", "Dword", "1717401600", binOneDrive, true},
}

func (s *Simulator) deviceRegistry(t *tenant, ts int64) {
	d := s.workstation(t)
	k := regKeys[s.rng.IntN(len(regKeys))]
	a := s.acctFor(t, d, !k.user)
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceRegistryEvents")
	s.head(r, ts, d, "RegistryValueSet")
	if k.user {
		r.strs("RegistryKey", `HKEY_CURRENT_USER\`, a.sid, k.key[len(`HKEY_CURRENT_USER`):])
	} else {
		r.str("RegistryKey", k.key)
	}
	r.str("RegistryValueType", k.typ)
	r.str("RegistryValueName", k.name)
	if k.data == "" {
		r.str("RegistryValueData", a.upn)
	} else {
		r.str("RegistryValueData", k.data)
	}
	r.str("PreviousRegistryValueName", k.name)
	s.initiating(r, ts, k.b, binExplorer, a, true)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.end()
}

func (s *Simulator) deviceImageLoad(t *tenant, ts int64) {
	d := s.workstation(t)
	p := procPairs[s.rng.IntN(len(procPairs))]
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceImageLoadEvents")
	s.head(r, ts, d, "ImageLoaded")
	fileCols(r, dlls[s.rng.IntN(len(dlls))])
	s.initiating(r, ts, p.child, p.parent, s.acctFor(t, d, p.system), true)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.end()
}

var dnsNames = []string{"teams.microsoft.com", "outlook.office365.com", "www.bing.com", "login.microsoftonline.com", "github.com", "update.googleapis.com"}

func (s *Simulator) deviceEvent(t *tenant, ts int64) {
	d := s.workstation(t)
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceEvents")
	switch s.rng.IntN(3) {
	case 0:
		s.head(r, ts, d, "DnsQueryResponse")
		r.strs("AdditionalFields", `{"DnsQueryString":"`, dnsNames[s.rng.IntN(len(dnsNames))], `","DnsQueryResult":[{"DnsQueryType":1,"Address":"`, t.proxyIP, `"}]}`)
		s.initiating(r, ts, binSvchost, binServices, systemAccount, false)
	case 1:
		s.head(r, ts, d, "AntivirusScanCompleted")
		r.str("AdditionalFields", `{"ScanTypeIndex":"Quick","Domain":"NT AUTHORITY","User":"SYSTEM"}`)
		s.initiating(r, ts, binMsMpEng, binServices, systemAccount, false)
	default:
		a := s.acctFor(t, d, false)
		s.head(r, ts, d, "PowerShellCommand")
		r.str("AccountDomain", a.domain)
		r.str("AccountName", a.name)
		r.str("AccountSid", a.sid)
		r.str("AdditionalFields", `{"Command":"Get-ItemProperty"}`)
		s.initiating(r, ts, binPowerShell, binExplorer, a, false)
	}
	r.long("InitiatingProcessLogonId", 999)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.end()
}

func (s *Simulator) deviceLogon(t *tenant, ts int64) {
	d := s.workstation(t)
	a := s.acctFor(t, d, false)
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceLogonEvents")
	failed := s.rng.IntN(20) == 0
	if failed {
		s.head(r, ts, d, "LogonFailed")
	} else {
		s.head(r, ts, d, "LogonSuccess")
	}
	r.str("LogonType", []string{"Interactive", "Unlock", "Network", "CachedInteractive"}[s.rng.IntN(4)])
	r.str("AccountDomain", a.domain)
	r.str("AccountName", a.name)
	r.str("AccountSid", a.sid)
	r.str("Protocol", "Kerberos")
	if failed {
		r.str("FailureReason", "InvalidUserNameOrPassword")
	} else {
		r.null("FailureReason")
	}
	r.boolean("IsLocalAdmin", false)
	r.long("LogonId", s.rng.Int64N(1<<32))
	r.null("RemoteDeviceName")
	r.str("RemoteIP", "127.0.0.1")
	r.str("RemoteIPType", "Loopback")
	r.long("RemotePort", 0)
	s.initiating(r, ts, binLsass, binServices, systemAccount, true)
	r.long("ReportId", s.nextReportID())
	r.str("AppGuardContainerId", "")
	r.str("AdditionalFields", `{"IsLocalLogon":true}`)
	r.end()
}

func (s *Simulator) deviceInfo(t *tenant, ts int64) {
	d := &t.devices[s.rng.IntN(len(t.devices))]
	r := &s.r
	r.begin(s.clock(), t.id, "DeviceInfo")
	r.ts("Timestamp", ts)
	r.str("DeviceId", d.id)
	r.str("DeviceName", d.name)
	r.str("ClientVersion", "10.8760.22621.3527")
	r.str("PublicIP", t.proxyIP)
	r.str("OSArchitecture", "64-bit")
	r.str("OSPlatform", d.os)
	r.long("OSBuild", d.build)
	r.boolean("IsAzureADJoined", true)
	r.str("JoinType", "Hybrid Azure AD Join")
	r.str("AadDeviceId", d.aadID)
	if d.kind == "Workstation" && len(t.users) > 0 {
		u := &t.users[d.user]
		r.strs("LoggedOnUsers", `[{"UserName":"`, u.name, `","DomainName":"`, t.netbios, `","Sid":"`, u.sid, `"}]`)
	} else {
		r.str("LoggedOnUsers", "[]")
	}
	r.str("OSVersion", "10.0")
	r.str("MachineGroup", d.kind+"s")
	r.long("ReportId", s.nextReportID())
	r.str("OnboardingStatus", "Onboarded")
	r.str("DeviceCategory", "Endpoint")
	r.str("DeviceType", d.kind)
	r.str("Model", d.model)
	r.str("Vendor", d.vendor)
	r.str("OSDistribution", d.os)
	r.str("OSVersionInfo", d.osVer)
	r.boolean("IsInternetFacing", false)
	r.str("SensorHealthState", "Active")
	r.boolean("IsExcluded", false)
	r.str("ExposureLevel", []string{"Low", "Medium", "Low"}[s.rng.IntN(3)])
	r.str("AssetValue", "Normal")
	r.str("DeviceManualTags", "[]")
	r.str("DeviceDynamicTags", "[]")
	r.str("ConnectivityType", "Streamlined")
	r.end()
}
