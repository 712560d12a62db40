package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// ReverseProxy forwards requests to one target. It does what
// httputil.ReverseProxy does with Rewrite set, FlushInterval 0 and
// ModifyResponse StripErrorHeader, with less garbage: one shallow copy of
// the request in place of a deep clone and a second copy, the outgoing
// header map made once at its final size instead of cloned and then grown
// by the headers Rewrite adds, no media-type parse of every answer's
// Content-Type, no wrapper around every answer's body. That was about a
// sixth of the sidecar's garbage per request: garbage sets how often the
// collector runs, and its stops are where the slowest requests come from.
//
// Requests it does not take on go to httputil.ReverseProxy itself:
// upgrades (WebSocket and other 101 switches, which ReverseProxy hijacks
// for), query strings ReverseProxy would re-encode, and contexts that
// cannot be cancelled. FuzzForwarderAgreesWithReverseProxy holds the two
// to the same requests out and the same answers back.
type ReverseProxy struct {
	transport    http.RoundTripper
	rewrite      func(*httputil.ProxyRequest)
	errorHandler func(http.ResponseWriter, *http.Request, error)
	logger       *slog.Logger
	slow         *httputil.ReverseProxy
}

// ServeHTTP forwards req to the target and copies the answer back.
func (p *ReverseProxy) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	if ctx.Done() == nil || upgradeType(req.Header) != "" || !cleanQuery(req.URL.RawQuery) {
		p.slow.ServeHTTP(rw, req)
		return
	}
	var hook informational
	hook.rw = rw
	out := req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: hook.got}))
	u := *req.URL
	out.URL = &u
	out.Header = forwardHeader(req.Header)
	if req.Trailer != nil {
		// The body fills in req's trailers as it ends; ReverseProxy's
		// clone keeps their names only, and so does this copy.
		out.Trailer = req.Trailer.Clone()
	}
	out.Close = false
	if req.ContentLength == 0 {
		out.Body = nil // an empty body is no body: http.Transport may then retry
	}
	if out.Body != nil {
		// The transport closes the body it was given when it fails;
		// req.Body is the caller's and must stay open for the server.
		// Closed here once the handler is done, so that a writer still
		// at work on the upstream connection reads no more of it.
		body := &noCloseBody{rc: out.Body}
		out.Body = body
		defer body.Close()
	}
	pr := &httputil.ProxyRequest{In: req, Out: out}
	p.rewrite(pr)
	out = pr.Out
	if _, ok := out.Header["User-Agent"]; !ok {
		// Go's client would send its own.
		out.Header["User-Agent"] = []string{""}
	}

	res, err := p.transport.RoundTrip(out)
	hook.end()
	if err != nil {
		p.errorHandler(rw, out, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Nobody asked for a switch (upgrades go to ReverseProxy): a
		// tunnel the rules never judged is not opened.
		_ = res.Body.Close()
		p.errorHandler(rw, out, fmt.Errorf("backend tried to switch protocol %q when %q was requested", upgradeType(res.Header), ""))
		return
	}
	removeHopByHop(res.Header)
	res.Header.Del(ErrorHeader)
	delete(res.Trailer, ErrorHeader)

	h := answerHeader(rw, res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	rw.WriteHeader(res.StatusCode)

	if err := p.copyBody(rw, res); err != nil {
		defer res.Body.Close()
		if req.Context().Value(http.ServerContextKey) != nil {
			// The answer is cut: the server aborts the connection.
			panic(http.ErrAbortHandler)
		}
		p.logger.Debug("answer body cut", "error", err.Error())
		return
	}
	_ = res.Body.Close() // fills in res.Trailer
	delete(res.Trailer, ErrorHeader)
	if len(res.Trailer) > 0 {
		// Trailers need a chunked answer: a short body flushed whole
		// would otherwise get a Content-Length.
		_ = http.NewResponseController(rw).Flush()
	}
	if len(res.Trailer) == announced {
		addAll(h, res.Trailer)
		return
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

// headerTaker is a ResponseWriter that can make an answer's header map
// its own, instead of copying it into one it makes: the front's, when
// nothing has asked it for its header yet.
type headerTaker interface {
	takeHeader(http.Header) bool
}

// answerHeader gives rw the upstream's answer header src, taken over
// when rw can, copied otherwise, and returns rw's header.
func answerHeader(rw http.ResponseWriter, src http.Header) http.Header {
	if t, ok := rw.(headerTaker); ok && t.takeHeader(src) {
		return src
	}
	h := rw.Header()
	addAll(h, src)
	return h
}

// addAll adds src's values to dst. src is an answer's, whose keys are
// canonical already and which is not used after: a key dst lacks takes
// src's values without a copy.
func addAll(dst, src http.Header) {
	for k, vv := range src {
		if len(vv) == 0 {
			continue // a trailer announced and not sent
		}
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
}

// copyBody copies the answer's body through a pooled buffer. Server-sent
// events and bodies of unknown length are flushed as they come.
func (p *ReverseProxy) copyBody(rw http.ResponseWriter, res *http.Response) error {
	var dst io.Writer = rw
	if res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type")) {
		s := newStreamFlusher(rw)
		defer s.stop()
		dst = s
	}
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if !errors.Is(rerr, context.Canceled) {
				p.logger.Debug("reading the answer body failed", "error", rerr.Error())
			}
			return rerr
		}
	}
}

// streamFlusher flushes after every write, and the header alone from a
// timer that fires at once: the caller sees a stream's header even while
// its first event is slow to come, and an empty body that ends at once
// still goes out with a Content-Length, before the timer's goroutine has
// run. This is httputil's maxLatencyWriter with a negative latency.
type streamFlusher struct {
	rw      http.ResponseWriter
	flush   func() error
	mu      sync.Mutex
	pending bool
	t       *time.Timer
}

func newStreamFlusher(rw http.ResponseWriter) *streamFlusher {
	s := &streamFlusher{rw: rw, flush: http.NewResponseController(rw).Flush, pending: true}
	s.t = time.AfterFunc(0, s.delayedFlush)
	return s
}

func (s *streamFlusher) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.rw.Write(p)
	_ = s.flush()
	return n, err
}

