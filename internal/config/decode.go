package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// decodeYAML decodes data over f and returns every problem found on the way:
// YAML syntax and duplicate keys (Path ""), then unknown fields and values of
// the wrong type, each with its path.
//
// sigs.k8s.io/yaml converts the YAML to JSON (strictly: duplicate keys are
// errors); the JSON is then walked against File's json tags rather than
// decoded by encoding/json, which stops at the first error, matches names
// case-insensitively and cannot say which unknown fields it met.
func decodeYAML(data []byte, f *File) Problems {
	if line := secondDocument(data); line > 0 {
		return Problems{{Message: fmt.Sprintf("yaml: line %d: a second YAML document: the file must hold one", line)}}
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return yamlProblems(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return Problems{{Message: "cannot read the YAML: " + err.Error()}}
	}
	if tree == nil { // empty file
		return nil
	}
	if _, ok := tree.(map[string]any); !ok {
		return Problems{{Message: fmt.Sprintf("the file must be a YAML mapping of fields, not %s", describe(tree))}}
	}
	var d decoder
	d.value("", tree, reflect.ValueOf(f).Elem())
	return d.probs
}

// secondDocument returns the line of a YAML document marker ("---" or
// "...") that follows content, or 0: sigs.k8s.io/yaml would silently read
// only the first document. A marker at the start of a line always is one:
// YAML forbids it inside scalars.
func secondDocument(data []byte) int {
	content, ended := false, false
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		isMarker := func(m string) bool {
			return line == m || strings.HasPrefix(line, m+" ") || strings.HasPrefix(line, m+"\t")
		}
		switch t := strings.TrimSpace(line); {
		case isMarker("---"):
			if content {
				return i + 1
			}
			// "--- value" starts the document with content.
			rest := strings.TrimSpace(line[3:])
			content = rest != "" && !strings.HasPrefix(rest, "#")
		case isMarker("..."):
			ended = ended || content
		case t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(line, "%"):
		default:
			if ended {
				return i + 1
			}
			content = true
		}
	}
	return 0
}

// yamlProblems splits a YAML error, which may list several, into Problems.
func yamlProblems(err error) Problems {
	var ps Problems
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line == "yaml: unmarshal errors:":
		case strings.HasPrefix(line, "yaml:"):
			ps = append(ps, Problem{Message: line})
		case strings.HasPrefix(line, "line "):
			ps = append(ps, Problem{Message: "yaml: " + line})
		default:
			ps = append(ps, Problem{Message: "cannot read the YAML: " + line})
		}
	}
	if len(ps) == 0 {
		ps = Problems{{Message: "cannot read the YAML"}}
	}
	return ps
}

type decoder struct {
	probs Problems
}

func (d *decoder) bad(path, format string, args ...any) {
	d.probs = append(d.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[Duration]()

// value decodes raw (from a JSON decoder with UseNumber) into v. A null
// leaves a struct as it is (its defaults) and zeroes anything else.
func (d *decoder) value(path string, raw any, v reflect.Value) {
	if raw == nil {
		if v.Kind() != reflect.Struct {
			v.SetZero()
		}
		return
	}
	if v.Type() == durationType {
		b, err := json.Marshal(raw)
		var x Duration
		if err == nil {
			err = x.UnmarshalJSON(b)
		}
		if err != nil {
			d.bad(path, "%s", err.Error())
			return
		}
		v.Set(reflect.ValueOf(x))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.object(path, raw, v)
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			d.bad(path, "must be a list, not %s", describe(raw))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, e := range list {
			d.value(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.bad(path, "must be a mapping, not %s", describe(raw))
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		for _, k := range sortedKeys(m) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(path+"."+k, m[k], e)
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		v.Set(out)
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.bad(path, "must be a string, not %s: quote the value", describe(raw))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.bad(path, "must be true or false, not %s", describe(raw))
			return
		}
		v.SetBool(b)
	case reflect.Float64:
		n, ok := raw.(json.Number)
		if !ok {
			d.bad(path, "must be a number, not %s", describe(raw))
			return
		}
		x, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			d.bad(path, "%s is out of range", n)
			return
		}
		v.SetFloat(x)
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

func (d *decoder) object(path string, raw any, v reflect.Value) {
	m, ok := raw.(map[string]any)
	if !ok {
		d.bad(path, "must be a mapping of fields, not %s", describe(raw))
		return
	}
	fields := fieldsOf(v.Type())
	for _, k := range sortedKeys(m) {
		p := k
		if path != "" {
			p = path + "." + k
		}
		i, ok := fields[k]
		if !ok {
			d.bad(p, "%s", unknownField(v.Type(), k, fields))
			continue
		}
		d.value(p, m[k], v.Field(i))
	}
}

// fieldsOf maps the json names of t's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = i
	}
	return m
}

// Fields whose names suggest a secret written inline.
var inlineSecrets = map[reflect.Type]map[string]string{
	reflect.TypeFor[Conn](): {
		"client_secret": "inline secrets are not allowed: put the secret in a file and set client_secret_file, or in an environment variable and set client_secret_env",
		"refresh_token": "refresh tokens are not configured: store one with `tokenbroker login` or `tokenbroker seed`",
		"access_token":  "access tokens are not configured: the broker obtains them",
	},
	reflect.TypeFor[Etcd](): {
		"password": "inline secrets are not allowed: put the password in a file and set password_file, or in an environment variable and set password_env",
	},
	reflect.TypeFor[APIKey](): {
		"key":     "API keys are not stored in clear: set sha256 to the key's SHA-256 (`tokenbroker apikey` prints both)",
		"api_key": "API keys are not stored in clear: set sha256 to the key's SHA-256 (`tokenbroker apikey` prints both)",
	},
}

func unknownField(t reflect.Type, key string, fields map[string]int) string {
	if msg, ok := inlineSecrets[t][key]; ok {
		return msg
	}
	fold := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	}
	for name := range fields {
		if fold(name) == fold(key) {
			return fmt.Sprintf("unknown field %q (did you mean %q?)", key, name)
		}
	}
	return fmt.Sprintf("unknown field %q", key)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func describe(raw any) string {
	switch raw := raw.(type) {
	case nil:
		return "null"
	case bool:
		return "the boolean " + strconv.FormatBool(raw) + " (YAML reads unquoted yes, no, on, off, y and n as booleans)"
	case json.Number:
		return "a number" // not the value: it might be a secret in the wrong place
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", raw)
	}
}
