package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// expressDir is the absolute path of e2e/express, set by TestMain.
var expressDir string

// ExpressApp is the real Express app of e2e/express, behind the sidecar.
type ExpressApp struct {
	URL     string // the app's port, where the sidecar sends requests
	control string // its control port, never behind the sidecar
}

// HandlerRun is one run of one of the app's route handlers.
type HandlerRun struct {
	Handler string         `json:"handler"`
	Method  string         `json:"method"`
	URL     string         `json:"url"`
	Params  map[string]any `json:"params"`
}

func startExpress(t testing.TB) *ExpressApp {
	t.Helper()
	logs := &logBuffer{}
	ready := make(chan ExpressApp, 1)
	cmd := exec.Command("node", "server.mjs")
	cmd.Dir = expressDir
	cmd.Env = minimalEnv(map[string]string{"APP_PORT": "0", "APP_WATCH_STDIN": "1"})
	cmd.Stdout = &lineWriter{onLine: func(line string) {
		fmt.Fprintln(logs, line)
		var msg struct{ Port, Control int }
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Port != 0 {
			select {
			case ready <- ExpressApp{URL: fmt.Sprintf("http://127.0.0.1:%d", msg.Port), control: fmt.Sprintf("http://127.0.0.1:%d", msg.Control)}:
			default:
			}
		}
	}}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe() // the app exits when this closes
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("starting the Express app: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("Express app output:\n%s", logs.String())
		}
	})
	select {
	case app := <-ready:
		return &app
	case <-p.done:
		t.Fatalf("the Express app exited before it was ready:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the Express app was not ready within 20s:\n%s", logs.String())
	}
	return nil
}

// Ran returns the handler runs since the last Reset.
func (a *ExpressApp) Ran(t testing.TB) []HandlerRun {
	t.Helper()
	resp, err := http.Get(a.control + "/ran")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var runs []HandlerRun
	if err := json.NewDecoder(resp.Body).Decode(&runs); err != nil {
		t.Fatal(err)
	}
	return runs
}

// Reset forgets the handler runs so far.
func (a *ExpressApp) Reset(t testing.TB) {
	t.Helper()
	resp, err := http.Post(a.control+"/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
