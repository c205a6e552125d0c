import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphQLError } from 'graphql';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/index.ts';
import { createAuthenticator } from '../src/server/auth.ts';
import { signToken } from '../src/server/token.ts';
import { codes, SECRET, startTiny, type TinyGateway } from './support/server.ts';

const now = () => Math.floor(Date.now() / 1000);
const secretKey = (secret = SECRET) => new TextEncoder().encode(secret);

/** An HS256 token with exactly these claims (no defaults), signed with `secret`. */
function hs256(claims: JWTPayload, secret = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secretKey(secret));
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function whoami(gw: TinyGateway, headers: Record<string, string>) {
  return gw.post({ query: '{ whoami }' }, headers);
}

async function expectUnauthenticated(gw: TinyGateway, headers: Record<string, string>, message: RegExp, token?: string) {
  const calls = gw.state.calls;
  const res = await whoami(gw, headers);
  expect(res.status).toBe(401);
  expect(codes(res.body)).toEqual(['UNAUTHENTICATED']);
  expect(res.body.errors?.[0]?.message).toMatch(message);
  expect(res.body.data ?? null).toBeNull();
  if (token) expect(JSON.stringify(res.body)).not.toContain(token);
  // No resolver ran for a refused request.
  expect(gw.state.calls).toBe(calls);
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('HS256 tokens', async () => {
  const gw = await startTiny({ auth: { jwt: { issuer: 'https://issuer.example', audience: 'rowgate-tests' } } });
  const good = (claims: JWTPayload = {}) => hs256({ sub: 'alice', iss: 'https://issuer.example', aud: 'rowgate-tests', exp: now() + 60, ...claims });

  it('accepts a valid token and passes the sender and every claim to resolvers', async () => {
    const token = await good({ org: 7, roles: ['a', 'b'] });
    const res = await whoami(gw, bearer(token));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { whoami: 'alice' } });
    const claims = await gw.post({ query: '{ org: claim(name: "org") roles: claim(name: "roles") iss: claim(name: "iss") }' }, bearer(token));
    expect(claims.body.data).toEqual({ org: '7', roles: '["a","b"]', iss: '"https://issuer.example"' });
  });

  it('accepts the token `rowgate token` signs (signToken sets issuer and audience)', async () => {
    const token = await signToken(gw.config, { sender: 'bob', expires: '5m' });
    expect((await whoami(gw, bearer(token))).body).toEqual({ data: { whoami: 'bob' } });
  });

  it('refuses a request without a token', async () => {
    await expectUnauthenticated(gw, {}, /authentication required/);
  });

  it('refuses malformed tokens and Authorization headers', async () => {
    await expectUnauthenticated(gw, bearer('not-a-jwt'), /malformed/, 'not-a-jwt');
    await expectUnauthenticated(gw, bearer('a.b.c'), /malformed/);
    const token = await good();
    await expectUnauthenticated(gw, { authorization: `Basic ${token}` }, /must be "Bearer <token>"/, token);
    await expectUnauthenticated(gw, { authorization: 'Bearer' }, /must be "Bearer <token>"/);
  });

  it('refuses an expired token and says so', async () => {
    const token = await good({ exp: now() - 10 });
    await expectUnauthenticated(gw, bearer(token), /expired/, token);
  });

  it('refuses a token that is not valid yet (nbf)', async () => {
    const token = await good({ nbf: now() + 120 });
    await expectUnauthenticated(gw, bearer(token), /not valid yet/, token);
  });

  it('refuses a token with a wrong signature', async () => {
    const token = await hs256({ sub: 'alice', iss: 'https://issuer.example', aud: 'rowgate-tests', exp: now() + 60 }, 'another-secret-another-secret-another');
    await expectUnauthenticated(gw, bearer(token), /bad signature/, token);
    // A valid token whose payload was swapped keeps its signature, which no longer matches.
    const [header, , signature] = (await good()).split('.');
    const forged = `${header}.${b64({ sub: 'mallory', iss: 'https://issuer.example', aud: 'rowgate-tests', exp: now() + 60 })}.${signature}`;
    await expectUnauthenticated(gw, bearer(forged), /bad signature/, forged);
  });

  it('refuses a wrong issuer and a wrong audience', async () => {
    const wrongIss = await good({ iss: 'https://evil.example' });
    await expectUnauthenticated(gw, bearer(wrongIss), /issuer is wrong/, wrongIss);
    const wrongAud = await good({ aud: 'someone-else' });
    await expectUnauthenticated(gw, bearer(wrongAud), /audience is wrong/, wrongAud);
    const noIss = await hs256({ sub: 'alice', aud: 'rowgate-tests', exp: now() + 60 });
    await expectUnauthenticated(gw, bearer(noIss), /issuer/, noIss);
  });

  it('refuses alg "none" (an unsigned token)', async () => {
    const payload = { sub: 'alice', iss: 'https://issuer.example', aud: 'rowgate-tests', exp: now() + 60 };
    for (const header of [{ alg: 'none' }, { alg: 'none', typ: 'JWT' }, { alg: 'NONE' }]) {
      for (const token of [`${b64(header)}.${b64(payload)}.`, `${b64(header)}.${b64(payload)}`]) {
        await expectUnauthenticated(gw, bearer(token), /not allowed|malformed/, token);
      }
    }
  });

  it('refuses a sender that is missing, empty or not a string or number', async () => {
    await expectUnauthenticated(gw, bearer(await hs256({ iss: 'https://issuer.example', aud: 'rowgate-tests', exp: now() + 60 })), /no "sub" claim/);
    await expectUnauthenticated(gw, bearer(await good({ sub: '' })), /no "sub" claim/);
  });
});

