package httpbreaker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadConfig reads a Config from YAML or JSON (testdata/config.yaml shows
// every field): Policy's fields in snake_case, durations such as "1m30s",
// off for Off. It is strict: an unknown or repeated field, a wrong type, an
// explicit zero and every invalid value are errors naming the field's path
// and line; a document past MaxConfigBytes is refused.
func LoadConfig(r io.Reader) (Config, error) {
	doc, err := io.ReadAll(io.LimitReader(r, MaxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
	}
	if len(doc) > MaxConfigBytes {
		return Config{}, fmt.Errorf("httpbreaker: config: larger than %d bytes (MaxConfigBytes)", MaxConfigBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil
		}
		return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
		}
		return Config{}, fmt.Errorf("httpbreaker: config: line %d: want one document, found another", extra.Line)
	}
	var c Config
	if err := c.UnmarshalYAML(&root); err != nil {
		return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
	}
	return c, nil
}

// MaxConfigBytes is the largest config document LoadConfig, and JSON
// decoding of a Config or Policy, accept. A config holds a policy per key;
// one past a megabyte is a mistake, or an attack.
const MaxConfigBytes = 1 << 20

// Bounds on the work of decoding a document: its mistakes are reported up to
// maxConfigErrors, and its fields, counted after aliases are followed, up to
// maxConfigFields.
const (
	maxConfigErrors = 100
	maxConfigFields = 1_000_000
)

// UnmarshalYAML decodes and validates a Config with the rules of LoadConfig,
// so that a Config can sit inside a larger YAML file read with
// go.yaml.in/yaml/v3; its error paths are relative to the Config.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	d := decoder{at: lines{}}
	out := d.config(n)
	if d.stop != nil { // the document is too much to go on with
		return joinFieldErrors(d.errors())
	}
	// A field that failed to decode stays zero and so inherits: validating
	// what did decode reports the rest of the file's mistakes in one go, in
	// the order of the file.
	errs := append(d.errs, out.validate(d.at)...)
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return a.Line - b.Line })
	if len(errs) > maxConfigErrors {
		errs = append(errs[:maxConfigErrors], &FieldError{Path: errs[maxConfigErrors].Path, Line: errs[maxConfigErrors].Line,
			Msg: fmt.Sprintf("more than %d mistakes: the rest are not shown", maxConfigErrors)})
	}
	if err := joinFieldErrors(errs); err != nil {
		return err
	}
	*c = out
	return nil
}

// UnmarshalJSON reads a config with the rules of LoadConfig, so that a
// Config can sit inside a larger JSON document read with encoding/json.
func (c *Config) UnmarshalJSON(b []byte) error {
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("httpbreaker: config: larger than %d bytes (MaxConfigBytes)", MaxConfigBytes)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("httpbreaker: config: %w", err)
	}
	return c.UnmarshalYAML(&n)
}

// MarshalJSON writes p in the config file format: snake_case names in the
// order of the Policy type, durations as strings such as "30s", off for
// Off, unset fields left out.
func (p Policy) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i := range policyFields {
		f := &policyFields[i]
		if !f.isSet(&p) {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.name)
		b = append(b, ':')
		v, err := json.Marshal(encodeField(f, &p))
		if err != nil {
			return nil, fmt.Errorf("httpbreaker: policy: %s: %w", f.name, err)
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// encodeField returns the value of a set field as the config file writes it.
func encodeField(f *policyField, p *Policy) any {
	if f.isOff(p) {
		return "off"
	}
	switch v := f.at(p).(type) {
	case *float64:
		return *v
	case *int:
		return *v
	case *time.Duration:
		return v.String()
	case choice:
		return v.choices()[v.get()]
	}
	return nil
}

// UnmarshalJSON reads a policy written as in a config file, with the rules
// of LoadConfig.
func (p *Policy) UnmarshalJSON(b []byte) error {
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("httpbreaker: policy: larger than %d bytes (MaxConfigBytes)", MaxConfigBytes)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("httpbreaker: policy: %w", err)
	}
	d := decoder{at: lines{}}
	var out Policy
	if len(n.Content) > 0 {
		out = d.policy(n.Content[0], "policy")
	}
	if err := joinFieldErrors(append(d.errors(), policyErrors("policy", out, Policy{}, d.at)...)); err != nil {
		return err
	}
	*p = out
	return nil
}

// decoder turns a YAML node tree into a Config, collecting every error, up
// to maxConfigErrors, and walking at most maxConfigFields fields.
type decoder struct {
	errs   []*FieldError
	at     lines
	walked int // fields walked, aliases followed
	// stop is set once the decoder has seen enough: the walk ends, and stop
	// is the last error reported.
	stop *FieldError
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.stop != nil {
		return
	}
	if len(d.errs) == maxConfigErrors {
		d.stop = &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("more than %d mistakes: the rest are not shown", maxConfigErrors)}
		return
	}
	d.errs = append(d.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// errors returns what the decoder found wrong, the reason it stopped last.
func (d *decoder) errors() []*FieldError {
	if d.stop != nil {
		return append(d.errs, d.stop)
	}
	return d.errs
}

// fields walks a mapping node, calling f for each key and value, and reports
// anything that is not a mapping with unique scalar keys.
func (d *decoder) fields(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content) && d.stop == nil; i += 2 {
		if d.walked++; d.walked > maxConfigFields {
			d.stop = &FieldError{Path: path, Line: n.Line,
				Msg: fmt.Sprintf("more than %d fields once aliases are followed: too large to be a config", maxConfigFields)}
			return
		}
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a field name, got %s", describe(k))
			continue
		}
		if seen[k.Value] {
			d.fail(k, join(path, k.Value), "repeated")
			continue
		}
		seen[k.Value] = true
		f(k.Value, k, deref(v))
	}
}

