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
