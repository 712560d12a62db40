// A real, independent OAuth 2.0 / OpenID Connect provider for authsidecar's
// end-to-end tests: node-oidc-provider (OpenID Certified), configured for
// machine-to-machine use only (client credentials, resource indicators,
// introspection, revocation, DPoP), plus an RFC 8693 token exchange grant
// of our own (token_exchange.mjs).
//
// Environment:
//   IDP_PORT        TCP port on 127.0.0.1 to listen on; 0 (default) picks one.
//   IDP_CONFIG      path of the JSON configuration file (see below; required).
//   IDP_WATCH_STDIN "1": exit when stdin reaches EOF, so the provider dies
//                   with the test process that started it even on SIGKILL.
//
// Once listening it prints exactly one line to stdout:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT}
// Everything else (oidc-provider notices, errors, one
// "idp: token-exchange {...}" line per exchange) goes to stderr.
//
// Test endpoint (not OAuth; no authentication):
//   GET /test/exchanges -> {"count": n, "failures": m, "last": {...},
//                           "recent": [{...}, ...]}
//   count: token exchanges that issued a token since this process started
//   (a restart resets it); failures: exchanges the grant handler refused
//   (requests refused earlier, e.g. by client authentication, are in
//   neither). Each record (last, and up to 100 in recent, oldest first) is
//   {"at", "client_id", "resource", "audience", "scope",
//    "subject_token_type", "actor_token_type", "requested_token_type",
//    "dpop" (a DPoP header was sent), "result" ("issued" or the error code),
//    "error_description"?, "error_detail"? (the reason oidc-provider does
//    not tell the client, e.g. for invalid_grant), and when issued:
//    "subject_sub", "subject_client_id", "actor_sub", "issued_aud",
//    "issued_scope", "issued_token_type" ("Bearer" | "DPoP"), "jkt",
//    "expires_in"};
//   never a token or a secret.
//
// Configuration file:
//   {
//     "keys": [<private JWK with kid>...],   // signing keys; for each key
//                                             // type the FIRST one signs,
//                                             // all are published in the JWKS
//     "clients": [<client metadata>...],     // oidc-provider client metadata
//                                             // (client_id, client_secret,
//                                             // token_endpoint_auth_method,
//                                             // scope, jwks, ...); grant_types
//                                             // defaults to client_credentials,
//                                             // response_types/redirect_uris to []
//     "resources": {                          // RFC 8707 resource indicators
//       "https://api.example": {
//         "scope": "read write",              // scopes this resource accepts
//         "alg": "RS256" | "ES256" | ...,     // JWT signing alg (default RS256)
//         "kid": "...",                       // optional: pin the signing key
//         "ttl": 300,                         // access token lifetime, seconds
//         "format": "jwt" | "opaque",         // default jwt
//         "audience": "..."                   // aud override (default: the
//                                             // resource indicator itself)
//       }
//     },
//     "defaultResource": "https://api.example", // optional: used when a
//                                             // request names no resource
//     "accessTokenTTL": 300,                  // default lifetime, seconds
//     "dpop": {                               // RFC 9449, features.dPoP
//       "enabled": true,                      // default true (as oidc-provider)
//       "nonces": false,                      // issue DPoP-Nonce values
//                                             // (a random nonceSecret per run)
//       "requireNonce": false,                // refuse proofs without a nonce:
//                                             // 400 use_dpop_nonce + DPoP-Nonce
//                                             // (implies nonces)
//       "allowReplay": false                  // accept a reused proof jti
//     }
//   }
// Client metadata this provider acts on beyond oidc-provider's own:
//   "dpop_bound_access_tokens": true   the client's token requests (client
//                                      credentials and token exchange) must
//                                      carry a DPoP proof (else 400
//                                      invalid_grant)
//   "grant_types": [..., "urn:ietf:params:oauth:grant-type:token-exchange"]
//                                      the client may exchange tokens
//
// DPoP (oidc-provider 9.13): a token request with a valid "DPoP" proof
// header gets a token bound to the proof's key, by any client: the JWT gets
// "cnf": {"jkt": "<RFC 7638 SHA-256 thumbprint, base64url>"} and the
// response token_type "DPoP". Proof algs: ES256, Ed25519, EdDSA. htu must
// be the token endpoint URL as addressed (built from the Host header;
// query and fragment ignored, compared after WHATWG URL normalisation);
// iat within 300 s of now when the proof has no nonce (with a valid nonce
// iat is not checked); ath is not checked at the token endpoint. Refusals:
// 400 invalid_dpop_proof, except a jti seen before from the same client
// within 300 s and a DPoP-bound client's request without a proof: 400
// invalid_grant ("grant request is invalid"). With nonces on, every answer
// to a request with a proof carries a DPoP-Nonce header (the nonce to use
// next, accepted for about 3 minutes); with them off, a proof carrying a
// nonce is refused (invalid_dpop_proof).
//
// Token exchange (RFC 8693), grant_type
// urn:ietf:params:oauth:grant-type:token-exchange, client authentication as
// for client credentials. Parameters:
//   subject_token        required: a JWT access token of this provider
//                        (signed by one of its keys, iss, typ at+jwt, not
//                        expired; any audience, any client; cnf is not
//                        checked) - otherwise 400 invalid_grant
//   subject_token_type   required: urn:ietf:params:oauth:token-type:access_token
//   actor_token          optional: same checks, and it must have been issued
//                        to the exchanging client (client_id) - otherwise
//                        400 invalid_grant
//   actor_token_type     required with actor_token: ..:token-type:access_token
//   resource | audience  the target: a resource indicator, or (audience) an
//                        indicator or a resource's "audience"; both may be
//                        sent if they name the same resource; neither: the
//                        default resource. Unknown: 400 invalid_target;
//                        none and no default: 400 invalid_request
//   scope                requested scopes: checked against the client's
//                        allow list (400 invalid_scope), then limited to
//                        what the resource accepts (not to the subject
//                        token's scopes, which are for another resource)
//   requested_token_type optional: only ..:token-type:access_token
// Other missing or unsupported values: 400 invalid_request. Answer:
//   {"access_token", "issued_token_type":
//    "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer"
//    or "DPoP" (with a DPoP proof), "expires_in", "scope"?}
// The token is the client credentials JWT below for the exchanging client
// and target resource (client_id = the exchanging client, aud, scope, cnf
// with DPoP) except: sub = the subject token's sub; with an actor token,
// "act": {"sub": <actor token's sub>} and, when the subject token had an
// act (a delegation chain), that act nested inside: {"sub", "act": {...}};
// without an actor token there is no act (a previous chain is not carried
// on); exp is at most the subject token's exp. For an "opaque" resource the
// same sub and act show in introspection.
//
// A JWT access token for the client credentials grant looks like this
// (oidc-provider 9.13, RFC 9068 profile; checked by the Go smoke tests):
//   header:  {"alg":"RS256"|"ES256","typ":"at+jwt","kid":"<kid>"}
//   payload: {"jti","sub","iat","exp","scope","client_id","iss","aud"}
//            plus "cnf": {"jkt"} when DPoP-bound
//   where sub == client_id (no end user), aud == the resource indicator (a
//   string, not an array), scope is the space-separated granted scopes that
//   the resource accepts (absent when none), and there is no nbf.
// JWT access tokens cannot be introspected or revoked: oidc-provider answers
// 400 unsupported_token_type. Use "format": "opaque" for those.
// State (opaque tokens, revocations) lives in memory: a restart forgets it.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import {
  ExchangeLog, customizeJWT, extraTokenClaims, registerTokenExchange,
} from './token_exchange.mjs';

