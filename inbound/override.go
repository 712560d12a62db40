package inbound

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// Method overrides: frameworks that run another method than the request
// line's when the request names one in a field called "_method":
//   - in a POST's form body: Rails and Sinatra (Rack::MethodOverride),
//     Laravel and Symfony, Spring's HiddenHttpMethodFilter, ASP.NET Core's
//     UseHttpMethodOverride with a form field;
//   - in a POST's JSON body: Laravel, whose request parameters are the
//     JSON object's members;
//   - in the query: Express's method-override, Laravel, Spring.
//
// The rules must allow every method a request may be taken for (see
// judgement). Override headers are not judged but removed (see
// stripCallerHeaders). Where parsers may read a body differently, it is
// refused rather than guessed at.

// DefaultMaxFormBytes is Options.MaxFormBytes when unset.
const DefaultMaxFormBytes = 1 << 20

// overrideField is the field name the frameworks read.
const overrideField = "_method"

// isOverrideName reports whether a form or query field named name (decoded)
// is read as the method override by some framework, by the union of their
// readings:
//   - PHP, and so Laravel and Symfony, skips leading spaces, turns spaces
//     and dots into underscores, and ends the name at a NUL or at '[' (an
//     array: Rack and PHP then see no method, but taking it for one costs
//     nothing);
//   - Rack 2 skips leading brackets and ends the name at the next one
//     ("[_method]", "]_method"), and qs (Express's extended forms) reads
//     "[_method]" as "_method";
//   - ASP.NET compares form field names ignoring case, and drops a byte
//     order mark at the start of a form.
func isOverrideName(name string) bool {
	name = strings.TrimLeft(strings.TrimPrefix(name, "\uFEFF"), " []")
	if i := strings.IndexAny(name, "[]\x00"); i >= 0 {
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

// mayNameOverride reports whether an encoded query or body may spell a
// field isOverrideName takes: it holds "method" in some case, or an
// escape or a split of some kind ('%' in URL encoding and RFC 2231, '\' in
// JSON and quoted strings, "=?" in RFC 2047 encoded words, "name*" in RFC
// 2231's continued parameters, which Go's multipart reader joins). Most
// hold none, and are not parsed.
func mayNameOverride(encoded string) bool {
	return strings.IndexByte(encoded, '%') >= 0 || strings.IndexByte(encoded, '\\') >= 0 ||
		strings.Contains(encoded, "=?") || indexFold(encoded, "name*") >= 0 || mentionsMethod(encoded)
}

// mentionsMethod reports whether s holds "method" in any case.
func mentionsMethod(s string) bool {
	for i := 0; i+len("method") <= len(s); i++ {
		if s[i]|0x20 == 'm' && strings.EqualFold(s[i:i+len("method")], "method") {
			return true
		}
	}
	return false
}

// queryOverrides returns the override values an encoded query carries
// (see urlencodedOverrides); nil for most.
func queryOverrides(encoded string) []string {
	if strings.IndexByte(encoded, '%') < 0 && !mentionsMethod(encoded) {
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

// readings are the ways frameworks may read a POST's body for its fields.
// A Content-Type may call for more than one (multipart/related with a
// JSON root part): then every one is made.
type readings struct {
	urlencoded, multipart, json bool
	// unreadable, when set, says why the body cannot be read here for a
	// field: it is compressed, or in a charset that is not ASCII's.
	unreadable string
}

func (r readings) any() bool { return r.urlencoded || r.multipart || r.json }

// OverrideBodies are the kinds of POST bodies read for a method override:
// AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES.
type OverrideBodies struct {
	// Forms: urlencoded and multipart bodies (Rack, Laravel and Symfony,
	// Spring, ASP.NET).
	Forms bool
	// JSON: JSON bodies (Laravel, whose request parameters are the JSON
	// object's members). Off unless asked for: most JSON APIs never take
	// a method from the body, and this holds every JSON POST the rules
	// tell from other methods until it has come whole.
	JSON bool
}

// readingsOf tells how frameworks may read r's body for its fields, by
// substrings of its Content-Type headers, as loosely as the loosest of
// them reads it, for the kinds of body kinds asks for:
//   - urlencoded: the type holds "x-www-form-urlencoded" (PHP cuts the
//     media type at a space as well as at ';'), or there is no type at
//     all (Rack reads that as a form);
//   - multipart: the type holds "multipart/";
//   - JSON: the type holds "/json" or "+json", as Laravel looks for it.
//
// Only a POST is overridden, in any case of its name (ASP.NET compares
// it so, Symfony upper-cases it first); a gRPC call (over HTTP/2: a
// gRPC content type over HTTP/1.1 is just a type) never is.
func readingsOf(r *http.Request, kinds OverrideBodies) readings {
	var rd readings
	if !strings.EqualFold(r.Method, http.MethodPost) || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || (r.ProtoMajor == 2 && proxy.IsGRPC(r)) {
		return rd
	}
	ct := strings.ToLower(strings.Join(r.Header.Values("Content-Type"), ","))
	rd.urlencoded = kinds.Forms && (strings.TrimSpace(ct) == "" || strings.Contains(ct, "x-www-form-urlencoded"))
	rd.multipart = kinds.Forms && strings.Contains(ct, "multipart/")
	rd.json = kinds.JSON && (strings.Contains(ct, "/json") || strings.Contains(ct, "+json"))
	if !rd.any() {
		return rd
	}
	for _, ce := range r.Header.Values("Content-Encoding") {
		if v := strings.TrimSpace(ce); v != "" && !strings.EqualFold(v, "identity") {
			rd.unreadable = "it is compressed (Content-Encoding), and a framework may read it inflated"
		}
	}
	// What the caller wrote is not echoed into the answer.
	if _, ok := unsafeCharset(ct); ok {
		rd.unreadable = "its charset is not one whose bytes are ASCII's, and a framework may decode it"
	}
	return rd
}

// unsafeCharset returns the first charset parameter in ct (lower case)
// under which a framework that decodes the body may find fields ASCII
// bytes do not spell (UTF-16, UTF-32, EBCDIC, UTF-7, ...).
func unsafeCharset(ct string) (string, bool) {
	for rest := ct; ; {
		i := strings.Index(rest, "charset")
		if i < 0 {
			return "", false
		}
		rest = rest[i+len("charset"):]
		v := strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(v, "=") {
			continue
		}
		v = strings.Trim(strings.TrimLeft(v[1:], " \t"), `"`)
		if j := strings.IndexAny(v, `"; ,`); j >= 0 {
			v = v[:j]
		}
		switch v {
		case "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "iso-8859-15", "windows-1252":
			continue
		}
		return v, true
	}
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

// unreadBody is why a body cannot be read here for an override (too
// large, compressed, in another charset), and the status of a refusal
// for it; r's body is left whole, to be proxied as it comes.
type unreadBody struct {
	why    string
	status int
}

// errFormMalformed wraps why a body that may name an override cannot be
// read unambiguously.
var errFormMalformed = errors.New("the body is malformed")

// overridesIn returns the override values body carries, read every way rd
// asks for. A body that cannot spell an override field (see
// mayNameOverride) is not parsed.
func overridesIn(rd readings, contentType, body string) ([]string, error) {
	if !mayNameOverride(body) {
		return nil, nil
	}
	var out []string
	if rd.urlencoded {
		out = append(out, urlencodedOverrides(body)...)
	}
	if rd.multipart {
		values, err := multipartOverrides(contentType, body)
		if err != nil {
			return nil, err
		}
		out = append(out, values...)
	}
	if rd.json {
		values, err := jsonOverrides(body)
		if err != nil {
			return nil, err
		}
		out = append(out, values...)
	}
	return out, nil
}

// jsonOverrides returns the values of the top-level members of a JSON
// object whose name isOverrideName takes, each of them if the name comes
// twice; a value that is not a string stands for a method no rule names.
// A body that is not JSON is refused: it may name one (it spells an
// escape or "method", see overridesIn) to a more lenient parser.
func jsonOverrides(body string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: it is not JSON: %v", errFormMalformed, err)
	}
	if tok != json.Delim('{') {
		var rest json.RawMessage
		if tok == json.Delim('[') {
			// A top-level array has no named members, but must still be
			// JSON throughout.
			if err := json.Unmarshal([]byte(body), &rest); err != nil {
				return nil, fmt.Errorf("%w: it is not JSON: %v", errFormMalformed, err)
			}
		}
		return nil, nil
	}
	var out []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: it is not JSON: %v", errFormMalformed, err)
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("%w: it is not JSON: %v", errFormMalformed, err)
		}
		if !isOverrideName(name) {
			continue
		}
		var s string
		if json.Unmarshal(value, &s) != nil {
			s = "LINK"
		}
		out = append(out, s)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: it is not JSON: %v", errFormMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: there is more after the JSON object", errFormMalformed)
	}
	return out, nil
}

// maxOverrideValue is how much of an override field's value is judged: a
// longer one names no method the rules know, nor does its prefix.
const maxOverrideValue = 64

// multipartOverrides returns the values of the parts of a multipart body
// that a framework may take as the override field. Go's reading of a
// part's Content-Disposition is joined by Rack 2's, which takes the text
// after any "name=" (see overrideNamesIn). Refused, as parsers may read
// them differently:
//   - a boundary Rack would cut short (at '"', ';' or ','), or two;
//   - a body Go's parser cannot read, or reads cut short;
//   - a part without exactly one Content-Disposition that Go can parse,
//     with a Content-ID (Rack takes it for the name), or with a header
//     holding '\' or "=?" (escapes and encoded words some parsers undo);
//   - a part in a charset that is not ASCII's;
//   - a field name outside every part's headers (in a part Go does not
//     see).
func multipartOverrides(contentType, body string) ([]string, error) {
	boundary, err := formBoundary(contentType)
	if err != nil {
		return nil, err
	}
	mr := multipart.NewReader(strings.NewReader(body), boundary)
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
		named, n, err := partIsOverride(part)
		if err != nil {
			return nil, err
		}
		inHeaders += n
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
	if overrideNamesIn(body) > inHeaders {
		return nil, fmt.Errorf("%w: it names a %s field outside the parts' headers", errFormMalformed, overrideField)
	}
	return out, nil
}

// partIsOverride reports whether a part is an override field by any
// reading, and how many override names its headers hold; or why the part
// is refused (see multipartOverrides).
func partIsOverride(part *multipart.Part) (bool, int, error) {
	n := 0
	for name, values := range part.Header {
		for _, v := range values {
			if strings.IndexByte(v, '\\') >= 0 || strings.Contains(v, "=?") {
				return false, 0, fmt.Errorf("%w: a part's %s header holds an escape or an encoded word", errFormMalformed, name)
			}
			n += overrideNamesIn(v)
		}
	}
	if part.Header.Get("Content-Id") != "" {
		return false, 0, fmt.Errorf("%w: a part has a Content-ID, which Rack may take for its name", errFormMalformed)
	}
	if cs, ok := unsafeCharset(strings.ToLower(part.Header.Get("Content-Type"))); ok {
		return false, 0, fmt.Errorf("%w: a part's charset %s is not one whose bytes are ASCII's", errFormMalformed, cs)
	}
	cds := part.Header.Values("Content-Disposition")
	if len(cds) != 1 {
		return false, 0, fmt.Errorf("%w: a part has %d Content-Disposition headers, want one", errFormMalformed, len(cds))
	}
	_, params, err := mime.ParseMediaType(cds[0])
	if err != nil {
		return false, 0, fmt.Errorf("%w: a part's Content-Disposition: %v", errFormMalformed, err)
	}
	return isOverrideName(params["name"]) || n > 0, n, nil
}

// maxNameScan bounds how far overrideNamesIn reads a name: a longer one is
// no override, and an unbounded look for its end would make a body of
// many "name=" quadratic work.
const maxNameScan = 256

// overrideNamesIn counts the "name=" parameters in s, read as Rack 2
// reads them (a quoted string, or up to ';' or a space; "filename=" too),
// that isOverrideName takes. It reads s once.
func overrideNamesIn(s string) int {
	n := 0
	for i := 0; ; {
		j := indexFold(s[i:], "name=")
		if j < 0 {
			return n
		}
		i += j + len("name=")
		v := s[i:min(len(s), i+maxNameScan)]
		if strings.HasPrefix(v, `"`) {
			if end := strings.IndexByte(v[1:], '"'); end >= 0 {
				v = v[1 : 1+end]
			} else {
				v = v[1:]
			}
		} else if end := strings.IndexAny(v, "; \t\r\n"); end >= 0 {
			v = v[:end]
		}
		if isOverrideName(v) {
			n++
		}
	}
}

// indexFold is strings.Index ignoring ASCII case, for a lower-case sub.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
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

// plainMethod reports whether an override value, trimmed, is a method
// name in ASCII letters, or empty (no override to anyone): one every
// framework reads as the rules do. Any
// other (a byte order mark ASP.NET drops, UTF-16, a dotless i) is judged
// as every method.
func plainMethod(v string) bool {
	v = strings.TrimSpace(v)
	if len(v) > 20 {
		return false
	}
	for i := range len(v) {
		if c := v[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// wideBOM reports whether body starts with a UTF-16 or UTF-32 byte order
// mark, by which a framework (ASP.NET Core 2) may decode a form.
func wideBOM(body string) bool {
	return strings.HasPrefix(body, "\xFF\xFE") || strings.HasPrefix(body, "\xFE\xFF") || strings.HasPrefix(body, "\x00\x00\xFE\xFF")
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
