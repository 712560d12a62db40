package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequest writes req as the client side of HTTP/1.1 does and flushes.
func writeRequest(req *http.Request, bw *bufio.Writer) error {
	if !writeHead(req, bw) {
		if err := req.Write(bw); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeHead writes a request without a body as http.Request.Write
// writes it, and reports false, having written nothing, for any other
// request: one with a body, trailers, Connection: close, a host or URL
// Request.Write would rewrite or refuse, a field name not in canonical
// form, or a trace that wants to hear of every header written.
//
// Request.Write sorts the header by name (in a pooled sorter), formats
// the request line with fmt, and makes a transfer writer: for the
// GETs a proxy mostly forwards, that is a few percent of the sidecar's
// CPU a request, and five allocations. The header goes out in map order
// here; fields of different names may come in any order (RFC 9110
// section 5.3). FuzzHeadAgreesWithRequestWrite holds the two to the same
// request as a server reads it.
func writeHead(req *http.Request, bw *bufio.Writer) bool {
	u := req.URL
	if (req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 || req.Close ||
		len(req.TransferEncoding) > 0 || req.Trailer != nil || u == nil || u.Opaque != "" ||
		req.Method == http.MethodConnect || !quietTrace(httptrace.ContextClientTrace(req.Context())) {
		return false
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if !isASCII(host) || (strings.HasPrefix(host, "[") && strings.Contains(host, "%")) {
		return false // Request.Write turns it to punycode, or drops a zone
	}
	if !httpguts.ValidHostHeader(host) {
		host = "" // as Request.Write: an altered Host could smuggle
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if hasCTL(path) || hasCTL(u.RawQuery) {
		return false // Request.Write refuses it
	}
	for k := range req.Header {
		if httpguts.ValidHeaderFieldName(k) && !isCanonicalKey(k) {
			// Another key may read as the same name, and Request.Write's
			// order then decides the order of its values.
			return false
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}

	_, _ = bw.WriteString(method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		_ = bw.WriteByte('?')
		_, _ = bw.WriteString(u.RawQuery)
	}
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(host)
	_, _ = bw.WriteString("\r\n")
	agent := "Go-http-client/1.1"
	if vv, ok := req.Header["User-Agent"]; ok {
		agent = firstValue(vv)
	}
	if agent != "" {
		writeRequestField(bw, "User-Agent", agent)
	}
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		// Request.Write gives these a length even without a body: many
		// servers expect one.
		_, _ = bw.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // written above, or by the body's framing
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // Request.Write drops it too
		}
		for _, v := range vv {
			writeRequestField(bw, k, v)
		}
	}
	_, _ = bw.WriteString("\r\n")
	return true
}

// writeRequestField writes one header field as Request.Write does: line
// breaks in the value become spaces, and the value is trimmed.
func writeRequestField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = requestValueCleaner.Replace(v)
	}
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(textproto.TrimString(v))
	_, _ = bw.WriteString("\r\n")
}

// requestValueCleaner is Request.Write's: each CR and each LF becomes a
// space (headerValueCleaner, the answers', makes one of a CRLF).
var requestValueCleaner = strings.NewReplacer("\n", " ", "\r", " ")

// quietTrace reports whether trace, if any, wants nothing of a request's
// writing: the forwarder's asks only for 1xx answers.
func quietTrace(t *httptrace.ClientTrace) bool {
	return t == nil || (t.WroteHeaderField == nil && t.WroteHeaders == nil && t.WroteRequest == nil)
}

// isCanonicalKey reports whether a valid field name k is in the form
// textproto.CanonicalMIMEHeaderKey gives it: what a server reads it as.
func isCanonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasCTL reports whether s has a control byte, which Request.Write
// refuses in a URL.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}
