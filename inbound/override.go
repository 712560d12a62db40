package inbound

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/rules"
)

// Method overrides: frameworks that run another method than the request
// line's when the request names one in a field called "_method":
//   - in a POST's form body: Rails and Sinatra (Rack::MethodOverride),
//     Laravel and Symfony, Spring's HiddenHttpMethodFilter, ASP.NET Core's
//     UseHttpMethodOverride with a form field;
//   - in the query: Express's method-override, Laravel, Spring.
//
// The rules must allow every method a request may be taken for (see
// judgement). Override headers are not judged but removed (see
// stripCallerHeaders).

// DefaultMaxFormBytes is Options.MaxFormBytes when unset.
const DefaultMaxFormBytes = 1 << 20

// overrideField is the field name the frameworks read.
const overrideField = "_method"

// isOverrideName reports whether a form or query field named name (decoded)
// is read as the method override by some framework. PHP, and so Laravel
// and Symfony, skips leading spaces in a field name, turns spaces and dots
// into underscores and ends the name at a NUL or at '[' (an array: Rack
// and PHP then see no method, but taking it for one costs nothing);
// ASP.NET compares form field names ignoring case.
func isOverrideName(name string) bool {
	name = strings.TrimLeft(name, " ")
	if i := strings.IndexAny(name, "[\x00"); i >= 0 {
		name = name[:i]
	}
	if len(name) != len(overrideField) {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if c == ' ' || c == '.' {
			c = '_'
		}
		if c|0x20 != overrideField[i]|0x20 {
			return false
		}
	}
	return true
}

// mayNameOverride reports whether an encoded query or urlencoded form may
// decode to a field isOverrideName takes: one with "method" in any case, or
// a percent-escape. Most have neither, and are not parsed.
func mayNameOverride(encoded string) bool {
	return strings.IndexByte(encoded, '%') >= 0 || mentionsMethod(encoded)
}

// mentionsMethod reports whether s holds "method" in any case.
func mentionsMethod(s string) bool {
	for i := 0; i+len("method") <= len(s); i++ {
		if strings.EqualFold(s[i:i+len("method")], "method") {
			return true
		}
	}
	return false
}

// queryOverrides returns the override values an encoded query or
// urlencoded form body carries (see urlencodedOverrides); nil for most.
func queryOverrides(encoded string) []string {
	if !mayNameOverride(encoded) {
		return nil
	}
	return urlencodedOverrides(encoded)
}

// urlencodedOverrides returns the value of every field of an
// application/x-www-form-urlencoded string whose name isOverrideName
// takes. Fields are split at '&', and also at ';' (Rack 2 splits queries
// there): a value is taken both ways. Escapes are decoded leniently, as
// PHP decodes them: a malformed one stays as it is.
func urlencodedOverrides(encoded string) []string {
	var out []string
	take := func(pair string) {
		name, value, _ := strings.Cut(pair, "=")
		if isOverrideName(decodeLenient(name)) {
			out = append(out, decodeLenient(value))
		}
	}
	for pair := range strings.SplitSeq(encoded, "&") {
		take(pair)
		if strings.IndexByte(pair, ';') >= 0 {
			for part := range strings.SplitSeq(pair, ";") {
				take(part)
			}
		}
	}
	return out
}

// decodeLenient decodes a form field's name or value: '+' is a space and
// %XX the byte; a '%' that does not start a valid escape is kept.
func decodeLenient(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// formKind is how a POST's body is read as a form, if it is.
type formKind int

const (
	notForm formKind = iota
	urlencodedForm
	multipartForm
)

// formKindOf tells how frameworks read r's body for its form fields. A
// POST with no Content-Type at all is read as urlencoded by Rack. The
// media type is what comes before ';' or ',', as Rack and PHP cut it.
// Only a POST is overridden: every framework above leaves other methods
// alone.
func formKindOf(r *http.Request) formKind {
	if r.Method != http.MethodPost || r.Body == nil || r.Body == http.NoBody {
		return notForm
	}
	ct := r.Header.Values("Content-Type")
	if len(ct) == 0 {
		return urlencodedForm
	}
	media := ct[0]
	if i := strings.IndexAny(media, ";,"); i >= 0 {
		media = media[:i]
	}
	switch strings.ToLower(strings.TrimSpace(media)) {
	case "", "application/x-www-form-urlencoded":
		return urlencodedForm
	case "multipart/form-data", "multipart/mixed", "multipart/related":
		return multipartForm
	}
	return notForm
}

// overridable are the methods a POST may be taken for, standing for all:
// "LINK" stands for every method the rules cannot name.
var overridable = []string{
	http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete,
	http.MethodOptions, http.MethodConnect, http.MethodTrace, "LINK",
}

// overrideIrrelevant reports whether no override can change how a POST to
// path is judged: every method matches the POST's rule, and that rule has
// no condition (which may read request.method). Then the body is not read.
func overrideIrrelevant(set *rules.Set, path string) bool {
	post := set.Match(http.MethodPost, path)
	if post != nil && post.When != "" {
		return false
	}
	for _, m := range overridable {
		if set.Match(m, path) != post {
			return false
		}
	}
	return true
}

// errFormTooLarge: the form body is larger than the bytes it may be read
// to; r's body is left whole, to be proxied as it comes.
var errFormTooLarge = errors.New("the form body is too large to be read for a method override")

// errFormMalformed wraps why a multipart form cannot be read.
var errFormMalformed = errors.New("the form body is malformed")

// readFormOverrides reads r's form body, of kind, up to limit bytes and
// returns the override values its fields carry; r's body is replaced by
// the bytes read, so the app gets it as sent. A body over limit is left
// to be streamed (errFormTooLarge); a body that fails to arrive is an
// error of its own.
func readFormOverrides(r *http.Request, body io.Reader, kind formKind, limit int64) ([]string, error) {
	buf, err := io.ReadAll(io.LimitReader(body, limit+1))
	rest := r.Body
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), rest), rest}
		return nil, errFormTooLarge
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{bytes.NewReader(buf), rest}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	if kind == urlencodedForm {
		return queryOverrides(string(buf)), nil
	}
	return multipartOverrides(r.Header.Get("Content-Type"), buf)
}