// oidc-provider prints its notices with console.info (stdout); stdout is
// reserved for the one ready line the Go harness parses.
console.info = console.error;
console.log = console.error;

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(1);
}

const configPath = process.env.IDP_CONFIG;
if (!configPath) fail('IDP_CONFIG is not set');
let cfg;
try {
  cfg = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`reading ${configPath}: ${err.message}`);
}

const port = Number.parseInt(process.env.IDP_PORT || '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad IDP_PORT "${process.env.IDP_PORT}"`);

const keys = cfg.keys ?? [];
if (keys.length === 0) fail('config has no "keys"');
const resources = cfg.resources ?? {};
const defaultTTL = cfg.accessTokenTTL ?? 300;
const dpop = cfg.dpop ?? {};

const clients = (cfg.clients ?? []).map((c) => ({
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

// Every scope the configuration mentions is registered with the provider:
// only registered scopes are checked against a client's "scope" allow list,
// so this is what makes a client's allowed scopes binding.
const scopes = new Set(['openid', 'offline_access']);
for (const rs of Object.values(resources)) {
  for (const s of (rs.scope ?? '').split(' ')) if (s) scopes.add(s);
}
for (const c of clients) {
  for (const s of (c.scope ?? '').split(' ')) if (s) scopes.add(s);
}

function resourceServerInfo(indicator) {
  const rs = resources[indicator];
  if (!rs) throw new errors.InvalidTarget(`unknown resource indicator ${JSON.stringify(indicator)}`);
  const info = {
    scope: rs.scope ?? '',
    accessTokenTTL: rs.ttl ?? defaultTTL,
    accessTokenFormat: rs.format ?? 'jwt',
  };
  if (rs.audience) info.audience = rs.audience;
  if (info.accessTokenFormat === 'jwt') {
    info.jwt = { sign: { alg: rs.alg ?? 'RS256', ...(rs.kid ? { kid: rs.kid } : {}) } };
  }
  return info;
}

const server = createServer();
server.on('error', (err) => fail(`listen on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    scopes: [...scopes],
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: {
        enabled: dpop.enabled ?? true,
        nonceSecret: dpop.nonces || dpop.requireNonce ? randomBytes(32) : undefined,
        requireNonce: () => dpop.requireNonce === true,
        allowReplay: dpop.allowReplay === true,
      },
      introspection: {
        enabled: true,
        // Any authenticated confidential client (a resource server) may
        // introspect any token.
        allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none',
      },
      revocation: {
        enabled: true,
        // RFC 7009: only the client the token was issued to may revoke it.
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? cfg.defaultResource ?? undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => resourceServerInfo(indicator),
      },
    },
    extraTokenClaims,
    formats: { customizers: { jwt: customizeJWT } },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTTL,
    },
    clientBasedCORS: () => false,
  });

  // Server-side failures are worth seeing in the test log; client errors
  // (bad secret, bad scope) are answered to the caller and logged briefly.
  provider.on('server_error', (_ctx, err) => console.error('idp: server_error:', err));
  for (const ev of ['grant.error', 'introspection.error', 'revocation.error']) {
    provider.on(ev, (_ctx, err) => console.error(`idp: ${ev}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}${err.error_detail ? `: ${err.error_detail}` : ''}`));
  }

  const exchanges = new ExchangeLog();
  registerTokenExchange(provider, {
    keys,
    resources,
    resourceInfo: async (indicator) => resourceServerInfo(indicator),
    defaultResource: cfg.defaultResource,
    log: exchanges,
  });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/test/exchanges') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(exchanges));
      return;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer, port: actualPort })}\n`);
});

function shutdown() {
  // Exit at once: keep-alive connections must not hold the port open, and
  // there is no state worth draining.
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (process.env.IDP_WATCH_STDIN === '1') {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
