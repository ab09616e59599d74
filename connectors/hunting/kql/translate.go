// Package kql translates a subset of the Kusto Query Language, as used by
// advanced-hunting queries, into DuckDB SQL over the hunting views.
package kql

import "fmt"

// Translate returns the DuckDB SQL for a KQL query.
func Translate(q string) (string, error) {
	return "", fmt.Errorf("kql: not implemented yet")
}
