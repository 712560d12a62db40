package config

import (
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/internal/redact"
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
	// The OTEL_* variables themselves are not shown: headers may carry
	// the collector's credentials.
	if c.Tracing.Enabled {
		sampler := c.Tracing.SamplerName
		if sampler == "" {
			sampler = "parentbased_always_on"
		}
		fmt.Fprintf(&b, "# tracing: on, OTLP over %s, sampler %s\n", c.Tracing.Protocol, sampler)
	} else {
		b.WriteString("# tracing: off\n")
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

// format prints a value as the variable would be written. Anything that
// looks like a URL is redacted (user information and query values), as
// are secrets.
func format(v any) string {
	switch v := v.(type) {
	case Secret:
		return v.String()
	case List:
		return redactAll(v)
	case Set:
		return strings.Join(v, ",")
	case url.URL:
		return redact.ParsedURL(&v)
	case time.Duration:
		return v.String()
	case string:
		if strings.Contains(v, "://") {
			return redact.URL(v)
		}
		return v
	default:
		return fmt.Sprint(v)
	}
}

func redactAll(l List) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = format(s)
	}
	return strings.Join(out, ",")
}
