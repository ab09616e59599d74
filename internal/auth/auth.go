// Package auth is who may do what through the API: bearer tokens from the
// configuration (their SHA-256, never the token), a role each, and the
// tenants and device groups a token is scoped to.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Roles, from least to most.
const (
	Viewer    = "viewer"    // read
	Analyst   = "analyst"   // read, update incidents, hunt
	Responder = "responder" // read, approve and reject actions
	Admin     = "admin"     // everything
)

// Roles are every role, least first.
var Roles = []string{Viewer, Analyst, Responder, Admin}

// Permission is one thing a role may do.
type Permission string

// The permissions the API checks.
const (
	Read    Permission = "read"
	Update  Permission = "update"  // PATCH an incident
	Hunt    Permission = "hunt"    // run hunting queries
	Approve Permission = "approve" // approve or reject actions
)

var grants = map[string][]Permission{
	Viewer:    {Read},
	Analyst:   {Read, Update, Hunt},
	Responder: {Read, Approve},
	Admin:     {Read, Update, Hunt, Approve},
}

// AllTenants in a token's tenants scopes it to every tenant.
const AllTenants = "*"

// Token is one entry of auth.tokens: what the token may do, and its hash.
type Token struct {
	Name         string   `yaml:"name" json:"name"`
	Role         string   `yaml:"role" json:"role"`
	Tenants      []string `yaml:"tenants" json:"tenants"`
	DeviceGroups []string `yaml:"device_groups,omitempty" json:"device_groups,omitempty"`
	// SHA256 is the hex SHA-256 of the token; the token itself is never kept.
	SHA256 string `yaml:"sha256" json:"sha256"`
}

// DeviceGroup is one entry of auth.device_groups: a name and the device
// names (path.Match patterns, case-insensitive) it holds.
type DeviceGroup struct {
	Name    string   `yaml:"name" json:"name"`
	Devices []string `yaml:"devices" json:"devices"`
}

// Validate says what is wrong with the configured tokens and groups, each
// problem naming the entry.
func Validate(tokens []Token, groups []DeviceGroup) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	known := map[string]bool{}
	for i, g := range groups {
		if g.Name == "" || known[g.Name] {
			bad("auth.device_groups[%d]: name %q is empty or used twice", i, g.Name)
		}
		known[g.Name] = true
		if len(g.Devices) == 0 {
			bad("auth.device_groups[%d] (%s): no devices", i, g.Name)
		}
		for _, p := range g.Devices {
			if _, err := path.Match(p, ""); err != nil {
				bad("auth.device_groups[%d] (%s): pattern %q: %v", i, g.Name, p, err)
			}
		}
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range tokens {
		at := fmt.Sprintf("auth.tokens[%d] (%s)", i, t.Name)
		if t.Name == "" || names[t.Name] {
			bad("%s: name is empty or used twice (decisions and changes are recorded by it)", at)
		}
		names[t.Name] = true
		if _, ok := grants[t.Role]; !ok {
			bad("%s: role %q is not one of %s", at, t.Role, strings.Join(Roles, ", "))
		}
		if len(t.Tenants) == 0 {
			bad("%s: no tenants (list them, or %q for every tenant)", at, AllTenants)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			bad("%s: sha256 is not 64 hex digits (stitch token create prints it)", at)
		} else if hashes[strings.ToLower(t.SHA256)] {
			bad("%s: the same token as another entry", at)
		}
		hashes[strings.ToLower(t.SHA256)] = true
		for _, g := range t.DeviceGroups {
			if !known[g] {
				bad("%s: device group %q is not in auth.device_groups", at, g)
			}
		}
	}
	return errors.Join(errs...)
}

// Principal is who makes a request: a token's name, role and scope.
type Principal struct {
	Name         string
	Role         string
	Tenants      []string
	DeviceGroups []string
	groups       []DeviceGroup // the patterns of DeviceGroups
}

