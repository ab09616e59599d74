package conf

import (
	"errors"
	"os"
	"regexp"
	"strings"
)

// Config errors quote the file around the mistake, which helps, but a file
// may hold a password next to it. Before an error leaves Load, the values of
// secret-looking keys (password, secret, token, credential, private key)
// are cut out of it: wherever such a value of the file appears in the
// message, and after such a key on any quoted line.

// Redacted replaces a secret in error messages.
const Redacted = "<redacted>"

var (
	secretKey = `(?i:[a-z0-9_-]*(?:password|passwd|secret|token|credential|private_key|api_key)[a-z0-9_-]*)`
	// A key and its value on one line, in block or flow style.
	secretLine  = regexp.MustCompile(`^\s*(?:-\s+)?["']?` + secretKey + `["']?\s*:\s*(.*?)\s*(?:#.*)?$`)
	secretInner = regexp.MustCompile(`(["']?` + secretKey + `["']?\s*:\s*)([^,}\]\n]+)`)
	// A line of the file quoted by an error ("   3 |     password: x").
	quotedLine = regexp.MustCompile(`^\s*>?\s*\d+ \|`)
)

// redactError returns err with the secrets of the file data cut out of its
// message.
func redactError(err error, data []byte) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	out := redact(msg, data)
	if out == msg {
		return err
	}
	return errors.New(out)
}

func redact(msg string, data []byte) string {
	var secrets []string
	for _, l := range strings.Split(string(data), "\n") {
		if m := secretLine.FindStringSubmatch(l); m != nil {
			if v := strings.Trim(m[1], `"' `); len(v) >= 3 {
				secrets = append(secrets, m[1], v)
			}
		}
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, Redacted)
	}
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		quoted := quotedLine.MatchString(l)
		lines[i] = secretInner.ReplaceAllStringFunc(l, func(m string) string {
			sub := secretInner.FindStringSubmatch(m)
			// The error's own words about a key (auth.tokens: want a
			// list of sections) are no value of the file.
			if !quoted && strings.HasPrefix(sub[2], "want ") {
				return m
			}
			return sub[1] + Redacted
		})
	}
	return strings.Join(lines, "\n")
}

// readForRedaction is the file as LoadFile read it, for redactError.
func readForRedaction(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
