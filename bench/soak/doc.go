// Package soak runs the built authsidecar binary for a long while on
// loopback with mixed traffic in both directions, while its identity
// provider rotates keys and goes down for a while, and watches whether
// the sidecars' resident memory, goroutines and open file descriptors
// stay flat and whether any valid request fails.
//
// Two sidecar processes: A, outbound only, whose route "app" points at B;
// B, inbound only, in front of an app that answers HTTP and gRPC. The
// soak's own process holds the identity provider, the app and the load
// generator. Traffic, round robin at a fixed rate: through A (HTTP and
// gRPC, A attaching its token), and straight to B with tokens the soak
// signs with the provider's current key: valid (HTTP and gRPC), expired,
// forged (signed by another key under the current kid) and missing the
// required scope. See bench/README.md.
package soak
