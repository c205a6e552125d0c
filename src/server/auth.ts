import { claimsOf } from './claims.ts';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync, type BigIntStats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { GraphQLError } from 'graphql';
import { LRUCache } from 'lru-cache';
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ConfigError, type Config } from '../config/index.ts';
import type { Caller } from '../rules/index.ts';

type AuthConfig = Config['auth'];

export const ADMIN_SECRET_HEADER = 'x-rowgate-admin-secret';

/** A verified caller and, when a token proved it, the token's `exp` (seconds since the epoch). */
export interface Session {
  caller: Caller;
  /** The token's `exp` claim, or null (no token, or a token without `exp` when `auth.jwt.requireExp` is false). */
  exp: number | null;
  /**
   * When the session stops being valid, in milliseconds since the epoch: `exp` plus
   * `auth.jwt.clockTolerance`. Long-lived transports (WebSocket) close at this instant.
   */
  expiresAt: number | null;
}

export interface Authenticator {
  /** The caller of an HTTP request (Authorization and admin-secret headers). */
  fromRequest(headers: Headers): Promise<Caller>;
  /** The caller of a WebSocket, from its `connection_init` payload. */
  fromConnectionParams(params: Record<string, unknown> | undefined): Promise<Caller>;
  /** As `fromRequest`, with the token's expiry. */
  sessionFromRequest(headers: Headers): Promise<Session>;
  /** As `fromConnectionParams`, with the token's expiry (sockets close at `expiresAt`). */
  sessionFromConnectionParams(params: Record<string, unknown> | undefined): Promise<Session>;
}

const HMAC = new Set(['HS256', 'HS384', 'HS512']);

/** HMAC-signed tokens whose verification is remembered (see `verify`). */
const VERIFIED_TOKENS_KEPT = 10_000;
const ASYMMETRIC = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']);

/** Every authentication failure: a GraphQLError with a stable code, HTTP 401, and no token text. */
export function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}

/**
 * Verifies callers with `jose`. HMAC algorithms use `auth.jwt.secret`; asymmetric ones use the
 * keys of `auth.jwt.jwksFile`, re-read whenever the file changes so keys rotate without a restart.
 * Only algorithms listed in `auth.jwt.algorithms` are accepted (`none` never is), and, unless
 * `auth.jwt.requireExp` is false, only tokens with an `exp` claim.
 * Throws ConfigError when the auth section cannot work (unknown algorithm, unreadable JWKS file).
 */
