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
// that no other caller in this process was given. Ports are picked outside
// the kernel's ephemeral range (see portRange): a listener on :0 gets an
// ephemeral port,
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

// portRange is where Addr looks: between 10000 (clear of well-known and
// registered services) and 30000 (where Kubernetes' NodePorts start,
// which kube-proxy may claim on a host-network node), below the kernel's
// ephemeral range. When the ephemeral range leaves too few ports there
// (it starts low, as on some tuned hosts), the ports above it are used,
// and when there are too few of those too, 10000-30000 all the same: no
// worse than a port from :0.
func portRange() (lo, hi int) {
	const floor, ceiling, enough = 10000, 30000, 2000
	start, end, ok := ephemeralRange()
	switch {
	case !ok:
		return floor, ceiling
	case min(start, ceiling)-floor >= enough:
		return floor, min(start, ceiling)
	case 65536-(end+1) >= enough:
		return end + 1, 65536
	}
	return floor, ceiling
}

// ephemeralRange is the kernel's range of ports for outgoing connections.
func ephemeralRange() (start, end int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	start, err1 := strconv.Atoi(f[0])
	end, err2 := strconv.Atoi(f[1])
	return start, end, err1 == nil && err2 == nil && start <= end
}
