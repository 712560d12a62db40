// Package proxy holds what the inbound and outbound directions share: the
// server that owns a listener and drains it (on cleartext listeners an
// HTTP/1.1 front that serves plain requests itself and hands the rest to
// net/http), the reverse proxy and its plumbing (transports, forwarded
// headers, request ids), and the JSON error answers.
package proxy