export function createAuthenticator(auth: AuthConfig): Authenticator {
  const { jwt } = auth;
  for (const alg of jwt.algorithms) {
    if (!HMAC.has(alg) && !ASYMMETRIC.has(alg)) {
      throw new ConfigError(`auth.jwt.algorithms: "${alg}" is not a supported JWS algorithm (use HS256, RS256, ES256, …)`);
    }
  }
  const allowed = jwt.algorithms;
  if (jwt.jwksFile && !allowed.some((a) => ASYMMETRIC.has(a))) {
    throw new ConfigError(`auth.jwt.jwksFile is set but auth.jwt.algorithms (${allowed.join(', ')}) lists no algorithm that uses it; add RS256 or ES256`);
  }
  const secret = jwt.secret ? new TextEncoder().encode(jwt.secret) : null;
  const jwks = jwt.jwksFile ? new JwksFile(jwt.jwksFile) : null;
  // Given raw bytes, jose imports them as a WebCrypto key on every verify (a measurable share of a
  // request's CPU); the key for each HMAC hash is imported once instead. Only allowed algorithms
  // reach getKey, so this holds at most three keys.
  const hmacKeys = new Map<string, Promise<CryptoKey>>();
  const hmacKey = (alg: string, raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> => {
    let key = hmacKeys.get(alg);
    if (!key) {
      key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify']);
      hmacKeys.set(alg, key);
    }
    return key;
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    const alg = header.alg ?? '';
    if (HMAC.has(alg)) {
      if (!secret) throw unauthenticated(`token is signed with ${alg} but no auth.jwt.secret is configured`);
      return hmacKey(alg, secret);
    }
    // jose's key set imports each of its keys once (per key and algorithm, so per `kid`) and keeps
    // them for as long as the set lives, i.e. until the file changes.
    if (!jwks) throw unauthenticated(`token is signed with ${alg} but no auth.jwt.jwksFile is configured`);
    return (await jwks.keys())(header, token);
  };

  const adminDigest = auth.adminSecret ? digest(auth.adminSecret) : null;
  const adminHeaders = [ADMIN_SECRET_HEADER, ...auth.adminSecretHeaders.map((h) => h.toLowerCase()).filter((h) => h !== ADMIN_SECRET_HEADER)];

  // A client sends the same token with every request until it renews it, and an HMAC verify through
  // WebCrypto cost ~0.2 ms of the gateway's thread per request (bench:query's profile). A token that
  // jose verified with the configured secret is the same token for as long as its exact text is the
  // same and its `exp` (with clockTolerance, as jose counts it) has not passed: such tokens are kept
  // (bounded, least recently used first) and checked against the clock on each use; an expired one
  // goes through jose again, which gives its error. `nbf` held once holds from then on. Tokens
  // verified with a JWKS key are not kept, so a key removed from the file stops them at once.
  const verified = new LRUCache<string, { payload: JWTPayload }>({ max: VERIFIED_TOKENS_KEPT });
  const stillValid = (payload: JWTPayload) => payload.exp === undefined || Math.floor(Date.now() / 1000) < payload.exp + jwt.clockTolerance;

  async function verify(token: string): Promise<{ payload: JWTPayload }> {
    const kept = verified.get(token);
    if (kept && stillValid(kept.payload)) return kept;
    try {
      const result = await jwtVerify(token, getKey, {
        algorithms: allowed,
        clockTolerance: jwt.clockTolerance,
        ...(jwt.issuer !== null ? { issuer: jwt.issuer } : {}),
        ...(jwt.audience !== null ? { audience: jwt.audience } : {}),
      });
      if (HMAC.has(result.protectedHeader.alg)) verified.set(token, { payload: result.payload });
      else verified.delete(token);
      return { payload: result.payload };
    } catch (err) {
      verified.delete(token);
      throw describeJoseError(err, auth);
    }
  }

  async function session(headers: Headers): Promise<Session> {
    const authorization = headers.get('authorization');
    let tokenSession: Session | null = null;
    if (authorization !== null) {
      const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(authorization.trim());
      if (!match?.[1]) throw unauthenticated('the Authorization header must be "Bearer <token>"');
      const { payload } = await verify(match[1]);
      const claims = claimsOf(payload, jwt.claimsNamespace);
      const sender = senderOf(claims, jwt.senderClaim);
      const exp = typeof payload.exp === 'number' ? payload.exp : null;
      // A token that never expires stays a credential for good once it leaks.
      if (exp === null && jwt.requireExp) throw unauthenticated('the token has no "exp" claim, so it would never expire (auth.jwt.requireExp)');
      tokenSession = {
        caller: { admin: false, identity: { sender, claims } },
        exp,
        expiresAt: exp === null ? null : (exp + jwt.clockTolerance) * 1000,
      };
    }
    // x-rowgate-admin-secret, or an alias such as Hasura's x-hasura-admin-secret (auth.adminSecretHeaders).
    const adminHeader = adminHeaders.find((h) => headers.get(h) !== null);
    const adminSecret = adminHeader === undefined ? null : headers.get(adminHeader);
    if (adminSecret !== null) {
      if (!adminDigest) throw unauthenticated(`${adminHeader} was sent but no auth.adminSecret is configured`);
      // Both sides are hashed first so the comparison is constant-time whatever the lengths.
      if (!timingSafeEqual(digest(adminSecret), adminDigest)) throw unauthenticated(`${adminHeader} is wrong`);
      // An admin may also send a token: rules are bypassed, but `:sender` presets still use it.
      return tokenSession
        ? { ...tokenSession, caller: { ...tokenSession.caller, admin: true } }
        : { caller: { admin: true, identity: { sender: null, claims: {} } }, exp: null, expiresAt: null };
    }
    if (tokenSession) return tokenSession;
    if (auth.anonymous) return { caller: { admin: false, identity: { sender: null, claims: {} } }, exp: null, expiresAt: null };
    throw unauthenticated('authentication required: send "Authorization: Bearer <token>"');
  }

  const sessionFromConnectionParams = (params: Record<string, unknown> | undefined) => session(connectionHeaders(params));
  return {
    sessionFromRequest: session,
    sessionFromConnectionParams,
    fromRequest: async (headers) => (await session(headers)).caller,
    fromConnectionParams: async (params) => (await sessionFromConnectionParams(params)).caller,
  };
}

/**
 * The headers a WebSocket client sent in `connection_init`: `{ Authorization: "Bearer …" }` or
 * `{ headers: { Authorization: "Bearer …" } }`, names in any case. Non-string values are ignored.
 */
export function connectionHeaders(params: Record<string, unknown> | undefined): Headers {
  const headers = new Headers();
  const add = (source: Record<string, unknown>) => {
    for (const [name, value] of Object.entries(source)) {
      if (typeof value !== 'string') continue;
      try {
        headers.set(name, value);
      } catch {
        // Not a valid header name or value: it cannot be a credential either.
      }
    }
  };
  if (params && typeof params === 'object') {
    const nested = params['headers'];
    if (nested && typeof nested === 'object' && !Array.isArray(nested)) add(nested as Record<string, unknown>);
    add(params);
  }
  return headers;
}

function senderOf(payload: JWTPayload, claim: string): string {
  const value = payload[claim];
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (value === undefined || value === null || value === '') throw unauthenticated(`the token has no "${claim}" claim (auth.jwt.senderClaim), so it names no sender`);
  throw unauthenticated(`the token's "${claim}" claim (auth.jwt.senderClaim) must be a string or a number`);
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Turns jose's errors into UNAUTHENTICATED errors that say what is wrong, never echoing the token. */
function describeJoseError(err: unknown, auth: AuthConfig): GraphQLError {
  if (err instanceof GraphQLError) return err;
  if (err instanceof errors.JWTExpired) {
    const exp = typeof err.payload['exp'] === 'number' ? ` at ${new Date(err.payload['exp'] * 1000).toISOString()}` : '';
    return unauthenticated(`the token expired${exp}`);
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return unauthenticated('the token is not valid yet (nbf is in the future)');
      case 'iss':
        return unauthenticated(`the token's issuer is wrong: expected "${auth.jwt.issuer ?? ''}"`);
      case 'aud':
        return unauthenticated(`the token's audience is wrong: expected "${auth.jwt.audience ?? ''}"`);
      default:
        return unauthenticated(`the token's "${err.claim}" claim is invalid (${err.reason})`);
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return unauthenticated(`the token's signing algorithm is not allowed (allowed: ${auth.jwt.algorithms.join(', ')})`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return unauthenticated('the token has a bad signature');
  if (err instanceof errors.JWKSNoMatchingKey) return unauthenticated('no key in the configured key set (auth.jwt.jwksFile) matches the token');
  if (err instanceof errors.JWKSMultipleMatchingKeys) return unauthenticated('several keys in the configured key set match the token; give the token a "kid"');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return unauthenticated('the token is malformed (expected a signed JWT)');
  if (err instanceof errors.JOSENotSupported) return unauthenticated('the token uses an unsupported algorithm or key type');
  if (err instanceof errors.JOSEError) return unauthenticated('the token cannot be verified');
  // Key material that jose refuses (e.g. a JWK of the wrong type) is a token problem too.
  if (err instanceof TypeError) return unauthenticated('the token cannot be verified with the configured keys');
  throw err;
}

/**
 * A JWKS file that is re-read when it changes: every use compares its (mtime, size, inode) with
 * the last read, which costs one `stat`. A file that is being rewritten and does not parse yet
 * keeps the previous key set until it does.
 */
class JwksFile {
  private stamp: string;
  private current: ReturnType<typeof createLocalJWKSet>;
  private reading: Promise<void> | null = null;

  constructor(private readonly path: string) {
    try {
      // Stamp first: a change that lands between the stat and the read is picked up on next use.
      this.stamp = stampOf(statSync(path, { bigint: true }));
      this.current = createLocalJWKSet(parseJwks(readFileSync(path, 'utf8')));
    } catch (err) {
      throw new ConfigError(`auth.jwt.jwksFile ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async keys(): Promise<ReturnType<typeof createLocalJWKSet>> {
    await this.refresh();
    return this.current;
  }

  private refresh(): Promise<void> {
    this.reading ??= (async () => {
      try {
        const stamp = stampOf(await stat(this.path, { bigint: true }));
        if (stamp === this.stamp) return;
        const text = await readFile(this.path, 'utf8');
        this.current = createLocalJWKSet(parseJwks(text));
        this.stamp = stamp;
      } catch {
        // Missing or half-written: keep the keys we have and try again on the next use.
      }
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }
}

function stampOf(s: BigIntStats): string {
  return `${s.mtimeNs}:${s.size}:${s.ino}`;
}

function parseJwks(text: string): JSONWebKeySet {
  const value: unknown = JSON.parse(text);
  if (!value || typeof value !== 'object' || !Array.isArray((value as { keys?: unknown }).keys)) {
    throw new Error('not a JSON Web Key Set ({ "keys": [ … ] })');
  }
  return value as JSONWebKeySet;
}

/**
 * What `serve` warns about at startup when the auth section can authenticate nobody: no HMAC
 * secret an accepted algorithm uses, no JWKS file and no admin secret. Null when someone can sign in.
 */
export function noAuthenticationWarning(auth: AuthConfig): string | null {
  const { jwt } = auth;
  const usableSecret = jwt.secret !== null && jwt.algorithms.some((a) => HMAC.has(a));
  if (usableSecret || jwt.jwksFile || auth.adminSecret) return null;
  const fix = 'set auth.jwt.secret (or ROWGATE_JWT_SECRET) with an HS256 algorithm, auth.jwt.jwksFile, or auth.adminSecret (or ROWGATE_ADMIN_SECRET)';
  const consequence = auth.anonymous ? 'every request is anonymous (:sender is null)' : 'every request is refused with 401';
  const unused = jwt.secret !== null ? ` (auth.jwt.secret is set, but auth.jwt.algorithms ${jwt.algorithms.join(', ')} lists no HMAC algorithm)` : '';
  return `no way to authenticate anyone${unused}: ${consequence}; ${fix}`;
}
