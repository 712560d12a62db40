package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrIntrospectionUnavailable means the introspection endpoint could not
// answer and no answer for the token is cached: the request fails closed.
var ErrIntrospectionUnavailable = errors.New("inbound: token introspection unavailable")

// Introspection results, the values of the "result" label of
// authsidecar_introspection_requests_total.
const (
	IntrospectionActive   = "active"
	IntrospectionInactive = "inactive"
	IntrospectionError    = "error"
)

// IntrospectorOptions configure an Introspector.
type IntrospectorOptions struct {
	// Endpoint returns the introspection URL: a fixed one, or one found by
	// discovery on first use.
	Endpoint func(ctx context.Context) (string, error)
	ClientID string
	// Secret returns the resource server's client secret, per request, so
	// that a rotated secret file is picked up.
	Secret func() (string, error)
	Client *http.Client
	// TTL is how long an answer is reused; never past the token's exp.
	TTL time.Duration
	// MaxEntries bounds the answer cache.
	MaxEntries int
	// OnResult is told each call's result, for metrics.
	OnResult func(result string)
	Now      func() time.Time
}

// Introspector asks the authorization server about tokens (RFC 7662),
// caching answers and sharing one call among concurrent requests with the
// same token.
type Introspector struct {
	opts         IntrospectorOptions
	seedA, seedB maphash.Seed
	calls        singleflight.Group

	mu      sync.Mutex
	answers map[[2]uint64]*introspection
}

// introspection is an RFC 7662 answer: "active" and the same claims a JWT
// carries, plus when the cached answer stops being reused.
type introspection struct {
	Active bool
	claims
	raw   []byte
	until time.Time
}

// parseIntrospection decodes an answer. "active" must be exactly true.
func parseIntrospection(body []byte) (*introspection, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	a := &introspection{raw: body, Active: string(fields["active"]) == "true"}
	if err := a.claims.UnmarshalJSON(body); err != nil {
		return nil, err
	}
	return a, nil
}

// NewIntrospector returns an Introspector.
func NewIntrospector(opts IntrospectorOptions) *Introspector {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.OnResult == nil {
		opts.OnResult = func(string) {}
	}
	return &Introspector{opts: opts, seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(),
		answers: map[[2]uint64]*introspection{}}
}

// introspect returns the answer for raw, from the cache when it is fresh.
func (in *Introspector) introspect(ctx context.Context, raw string) (*introspection, error) {
	key := [2]uint64{maphash.String(in.seedA, raw), maphash.String(in.seedB, raw)}
	if a := in.cached(key); a != nil {
		return a, nil
	}
	// The call is shared and detached: one caller giving up must not fail
	// the others waiting for the same answer.
	ch := in.calls.DoChan(strconv.FormatUint(key[0], 16)+strconv.FormatUint(key[1], 16), func() (any, error) {
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		a, err := in.call(callCtx, raw)
		if err != nil {
			in.opts.OnResult(IntrospectionError)
			return nil, err
		}
		in.store(key, a)
		return a, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*introspection), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (in *Introspector) cached(key [2]uint64) *introspection {
	in.mu.Lock()
	defer in.mu.Unlock()
	a := in.answers[key]
	if a == nil {
		return nil
	}
	if in.opts.Now().After(a.until) {
		delete(in.answers, key)
		return nil
	}
	return a
}

func (in *Introspector) store(key [2]uint64, a *introspection) {
	now := in.opts.Now()
	a.until = now.Add(in.opts.TTL)
	if a.Expiry != nil && a.Expiry.Before(a.until) {
		a.until = a.Expiry.Time
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.answers) >= in.opts.MaxEntries {
		for k, old := range in.answers {
			if len(in.answers) < in.opts.MaxEntries && !now.After(old.until) {
				break
			}
			delete(in.answers, k)
		}
	}
	in.answers[key] = a
}

func (in *Introspector) call(ctx context.Context, raw string) (*introspection, error) {
	endpoint, err := in.opts.Endpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	secret, err := in.opts.Secret()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.opts.ClientID), url.QueryEscape(secret))
	resp, err := in.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrIntrospectionUnavailable, resp.StatusCode)
	}
	a, err := parseIntrospection(body)
	if err != nil {
		return nil, fmt.Errorf("%w: bad answer: %v", ErrIntrospectionUnavailable, err)
	}
	if a.Active {
		in.opts.OnResult(IntrospectionActive)
	} else {
		in.opts.OnResult(IntrospectionInactive)
	}
	return a, nil
}
