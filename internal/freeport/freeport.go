// Package freeport hands out loopback TCP addresses for a process that is
// started and told which one to bind: tests, benchmarks and the examples.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Addr returns "127.0.0.1:PORT" for a port that was free a moment ago and
// that no other caller in this process was given. Ports are picked below
// the kernel's ephemeral range: a listener on :0 gets an ephemeral port,
// which an outgoing connection can take between the moment it is picked
// and the moment the process told of it binds it.
func Addr() (string, error) {
	lo, hi := portRange()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if _, taken := claimed.LoadOrStore(port, true); taken {
			continue // handed out already, to a caller that may not have bound it yet
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("freeport: no free port in %d-%d", lo, hi)
}

// claimed are the ports Addr handed out in this process.
var claimed sync.Map

// portRange is where Addr looks: the 11,000 ports below the ephemeral
// range, 20000-32000 where the range cannot be read.
func portRange() (lo, hi int) {
	lo, hi = 20000, 32000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start > 11000 {
			return start - 11000, start - 1
		}
	}
	return lo, hi
}