func (d *decoder) config(n *yaml.Node) Config {
	var c Config
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return c
		}
		n = n.Content[0]
	}
	d.fields(n, "", func(name string, k, v *yaml.Node) {
		switch name {
		case "defaults":
			d.at["defaults"] = k.Line
			c.Defaults = d.policy(v, "defaults")
		case "keys":
			d.at["keys"] = k.Line
			c.Keys = map[string]Policy{}
			d.fields(v, "keys", func(key string, k, v *yaml.Node) {
				if key == "" {
					d.fail(k, "keys", "a key must not be empty")
					return
				}
				d.at["keys."+key] = k.Line
				c.Keys[key] = d.policy(v, "keys."+key)
			})
		default:
			d.fail(k, name, "unknown field (want defaults or keys)")
		}
	})
	return c
}

// closestField returns the policy field that name most likely misspells,
// or "" if none is close. Underscores and case aside, so that a Go name
// (OpenFor) finds its config name (open_for).
func closestField(name string) string {
	bare := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	names := make([]string, len(policyFields))
	for i, f := range policyFields {
		names[i] = bare(f.name)
	}
	if near := closestKey(bare(name), names); near != "" {
		return policyFields[slices.Index(names, near)].name
	}
	return ""
}

// fieldNames lists the policy fields' config names, for error messages.
var fieldNames = func() string {
	var names []string
	for _, f := range policyFields {
		names = append(names, f.name)
	}
	return strings.Join(names, ", ")
}()

func (d *decoder) policy(n *yaml.Node, path string) Policy {
	var p Policy
	d.fields(n, path, func(name string, k, v *yaml.Node) {
		fpath := path + "." + name
		for i := range policyFields {
			if f := &policyFields[i]; f.name == name {
				d.at[fpath] = v.Line
				d.field(f, v, fpath, &p)
				return
			}
		}
		if near := closestField(name); near != "" {
			d.fail(k, fpath, "unknown field; did you mean %s?", near)
			return
		}
		d.fail(k, fpath, "unknown field (want one of %s)", fieldNames)
	})
	return p
}

// field decodes one policy field into p. It checks only what the Go types
// cannot carry: a zero would read as "inherit" and a negative number as Off,
// so both are refused here. Ranges are checked by Policy.problems, for files
// and code alike.
func (d *decoder) field(f *policyField, v *yaml.Node, path string, p *Policy) {
	orOff := ""
	if f.off {
		orOff = ", or off"
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value == "off" && f.kind != kindChoice {
		if !f.off {
			d.fail(v, path, "cannot be off")
			return
		}
		switch out := f.at(p).(type) {
		case *float64:
			*out = Off
		case *int:
			*out = Off
		case *time.Duration:
			*out = Off
		}
		return
	}
	switch out := f.at(p).(type) {
	case *float64:
		r, err := strconv.ParseFloat(v.Value, 64)
		if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil {
			d.fail(v, path, "want a number in (0, 1]%s; got %s", orOff, describe(v))
		} else if !(r > 0) {
			d.fail(v, path, "must be in (0, 1]%s; got %s", orOff, v.Value)
		} else {
			*out = r
		}
	case *int:
		n, err := strconv.ParseInt(v.Value, 10, strconv.IntSize)
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil {
			d.fail(v, path, "want a whole number%s; got %s", orOff, describe(v))
		} else if n < 1 {
			d.fail(v, path, "must be at least 1%s; got %d", orOff, n)
		} else {
			*out = int(n)
		}
	case *time.Duration:
		if v.Kind == yaml.ScalarNode && (v.Tag == "!!int" || v.Tag == "!!float") {
			d.fail(v, path, "want a duration such as \"30s\" or \"1m30s\"%s; got %s, a number without a unit (did you mean \"%[2]sms\" or \"%[2]ss\"?)",
				orOff, v.Value)
			return
		}
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			d.fail(v, path, "want a duration such as \"30s\" or \"1m30s\"%s; got %s", orOff, describe(v))
			return
		}
		t, err := time.ParseDuration(v.Value)
		if err != nil {
			d.fail(v, path, "want a duration such as \"30s\" or \"1m30s\"%s; got %q", orOff, v.Value)
		} else if t <= 0 {
			d.fail(v, path, "must be positive%s; got %q", orOff, v.Value)
		} else {
			*out = t
		}
	case choice:
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			d.fail(v, path, "want %s, got %s", oneOf(out), describe(v))
		} else if err := parseChoice(out, []byte(v.Value)); err != nil {
			d.fail(v, path, "%v", err)
		}
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "no value"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an unexpected node"
}