// maxOverrideValue is how much of an override field's value is judged: a
// longer one names no method the rules know, nor does its prefix.
const maxOverrideValue = 64

// multipartOverrides returns the values of the parts of a multipart body
// that a framework may take as the override field. A part is one when any
// reading of its Content-Disposition names the field: Go's, and Rack 2's,
// which takes the text after any "name=" up to ';' or a space. What parsers
// may read differently is refused rather than guessed at: a boundary that
// Rack would cut short (at '"', ';' or ','), two boundary parameters, a
// body Go cannot parse, and a field name outside every part's headers (in
// a part Go does not see).
func multipartOverrides(contentType string, body []byte) ([]string, error) {
	boundary, err := formBoundary(contentType)
	if err != nil {
		return nil, err
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var out []string
	inHeaders := 0 // override names found in the parts' headers
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF { // the closing delimiter; a wrapped EOF is a body cut short
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errFormMalformed, err)
		}
		named := isOverrideName(part.FormName())
		for _, cd := range part.Header.Values("Content-Disposition") {
			n := overrideNamesIn(cd)
			inHeaders += n
			named = named || n > 0
		}
		if !named {
			continue
		}
		value, err := io.ReadAll(io.LimitReader(part, maxOverrideValue))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errFormMalformed, err)
		}
		out = append(out, string(value))
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			// Go's own form parser decodes it; so may others.
			decoded, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(value)))
			out = append(out, string(decoded))
		}
	}
	if overrideNamesIn(string(body)) > inHeaders {
		return nil, fmt.Errorf("%w: it names a %s field outside the parts' headers", errFormMalformed, overrideField)
	}
	return out, nil
}

// overrideNamesIn counts the "name=" parameters in s, read as Rack 2
// reads them (a quoted string, or up to ';' or a space; "filename=" too),
// that isOverrideName takes.
func overrideNamesIn(s string) int {
	n := 0
	for i := 0; i+len("name=") <= len(s); i++ {
		if !strings.EqualFold(s[i:i+len("name=")], "name=") {
			continue
		}
		v := s[i+len("name="):]
		if strings.HasPrefix(v, `"`) {
			end := 1
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			v = strings.ReplaceAll(v[1:min(end, len(v))], `\"`, `"`)
		} else if j := strings.IndexAny(v, "; \t\r\n"); j >= 0 {
			v = v[:j]
		}
		if isOverrideName(v) {
			n++
		}
	}
	return n
}

// formBoundary returns the boundary of a multipart Content-Type, or why it
// is refused.
func formBoundary(contentType string) (string, error) {
	if n := strings.Count(strings.ToLower(contentType), "boundary"); n != 1 {
		return "", fmt.Errorf("%w: the Content-Type has %d boundary parameters, want one", errFormMalformed, n)
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errFormMalformed, err)
	}
	b := params["boundary"]
	if b == "" || len(b) > 70 || strings.ContainsAny(b, "\";, \t") {
		return "", fmt.Errorf("%w: a boundary of %d bytes that parsers may read differently", errFormMalformed, len(b))
	}
	return b, nil
}

// overrideValues are the methods an override value is judged as: as sent,
// and upper-cased by Unicode's rules (ASP.NET matches "OPTıONS" to
// OPTIONS), and trimmed.
func overrideValues(v string) []string {
	out := []string{v}
	if u := strings.ToUpper(v); u != v {
		out = append(out, u)
	}
	if t := strings.TrimSpace(v); t != v {
		out = append(out, strings.ToUpper(t))
	}
	return out
}