func (s *streamFlusher) delayedFlush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending {
		_ = s.flush()
		s.pending = false
	}
}

func (s *streamFlusher) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = false
	s.t.Stop()
}

// informational passes 1xx answers (103 Early Hints) on to the caller
// until the final answer is in: the transport may call it from a goroutine
// of its own, and not after RoundTrip returns.
type informational struct {
	rw   http.ResponseWriter
	mu   sync.Mutex
	done bool
}

func (i *informational) got(code int, header textproto.MIMEHeader) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.done {
		return nil
	}
	h := i.rw.Header()
	for k, vv := range header {
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	i.rw.WriteHeader(code)
	clear(h) // WriteHeader keeps a 1xx's headers for the next answer
	return nil
}

func (i *informational) end() {
	i.mu.Lock()
	i.done = true
	i.mu.Unlock()
}

// noCloseBody is a request body the transport cannot close, and that
// reads nothing once the handler has.
type noCloseBody struct {
	rc     io.ReadCloser
	closed atomic.Bool
}

var errBodyAfterHandler = errors.New("proxy: the request body was read after its handler returned")

func (b *noCloseBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyAfterHandler
	}
	return b.rc.Read(p)
}

func (b *noCloseBody) Close() error {
	b.closed.Store(true)
	return nil
}

// hopByHop are the headers that belong to one connection (RFC 9110
// section 7.6.1, and the older ones RFC 2616 named), as ReverseProxy's
// list has them; and the forwarding headers a caller could forge, which
// Rewrite sets afresh.
var (
	hopByHopNames = []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	}
	hopByHop = func() map[string]bool {
		m := map[string]bool{}
		for _, n := range hopByHopNames {
			m[n] = true
		}
		return m
	}()
)

var forwarding = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

// forwardHeader is the header to send on: in's without hop-by-hop and
// forwarding headers and those its Connection header names, made at a
// size that leaves room for what Rewrite adds (X-Forwarded-For, -Host,
// -Proto, and a User-Agent or Authorization): a map that grows allocates
// itself again. The values are copied, into one array as Header.Clone
// copies them: in's may be shared (the identity headers of a cached
// token are), and a write into one must not reach the other.
func forwardHeader(in http.Header) http.Header {
	named := connectionNamed(in)
	out := make(http.Header, len(in)+4)
	n := 0
	for _, vv := range in {
		n += len(vv)
	}
	values := make([]string, n)
	for k, vv := range in {
		if vv == nil || hopByHop[k] || forwarding[k] || named[k] {
			continue
		}
		n = copy(values, vv)
		out[k] = values[:n:n]
		values = values[n:]
	}
	if httpguts.HeaderValuesContainsToken(in["Te"], "trailers") {
		// The app may ask for trailers only if the caller can take them.
		out["Te"] = []string{"trailers"}
	}
	return out
}

