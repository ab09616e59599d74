package correlate

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Kind is the kind of an entity that alerts can share.
type Kind string

// The entity kinds. A key is "kind:value", where value is canonical, so two
// spellings of one thing (WS5.contoso.local and ws5; an upper-case hash) meet.
const (
	KindDevice      Kind = "device"      // value "name:<host>" or "id:<DeviceId>"
	KindUser        Kind = "user"        // value "oid:", "sid:", "upn:" or "nt:<domain>\\<name>"
	KindMailbox     Kind = "mailbox"     // lower-cased address
	KindFile        Kind = "file"        // lower hex SHA256 or SHA1
	KindIP          Kind = "ip"          // netip canonical text
	KindURL         Kind = "url"         // normalised URL
	KindMailMessage Kind = "mailmessage" // NetworkMessageId
	KindCloudApp    Kind = "cloudapp"    // ApplicationId or "oauth:<OAuthApplicationId>"
)

// Entity is one canonical identifier of a device, account, file, address...
type Entity struct {
	Kind  Kind
	Value string
}

// Key is the entity's state and wire form, "kind:value".
func (e Entity) Key() string { return string(e.Kind) + ":" + e.Value }

// ParseEntity splits a key made by Entity.Key.
func ParseEntity(key string) (Entity, bool) {
	k, v, ok := strings.Cut(key, ":")
	if !ok || v == "" {
		return Entity{}, false
	}
	return Entity{Kind: Kind(k), Value: v}, true
}

// DeviceName canonicalises a host name: lower case, FQDN collapsed to its
// first label, because recordings name one host both WS5 and ws5.corp.local.
func DeviceName(s string) (Entity, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Entity{}, false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return Entity{}, false // an address is not a name
	}
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	return Entity{KindDevice, "name:" + strings.ToLower(s)}, true
}

// DeviceID is the Defender device id (lower-case hex).
func DeviceID(s string) (Entity, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Entity{}, false
	}
	return Entity{KindDevice, "id:" + strings.ToLower(s)}, true
}

// UserObjectID is an Entra (Azure AD) object id.
func UserObjectID(s string) (Entity, bool) {
	s = strings.Trim(strings.TrimSpace(s), "{}")
	if s == "" || s == "00000000-0000-0000-0000-000000000000" {
		return Entity{}, false
	}
	return Entity{KindUser, "oid:" + strings.ToLower(s)}, true
}

// UserSID is a Windows security identifier (upper case, as Windows prints it).
func UserSID(s string) (Entity, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "S-1-") {
		return Entity{}, false
	}
	return Entity{KindUser, "sid:" + s}, true
}

// UserUPN is a user principal name, lower-cased.
func UserUPN(s string) (Entity, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || !strings.Contains(s, "@") {
		return Entity{}, false
	}
	return Entity{KindUser, "upn:" + s}, true
}

// UserNT is DOMAIN\name, lower-cased, with an FQDN domain collapsed to its
// first label (the NetBIOS name in the common case).
func UserNT(domain, name string) (Entity, bool) {
	domain = strings.ToLower(strings.TrimSpace(domain))
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return Entity{}, false
	}
	if d, n, ok := strings.Cut(name, `\`); ok {
		domain, name = d, n
	}
	if i := strings.IndexByte(domain, '.'); i > 0 {
		domain = domain[:i]
	}
	return Entity{KindUser, "nt:" + domain + `\` + name}, true
}

// Mailbox is an e-mail address, lower-cased.
func Mailbox(s string) (Entity, bool) {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), "<>"))
	if s == "" || !strings.Contains(s, "@") {
		return Entity{}, false
	}
	return Entity{KindMailbox, s}, true
}

// FileHash is a SHA256 or SHA1 in lower hex; anything else is no hash.
func FileHash(s string) (Entity, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 64 && len(s) != 40 {
		return Entity{}, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return Entity{}, false
		}
	}
	return Entity{KindFile, s}, true
}

// IP is an address in canonical text (IPv4-mapped IPv6 unmapped, zone dropped).
func IP(s string) (Entity, bool) {
	a, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
	if err != nil {
		return Entity{}, false
	}
	a = a.Unmap().WithZone("")
	return Entity{KindIP, a.String()}, true
}

// URL normalises a URL or bare FQDN: scheme and host lower-cased (http when
// absent), default port dropped, fragment dropped, empty path as "/".
func URL(s string) (Entity, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Entity{}, false
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Entity{}, false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	u.Fragment, u.RawFragment = "", ""
	u.User = nil
	if u.Path == "" {
		u.Path = "/"
	}
	return Entity{KindURL, u.String()}, true
}

// MailMessage is an Office 365 NetworkMessageId.
func MailMessage(s string) (Entity, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return Entity{}, false
	}
	return Entity{KindMailMessage, s}, true
}

// CloudApp is a Defender for Cloud Apps ApplicationId.
func CloudApp(id int64) (Entity, bool) {
	if id <= 0 {
		return Entity{}, false
	}
	return Entity{KindCloudApp, strconv.FormatInt(id, 10)}, true
}

// OAuthApp is an Entra OAuth application id.
func OAuthApp(s string) (Entity, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "00000000-0000-0000-0000-000000000000" {
		return Entity{}, false
	}
	return Entity{KindCloudApp, "oauth:" + s}, true
}

// wellKnownUsers are accounts every Windows host has; sharing them says
// nothing about an attack, so they never link alerts.
var wellKnownUsers = map[string]bool{
	"sid:S-1-5-18": true, "sid:S-1-5-19": true, "sid:S-1-5-20": true,
	"sid:S-1-5-7": true, // anonymous logon
}

var wellKnownNames = map[string]bool{
	"system": true, "local system": true, "local service": true,
	"network service": true, "localsystem": true, "anonymous logon": true,
}

// WellKnown says whether e is shared by construction (built-in accounts,
// unspecified/loopback/link-local addresses) and so never links alerts.
func WellKnown(e Entity) bool {
	switch e.Kind {
	case KindUser:
		if wellKnownUsers[e.Value] {
			return true
		}
		if name, ok := strings.CutPrefix(e.Value, "nt:"); ok {
			if i := strings.IndexByte(name, '\\'); i >= 0 {
				name = name[i+1:]
			}
			return wellKnownNames[name]
		}
	case KindIP:
		a, err := netip.ParseAddr(e.Value)
		return err != nil || a.IsUnspecified() || a.IsLoopback() ||
			a.IsLinkLocalUnicast() || a.IsMulticast()
	case KindDevice:
		return e.Value == "name:localhost"
	}
	return false
}
