package config

import (
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
	"time"
)

// Write prints the effective configuration as VARIABLE=value lines, defaults
// included, secrets redacted: what `authsidecar check` shows.
func (c *Config) Write(w io.Writer) error {
	var b strings.Builder
	writeSection(&b, Prefix, c.General)
	writeSection(&b, Prefix+"INBOUND_", c.Inbound)
	writeSection(&b, Prefix+"OUTBOUND_", c.Outbound)
	for _, r := range c.Routes {
		writeSection(&b, RoutePrefix(r.Name), r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSection(b *strings.Builder, prefix string, section any) {
	v := reflect.ValueOf(section)
	t := v.Type()
	for i := range t.NumField() {
		key := strings.Split(t.Field(i).Tag.Get("env"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		fmt.Fprintf(b, "%s%s=%s\n", prefix, key, format(v.Field(i).Interface()))
	}
}

func format(v any) string {
	switch v := v.(type) {
	case Secret:
		return v.String()
	case List:
		return strings.Join(v, ",")
	case Set:
		return strings.Join(v, ",")
	case url.URL:
		return v.Redacted()
	case time.Duration:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// Variables lists every variable authsidecar reads, with route variables
// written AUTHSIDECAR_ROUTE_<NAME>_…: the names the README documents.
func Variables() []string {
	var out []string
	add := func(prefix string, section any) {
		t := reflect.TypeOf(section)
		for i := range t.NumField() {
			key := strings.Split(t.Field(i).Tag.Get("env"), ",")[0]
			if key != "" && key != "-" {
				out = append(out, prefix+key)
			}
		}
	}
	add(Prefix, General{})
	add(Prefix+"INBOUND_", Inbound{})
	add(Prefix+"OUTBOUND_", Outbound{})
	add(Prefix+"ROUTE_<NAME>_", Route{})
	return out
}
