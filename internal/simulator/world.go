package simulator

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// The world is built once in New: every string a record needs about a
// tenant, device, user or binary is computed here so Next only copies bytes.

type tenant struct {
	id      string // GUID, also the Kafka key
	key     []byte
	org     string // "contoso"
	netbios string // "CONTOSO"
	dns     string // "contoso.local" (on-prem AD)
	mail    string // "contoso.com"
	sidBase string // "S-1-5-21-a-b-c"
	proxyIP string // egress proxy every device's web traffic leaves through
	subnet  int    // second octet of the 10.x.0.0/16 the devices live in
	devices []device
	users   []user
	dcs     []int // device indexes of the domain controllers
	wsFirst int   // index of the first workstation
	// users and devices already victims of a story
	usedUsers, usedDevices map[int]bool
}

type device struct {
	name   string // FQDN, ws-0142.contoso.local
	short  string // WS-0142
	id     string // 40 hex digits
	aadID  string
	ip     string
	kind   string // Workstation, Server
	os     string // Windows11, WindowsServer2022
	osVer  string
	build  int64
	model  string
	vendor string
	user   int // primary user
}

type user struct {
	first, last string
	display     string
	name        string // sAMAccountName, "jdoe"
	upn         string
	sid         string
	objectID    string
	dept, title string
	city        string
	country     string
	device      int // primary workstation
}

type binary struct {
	name, folder, path       string
	sha1, sha256, md5        string
	size                     int64
	company, product, ver    string
	desc                     string
	cmds                     []string
	integrity, tokenElevated string
}

var orgNames = []string{"contoso", "fabrikam", "northwind", "adatum", "tailspin", "woodgrove", "litware", "proseware"}

var firstNames = []string{"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
	"William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen", "Wei", "Aisha",
	"Lars", "Priya", "Mateo", "Yuki", "Olga", "Kwame", "Fatima", "Noah", "Emma", "Liam", "Sofia", "Hiro", "Ana", "Omar"}
var lastNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
	"Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
	"Chen", "Nguyen", "Kowalski", "Novak", "Okafor", "Silva", "Tanaka", "Schmidt", "Rossi", "Haddad", "Patel", "Kim"}
var departments = []struct{ dept, title string }{
	{"Finance", "Accountant"}, {"Finance", "Controller"}, {"Sales", "Account Executive"}, {"Sales", "Sales Manager"},
	{"Engineering", "Software Engineer"}, {"Engineering", "Site Reliability Engineer"}, {"HR", "HR Partner"},
	{"IT", "Systems Administrator"}, {"Legal", "Counsel"}, {"Marketing", "Content Strategist"}, {"Operations", "Logistics Coordinator"},
}
var cities = []struct{ city, country string }{{"Seattle", "US"}, {"Redmond", "US"}, {"New York", "US"}, {"London", "GB"}, {"Dublin", "IE"}, {"Munich", "DE"}}
var models = []struct{ vendor, model string }{{"Dell Inc.", "Latitude 7440"}, {"LENOVO", "ThinkPad T14 Gen 4"}, {"HP", "EliteBook 840 G10"}, {"Microsoft Corporation", "Surface Laptop 5"}}

func guid(r *rand.Rand) string { return string(appendGUID(nil, r)) }

func hexID(r *rand.Rand, n int) string { return string(appendHex(nil, n, r)) }

