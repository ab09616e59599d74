package correlate

import _ "embed"

// IncidentSchema is the JSON Schema (draft 2020-12) of Incident outputs, for
// consumers and for validating what stitch emits.
//
//go:embed incident.schema.json
var IncidentSchema []byte
