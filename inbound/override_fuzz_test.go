package inbound

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/url"
	"slices"
	"testing"
)

// FuzzFormOverridesMissNothing holds the override parsers to what an
// independent parser makes of the same bytes: every "_method" value that
// url.ParseQuery finds in an urlencoded body, or that mime/multipart (as
// net/http's ParseMultipartForm reads a form) finds in a multipart one, is
// among those judged, or the body is refused.
func FuzzFormOverridesMissNothing(f *testing.F) {
	for _, s := range []string{
		"_method=DELETE", "a=1&_method=delete", "%5Fmethod=PUT", "_method=%zz&_method=PATCH", ".method=DELETE",
		"a=1;_method=DELETE", "_method", "=&=&_method=", "_me%74hod=DELETE",
		"--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
		"--XyZ\nContent-Disposition: form-data; name=_method\n\nPUT\n--XyZ--\n",
		"--XyZ\r\nContent-Disposition: form-data; name=_method\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=44ELETE\r\n--XyZ--\r\n",
		"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nPATCH\r\n--XyZ--\r\n",
		"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ \r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := urlencodedOverrides(body)
		q, _ := url.ParseQuery(body)
		for _, v := range q["_method"] {
			if !slices.Contains(got, v) {
				t.Fatalf("urlencoded %q: url.ParseQuery finds _method=%q, the sidecar judges %q", body, v, got)
			}
		}

		parts, err := multipartOverrides("multipart/form-data; boundary=XyZ", []byte(body))
		if err != nil {
			return
		}
		mr := multipart.NewReader(bytes.NewReader([]byte(body)), "XyZ")
		for {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			if p.FormName() != "_method" {
				continue
			}
			v, err := io.ReadAll(io.LimitReader(p, maxOverrideValue))
			if err != nil {
				return
			}
			if !slices.Contains(parts, string(v)) {
				t.Fatalf("multipart %q: mime/multipart finds _method=%q, the sidecar judges %q", body, v, parts)
			}
		}
	})
}
