// Package inprocess holds Go benchmarks that run the whole sidecar, the
// bare reverse proxy and the app in the test process over loopback, for
// CPU profiles with go test -cpuprofile (the sidecar binary has no pprof
// endpoint). It has no code of its own outside the tests.
package inprocess
