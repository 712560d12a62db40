package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// frontWriter is the http.ResponseWriter of a request the front serves.
// Like net/http's, it frames an answer by its Content-Length when the
// handler sets one, and otherwise with chunked encoding, unless the
// handler ends before writing frontSmallBody bytes, when it sends a
// Content-Length of what was written (for HEAD too: the length a GET
// would get).
type frontWriter struct {
	c       *frontConn
	req     *http.Request
	body    *frontBody // nil without a body
	header  http.Header
	status  int
	snap    http.Header // the header as at WriteHeader, while unsent
	pending []byte      // body held back while the framing (or type) is undecided
	// sniff: the handler set no Content-Type, and the answer gets the
	// one http.DetectContentType finds in its first bytes, as net/http
	// gives it.
	sniff bool

	contentLength int64 // -1: not set by the handler
	written       int64
	wroteHeader   bool // the handler's status is decided
	sentHeader    bool // the status line and header are in c.bw
	handlerDone   bool
	chunked       bool
	closeAfter    bool
	// broken: the answer is shorter than its Content-Length said; the
	// connection cannot carry another.
	broken bool
	// deadlineSet: the handler set a write deadline, to be cleared
	// after it.
	deadlineSet bool
}

// frontSmallBody is how much of an answer without a Content-Length is
// held back to send it with one; net/http holds 2 KiB.
const frontSmallBody = 2 << 10

// sniffLen is how many bytes http.DetectContentType looks at.
const sniffLen = 512

func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// takeHeader makes h the answer's header, when the handler has not asked
// for one yet: an answer copied from upstream then needs no map of its
// own, nor the copy into it (about a fifteenth of the sidecar's garbage
// per request). From then on h is the writer's.
func (w *frontWriter) takeHeader(h http.Header) bool {
	if w.header != nil || w.wroteHeader || h == nil {
		return false
	}
	w.header = h
	return true
}

func (w *frontWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.Header() // the framing below may set a header
	if vv, ok := w.header["Content-Length"]; ok {
		if n, err := strconv.ParseInt(firstValue(vv), 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	w.sniff = w.statusHasBody() && w.header["Content-Type"] == nil && w.header.Get("Content-Encoding") == "" &&
		w.header.Get("Transfer-Encoding") == ""
	if _, set := w.header["Content-Type"]; set {
		w.sniff = false // set to nil: the handler wants none
	}
	if !w.sniff && (w.contentLength >= 0 || !w.statusHasBody() || w.header.Get("Trailer") != "") {
		w.sendHeader(nil)
		return
	}
	w.snap = w.header.Clone()
}

// framingOpen reports whether the framing waits for the body: no
// Content-Length and no trailers, so a short body gets a Content-Length.
func (w *frontWriter) framingOpen() bool {
	return w.contentLength < 0 && w.header.Get("Trailer") == ""
}

func firstValue(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// writeInformational sends a 1xx answer (103 Early Hints, say) at once,
// without the framing headers a 1xx must not carry (RFC 9110 8.6).
func (w *frontWriter) writeInformational(code int) {
	writeStatusLine(w.c.bw, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(w.c.bw, k, v)
		}
	}
	_, _ = w.c.bw.WriteString("\r\n")
	_ = w.c.bw.Flush()
}

// statusHasBody reports whether the answer's status allows a body: not
// 204 and 304. A HEAD answer is framed as its GET's, and sends no body.
func (w *frontWriter) statusHasBody() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *frontWriter) isHEAD() bool { return w.req.Method == http.MethodHead }

// sendHeader writes the status line and header to the connection's
// buffer, framing decided; first is the body's first bytes, if any.
func (w *frontWriter) sendHeader(first []byte) {
	w.sentHeader = true
	h := w.header
	if w.snap != nil {
		h = w.snap
	}
	if w.sniff && len(first) > 0 {
		h.Set("Content-Type", http.DetectContentType(first))
	}
	if h.Get("Connection") == "close" || w.req.Close || w.c.f.isClosing() || w.body.lost(!w.handlerDone) {
		w.closeAfter = true
	}
	if w.handlerDone && !w.closeAfter {
		w.settleBody()
	}
	delete(h, "Transfer-Encoding")
	switch {
	case w.status == http.StatusNotModified:
		delete(h, "Content-Length")
		delete(h, "Content-Type")
	case !w.statusHasBody():
		delete(h, "Content-Length")
	case h.Get("Trailer") != "" && !w.isHEAD():
		delete(h, "Content-Length")
		w.contentLength = -1
		w.chunked = true
	case w.contentLength < 0:
		delete(h, "Content-Length")
		w.chunked = !w.isHEAD()
	}
	writeStatusLine(w.c.bw, w.status)
	for k, vv := range h {
		if k == "Connection" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(w.c.bw, k, v)
		}
	}
	if _, ok := h["Date"]; !ok {
		writeHeaderLine(w.c.bw, "Date", httpDate())
	}
	if w.chunked {
		_, _ = w.c.bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		_, _ = w.c.bw.WriteString("Connection: close\r\n")
	}
	_, _ = w.c.bw.WriteString("\r\n")
}

