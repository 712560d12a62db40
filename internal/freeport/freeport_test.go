package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrIsFreeBelowTheEphemeralRangeAndNeverGivenTwice(t *testing.T) {
	lo, hi := portRange()
	start, end, ok := ephemeralRange()
	seen := map[string]bool{}
	for range 200 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, p, _ := net.SplitHostPort(addr)
		if port, _ := strconv.Atoi(p); port < lo || port >= hi || port < 1024 {
			t.Fatalf("%s is outside %d-%d", addr, lo, hi)
		}
		if port, _ := strconv.Atoi(p); ok && start >= 12000 && port >= start && port <= end {
			t.Fatalf("%s is in the ephemeral range %d-%d", addr, start, end)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		l.Close()
	}
}
