package conf_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/conf"
	"github.com/stitch-xdr/stitch/pipeline"
)

// A config error quotes the lines around the mistake, but never a secret
// among them, nor a secret that is itself the mistake.
func TestConfigErrorsHideSecrets(t *testing.T) {
	for name, doc := range map[string]string{
		"type error below":   "kafka:\n  sasl:\n    username: u\n    password: hunter2-S3CRET\n  group: [1]\n",
		"unknown key below":  "kafka:\n  sasl:\n    username: u\n    password: hunter2-S3CRET\n  grup: x\n",
		"syntax error below": "kafka:\n  sasl:\n    password: 'hunter2-S3CRET'\n    username: [u\n",
		"the secret's own":   "kafka:\n  sasl:\n    password: {a: hunter2-S3CRET}\n",
		"a number":           "kafka:\n  sasl:\n    password: 31415926\n    mechanism: [x]\n",
		"flow style":         "kafka: {sasl: {password: hunter2-S3CRET, username: [u}}\n",
		"comment after":      "kafka:\n  sasl:\n    password: \"hunter2-S3CRET\" # rotate\n  group: [1]\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := conf.Load[pipeline.Config](writeConfig(t, doc))
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "31415926") {
				t.Fatalf("the error shows the password:\n%s", msg)
			}
			if !strings.Contains(err.Error(), "config ") {
				t.Errorf("the error lost its context: %v", err)
			}
		})
	}
}

// A key whose name looks secret (auth.tokens) still says what it takes.
func TestConfigErrorsSaySecretLookingKeysType(t *testing.T) {
	type cfg struct {
		Auth struct {
			Tokens []struct {
				Name string `yaml:"name" doc:"Name."`
			} `yaml:"tokens" doc:"Tokens."`
		} `yaml:"auth" doc:"Auth."`
	}
	_, err := conf.Load[cfg](writeConfig(t, "auth:\n  tokens: 5\n"))
	if err == nil || !strings.Contains(err.Error(), "auth.tokens: want a list of") {
		t.Errorf("auth.tokens: 5: %v", err)
	}
}

func writeConfig(t *testing.T, doc string) string {
	p := filepath.Join(t.TempDir(), "stitch.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzLoad: the config loader never panics, and whatever follows a
// password in the file, an error never shows the password. Seeds: the
// shipped configs/stitch.yaml and testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile("../../configs/stitch.yaml"); err == nil {
		f.Add(b, []byte("x"))
	}
	f.Add([]byte("  group: [1]\n"), []byte{1, 2, 3})
	f.Add([]byte("  grup: x\nnormalize:\n  max_depth: -1e9\n"), []byte("pw"))
	f.Fuzz(func(t *testing.T, rest, secret []byte) {
		pw := "S3cr3t" + hex.EncodeToString(secret)
		doc := "kafka:\n  sasl:\n    password: " + pw + "\n" + string(rest)
		_, err := conf.Load[pipeline.Config](writeConfig(t, doc))
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Fatalf("the error shows the password:\n%s", err)
		}
	})
}
