package kql

import (
	"fmt"
	"strings"
)

// call translates the supported scalar and aggregate functions. Helpers
// that need more than one DuckDB expression are macros of Prelude.
func (p *parser) call(name token) (string, error) {
	p.next() // (
	var args []string
	for !p.is(")") {
		if p.is("*") && (p.ahead(1).text == ")" || p.ahead(1).text == ",") {
			p.next()
			args = append(args, "*")
		} else {
			a, err := p.expr()
			if err != nil {
				return "", err
			}
			args = append(args, a)
		}
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return "NULL"
	}
	all := strings.Join(args, ", ")
	switch fn := strings.ToLower(name.text); fn {
	case "ago":
		return "(now() - " + arg(0) + ")", nil
	case "now":
		if len(args) > 0 {
			return "(now() + " + arg(0) + ")", nil
		}
		return "now()", nil
	case "startofday":
		return "date_trunc('day', " + arg(0) + ")", nil
	case "startofweek":
		return "(date_trunc('week', " + arg(0) + " + INTERVAL '1 day') - INTERVAL '1 day')", nil // weeks start on Sunday
	case "startofmonth":
		return "date_trunc('month', " + arg(0) + ")", nil
	case "startofyear":
		return "date_trunc('year', " + arg(0) + ")", nil
	case "endofday":
		return "(date_trunc('day', " + arg(0) + ") + INTERVAL '1 day' - INTERVAL '1 microsecond')", nil
	case "hourofday":
		return "hour(" + arg(0) + ")", nil
	case "dayofweek":
		return "(dayofweek(" + arg(0) + ") * INTERVAL '1 day')", nil
	case "dayofmonth":
		return "day(" + arg(0) + ")", nil
	case "getyear":
		return "year(" + arg(0) + ")", nil
	case "getmonth":
		return "month(" + arg(0) + ")", nil
	case "datetime_add":
		part, err := datePart(name, arg(0))
		if err != nil {
			return "", err
		}
		return "(" + arg(2) + " + " + arg(1) + " * INTERVAL '1 " + part + "')", nil
	case "datetime_diff":
		part, err := datePart(name, arg(0))
		if err != nil {
			return "", err
		}
		return "date_diff('" + part + "', " + arg(2) + ", " + arg(1) + ")", nil
	case "datetime_part", "datepart":
		part, err := datePart(name, arg(0))
		if err != nil {
			return "", err
		}
		return "date_part('" + part + "', " + arg(1) + ")", nil
	case "format_datetime":
		f, ok := literal(arg(1))
		if !ok {
			return "", unsupported("format_datetime() with a non-constant format", name)
		}
		return "strftime(" + arg(0) + ", " + sqlString(strftimeFormat(f)) + ")", nil
	case "count":
		return "count(*)", nil
	case "countif":
		return "count(*) FILTER (WHERE " + arg(0) + ")", nil
	case "dcount":
		return "count(DISTINCT " + arg(0) + ")", nil
	case "dcountif":
		return "count(DISTINCT " + arg(0) + ") FILTER (WHERE " + arg(1) + ")", nil
	case "sumif":
		return "sum(" + arg(0) + ") FILTER (WHERE " + arg(1) + ")", nil
	case "avgif":
		return "avg(" + arg(0) + ") FILTER (WHERE " + arg(1) + ")", nil
	case "min", "max", "sum", "avg":
		return fn + "(" + arg(0) + ")", nil
	case "minif", "maxif":
		return fn[:3] + "(" + arg(0) + ") FILTER (WHERE " + arg(1) + ")", nil
	case "stdev":
		return "stddev_samp(" + arg(0) + ")", nil
	case "stdevp":
		return "stddev_pop(" + arg(0) + ")", nil
	case "variance":
		return "var_samp(" + arg(0) + ")", nil
	case "percentile":
		return "quantile_disc(" + arg(0) + ", " + arg(1) + " / 100.0)", nil
	case "make_set", "makeset":
		return "list_distinct(list(" + arg(0) + "))", nil
	case "make_list", "makelist":
		return "list(" + arg(0) + ")", nil
	case "make_set_if":
		return "list_distinct(list(" + arg(0) + ") FILTER (WHERE " + arg(1) + "))", nil
	case "make_list_if":
		return "list(" + arg(0) + ") FILTER (WHERE " + arg(1) + ")", nil
	case "make_bag":
		return "json_group_object_merge(" + arg(0) + ")", nil
	case "any", "take_any":
		return "any_value(" + arg(0) + ")", nil
	case "bin", "floor":
		if len(args) == 1 {
			return "floor(" + arg(0) + ")", nil
		}
		if isInterval(arg(1)) {
			return "time_bucket(" + arg(1) + ", " + arg(0) + ")", nil
		}
		return "(floor(" + arg(0) + " / " + arg(1) + ") * " + arg(1) + ")", nil
	case "tostring":
		return "kql_tostring(" + arg(0) + ")", nil
	case "toint":
		return "TRY_CAST(" + arg(0) + " AS INTEGER)", nil
	case "tolong":
		return "TRY_CAST(" + arg(0) + " AS BIGINT)", nil
	case "todouble", "toreal", "todecimal":
		return "TRY_CAST(" + arg(0) + " AS DOUBLE)", nil
	case "tobool", "toboolean":
		return "TRY_CAST(" + arg(0) + " AS BOOLEAN)", nil
	case "todatetime":
		return "TRY_CAST(" + arg(0) + " AS TIMESTAMPTZ)", nil
	case "totimespan":
		return "TRY_CAST(" + arg(0) + " AS INTERVAL)", nil
	case "parse_json", "parsejson", "todynamic", "todynamic_":
		return "TRY_CAST(" + arg(0) + " AS JSON)", nil
	case "tolower":
		return "lower(" + arg(0) + ")", nil
	case "toupper":
		return "upper(" + arg(0) + ")", nil
	case "strlen":
		return "length(" + arg(0) + ")", nil
	case "strcat":
		strs := make([]string, len(args))
		for i, a := range args {
			strs[i] = str(a)
		}
		return "concat(" + strings.Join(strs, ", ") + ")", nil
	case "strcat_delim":
		return "concat_ws(" + all + ")", nil
	case "strcat_array":
		return "array_to_string(CAST(" + arg(0) + " AS VARCHAR[]), " + arg(1) + ")", nil
	case "reverse":
		return "reverse(" + arg(0) + ")", nil
	case "substring":
		if len(args) > 2 {
			return "substring(" + arg(0) + ", " + arg(1) + " + 1, " + arg(2) + ")", nil
		}
		return "substring(" + arg(0) + ", " + arg(1) + " + 1)", nil
	case "indexof":
		if len(args) > 2 {
			return "kql_indexof(" + arg(0) + ", " + arg(1) + ", " + arg(2) + ")", nil
		}
		return "kql_indexof(" + arg(0) + ", " + arg(1) + ", 0)", nil
	case "split":
		if len(args) > 2 {
			return "[string_split(" + arg(0) + ", " + arg(1) + ")[" + arg(2) + " + 1]]", nil
		}
		return "string_split(" + arg(0) + ", " + arg(1) + ")", nil
	case "replace_string":
		return "replace(" + arg(0) + ", " + arg(1) + ", " + arg(2) + ")", nil
	case "replace", "replace_regex":
		// replace(regex, rewrite, text); replace_regex(text, regex, rewrite).
		if fn == "replace" {
			return "regexp_replace(" + arg(2) + ", " + arg(0) + ", " + arg(1) + ", 'g')", nil
		}
		return "regexp_replace(" + arg(0) + ", " + arg(1) + ", " + arg(2) + ", 'g')", nil
	case "trim", "trim_start", "trim_end":
		var parts []string
		if fn != "trim_end" {
			parts = append(parts, "'^(' || "+arg(0)+" || ')+'")
		}
		if fn != "trim_start" {
			parts = append(parts, "'(' || "+arg(0)+" || ')+$'")
		}
		return "regexp_replace(" + arg(1) + ", " + strings.Join(parts, " || '|' || ") + ", '', 'g')", nil
	case "extract":
		if strings.HasPrefix(arg(3), "CAST(NULL AS ") {
			return "TRY_CAST(nullif(regexp_extract(" + arg(2) + ", " + arg(0) + ", " + arg(1) + "), '') AS " + typeName(arg(3)) + ")", nil
		}
		return "regexp_extract(" + arg(2) + ", " + arg(0) + ", " + arg(1) + ")", nil
	case "extract_all":
		return "regexp_extract_all(" + arg(2) + ", " + arg(0) + ", 1)", nil
	case "extractjson", "extract_json":
		e := "json_extract_string(" + arg(1) + ", " + arg(0) + ")"
		if strings.HasPrefix(arg(2), "CAST(NULL AS ") {
			return "TRY_CAST(" + e + " AS " + typeName(arg(2)) + ")", nil
		}
		return e, nil
	case "countof":
		kind, _ := literal(arg(2))
		if kind == "regex" {
			return "length(regexp_extract_all(" + arg(0) + ", " + arg(1) + "))", nil
		}
		return "kql_countof(" + arg(0) + ", " + arg(1) + ")", nil
	case "iff", "iif":
		return "(CASE WHEN " + arg(0) + " THEN " + arg(1) + " ELSE " + arg(2) + " END)", nil
	case "case":
		if len(args) < 3 || len(args)%2 == 0 {
			return "", fmt.Errorf("kql: case() wants condition, value pairs and an else value at %s", name.pos())
		}
		s := "(CASE"
		for i := 0; i+1 < len(args); i += 2 {
			s += " WHEN " + args[i] + " THEN " + args[i+1]
		}
		return s + " ELSE " + args[len(args)-1] + " END)", nil
	case "coalesce", "abs", "round", "sqrt", "log", "log10", "log2", "exp", "pow", "ceiling":
		return fn + "(" + all + ")", nil
	case "min_of":
		return "least(" + all + ")", nil
	case "max_of":
		return "greatest(" + all + ")", nil
	case "array_length":
		return "kql_array_length(" + arg(0) + ")", nil
	case "array_concat":
		return "list_concat(" + all + ")", nil
	case "array_slice":
		return "list_slice(" + arg(0) + ", " + arg(1) + " + 1, " + arg(2) + " + 1)", nil
	case "array_index_of":
		return "(coalesce(list_position(" + arg(0) + ", " + arg(1) + "), 0) - 1)", nil
	case "array_sort_asc":
		return "list_sort(" + arg(0) + ")", nil
	case "array_sort_desc":
		return "list_reverse_sort(" + arg(0) + ")", nil
	case "set_has_element":
		return "list_contains(" + arg(0) + ", " + arg(1) + ")", nil
	case "set_union":
		return "kql_distinct(list_concat(" + all + "))", nil
	case "set_intersect":
		return "list_intersect(" + arg(0) + ", " + arg(1) + ")", nil
	case "set_difference":
		return "kql_distinct(list_filter(" + arg(0) + ", x -> NOT list_contains(" + arg(1) + ", x)))", nil
	case "pack_array":
		return "[" + all + "]", nil
	case "pack", "bag_pack", "pack_dictionary":
		return "json_object(" + all + ")", nil
	case "bag_keys":
		return "json_keys(" + arg(0) + ")", nil
	case "parse_url":
		return "kql_parse_url(" + arg(0) + ")", nil
	case "parse_path":
		return "kql_parse_path(" + arg(0) + ")", nil
	case "url_decode":
		return "url_decode(" + arg(0) + ")", nil
	case "url_encode", "url_encode_component":
		return "url_encode(" + arg(0) + ")", nil
	case "base64_decode_tostring", "base64_decodestring":
		return "try(decode(from_base64(" + arg(0) + ")))", nil
	case "base64_encode_tostring", "base64_encodestring":
		return "to_base64(encode(" + arg(0) + "))", nil
	case "hash_sha256":
		return "sha256(" + arg(0) + ")", nil
	case "hash_md5":
		return "md5(" + arg(0) + ")", nil
	case "hash_sha1":
		return "sha1(" + arg(0) + ")", nil
	case "ipv4_is_in_range":
		return "kql_ipv4_in_range(" + arg(0) + ", " + arg(1) + ")", nil
	case "ipv4_is_private":
		return "(kql_ipv4_in_range(" + arg(0) + ", '10.0.0.0/8') OR kql_ipv4_in_range(" + arg(0) + ", '172.16.0.0/12') OR kql_ipv4_in_range(" + arg(0) + ", '192.168.0.0/16'))", nil
	case "gettype":
		return "kql_gettype(" + arg(0) + ")", nil
	case "isempty":
		return "(" + arg(0) + " IS NULL OR CAST(" + arg(0) + " AS VARCHAR) = '')", nil
	case "isnotempty", "notempty":
		return "(" + arg(0) + " IS NOT NULL AND CAST(" + arg(0) + " AS VARCHAR) <> '')", nil
	case "isnull":
		return "(" + arg(0) + " IS NULL)", nil
	case "isnotnull", "notnull":
		return "(" + arg(0) + " IS NOT NULL)", nil
	case "row_number":
		// Over the rows in the order they come (serialize, sort).
		return "row_number() OVER ()", nil
	case "prev", "next":
		n := "1"
		if len(args) > 1 {
			n = arg(1)
		}
		fnSQL := map[string]string{"prev": "lag", "next": "lead"}[fn]
		if len(args) > 2 {
			return fnSQL + "(" + arg(0) + ", " + n + ", " + arg(2) + ") OVER ()", nil
		}
		return fnSQL + "(" + arg(0) + ", " + n + ") OVER ()", nil
	}
	return "", unsupported("function "+name.text+"()", name)
}

