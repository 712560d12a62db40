// Package proxy holds what the inbound and outbound directions share: the
// server that owns a listener and drains it, the reverse-proxy plumbing
// (transport, forwarded headers, request ids), and the JSON error answers.
package proxy