// buildTenant makes one tenant's devices and users. Names are unique within
// a tenant; identifiers (GUIDs, SIDs, device ids) are unique everywhere.
func buildTenant(r *rand.Rand, i, nDevices, nUsers int) tenant {
	org := fmt.Sprintf("tenant%d", i)
	if i < len(orgNames) {
		org = orgNames[i]
	}
	t := tenant{
		id:        guid(r),
		org:       org,
		netbios:   strings.ToUpper(org),
		dns:       org + ".local",
		mail:      org + ".com",
		sidBase:   fmt.Sprintf("S-1-5-21-%d-%d-%d", 1000000000+r.IntN(3000000000), 1000000000+r.IntN(3000000000), 1000000000+r.IntN(3000000000)),
		proxyIP:   fmt.Sprintf("%d.%d.%d.%d", []int{20, 40, 52, 104}[r.IntN(4)], 1+r.IntN(250), r.IntN(256), 1+r.IntN(250)),
		subnet:    10 + i,
		usedUsers: map[int]bool{}, usedDevices: map[int]bool{},
	}
	t.key = []byte(t.id)
	nDC := 2
	nSrv := max(1, nDevices/25)
	if nDevices < nDC+nSrv+1 {
		nDC, nSrv = 0, 0
	}
	t.wsFirst = nDC + nSrv
	nWS := nDevices - t.wsFirst
	taken := map[string]int{}
	for u := range nUsers {
		f, l := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		name := strings.ToLower(f[:1] + l)
		if taken[name] > 0 { // account names are unique, as in AD: jsmith, jsmith2
			name += strconv.Itoa(taken[name] + 1)
		}
		taken[strings.ToLower(f[:1]+l)]++
		d := departments[r.IntN(len(departments))]
		c := cities[r.IntN(len(cities))]
		t.users = append(t.users, user{
			first: f, last: l, display: f + " " + l, name: name,
			upn:      name + "@" + t.mail,
			sid:      t.sidBase + "-" + strconv.Itoa(1104+u),
			objectID: guid(r),
			dept:     d.dept, title: d.title, city: c.city, country: c.country,
			device: t.wsFirst + u%nWS,
		})
	}
	for d := range nDevices {
		var short, kind, os, ver string
		var build int64
		switch {
		case d < nDC:
			short, kind, os, ver, build = fmt.Sprintf("DC-%02d", d+1), "Server", "WindowsServer2022", "21H2", 20348
		case d < t.wsFirst:
			short, kind, os, ver, build = fmt.Sprintf("SRV-%03d", d-nDC+10), "Server", "WindowsServer2022", "21H2", 20348
		default:
			short, kind, os, ver, build = fmt.Sprintf("WS-%04d", d-t.wsFirst+101), "Workstation", "Windows11", "23H2", 22631
			if r.IntN(5) == 0 {
				os, ver, build = "Windows10", "22H2", 19045
			}
		}
		m := models[r.IntN(len(models))]
		if kind == "Server" {
			m.vendor, m.model = "VMware, Inc.", "VMware7,1"
		}
		t.devices = append(t.devices, device{
			name:  strings.ToLower(short) + "." + t.dns,
			short: short,
			id:    hexID(r, 40), aadID: guid(r),
			ip:   fmt.Sprintf("10.%d.%d.%d", t.subnet, d/250, 10+d%240),
			kind: kind, os: os, osVer: ver, build: build,
			vendor: m.vendor, model: m.model,
			user: d % max(1, nUsers),
		})
		if d < nDC {
			t.dcs = append(t.dcs, d)
		}
	}
	if len(t.dcs) == 0 {
		t.dcs = []int{0}
	}
	return t
}

func newBinary(name, folder, company, product, ver, desc string, size int64, cmds ...string) *binary {
	s1 := sha1.Sum([]byte("sha1:" + folder + name + ver))
	s2 := sha256.Sum256([]byte("sha256:" + folder + name + ver))
	m5 := md5.Sum([]byte("md5:" + folder + name + ver))
	if len(cmds) == 0 {
		cmds = []string{name}
	}
	return &binary{
		name: name, folder: folder, path: folder + name,
		sha1: hex.EncodeToString(s1[:]), sha256: hex.EncodeToString(s2[:]), md5: hex.EncodeToString(m5[:]),
		size: size, company: company, product: product, ver: ver, desc: desc, cmds: cmds,
		integrity: "Medium", tokenElevated: "TokenElevationTypeLimited",
	}
}

