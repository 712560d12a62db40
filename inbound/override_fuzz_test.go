package inbound

import (
	"encoding/json"
	"io"
	"mime/multipart"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rack2Name is Rack 2's normalize_params reading of a field name's first
// key.
var rack2Name = regexp.MustCompile(`\A[\[\]]*([^\[\]]+)\]*`)

// readAsOverride reports whether some framework takes a field named name
// for the override, each reading written out apart from isOverrideName:
// Rack 2, PHP, ASP.NET (any case), qs ("[_method]").
func readAsOverride(name string) bool {
	if m := rack2Name.FindStringSubmatch(name); m != nil && m[1] == overrideField {
		return true
	}
	php := strings.TrimLeft(name, " ")
	if i := strings.IndexAny(php, "[\x00"); i >= 0 {
		php = php[:i]
	}
	if strings.NewReplacer(" ", "_", ".", "_").Replace(php) == overrideField {
		return true
	}
	if strings.EqualFold(name, overrideField) {
		return true
	}
	if inner, ok := strings.CutPrefix(name, "["); ok {
		inner, _, _ = strings.Cut(inner, "]")
		return inner == overrideField
	}
	return false
}

// anyName is a reading of field names looser than any parser's: every
// "name=" anywhere, quoted (with escapes) or up to the next delimiter.
var anyName = regexp.MustCompile(`(?i)name\s*=\s*("(?:\\.|[^"\\])*"|[^;\s,"]*)`)

// FuzzBodyOverridesMissNothing holds the body's override reading, as the
// handler makes it (every reading on), to what other parsers make of the
// same bytes: every "_method" value url.ParseQuery finds in it read as a
// form, or mime/multipart finds in it read as a multipart form (as
// net/http's ParseMultipartForm would), is among those judged; and where a
// loose reading finds an override name anywhere (in a multipart header as
// Rack 2 or Tomcat may read it, in JSON), or JSON decodes to an object
// with one, some override is judged or the body is refused.
func FuzzBodyOverridesMissNothing(f *testing.F) {
	for _, s := range []string{
		"_method=DELETE", "a=1&_method=delete", "%5Fmethod=PUT", "_method=%zz&_method=PATCH", ".method=DELETE",
		"a=1;_method=DELETE", "_method", "=&=&_method=", "_me%74hod=DELETE",
		`{"_method":"DELETE"}`, `{"a":1,"\u005fmethod":"PUT"}`, `{"_method":7}`, `[{"_method":"PUT"}]`, `{"_method":"PUT"} x`,
		"--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\nContent-Disposition: form-data; name=_method\n\nPUT\n--XyZ--\n",
		"--XyZ\r\nContent-Disposition: form-data; name=_method\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=44ELETE\r\n--XyZ--\r\n",
		"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nPATCH\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ \r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-ID: _method\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name=_method,\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; x=\";name=_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; x=a b; name= _method\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name =\"_method\"; x=a b\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name*0=_me; name*1=thod\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"\xEF\xBB\xBF_method=DELETE", "_method=%EF%BB%BFDELETE",
		"[_method]=DELETE", "%5B_method%5D=DELETE", "]_method=DELETE", "_METHOD=x", "+_method=x",
	} {
		f.Add(s)
	}
	all := readings{urlencoded: true, multipart: true, json: true}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 1<<14 {
			return
		}
		got, err := overridesIn(all, "multipart/form-data; boundary=XyZ", body)
		if err != nil {
			return // refused: nothing reaches the app
		}
		q, _ := url.ParseQuery(body)
		for k, vs := range q {
			if !readAsOverride(k) {
				continue
			}
			for _, v := range vs {
				if !slices.Contains(got, v) {
					t.Fatalf("%q: url.ParseQuery finds %s=%q, the sidecar judges %q", body, k, v, got)
				}
			}
		}
		mr := multipart.NewReader(strings.NewReader(body), "XyZ")
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if !readAsOverride(p.FormName()) {
				continue
			}
			v, err := io.ReadAll(io.LimitReader(p, maxOverrideValue))
			if err != nil {
				break
			}
			if !slices.Contains(got, string(v)) {
				t.Fatalf("%q: mime/multipart finds _method=%q, the sidecar judges %q", body, v, got)
			}
		}
		if len(got) > 0 {
			return
		}
		for _, m := range anyName.FindAllStringSubmatch(body, -1) {
			name := m[1]
			if s, err := unquote(name); err == nil {
				name = s
			}
			if readAsOverride(strings.TrimSpace(name)) {
				t.Fatalf("%q: a loose reading finds the field name %q, the sidecar judges no override and passes it", body, m[1])
			}
		}
		var obj map[string]any
		if json.Unmarshal([]byte(body), &obj) == nil {
			for k := range obj {
				if readAsOverride(k) {
					t.Fatalf("%q: JSON holds the member %q, the sidecar judges no override and passes it", body, k)
				}
			}
		}
	})
}

// unquote undoes a quoted string's quotes and backslash escapes.
func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s, nil
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}