// connectionNamed returns the headers h's Connection header names, as
// http.Header.Del would find them, other than the hop-by-hop ones,
// which go anyway; nil for none, as for nearly every request once
// DropConnectionNamed has run. A set: a caller's thousand tokens cost a
// lookup per header, not a thousand.
func connectionNamed(h http.Header) map[string]bool {
	var names map[string]bool
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf == "" || connectionOption(sf) {
				continue
			}
			if names == nil {
				names = map[string]bool{}
			}
			names[textproto.CanonicalMIMEHeaderKey(sf)] = true
		}
	}
	return names
}

// removeHopByHop removes an answer's hop-by-hop headers and those its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopByHopNames {
		delete(h, k)
	}
}

// upgradeType is the protocol h asks to switch to, as ReverseProxy reads
// it: Upgrade counts only with Connection: upgrade.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// isEventStream reports whether a Content-Type is text/event-stream as
// mime.ParseMediaType reads it (as httputil does), which costs a map per
// answer: so only once the type looks like one.
func isEventStream(ct string) bool {
	if len(ct) < len("text/event-stream") || !containsFoldASCII(ct, "event") {
		return false
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "text/event-stream"
}

// cleanQuery reports whether ReverseProxy would send q on as it is: it
// re-encodes a query with a semicolon, a bad escape or more parameters
// than url.ParseQuery takes, and every query when GODEBUG sets
// urlmaxqueryparams. Those requests go to ReverseProxy, which knows how.
// (GODEBUG is read at start, from the environment and the binary's
// defaults; a change made later by os.Setenv is not seen.)
func cleanQuery(q string) bool {
	if godebugQueryParams || strings.Count(q, "&") >= maxQueryParams {
		return false
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// maxQueryParams is url.ParseQuery's default bound on parameters.
const maxQueryParams = 10000

var godebugQueryParams = strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams") || strings.Contains(defaultGODEBUG(), "urlmaxqueryparams")

// defaultGODEBUG is the GODEBUG the binary was built with (go.mod's
// godebug lines, //go:debug directives).
func defaultGODEBUG() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "DefaultGODEBUG" {
				return s.Value
			}
		}
	}
	return ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// DropConnectionNamed does on receipt what RFC 9110 section 7.6.1 asks
// of a proxy: the headers a request's Connection header names are for
// that hop only, and go, with their names. Called before the sidecar
// judges a request or adds headers of its own: rules then judge the
// headers the app gets, and a caller cannot name X-Request-Id,
// traceparent or an X-Auth-* header so that the forwarding, which removes
// what Connection names, drops the sidecar's own copy. Connection options
// (close, keep-alive, upgrade) and the hop-by-hop headers forwarding
// removes anyway stay named.
func DropConnectionNamed(h http.Header) {
	conn := h["Connection"]
	for i, v := range conn {
		if !namesHeaders(v) {
			continue
		}
		tokens := strings.Split(v, ",")
		kept := tokens[:0]
		for _, t := range tokens {
			name := textproto.TrimString(t)
			if name == "" || connectionOption(name) {
				kept = append(kept, t)
				continue
			}
			h.Del(name)
		}
		conn[i] = strings.Join(kept, ",")
	}
}

// namesHeaders reports whether a Connection value names anything but
// connection options and hop-by-hop headers; most say keep-alive or
// close, and cost nothing here.
func namesHeaders(v string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if t = textproto.TrimString(t); t != "" && !connectionOption(t) {
			return true
		}
	}
	return false
}

// connectionOption reports whether a Connection token is an option or
// names a hop-by-hop header, in ASCII case as net/http compares tokens
// (strings.EqualFold would take the Kelvin sign for a K).
func connectionOption(name string) bool {
	return asciiEqualFold(name, "close") || asciiEqualFold(name, "keep-alive") || asciiEqualFold(name, "upgrade") ||
		hopByHop[textproto.CanonicalMIMEHeaderKey(name)]
}

// containsFoldASCII reports whether s holds lower in any ASCII case,
// without the copy strings.ToLower makes of a type such as
// "Text/HTML; Charset=UTF-8".
func containsFoldASCII(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
