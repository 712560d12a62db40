// RFC 8693 token exchange for the e2e identity provider (see server.mjs for
// the configuration and the wire format it produces).
//
// The grant is registered with provider.registerGrantType, so everything
// oidc-provider does before a grant handler runs applies unchanged: client
// authentication by the client's registered method (client_secret_basic,
// client_secret_post, private_key_jwt), the grant_types allow list of the
// client (it must list urn:ietf:params:oauth:grant-type:token-exchange),
// duplicate-parameter refusal and the scope syntax check. The handler uses
// oidc-provider's grant helpers (lib/helpers/grants.js, "grant
// implementation helpers for custom grant types"; not covered by semver,
// which is one reason package.json pins oidc-provider exactly) for DPoP,
// client scope checks and the token response, and issues the token with the
// same ClientCredentials model the client credentials grant uses, so it is
// the same JWT (typ at+jwt, signed by the resource's key, cnf.jkt when
// DPoP-bound) with two differences made by the hooks below: sub is the
// subject token's sub, and act is added when an actor token was sent.

import { createLocalJWKSet, jwtVerify } from 'jose';
import { errors } from 'oidc-provider';
import * as grants from 'oidc-provider/lib/helpers/grants.js';

const { InvalidGrant, InvalidRequest, InvalidTarget } = errors;

export const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const PARAMETERS = [
  'audience', 'resource', 'scope', 'requested_token_type',
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
];

// Claims of exchanged tokens that the model does not carry: sub and act.
// Keyed by the token model instance, so nothing outlives the request.
const exchangedClaims = new WeakMap();

// extraTokenClaims hook: sub and act of an exchanged token. For opaque
// tokens this is what introspection shows; for JWTs, act lands in the
// payload and sub is put back by customizeJWT (oidc-provider writes
// sub = client_id over it for ClientCredentials).
export function extraTokenClaims(_ctx, token) {
  return exchangedClaims.get(token);
}

// formats.customizers.jwt hook.
export function customizeJWT(_ctx, token, jwt) {
  const claims = exchangedClaims.get(token);
  if (claims) jwt.payload.sub = claims.sub;
}

// ExchangeLog counts exchanges for GET /test/exchanges. Only requests that
// reach the grant handler (the client authenticated and may use the grant)
// are recorded; no token or secret is kept.
export class ExchangeLog {
  count = 0; // tokens issued
  failures = 0; // refused by the handler
  last = null;
  recent = []; // the last 100 records, oldest first

  record(entry) {
    if (entry.result === 'issued') this.count += 1;
    else this.failures += 1;
    this.last = entry;
    this.recent.push(entry);
    if (this.recent.length > 100) this.recent.shift();
    console.error(`idp: token-exchange ${JSON.stringify(entry)}`);
  }

  toJSON() {
    return { count: this.count, failures: this.failures, last: this.last, recent: this.recent };
  }
}

// publicJWKs strips the private members of the configured signing keys.
function publicJWKs(keys) {
  const priv = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']);
  return keys.map((k) => Object.fromEntries(Object.entries(k).filter(([name]) => !priv.has(name))));
}