const (
	sys32  = `C:\Windows\System32\`
	msft   = "Microsoft Corporation"
	winOS  = "Microsoft® Windows® Operating System"
	office = `C:\Program Files\Microsoft Office\root\Office16\`
)

// The binaries are the same files on every device of every tenant, so their
// hashes are shared widely: a correlator must not treat them as linking
// evidence on their own.
var (
	binServices   = newBinary("services.exe", sys32, msft, winOS, "10.0.22621.2506", "Services and Controller app", 712704)
	binSvchost    = newBinary("svchost.exe", sys32, msft, winOS, "10.0.22621.1", "Host Process for Windows Services", 57360, "svchost.exe -k netsvcs -p -s Schedule", "svchost.exe -k LocalServiceNetworkRestricted -p -s Dhcp", "svchost.exe -k NetworkService -p -s Dnscache", "svchost.exe -k UnistackSvcGroup -s WpnUserService_4f2e1", "svchost.exe -k wsappx -p -s AppXSvc")
	binLsass      = newBinary("lsass.exe", sys32, msft, winOS, "10.0.22621.2506", "Local Security Authority Process", 59456, `C:\Windows\system32\lsass.exe`)
	binWmi        = newBinary("WmiPrvSE.exe", sys32+`wbem\`, msft, winOS, "10.0.22621.1", "WMI Provider Host", 496640, `C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding`)
	binMsMpEng    = newBinary("MsMpEng.exe", `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24040.4-0\`, msft, "Microsoft Malware Protection", "4.18.24040.4", "Antimalware Service Executable", 133432, `"MsMpEng.exe"`)
	binSense      = newBinary("MsSense.exe", `C:\Program Files\Windows Defender Advanced Threat Protection\`, msft, winOS, "10.8760.22621.3527", "Windows Defender Advanced Threat Protection Service Executable", 5104640, `"MsSense.exe"`)
	binSearch     = newBinary("SearchIndexer.exe", sys32, msft, winOS, "7.0.22621.2506", "Microsoft Windows Search Indexer", 1004544, `C:\Windows\system32\SearchIndexer.exe /Embedding`)
	binTaskhost   = newBinary("taskhostw.exe", sys32, msft, winOS, "10.0.22621.2506", "Host Process for Windows Tasks", 102400, "taskhostw.exe -RegisterUserDevice -SettingsSync", "taskhostw.exe Install $(Arg0)")
	binBgTask     = newBinary("backgroundTaskHost.exe", sys32, msft, winOS, "10.0.22621.1", "Background Task Host", 32768, `"backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider`)
	binExplorer   = newBinary("explorer.exe", `C:\Windows\`, msft, winOS, "10.0.22621.3007", "Windows Explorer", 5372800, `C:\Windows\Explorer.EXE`)
	binChrome     = newBinary("chrome.exe", `C:\Program Files\Google\Chrome\Application\`, "Google LLC", "Google Chrome", "125.0.6422.142", "Google Chrome", 3164440, `"C:\Program Files\Google\Chrome\Application\chrome.exe"`, `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=en-US --renderer-client-id=7`, `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=utility --utility-sub-type=network.mojom.NetworkService`)
	binEdge       = newBinary("msedge.exe", `C:\Program Files (x86)\Microsoft\Edge\Application\`, msft, "Microsoft Edge", "125.0.2535.85", "Microsoft Edge", 4012424, `"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --single-argument https://outlook.office.com/`, `"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --type=renderer`)
	binOutlook    = newBinary("OUTLOOK.EXE", office, msft, "Microsoft Outlook", "16.0.17531.20152", "Microsoft Outlook", 43526464, `"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE"`)
	binWord       = newBinary("WINWORD.EXE", office, msft, "Microsoft Office", "16.0.17531.20152", "Microsoft Word", 2188104, `"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE" /n`)
	binExcel      = newBinary("EXCEL.EXE", office, msft, "Microsoft Office", "16.0.17531.20152", "Microsoft Excel", 71516488, `"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE"`)
	binTeams      = newBinary("ms-teams.exe", `C:\Program Files\WindowsApps\MSTeams_24124.2315.2911.3357_x64__8wekyb3d8bbwe\`, msft, "Microsoft Teams", "24124.2315.2911.3357", "Microsoft Teams", 1312088, `"ms-teams.exe"`)
	binOneDrive   = newBinary("OneDrive.exe", `C:\Program Files\Microsoft OneDrive\`, msft, "Microsoft OneDrive", "24.086.0428.0002", "Microsoft OneDrive", 3560960, `"C:\Program Files\Microsoft OneDrive\OneDrive.exe" /background`)
	binPowerShell = newBinary("powershell.exe", sys32+`WindowsPowerShell\v1.0\`, msft, winOS, "10.0.22621.2506", "Windows PowerShell", 455680, `powershell.exe -ExecutionPolicy AllSigned -NoProfile -NonInteractive -Command "& {$OutputEncoding = [Console]::OutputEncoding =[System.Text.Encoding]::UTF8;$scriptFileStream = [System.IO.File]::Open('C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\DataCollection\8754.11797452.0.11797452-2c3d4b1a\3d1b6c8e.ps1', [System.IO.FileMode]::Open)}"`)
	binCmd        = newBinary("cmd.exe", sys32, msft, winOS, "10.0.22621.2506", "Windows Command Processor", 323584, `C:\Windows\system32\cmd.exe /c ""C:\Users\Public\logon.cmd""`, `"cmd.exe" /c ipconfig /all`)
	binConhost    = newBinary("conhost.exe", sys32, msft, winOS, "10.0.22621.2506", "Console Window Host", 868352, `\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1`)
	binRundll     = newBinary("rundll32.exe", sys32, msft, winOS, "10.0.22621.1", "Windows host process (Rundll32)", 71680, `"rundll32.exe" C:\Windows\system32\PcaSvc.dll,PcaPatchSdbTask`)
)

// dlls loaded by the processes above, for DeviceImageLoadEvents.
var dlls = []*binary{
	newBinary("ntdll.dll", sys32, msft, winOS, "10.0.22621.3007", "NT Layer DLL", 2163016),
	newBinary("kernel32.dll", sys32, msft, winOS, "10.0.22621.3007", "Windows NT BASE API Client DLL", 773592),
	newBinary("KernelBase.dll", sys32, msft, winOS, "10.0.22621.3007", "Windows NT BASE API Client DLL", 3816920),
	newBinary("combase.dll", sys32, msft, winOS, "10.0.22621.3007", "Microsoft COM for Windows", 3686832),
	newBinary("amsi.dll", sys32, msft, winOS, "10.0.22621.2506", "Anti-Malware Scan Interface", 94208),
	newBinary("wininet.dll", sys32, msft, "Internet Explorer", "11.0.22621.3007", "Internet Extensions for Win32", 4995072),
	newBinary("crypt32.dll", sys32, msft, winOS, "10.0.22621.2506", "Crypto API32", 1562624),
	newBinary("clr.dll", `C:\Windows\Microsoft.NET\Framework64\v4.0.30319\`, msft, "Microsoft .NET Framework", "4.8.9221.0", "Microsoft .NET Runtime Common Language Runtime - WorkStation", 10645504),
	newBinary("mpoav.dll", `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24040.4-0\`, msft, "Microsoft Malware Protection", "4.18.24040.4", "IOfficeAntiVirus Module", 190440),
}

// procPair is a parent spawning a child; system says it runs as SYSTEM.
type procPair struct {
	parent, child *binary
	system        bool
}

var procPairs = []procPair{
	{binServices, binSvchost, true}, {binSvchost, binWmi, true}, {binSvchost, binTaskhost, false},
	{binSvchost, binBgTask, false}, {binSvchost, binSearch, true}, {binSense, binPowerShell, true},
	{binExplorer, binChrome, false}, {binChrome, binChrome, false}, {binExplorer, binEdge, false},
	{binExplorer, binOutlook, false}, {binExplorer, binTeams, false}, {binExplorer, binOneDrive, false},
	{binExplorer, binWord, false}, {binExplorer, binExcel, false}, {binCmd, binConhost, false},
	{binExplorer, binCmd, false}, {binSvchost, binRundll, true}, {binServices, binMsMpEng, true},
}

// netApps are processes that talk to the internet through the proxy, with
// the hosts they reach.
var netApps = []struct {
	b     *binary
	hosts []string
}{
	{binChrome, []string{"www.google.com", "github.com", "www.linkedin.com", "stackoverflow.com", "news.ycombinator.com"}},
	{binEdge, []string{"www.bing.com", "outlook.office.com", "login.microsoftonline.com", "contoso.sharepoint.com"}},
	{binOutlook, []string{"outlook.office365.com", "substrate.office.com", "login.microsoftonline.com"}},
	{binTeams, []string{"teams.microsoft.com", "presence.teams.microsoft.com", "statics.teams.cdn.office.net"}},
	{binOneDrive, []string{"contoso-my.sharepoint.com", "g.live.com", "oneclient.sfx.ms"}},
	{binSense, []string{"winatp-gw-eus.microsoft.com", "events.data.microsoft.com"}},
	{binSvchost, []string{"settings-win.data.microsoft.com", "fe3cr.delivery.mp.microsoft.com", "ctldl.windowsupdate.com"}},
}
