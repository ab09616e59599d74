package normalize

import (
	"math/bits"

	"github.com/valyala/fastjson"
)

// actionHints name the table an ActionType value belongs to, where the
// columns alone are ambiguous (the Device* tables share most of theirs).
var actionHints = map[string]string{
	"ProcessCreated":                 "DeviceProcessEvents",
	"ConnectionSuccess":              "DeviceNetworkEvents",
	"ConnectionFailed":               "DeviceNetworkEvents",
	"ConnectionRequest":              "DeviceNetworkEvents",
	"InboundConnectionAccepted":      "DeviceNetworkEvents",
	"ListeningConnectionCreated":     "DeviceNetworkEvents",
	"FileCreated":                    "DeviceFileEvents",
	"FileModified":                   "DeviceFileEvents",
	"FileDeleted":                    "DeviceFileEvents",
	"FileRenamed":                    "DeviceFileEvents",
	"RegistryValueSet":               "DeviceRegistryEvents",
	"RegistryKeyCreated":             "DeviceRegistryEvents",
	"RegistryKeyDeleted":             "DeviceRegistryEvents",
	"RegistryValueDeleted":           "DeviceRegistryEvents",
	"ImageLoaded":                    "DeviceImageLoadEvents",
	"LdapSearch":                     "DeviceEvents",
	"DnsQueryResponse":               "DeviceEvents",
	"PowerShellCommand":              "DeviceEvents",
	"Directory Services replication": "IdentityDirectoryEvents",
	"Account Password changed":       "IdentityDirectoryEvents",
	"LDAP query":                     "IdentityQueryEvents",
	"SAMR query":                     "IdentityQueryEvents",
	"DNS query":                      "IdentityQueryEvents",
}

const (
	hintWeight   = 10 // an ActionType hint outweighs a few shared columns
	uniqueWeight = 3  // a column only one table has says more than a shared one
	minScore     = 3  // below this (Timestamp and one shared column) nothing is inferred
)

// inferTable picks the table of an export row: each non-empty column scores
// the tables that define it, columns unique to one table score more, and an
// ActionType hint scores most.
func inferTable(o *fastjson.Object) *table {
	var score [32]int
	o.Visit(func(key []byte, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeNull:
			return
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			if len(s) == 0 {
				return
			}
			if string(key) == "ActionType" {
				if t := tableIndex[actionHints[string(s)]]; t != nil {
					score[t.pos] += hintWeight
				}
			}
		}
		set, ok := columnTables[string(key)]
		if !ok {
			if base := stripSuffix(key); base != nil {
				set = columnTables[string(base)]
			}
		}
		w := 1
		if bits.OnesCount32(set) == 1 {
			w += uniqueWeight
		}
		for set != 0 {
			i := bits.TrailingZeros32(set)
			score[i] += w
			set &^= 1 << uint(i)
		}
	})
	best := -1
	for i := range tables {
		if score[i] >= minScore && (best < 0 || score[i] > score[best]) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	return tables[best]
}

// exportSuffixes are the type suffixes the advanced-hunting export tool adds
// when a column's type differs between the tables of one export.
var exportSuffixes = []string{"_long", "_string", "_dynamic", "_int", "_bool", "_boolean", "_datetime", "_real"}

// stripSuffix returns key without its export-type suffix, or nil when it has
// none. Whether the base is a column is up to the caller.
func stripSuffix(key []byte) []byte {
	for _, s := range exportSuffixes {
		if len(key) > len(s) && string(key[len(key)-len(s):]) == s {
			return key[:len(key)-len(s)]
		}
	}
	return nil
}