describe('sender claim', async () => {
  const gw = await startTiny({ auth: { jwt: { senderClaim: 'uid' } } });

  it('reads the sender from the configured claim and turns a number into a string', async () => {
    expect((await whoami(gw, bearer(await hs256({ uid: 42, sub: 'ignored', exp: now() + 60 })))).body).toEqual({ data: { whoami: '42' } });
    expect((await whoami(gw, bearer(await hs256({ uid: 'u-1', exp: now() + 60 })))).body).toEqual({ data: { whoami: 'u-1' } });
  });

  it('refuses a sender that is an object, a list or a boolean', async () => {
    for (const uid of [{ id: 1 }, [1], true]) {
      await expectUnauthenticated(gw, bearer(await hs256({ uid, exp: now() + 60 } as JWTPayload)), /"uid" claim .* must be a string or a number/);
    }
    await expectUnauthenticated(gw, bearer(await hs256({ sub: 'alice', exp: now() + 60 })), /no "uid" claim/);
  });

  it('signToken puts the sender into the configured claim', async () => {
    const token = await signToken(gw.config, { sender: 'carol', claims: { team: 'x' } });
    expect((await whoami(gw, bearer(token))).body).toEqual({ data: { whoami: 'carol' } });
  });
});

describe('clock tolerance', async () => {
  const strict = await startTiny();
  const lenient = await startTiny({ auth: { jwt: { clockTolerance: 30 } } });

  it('accepts a token expired for less than the tolerance, and refuses it without tolerance', async () => {
    const token = await hs256({ sub: 'alice', exp: now() - 10 });
    expect((await whoami(lenient, bearer(token))).body).toEqual({ data: { whoami: 'alice' } });
    await expectUnauthenticated(strict, bearer(token), /expired/);
    await expectUnauthenticated(lenient, bearer(await hs256({ sub: 'alice', exp: now() - 60 })), /expired/);
  });

  it('accepts a token whose nbf is within the tolerance', async () => {
    const token = await hs256({ sub: 'alice', nbf: now() + 10, exp: now() + 60 });
    expect((await whoami(lenient, bearer(token))).body).toEqual({ data: { whoami: 'alice' } });
    await expectUnauthenticated(strict, bearer(token), /not valid yet/);
  });

  it('reports expiry plus tolerance for long-lived transports', async () => {
    const exp = now() + 100;
    const auth = parseConfig({ tables: {}, auth: { jwt: { secret: SECRET, clockTolerance: 30 } } }, {}).auth;
    const session = await createAuthenticator(auth).sessionFromRequest(new Headers(bearer(await hs256({ sub: 'a', exp }))));
    expect(session.exp).toBe(exp);
    expect(session.expiresAt).toBe((exp + 30) * 1000);
  });
});

