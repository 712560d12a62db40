package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpgradesEventStreamsAndLargeUploadsPassBothSidecars: what HTTP/1.1
// apps rely on besides plain requests keeps working through sidecar A and
// sidecar B, now that every listener also speaks HTTP/2.
func TestUpgradesEventStreamsAndLargeUploadsPassBothSidecars(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	secondEvent := make(chan struct{})
	appB.Respond(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws": // a WebSocket-style upgrade: 101, then an echo of raw bytes
			if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
				http.Error(w, "want an upgrade", http.StatusBadRequest)
				return
			}
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = rw.Flush()
			_, _ = io.Copy(c, rw)
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: first\n\n")
			_ = http.NewResponseController(w).Flush()
			select {
			case <-secondEvent:
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "data: second\n\n")
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, nil)
	a := startOutbound(t, idp, basicClient, basicSecret, "client_secret_basic", "", outboundRoute{
		Name: "payments", URL: "http://" + b.Addrs.Inbound, Resource: paymentsRS, Scopes: "payments:write",
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, a.Addrs.AdminURL())

	t.Run("an upgrade becomes a byte stream both ways", func(t *testing.T) {
		c, err := net.Dial("tcp", a.Addrs.Outbound)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /payments/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v, want 101", resp, err)
		}
		for _, msg := range []string{"ping", strings.Repeat("x", 100<<10)} {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
				t.Fatalf("echo of %d bytes: %v", len(msg), err)
			}
		}
	})
	t.Run("server-sent events are not held back", func(t *testing.T) {
		resp, err := callClient.Get(a.Addrs.OutboundURL() + "/payments/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event: %q %v", line, err)
		}
		close(secondEvent) // sent only once the first has arrived
		_, _ = br.ReadString('\n')
		if line, err = br.ReadString('\n'); err != nil || line != "data: second\n" {
			t.Errorf("second event: %q %v", line, err)
		}
	})
	t.Run("a 200 MiB upload streams through", func(t *testing.T) {
		const size = 200 << 20
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
		sum := sha256.New()
		pr, pw := io.Pipe()
		go func() {
			for sent := 0; sent < size; sent += len(chunk) {
				sum.Write(chunk)
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		var (
			gotSum []byte
			gotLen int64
		)
		appB.Respond(func(w http.ResponseWriter, r *http.Request) {
			// The app recorded the first MiB; the rest is still to read.
			h := sha256.New()
			first := appB.Last(t).Body
			h.Write(first)
			n, _ := io.Copy(h, r.Body)
			gotSum, gotLen = h.Sum(nil), int64(len(first))+n
			w.WriteHeader(http.StatusNoContent)
		})
		req, _ := http.NewRequest(http.MethodPut, a.Addrs.OutboundURL()+"/payments/upload", pr)
		resp, err := callClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("upload: status %d", resp.StatusCode)
		}
		if gotLen != size || !bytes.Equal(gotSum, sum.Sum(nil)) {
			t.Errorf("the app got %d bytes (hash equal: %v), want the %d sent", gotLen, bytes.Equal(gotSum, sum.Sum(nil)), size)
		}
		if rss := processRSS(t, b.Sidecar); rss != "unknown" {
			t.Logf("sidecar B RSS after the upload: %s", rss)
		}
	})
}
