package loadbench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the app or the bare proxy when
// the smoke test starts it as a child.
func TestMain(m *testing.M) {
	ChildMain()
	os.Exit(m.Run())
}

// TestSmoke runs every case for a second against a freshly built sidecar.
// It costs about half a minute of both CPUs, so it runs only when asked:
//
//	AUTHSIDECAR_LOADBENCH=1 go test -run TestSmoke -v ./bench/loadbench/
func TestSmoke(t *testing.T) {
	if os.Getenv("AUTHSIDECAR_LOADBENCH") != "1" {
		t.Skip("set AUTHSIDECAR_LOADBENCH=1 to run the load benchmark smoke test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := BuildSidecar(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	r, err := Run(ctx, Options{
		Sidecar: bin, Self: self, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Concurrency: 8, Tokens: 200, HalfRate: true, OpenWorkers: 16, IdleConns: 16, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(r.Cases) != len(AllCases) {
		t.Fatalf("%d cases, want %d", len(r.Cases), len(AllCases))
	}
	for _, c := range r.Cases {
		if c.OK == 0 || c.Failed > 0 || c.P99Micros <= 0 || c.RatioToBare <= 0 {
			t.Errorf("case %s: ok %d failed %d (%s) p99 %vµs ratio %v", c.Name, c.OK, c.Failed, c.FirstFailure, c.P99Micros, c.RatioToBare)
		}
	}
	if r.OpenLoop == nil || len(r.OpenLoop.Cases) != 2 || r.OpenLoop.Cases[1].OK == 0 {
		t.Errorf("no half-rate comparison: %+v", r.OpenLoop)
	}
	if r.OutboundTokenFetches != 1 {
		t.Errorf("the sidecar fetched %d outbound tokens, want 1 (cached)", r.OutboundTokenFetches)
	}
	if m := r.Memory; m == nil || m.Idle == nil || m.WithIdleConns == nil || m.AfterLoad == nil || m.IdleConns != 16 {
		t.Errorf("memory figures missing: %+v", m)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bare-proxy", "inbound-rs256-mix", "rps vs bare", "sidecar memory"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	t.Log("\n" + table.String())
}
