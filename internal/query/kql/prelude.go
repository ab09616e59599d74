package kql

// Prelude is the SQL a DuckDB connection runs before it runs translations:
// Kusto's integer division, and the macros that functions translate to.
// internal/query runs it before the lockdown.
var Prelude = []string{
	"SET integer_division = true",
	// Kusto's datetimes are UTC: startofday(), bin(x, 1d) and the like cut
	// days at UTC midnight whatever the machine's zone.
	"SET TimeZone = 'UTC'",
	// tostring(): "" for null, JSON text for lists, structs and JSON
	// objects, the string itself for a JSON string, ISO 8601 for a datetime
	// (2024-05-01T10:00:00Z, as Kusto writes it).
	`CREATE OR REPLACE TEMP MACRO kql_tostring(x) AS CASE WHEN x IS NULL THEN '' ` +
		`WHEN typeof(x) = 'JSON' AND json_type(x::JSON) = 'VARCHAR' THEN x::JSON->>'$' ` +
		`WHEN typeof(x) LIKE '%[]' OR typeof(x) LIKE 'STRUCT%' OR typeof(x) LIKE 'MAP%' THEN to_json(x)::VARCHAR ` +
		`WHEN typeof(x) LIKE 'TIMESTAMP%' THEN regexp_replace(CAST(x AS VARCHAR), '^([0-9-]+) ([0-9:.]+)(\+00)?$', '\1T\2Z') ` +
		`ELSE CAST(x AS VARCHAR) END`,
	// A comparison with a string or number literal: the other side must be
	// of that kind, as Kusto requires (DuckDB would cast).
	`CREATE OR REPLACE TEMP MACRO kql_string(x) AS CASE WHEN typeof(x) IN ('VARCHAR', 'JSON', '"NULL"') THEN x::VARCHAR ` +
		`ELSE error('kql: cannot compare a value of type ' || typeof(x) || ' with a string') END`,
	`CREATE OR REPLACE TEMP MACRO kql_number(x) AS CASE WHEN typeof(x) IN ('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT', 'UTINYINT', 'USMALLINT', 'UINTEGER', 'UBIGINT', 'FLOAT', 'DOUBLE', 'BOOLEAN', '"NULL"') OR typeof(x) LIKE 'DECIMAL%' THEN x ` +
		`ELSE error('kql: cannot compare a value of type ' || typeof(x) || ' with a number') END`,
	// Distinct elements in the order they first appear, as Kusto's set_*.
	`CREATE OR REPLACE TEMP MACRO kql_distinct(l) AS list_filter(l, (x, i) -> list_position(l, x) = i)`,
	`CREATE OR REPLACE TEMP MACRO kql_array_length(x) AS CASE WHEN typeof(x) LIKE '%[]' THEN len(x::JSON[]) ` +
		`ELSE json_array_length(TRY_CAST(x AS JSON)) END`,
	`CREATE OR REPLACE TEMP MACRO kql_indexof(s, needle, start) AS CASE WHEN s IS NULL OR needle IS NULL THEN NULL ` +
		`WHEN strpos(substring(s, start + 1), needle) = 0 THEN -1 ELSE strpos(substring(s, start + 1), needle) - 1 + start END`,
	// countof() of a plain string counts overlapping matches, as Kusto does.
	`CREATE OR REPLACE TEMP MACRO kql_countof(s, needle) AS CASE WHEN length(needle) = 0 THEN 0 ` +
		`ELSE length(list_filter(range(length(s)), i -> substring(s, i + 1, length(needle)) = needle)) END`,
	`CREATE OR REPLACE TEMP MACRO kql_parse_url(u) AS json_object(` +
		`'Scheme', regexp_extract(u, '^([A-Za-z][A-Za-z0-9+.-]*)://', 1), ` +
		`'Host', regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]*)', 1), ` +
		`'Port', regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?[^:/?#]*:([0-9]+)', 1), ` +
		`'Path', regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)', 1), ` +
		`'Username', regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://([^:@/?#]*)(?::[^@/?#]*)?@', 1), ` +
		`'Password', regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*:([^@/?#]*)@', 1), ` +
		`'Query Parameters', regexp_extract(u, '\?([^#]*)', 1), ` +
		`'Fragment', regexp_extract(u, '#(.*)$', 1))`,
	`CREATE OR REPLACE TEMP MACRO kql_parse_path(p) AS json_object(` +
		`'Scheme', regexp_extract(p, '^([A-Za-z][A-Za-z0-9+.-]*)://', 1), ` +
		`'RootPath', regexp_extract(p, '^([A-Za-z]:|\\\\[^\\]+)', 1), ` +
		`'DirectoryPath', regexp_extract(p, '^(.*)[\\/][^\\/]*$', 1), ` +
		`'DirectoryName', regexp_extract(p, '([^\\/]*)[\\/][^\\/]*$', 1), ` +
		`'Filename', regexp_extract(p, '([^\\/]*)$', 1), ` +
		`'Extension', regexp_extract(p, '\.([^.\\/]*)$', 1), ` +
		`'AlternateDataStreamName', regexp_extract(p, ':([^:\\/]*)$', 1))`,
	`CREATE OR REPLACE TEMP MACRO kql_ipv4(ip) AS CASE WHEN regexp_full_match(ip, '[0-9]{1,3}(\.[0-9]{1,3}){3}') THEN ` +
		`(split_part(ip, '.', 1)::BIGINT << 24) + (split_part(ip, '.', 2)::BIGINT << 16) + (split_part(ip, '.', 3)::BIGINT << 8) + split_part(ip, '.', 4)::BIGINT END`,
	`CREATE OR REPLACE TEMP MACRO kql_ipv4_in_range(ip, net) AS ` +
		`(kql_ipv4(ip) >> (32 - coalesce(TRY_CAST(nullif(split_part(net, '/', 2), '') AS INTEGER), 32))) = ` +
		`(kql_ipv4(split_part(net, '/', 1)) >> (32 - coalesce(TRY_CAST(nullif(split_part(net, '/', 2), '') AS INTEGER), 32)))`,
	`CREATE OR REPLACE TEMP MACRO kql_gettype(x) AS CASE WHEN x IS NULL THEN 'null' WHEN typeof(x) = 'VARCHAR' THEN 'string' ` +
		`WHEN typeof(x) IN ('INTEGER', 'BIGINT', 'SMALLINT', 'TINYINT') THEN 'long' WHEN typeof(x) IN ('DOUBLE', 'FLOAT') OR typeof(x) LIKE 'DECIMAL%' THEN 'real' ` +
		`WHEN typeof(x) = 'BOOLEAN' THEN 'bool' WHEN typeof(x) LIKE 'TIMESTAMP%' THEN 'datetime' WHEN typeof(x) = 'INTERVAL' THEN 'timespan' ` +
		`WHEN typeof(x) LIKE '%[]' THEN 'array' ELSE 'dictionary' END`,
}
