package rules

import (
	"net/http"
	"strings"
)

// methodMask is a set of methods, one bit each; otherMethod stands for any
// method not named below, which only rules without methods accept.
type methodMask uint16

const (
	otherMethod methodMask = 1 << iota
	mGET
	mHEAD
	mPOST
	mPUT
	mPATCH
	mDELETE
	mOPTIONS
	mCONNECT
	mTRACE

	allMethods methodMask = 1<<iota - 1
)

// knownMethods lists the methods a rule may name, in the order error
// messages show them.
var knownMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// methodBit maps a request method to its bit; a switch on constant strings
// is faster than a map and does not allocate.
func methodBit(m string) methodMask {
	// net/http accepts any token as a method, and some servers upper-case
	// it before routing: "delete" must meet the rules for DELETE.
	if hasLower(m) {
		m = strings.ToUpper(m)
	}
	switch m {
	case http.MethodGet:
		return mGET
	case http.MethodHead:
		return mHEAD
	case http.MethodPost:
		return mPOST
	case http.MethodPut:
		return mPUT
	case http.MethodPatch:
		return mPATCH
	case http.MethodDelete:
		return mDELETE
	case http.MethodOptions:
		return mOPTIONS
	case http.MethodConnect:
		return mCONNECT
	case http.MethodTrace:
		return mTRACE
	}
	return otherMethod
}

// compileMethods turns a rule's methods into a mask; none means all. GET
// brings HEAD along because net/http answers HEAD with the GET handler.
func compileMethods(methods []string, errorf func(format string, args ...any)) methodMask {
	if len(methods) == 0 {
		return allMethods
	}
	var mask methodMask
	for _, m := range methods {
		b := methodBit(m)
		if hasLower(m) {
			b = otherMethod // the file must spell methods as RFC 9110 does
		}
		switch b {
		case otherMethod:
			errorf("bad method %q: want one of %s", m, strings.Join(knownMethods, ", "))
		case mGET:
			mask |= mGET | mHEAD
		default:
			mask |= b
		}
	}
	return mask
}

func hasLower(s string) bool {
	for i := range len(s) {
		if 'a' <= s[i] && s[i] <= 'z' {
			return true
		}
	}
	return false
}