// settleBody decides, before the header of an answer the handler has
// finished goes out, what becomes of the body it left unread: read to
// its end, when that is at most maxDrainBytes, or else the answer says
// Connection: close. So a caller is never told it may send another
// request on a connection that then closes.
func (w *frontWriter) settleBody() {
	if w.body == nil || w.body.done() || w.closeAfter {
		return
	}
	if w.body.lost(false) || !w.body.drain() {
		w.closeAfter = true
	}
}

func writeStatusLine(bw *bufio.Writer, code int) {
	_, _ = bw.WriteString("HTTP/1.1 ")
	var b [3]byte
	_, _ = bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(code))
	_, _ = bw.WriteString("\r\n")
}

// headerValueCleaner turns the line breaks a value must not carry into
// spaces, as net/http does when it writes a header.
var headerValueCleaner = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = headerValueCleaner.Replace(v)
	}
	_, _ = bw.WriteString(textproto.TrimString(v))
	_, _ = bw.WriteString("\r\n")
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.statusHasBody() {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.isHEAD() {
		// Counted for the Content-Length, never sent; the first bytes
		// kept to find the type.
		w.written += int64(len(p))
		if !w.sentHeader {
			if room := sniffLen - len(w.pending); room > 0 {
				w.pending = append(w.pending, p[:min(room, len(p))]...)
			}
			if w.written > frontSmallBody || !w.framingOpen() {
				w.sendHeader(w.pending)
			}
		}
		return len(p), nil
	}
	if !w.sentHeader {
		if !w.framingOpen() {
			w.sendHeader(p)
		} else {
			if len(w.pending)+len(p) <= frontSmallBody {
				w.pending = append(w.pending, p...)
				w.written += int64(len(p))
				return len(p), nil
			}
			first := w.pending
			if len(first) == 0 {
				first = p
			}
			w.sendHeader(first)
			if err := w.writeBody(w.pending); err != nil {
				return 0, err
			}
			w.pending = nil
		}
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		room := p[:w.contentLength-w.written]
		if err := w.writeBody(room); err != nil {
			return 0, err
		}
		w.written += int64(len(room))
		return len(room), http.ErrContentLength
	}
	w.written += int64(len(p))
	return len(p), w.writeBody(p)
}

func (w *frontWriter) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if w.chunked {
		var b [16]byte
		_, _ = w.c.bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		_, _ = w.c.bw.WriteString("\r\n")
		if _, err := w.c.bw.Write(p); err != nil {
			return err
		}
		_, err := w.c.bw.WriteString("\r\n")
		return err
	}
	_, err := w.c.bw.Write(p)
	return err
}

// Flush sends what is buffered; an answer without a Content-Length is
// chunked from then on.
func (w *frontWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, with the error (http.ResponseController uses it).
func (w *frontWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		w.sendHeader(w.pending)
		if !w.isHEAD() {
			if err := w.writeBody(w.pending); err != nil {
				return err
			}
		}
		w.pending = nil
	}
	return w.c.bw.Flush()
}

// SetReadDeadline is for http.ResponseController: BODY_IDLE_TIMEOUT.
func (w *frontWriter) SetReadDeadline(t time.Time) error { return w.c.nc.SetReadDeadline(t) }

// SetWriteDeadline is for http.ResponseController; the deadline ends
// with the request.
func (w *frontWriter) SetWriteDeadline(t time.Time) error {
	w.deadlineSet = true
	return w.c.nc.SetWriteDeadline(t)
}

// EnableFullDuplex is for http.ResponseController: the front lets a
// handler read the body after it started the answer already.
func (w *frontWriter) EnableFullDuplex() error { return nil }

// finish completes the answer after the handler returned.
func (w *frontWriter) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		// Only an answer that may have a body waits with its header.
		n := w.written
		if w.framingOpen() && (n > 0 || !w.isHEAD()) {
			w.snap.Set("Content-Length", strconv.FormatInt(n, 10))
			w.contentLength = n
		}
		w.sendHeader(w.pending)
		if !w.isHEAD() {
			_ = w.writeBody(w.pending)
		}
		w.pending = nil
	}
	switch {
	case w.chunked:
		_, _ = w.c.bw.WriteString("0\r\n")
		w.writeTrailers()
		_, _ = w.c.bw.WriteString("\r\n")
	case w.contentLength >= 0 && w.written < w.contentLength && w.statusHasBody() && !w.isHEAD():
		w.broken = true
	}
}

// writeTrailers writes the trailers the handler announced in its Trailer
// header and set after the body, and those set with http.TrailerPrefix.
func (w *frontWriter) writeTrailers() {
	for _, announced := range w.header.Values("Trailer") {
		for k := range strings.SplitSeq(announced, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if !httpguts.ValidTrailerHeader(k) {
				continue
			}
			for _, v := range w.header[k] {
				writeHeaderLine(w.c.bw, k, v)
			}
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				writeHeaderLine(w.c.bw, name, v)
			}
		}
	}
}

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.value
	}
	d := &cachedDate{sec: sec, value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

// cachedDate is a Date header's value and the second it is for.
type cachedDate struct {
	sec   int64
	value string
}

// dateCache is the latest cachedDate: an atomic pointer, not a lock that
// every answer of every connection would take.
var dateCache atomic.Pointer[cachedDate]
