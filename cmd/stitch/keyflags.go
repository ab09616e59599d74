package main

import (
	"flag"
	"fmt"
	"reflect"

	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/conf"
)

// keyFlagsOf records, per command, the config keys whose flags it registered,
// so a test can check that every key's flag tag names a flag that exists.
var keyFlagsOf = map[string]map[string]bool{}

// keyFlag returns the name and help of the flag of a config key, from the
// key's flag and doc tags, and records that fs registers it.
func keyFlag(fs *flag.FlagSet, key string) (name, usage string) {
	k := appconfig.Key(key)
	if k.Flag == "" || (k.FlagCommand() != "" && k.FlagCommand() != fs.Name()) {
		panic(fmt.Sprintf("stitch %s: key %s has no flag tag for this command", fs.Name(), key))
	}
	if keyFlagsOf[fs.Name()] == nil {
		keyFlagsOf[fs.Name()] = map[string]bool{}
	}
	keyFlagsOf[fs.Name()][key] = true
	return k.FlagName(), k.Usage()
}

// keyFlags are flags that override config keys: only the flags given on the
// command line override, after the file and the environment.
type keyFlags struct {
	given map[string]string // key -> text of its flag
}

// add registers the flags of the keys on fs.
func (kf *keyFlags) add(fs *flag.FlagSet, keys ...string) {
	for _, key := range keys {
		name, usage := keyFlag(fs, key)
		set := func(s string) error {
			var probe appconfig.Config // parse now, so a bad value is a usage error
			if err := conf.Set(&probe, key, s); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if kf.given == nil {
				kf.given = map[string]string{}
			}
			kf.given[key] = s
			return nil
		}
		if appconfig.Key(key).Type.Kind() == reflect.Bool {
			fs.BoolFunc(name, usage, set)
		} else {
			fs.Func(name, usage, set)
		}
	}
}

// apply sets the keys whose flags were given.
func (kf *keyFlags) apply(cfg *appconfig.Config) error {
	for key, s := range kf.given {
		if err := conf.Set(cfg, key, s); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}