// registerTokenExchange registers the grant on provider.
//   keys:          the provider's signing keys (private JWKs) to verify
//                  subject and actor tokens with;
//   resources:     the configuration's resources (indicator -> settings);
//   resourceInfo:  indicator -> oidc-provider resource server info;
//   defaultResource: used when the request names no resource or audience;
//   log:           an ExchangeLog.
export function registerTokenExchange(provider, {
  keys, resources, resourceInfo, defaultResource, log,
}) {
  const jwks = createLocalJWKSet({ keys: publicJWKs(keys) });
  const verify = (token, what) => verifyAccessToken(jwks, provider.issuer, token, what);
  const targets = { resources, defaultResource };

  async function handler(ctx) {
    const { params, client } = ctx.oidc;
    const entry = {
      at: new Date().toISOString(),
      client_id: client.clientId,
      resource: params.resource,
      audience: params.audience,
      scope: params.scope,
      subject_token_type: params.subject_token_type,
      actor_token_type: params.actor_token_type,
      requested_token_type: params.requested_token_type,
      dpop: ctx.get('DPoP') !== '',
    };
    try {
      const issued = await exchange(ctx);
      log.record({ ...entry, ...issued, result: 'issued' });
    } catch (err) {
      log.record({
        ...entry,
        result: err.error ?? 'server_error',
        error_description: err.error_description,
        error_detail: err.error_detail,
      });
      throw err;
    }
  }

  async function exchange(ctx) {
    checkParams(ctx.oidc.params);
    // The proof is checked before the tokens, as the client credentials
    // grant checks it before anything else, so a nonce challenge comes
    // first.
    const dPoP = await grants.validateDpop(provider, ctx);
    const { subject, actor } = await parties(ctx);

    const indicator = resolveTarget(ctx.oidc.params, targets);
    const resourceServer = new provider.ResourceServer(indicator, await resourceInfo(indicator));
    const requested = [...grants.validateClientScope(provider, ctx)];
    const scope = requested.filter((s) => resourceServer.scopes.has(s)).join(' ') || undefined;

    const token = await issue(ctx, {
      subject, actor, resourceServer, scope, dPoP,
    });
    return {
      subject_sub: subject.sub,
      subject_client_id: subject.client_id,
      actor_sub: actor?.sub,
      issued_aud: token.aud,
      issued_scope: scope,
      issued_token_type: token.tokenType,
      jkt: dPoP?.thumbprint,
      expires_in: token.expiration,
    };
  }

  // parties verifies the subject token and the actor token, if any.
  async function parties(ctx) {
    const { params, client } = ctx.oidc;
    const subject = await verify(params.subject_token, 'subject_token');
    if (params.actor_token === undefined) return { subject };
    const actor = await verify(params.actor_token, 'actor_token');
    // Anyone can hold someone else's token; only the client it was issued
    // to may name itself the actor with it.
    if (actor.client_id !== client.clientId) {
      throw new InvalidGrant('actor_token was not issued to the authenticated client');
    }
    return { subject, actor };
  }

  // issue saves the new token and sets the token response.
  async function issue(ctx, {
    subject, actor, resourceServer, scope, dPoP,
  }) {
    const { client } = ctx.oidc;
    // The new token does not outlive the subject token.
    const left = subject.exp - Math.floor(Date.now() / 1000);
    const token = new provider.ClientCredentials({
      client,
      resourceServer,
      scope,
      expiresIn: Math.max(1, Math.min(resourceServer.accessTokenTTL, left)),
    });
    if (dPoP) {
      await grants.checkDpopReplay(provider, ctx, dPoP, client.clientId);
      token.setThumbprint('jkt', dPoP.thumbprint);
    }
    grants.checkDpopRequired(provider, ctx, dPoP);

    const claims = { sub: subject.sub };
    if (actor) claims.act = { sub: actor.sub, ...(subject.act ? { act: subject.act } : {}) };
    exchangedClaims.set(token, claims);

    ctx.oidc.entity('ClientCredentials', token);
    ctx.body = grants.buildTokenResponse(provider, {
      accessToken: await token.save(),
      expiresIn: token.expiration,
      issuedTokenType: ACCESS_TOKEN_TYPE,
      scope,
      tokenType: token.tokenType,
    });
    return token;
  }

  provider.registerGrantType(GRANT_TYPE, handler, PARAMETERS);
}

function checkParams(params) {
  if (!params.subject_token) throw new InvalidRequest('missing required parameter \'subject_token\'');
  if (!params.subject_token_type) throw new InvalidRequest('missing required parameter \'subject_token_type\'');
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new InvalidRequest(`unsupported subject_token_type, only ${ACCESS_TOKEN_TYPE} is supported`);
  }
  if (params.actor_token !== undefined && !params.actor_token_type) {
    throw new InvalidRequest('actor_token_type is required with actor_token');
  }
  if (params.actor_token_type !== undefined && params.actor_token === undefined) {
    throw new InvalidRequest('actor_token_type must not be sent without actor_token');
  }
  if (params.actor_token_type !== undefined && params.actor_token_type !== ACCESS_TOKEN_TYPE) {
    throw new InvalidRequest(`unsupported actor_token_type, only ${ACCESS_TOKEN_TYPE} is supported`);
  }
  if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new InvalidRequest(`unsupported requested_token_type, only ${ACCESS_TOKEN_TYPE} is supported`);
  }
}

// resolveTarget picks the resource indicator the new token is for: resource
// (an indicator), or audience (an indicator, or a resource's configured
// audience); both must then name the same resource.
function resolveTarget(params, { resources, defaultResource }) {
  const { resource, audience } = params;
  let byResource;
  let byAudience;
  if (resource !== undefined) {
    if (!resources[resource]) throw new InvalidTarget(`unknown resource ${JSON.stringify(resource)}`);
    byResource = resource;
  }
  if (audience !== undefined) {
    byAudience = resources[audience] ? audience
      : Object.keys(resources).find((ind) => resources[ind].audience === audience);
    if (!byAudience) throw new InvalidTarget(`unknown audience ${JSON.stringify(audience)}`);
  }
  if (byResource && byAudience && byResource !== byAudience) {
    throw new InvalidTarget('resource and audience name different resources');
  }
  const target = byResource ?? byAudience ?? defaultResource;
  if (!target) throw new InvalidRequest('resource or audience is required (no default resource is configured)');
  return target;
}

// verifyAccessToken checks that token is a JWT access token this provider
// issued (signature by one of its keys, iss, typ at+jwt, exp) and returns
// its claims. Tokens of any audience and any client are accepted.
async function verifyAccessToken(jwks, issuer, token, what) {
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'sub'],
    });
    return payload;
  } catch (err) {
    throw new InvalidGrant(`${what} is invalid: ${err.code ?? 'ERR'}: ${err.message}`);
  }
}
