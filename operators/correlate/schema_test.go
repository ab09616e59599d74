package correlate

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

type incidentValidator struct{ s *jsonschema.Schema }

func newValidator(t *testing.T) *incidentValidator {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(IncidentSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("incident.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("incident.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return &incidentValidator{s}
}

func (v *incidentValidator) validate(t *testing.T, inc Incident) {
	t.Helper()
	b, err := json.Marshal(inc)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.s.Validate(doc); err != nil {
		t.Fatalf("incident %s does not match incident.schema.json: %v\n%s", inc.ID, err, b)
	}
}
