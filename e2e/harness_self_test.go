package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSidecarEnv, set to 1, makes the test binary act as a stand-in sidecar
// (see runFakeSidecar), so the process helpers are tested before the real
// binary exists.
const fakeSidecarEnv = "E2E_FAKE_SIDECAR"

// runFakeSidecar serves /readyz on AUTHSIDECAR_ADMIN_LISTEN (503 for its
// first 200 ms, then 200), logs its environment's names as JSON and exits 0
// on SIGTERM.
func runFakeSidecar() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var names []string
	for _, kv := range os.Environ() {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	slices.Sort(names)
	log.Info("starting", "env", names)
	started := time.Now()
	srv := &http.Server{
		Addr:              os.Getenv("AUTHSIDECAR_ADMIN_LISTEN"),
		ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if time.Since(started) < 200*time.Millisecond {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("draining")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return 1
	}
	return 0
}

func TestHarnessRunsAProcessWithOnlyItsEnvWaitsForReadinessAndStopsIt(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeSidecarAddrs(t)
	env := mergeEnv(addrs.Env(), map[string]string{fakeSidecarEnv: "1"})
	s := startSidecarBinary(t, self, env)
	s.WaitReady(t, addrs.AdminURL())

	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.Wait(); code != 0 {
		t.Fatalf("exit code %d, want 0; output:\n%s", code, s.Output())
	}
	recs := s.LogLines()
	if len(recs) != 2 || recs[0]["msg"] != "starting" || recs[1]["msg"] != "draining" {
		t.Fatalf("log records %v, want starting then draining", recs)
	}
	gotEnv, _ := json.Marshal(recs[0]["env"])
	wantEnv := `["AUTHSIDECAR_ADMIN_LISTEN","AUTHSIDECAR_INBOUND_LISTEN","AUTHSIDECAR_OUTBOUND_LISTEN","E2E_FAKE_SIDECAR","PATH"]`
	if string(gotEnv) != wantEnv {
		t.Errorf("child environment %s, want %s", gotEnv, wantEnv)
	}
}

func TestHarnessAppRecordsWhatItSaw(t *testing.T) {
	t.Parallel()
	app := startApp(t)
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/orders/7?x=1", strings.NewReader(`{"n":1}`))
	req.Header.Set("X-Auth-Subject", "svc-a")
	resp, err := app.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	got := app.Last(t)
	if got.Method != http.MethodPost || got.Path != "/orders/7" || got.RawQuery != "x=1" ||
		got.Header.Get("X-Auth-Subject") != "svc-a" || string(got.Body) != `{"n":1}` {
		t.Errorf("recorded %+v", got)
	}

	app.Respond(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	resp, err = app.Client().Get(app.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || len(app.Requests()) != 2 {
		t.Errorf("status %d with %d requests, want 418 with 2", resp.StatusCode, len(app.Requests()))
	}
}