describe('tokens without exp (auth.jwt.requireExp)', async () => {
  const strict = await startTiny({ auth: { adminSecret: 'the-admin-secret' } });
  const lenient = await startTiny({ auth: { jwt: { requireExp: false } } });

  it('refuses a well-signed token without exp by default, and says why', async () => {
    expect(strict.config.auth.jwt.requireExp).toBe(true);
    const token = await hs256({ sub: 'alice' });
    await expectUnauthenticated(strict, bearer(token), /no "exp" claim.*auth\.jwt\.requireExp/, token);
    // The admin secret does not make the token acceptable.
    await expectUnauthenticated(strict, { 'x-rowgate-admin-secret': 'the-admin-secret', ...bearer(token) }, /no "exp" claim/, token);
  });

  it('accepts the same token when requireExp is false, with no expiry for long-lived transports', async () => {
    const token = await hs256({ sub: 'alice' });
    expect((await whoami(lenient, bearer(token))).body).toEqual({ data: { whoami: 'alice' } });
    const session = await createAuthenticator(lenient.config.auth).sessionFromRequest(new Headers(bearer(token)));
    expect(session).toMatchObject({ exp: null, expiresAt: null });
  });

  it('accepts tokens signed by `rowgate token` (the demo\'s) under the default', async () => {
    const token = await signToken(strict.config, { sender: 'bob', expires: '24h' });
    expect((await whoami(strict, bearer(token))).body).toEqual({ data: { whoami: 'bob' } });
  });
});

describe('RS256 and ES256 through a JWKS file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rowgate-jwks-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const jwksPath = join(dir, 'jwks.json');

  const rsa = await generateKeyPair('RS256', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = async (key: CryptoKey, kid: string, alg: string) => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' });
  /** Replaces the key set the way a deployment would: write aside, then rename over the old file. */
  const writeJwks = (keys: unknown[]) => {
    writeFileSync(`${jwksPath}.tmp`, JSON.stringify({ keys }));
    renameSync(`${jwksPath}.tmp`, jwksPath);
  };
  writeJwks([await publicJwk(rsa.publicKey, 'rsa-1', 'RS256'), await publicJwk(ec.publicKey, 'ec-1', 'ES256')]);

  const sign = (key: CryptoKey, alg: string, kid: string, claims: JWTPayload = {}) =>
    new SignJWT({ sub: 'dana', exp: now() + 60, ...claims }).setProtectedHeader({ alg, kid }).sign(key);

  const gw = await startTiny({ auth: { jwt: { secret: null, algorithms: ['RS256', 'ES256'], jwksFile: jwksPath } } });

  it('accepts RS256 and ES256 tokens signed by keys of the set', async () => {
    expect((await whoami(gw, bearer(await sign(rsa.privateKey, 'RS256', 'rsa-1')))).body).toEqual({ data: { whoami: 'dana' } });
    expect((await whoami(gw, bearer(await sign(ec.privateKey, 'ES256', 'ec-1')))).body).toEqual({ data: { whoami: 'dana' } });
  });

  it('refuses an HS256 token when only RS256 and ES256 are allowed', async () => {
    const token = await hs256({ sub: 'dana', exp: now() + 60 });
    await expectUnauthenticated(gw, bearer(token), /algorithm is not allowed/, token);
  });

  it('refuses a token signed by a key outside the set', async () => {
    const stranger = await generateKeyPair('RS256');
    await expectUnauthenticated(gw, bearer(await sign(stranger.privateKey, 'RS256', 'rsa-1')), /bad signature/);
    await expectUnauthenticated(gw, bearer(await sign(stranger.privateKey, 'RS256', 'unknown-kid')), /no key in the configured key set/);
  });

  it('picks up a rotated key set without a restart', async () => {
    const oldToken = await sign(rsa.privateKey, 'RS256', 'rsa-1');
    expect((await whoami(gw, bearer(oldToken))).body).toEqual({ data: { whoami: 'dana' } });

    const next = await generateKeyPair('RS256', { extractable: true });
    writeJwks([await publicJwk(next.publicKey, 'rsa-2', 'RS256')]);

    await expectUnauthenticated(gw, bearer(oldToken), /no key in the configured key set/, oldToken);
    const newToken = await sign(next.privateKey, 'RS256', 'rsa-2', { sub: 'erin' });
    expect((await whoami(gw, bearer(newToken))).body).toEqual({ data: { whoami: 'erin' } });
  });

  it('keeps the last good key set while the file does not parse', async () => {
    const current = await generateKeyPair('ES256', { extractable: true });
    writeJwks([await publicJwk(current.publicKey, 'ec-2', 'ES256')]);
    const token = await sign(current.privateKey, 'ES256', 'ec-2');
    expect((await whoami(gw, bearer(token))).body).toEqual({ data: { whoami: 'dana' } });
    writeFileSync(jwksPath, '{"keys": [');
    expect((await whoami(gw, bearer(token))).body).toEqual({ data: { whoami: 'dana' } });
  });

  it('fails at startup on a missing JWKS file or a JWKS file no allowed algorithm uses', () => {
    const auth = (jwt: Record<string, unknown>) => parseConfig({ tables: {}, auth: { jwt } }, {}).auth;
    expect(() => createAuthenticator(auth({ algorithms: ['RS256'], jwksFile: join(dir, 'missing.json') }))).toThrow(ConfigError);
    expect(() => createAuthenticator(auth({ algorithms: ['HS256'], jwksFile: jwksPath }))).toThrow(/add RS256 or ES256/);
    expect(() => createAuthenticator(auth({ algorithms: ['none'] }))).toThrow(/not a supported JWS algorithm/);
  });
});