// Can says whether the principal's role grants p.
func (p *Principal) Can(perm Permission) bool { return slices.Contains(grants[p.Role], perm) }

// Permissions are what the principal's role grants.
func (p *Principal) Permissions() []Permission { return slices.Clone(grants[p.Role]) }

// AllTenants says whether the principal sees every tenant.
func (p *Principal) AllTenants() bool { return slices.Contains(p.Tenants, AllTenants) }

// SeesTenant says whether tenant is in the principal's scope.
func (p *Principal) SeesTenant(tenant string) bool {
	return p.AllTenants() || slices.Contains(p.Tenants, tenant)
}

// DeviceScoped says whether the principal is limited to device groups.
func (p *Principal) DeviceScoped() bool { return len(p.DeviceGroups) > 0 }

// SeesDevice says whether a device (its name or id) is in the principal's
// device groups; true when it has none.
func (p *Principal) SeesDevice(device string) bool {
	if !p.DeviceScoped() {
		return true
	}
	if device == "" {
		return false
	}
	d := strings.ToLower(device)
	for _, g := range p.groups {
		for _, pat := range g.Devices {
			if ok, _ := path.Match(strings.ToLower(pat), d); ok {
				return true
			}
		}
	}
	return false
}

// SeesAnyDevice says whether any of devices is in the principal's groups
// (always, when it has none).
func (p *Principal) SeesAnyDevice(devices []string) bool {
	if !p.DeviceScoped() {
		return true
	}
	return slices.ContainsFunc(devices, p.SeesDevice)
}

// Anonymous is the principal of a request when no token is configured:
// admin of every tenant, served on loopback only.
var Anonymous = &Principal{Name: "local", Role: Admin, Tenants: []string{AllTenants}}

// Tokens finds the principal of a bearer token.
type Tokens struct {
	byHash map[[sha256.Size]byte]*Principal
}

// NewTokens indexes validated tokens by their hash.
func NewTokens(tokens []Token, groups []DeviceGroup) (*Tokens, error) {
	if err := Validate(tokens, groups); err != nil {
		return nil, err
	}
	byName := map[string]DeviceGroup{}
	for _, g := range groups {
		byName[g.Name] = g
	}
	t := &Tokens{byHash: map[[sha256.Size]byte]*Principal{}}
	for _, tok := range tokens {
		var h [sha256.Size]byte
		b, _ := hex.DecodeString(tok.SHA256)
		copy(h[:], b)
		p := &Principal{Name: tok.Name, Role: tok.Role, Tenants: slices.Clone(tok.Tenants), DeviceGroups: slices.Clone(tok.DeviceGroups)}
		for _, g := range tok.DeviceGroups {
			p.groups = append(p.groups, byName[g])
		}
		t.byHash[h] = p
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.byHash) }

// Lookup is the principal of a token, or nil.
func (t *Tokens) Lookup(token string) *Principal {
	if token == "" {
		return nil
	}
	// A map lookup by the digest: timing says something about the hashes
	// at most, from which the tokens cannot be found.
	return t.byHash[sha256.Sum256([]byte(token))]
}

// tokenPrefix marks stitch's tokens, so that secret scanners find them.
const tokenPrefix = "stx_"

// NewToken makes a random token (32 bytes) and its entry for auth.tokens.
func NewToken(name, role string, tenants, deviceGroups []string) (string, Token, error) {
	if _, ok := grants[role]; !ok {
		return "", Token{}, fmt.Errorf("role %q is not one of %s", role, strings.Join(Roles, ", "))
	}
	if len(tenants) == 0 {
		return "", Token{}, fmt.Errorf("no tenant: give at least one (or %q for every tenant)", AllTenants)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(tok))
	return tok, Token{Name: name, Role: role, Tenants: tenants, DeviceGroups: deviceGroups, SHA256: hex.EncodeToString(sum[:])}, nil
}
