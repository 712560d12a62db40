// Package loadbench measures authsidecar under load on one machine: the
// app alone, a bare httputil.ReverseProxy in front of it, and the sidecar
// inbound and outbound, each in its own process, driven by a closed-loop
// (or constant-rate) HTTP load generator on 127.0.0.1. See bench/README.md.
package loadbench