/** A JWKS file (removed after the tests) holding one RSA key, `rsa-1`. */
async function rsaJwksFile(): Promise<{ jwksPath: string; rsa: { privateKey: CryptoKey } }> {
  const dir = mkdtempSync(join(tmpdir(), 'rowgate-keys-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const jwksPath = join(dir, 'jwks.json');
  const rsa = await generateKeyPair('RS256', { extractable: true });
  writeFileSync(jwksPath, JSON.stringify({ keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }] }));
  return { jwksPath, rsa };
}

describe('verification keys are imported once', async () => {
  const { jwksPath, rsa } = await rsaJwksFile();
  const rs256 = (sub: string) => new SignJWT({ sub, exp: now() + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
  const hs512 = (sub: string) => new SignJWT({ sub, exp: now() + 60 }).setProtectedHeader({ alg: 'HS512' }).sign(secretKey());

  // Importing a key per verify cost a measurable share of each request's CPU (bench:query).
  it('imports the HMAC key once per algorithm and each JWKS key once, however many tokens are verified', async () => {
    const auth = parseConfig({ tables: {}, auth: { jwt: { secret: SECRET, algorithms: ['HS256', 'HS512', 'RS256'], jwksFile: jwksPath } } }, {}).auth;
    const exp = now() + 60;
    const tokens = [await hs256({ sub: 'a', exp }), await hs256({ sub: 'b', exp }), await hs512('c'), await hs512('d'), await rs256('e'), await rs256('f'), await hs256({ sub: 'g', exp })];
    const importKey = vi.spyOn(crypto.subtle, 'importKey');
    try {
      const authenticator = createAuthenticator(auth);
      const senders = [];
      for (const token of tokens) senders.push((await authenticator.fromRequest(new Headers(bearer(token)))).identity.sender);
      expect(senders).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
      // HS256, HS512, and the one RSA key.
      expect(importKey).toHaveBeenCalledTimes(3);
      // A cached key still checks the signature.
      await expect(authenticator.fromRequest(new Headers(bearer(await hs256({ sub: 'a', exp }, 'another-secret-another-secret-another'))))).rejects.toThrow(/bad signature/);
    } finally {
      importKey.mockRestore();
    }
  });
});

describe('verified tokens are kept', async () => {
  const { jwksPath, rsa } = await rsaJwksFile();
  const auth = parseConfig({ tables: {}, auth: { jwt: { secret: SECRET, algorithms: ['HS256', 'RS256'], jwksFile: jwksPath, clockTolerance: 5 } } }, {}).auth;

  // The same HMAC token on every request: one signature check while it lasts (bench:query's profile).
  it("checks an HMAC token's signature once, and refuses it from cache once exp + clockTolerance has passed", async () => {
    const exp = now() + 60;
    const token = await hs256({ sub: 'a', exp });
    const verify = vi.spyOn(crypto.subtle, 'verify');
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const authenticator = createAuthenticator(auth);
      for (let i = 0; i < 3; i++) expect((await authenticator.fromRequest(new Headers(bearer(token)))).identity.sender).toBe('a');
      expect(verify).toHaveBeenCalledTimes(1);
      // A token differing in one byte of its signature is checked, and refused.
      const tampered = token.slice(0, -10) + (token.at(-10) === 'A' ? 'B' : 'A') + token.slice(-9);
      await expect(authenticator.fromRequest(new Headers(bearer(tampered)))).rejects.toThrow(/signature|malformed/);
      vi.setSystemTime((exp + 4) * 1000);
      expect((await authenticator.fromRequest(new Headers(bearer(token)))).identity.sender).toBe('a');
      vi.setSystemTime((exp + 5) * 1000);
      await expect(authenticator.fromRequest(new Headers(bearer(token)))).rejects.toThrow(/expired/);
    } finally {
      vi.useRealTimers();
      verify.mockRestore();
    }
  });

  it('checks a JWKS-signed token every time (a key removed from the file stops it at once)', async () => {
    const token = await new SignJWT({ sub: 'r', exp: now() + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    const verify = vi.spyOn(crypto.subtle, 'verify');
    try {
      const authenticator = createAuthenticator(auth);
      for (let i = 0; i < 2; i++) expect((await authenticator.fromRequest(new Headers(bearer(token)))).identity.sender).toBe('r');
      expect(verify).toHaveBeenCalledTimes(2);
    } finally {
      verify.mockRestore();
    }
  });
});

describe('anonymous access', async () => {
  const closed = await startTiny();
  const open = await startTiny({ auth: { anonymous: true } });

  it('gives a caller without a token a null sender when anonymous is on', async () => {
    expect((await whoami(open, {})).body).toEqual({ data: { whoami: null } });
    expect((await open.post({ query: '{ claim(name: "sub") }' })).body).toEqual({ data: { claim: 'null' } });
  });

  it('refuses a caller without a token when anonymous is off', async () => {
    await expectUnauthenticated(closed, {}, /authentication required/);
  });

  it('never falls back to anonymous for a bad token', async () => {
    await expectUnauthenticated(open, bearer(await hs256({ sub: 'x', exp: now() - 10 })), /expired/);
    await expectUnauthenticated(open, bearer('garbage'), /malformed/);
  });
});

describe('admin secret', async () => {
  const gw = await startTiny({ auth: { adminSecret: 'the-admin-secret' } });
  const noAdmin = await startTiny({ auth: { anonymous: true } });

  it('makes the caller an admin', async () => {
    expect((await whoami(gw, { 'x-rowgate-admin-secret': 'the-admin-secret' })).body).toEqual({ data: { whoami: 'admin:' } });
  });

  it('keeps the identity of a token sent with it', async () => {
    const res = await whoami(gw, { 'X-Rowgate-Admin-Secret': 'the-admin-secret', ...bearer(await hs256({ sub: 'frank', exp: now() + 60 })) });
    expect(res.body).toEqual({ data: { whoami: 'admin:frank' } });
  });

  it('refuses a wrong admin secret instead of falling back to the token or anonymous', async () => {
    const token = await hs256({ sub: 'frank', exp: now() + 60 });
    await expectUnauthenticated(gw, { 'x-rowgate-admin-secret': 'the-admin-secreT' }, /admin-secret is wrong/);
    await expectUnauthenticated(gw, { 'x-rowgate-admin-secret': '', ...bearer(token) }, /admin-secret is wrong/);
    await expectUnauthenticated(gw, { 'x-rowgate-admin-secret': 'the-admin-secret-and-more' }, /admin-secret is wrong/);
    await expectUnauthenticated(noAdmin, { 'x-rowgate-admin-secret': 'anything' }, /no auth.adminSecret is configured/);
  });
});

describe('WebSocket connection params', () => {
  const auth = parseConfig({ tables: {}, auth: { jwt: { secret: SECRET }, adminSecret: 'adm' } }, {}).auth;
  const authenticator = createAuthenticator(auth);

  it('reads Authorization at the top level or under headers, in any case', async () => {
    const token = await hs256({ sub: 'gina', exp: now() + 60 });
    for (const params of [
      { Authorization: `Bearer ${token}` },
      { authorization: `Bearer ${token}` },
      { headers: { Authorization: `Bearer ${token}` } },
      { headers: { AUTHORIZATION: `bearer ${token}` } },
    ]) {
      expect(await authenticator.fromConnectionParams(params)).toEqual({ admin: false, identity: { sender: 'gina', claims: { sub: 'gina', exp: expect.any(Number) } } });
    }
    expect((await authenticator.fromConnectionParams({ 'X-Rowgate-Admin-Secret': 'adm' })).admin).toBe(true);
  });

  it('refuses missing, non-string and bad credentials with UNAUTHENTICATED', async () => {
    for (const params of [undefined, {}, { Authorization: 42 }, { headers: 'Bearer x' }, { Authorization: 'Bearer nope' }]) {
      const err = await authenticator.fromConnectionParams(params as Record<string, unknown> | undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GraphQLError);
      expect((err as GraphQLError).extensions['code']).toBe('UNAUTHENTICATED');
    }
  });

  it('tells when the session expires', async () => {
    const exp = now() + 300;
    const session = await authenticator.sessionFromConnectionParams({ Authorization: `Bearer ${await hs256({ sub: 'h', exp })}` });
    expect(session).toMatchObject({ exp, expiresAt: exp * 1000, caller: { admin: false, identity: { sender: 'h' } } });
  });
});

describe('signToken', () => {
  it('needs a secret and HS256', async () => {
    const noSecret = parseConfig({ tables: {} }, {});
    await expect(signToken(noSecret, { sender: 'a' })).rejects.toThrow(/no JWT secret/);
    const rsOnly = parseConfig({ tables: {}, auth: { jwt: { secret: SECRET, algorithms: ['RS256'] } } }, {});
    await expect(signToken(rsOnly, { sender: 'a' })).rejects.toThrow(/does not include HS256/);
  });
});

describe('tokens and headers of an app migrated from Hasura', async () => {
  const NS = 'https://hasura.io/jwt/claims';
  const gw = await startTiny({ auth: { jwt: { claimsNamespace: NS, senderClaim: 'x-hasura-user-id' }, adminSecret: 'hasura-admin', adminSecretHeaders: ['X-Hasura-Admin-Secret'] } });
  const hasuraClaims = { 'x-hasura-user-id': 'u42', 'x-hasura-org-id': '7', 'x-hasura-default-role': 'user', 'x-hasura-allowed-roles': ['user'] };

  it('reads the sender and the claims from the namespace, dashes as underscores for rules', async () => {
    for (const inner of [hasuraClaims, JSON.stringify(hasuraClaims)]) {
      const token = await hs256({ sub: 'auth0|abc', exp: now() + 60, [NS]: inner });
      expect((await whoami(gw, bearer(token))).body).toEqual({ data: { whoami: 'u42' } });
      const claims = await gw.post({ query: '{ org: claim(name: "org_id") raw: claim(name: "x-hasura-org-id") role: claim(name: "default_role") sub: claim(name: "sub") }' }, bearer(token));
      // `claim` answers each claim's JSON text.
      expect(claims.body.data).toEqual({ org: '"7"', raw: '"7"', role: '"user"', sub: '"auth0|abc"' });
    }
  });

  it('the namespace cannot override registered claims, and a token without it names no sender', async () => {
    const token = await hs256({ sub: 'real', exp: now() + 60, [NS]: { 'x-hasura-user-id': 'u1', sub: 'forged', exp: now() + 1_000_000 } });
    const claims = await gw.post({ query: '{ sub: claim(name: "sub") }' }, bearer(token));
    expect(claims.body.data).toEqual({ sub: '"real"' });
    await expectUnauthenticated(gw, bearer(await hs256({ sub: 'x', exp: now() + 60 })), /no "x-hasura-user-id" claim/);
  });

  it('accepts the admin secret under the configured alias header too', async () => {
    expect((await whoami(gw, { 'x-hasura-admin-secret': 'hasura-admin' })).status).toBe(200);
    expect((await whoami(gw, { 'x-rowgate-admin-secret': 'hasura-admin' })).status).toBe(200);
    await expectUnauthenticated(gw, { 'x-hasura-admin-secret': 'wrong' }, /x-hasura-admin-secret is wrong/);
  });
});