// typeOf reads typeof(T) (at the name), a type literal: a typed NULL, so
// that extractjson() and extract() can cast to T.
func (p *parser) typeOf(name token) (string, error) {
	p.next() // (
	t := p.next()
	if err := p.expect(")"); err != nil {
		return "", err
	}
	sqlType, ok := kqlTypes[strings.ToLower(t.text)]
	if !ok {
		return "", unsupported("type "+t.text, t)
	}
	return "CAST(NULL AS " + sqlType + ")", nil
}

var kqlTypes = map[string]string{"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "real": "DOUBLE", "double": "DOUBLE",
	"decimal": "DOUBLE", "bool": "BOOLEAN", "boolean": "BOOLEAN", "datetime": "TIMESTAMPTZ", "date": "TIMESTAMPTZ",
	"timespan": "INTERVAL", "time": "INTERVAL", "dynamic": "JSON", "guid": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER"}

func typeName(typedNull string) string {
	return strings.TrimSuffix(strings.TrimPrefix(typedNull, "CAST(NULL AS "), ")")
}

var dateParts = map[string]string{"year": "year", "quarter": "quarter", "month": "month", "week": "week", "day": "day",
	"dayofyear": "doy", "hour": "hour", "minute": "minute", "second": "second", "millisecond": "millisecond",
	"microsecond": "microsecond", "weekofyear": "week"}

func datePart(fn token, lit string) (string, error) {
	v, ok := literal(lit)
	if !ok {
		return "", unsupported(fn.text+"() with a non-constant part", fn)
	}
	part, ok := dateParts[strings.ToLower(v)]
	if !ok {
		return "", unsupported(fn.text+"() part "+v, fn)
	}
	return part, nil
}

// strftimeFormat converts a Kusto datetime format to strftime's.
func strftimeFormat(f string) string {
	repl := []string{"yyyy", "%Y", "yy", "%y", "MM", "%m", "dd", "%d", "HH", "%H", "hh", "%I", "mm", "%M", "ss", "%S",
		"fffffff", "%f0", "ffffff", "%f", "fff", "%g", "tt", "%p", "M", "%-m", "d", "%-d", "H", "%-H", "h", "%-I", "m", "%-M", "s", "%-S"}
	var b strings.Builder
outer:
	for i := 0; i < len(f); {
		for k := 0; k < len(repl); k += 2 {
			if strings.HasPrefix(f[i:], repl[k]) {
				b.WriteString(repl[k+1])
				i += len(repl[k])
				continue outer
			}
		}
		if f[i] == '%' {
			b.WriteString("%%")
		} else {
			b.WriteByte(f[i])
		}
		i++
	}
	return b.String()
}

// isInterval says whether a translated expression is a timespan literal
// (or a let holding one).
func isInterval(sql string) bool {
	s := strings.TrimLeft(sql, "(-")
	return strings.HasPrefix(s, "INTERVAL")
}
