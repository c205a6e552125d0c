import type { JWTPayload } from 'jose';

/** Hasura's claims namespace, the usual value of `auth.jwt.claimsNamespace` for a migrated app. */
export const HASURA_NAMESPACE = 'https://hasura.io/jwt/claims';

/**
 * The claims rules read (`:name`) from a verified token. With `auth.jwt.claimsNamespace`, the
 * object under that claim (or its JSON text, Hasura's `stringified_json` format) is merged over the
 * top-level claims, each key also under its parameter form: `x-hasura-user-id` as `user_id`, since a
 * rule parameter cannot hold dashes. The namespace cannot replace `exp`, `sub` or the other
 * registered claims, which only the token's top level carries.
 */
export function claimsOf(payload: JWTPayload, namespace: string | null): Record<string, unknown> {
  const claims: Record<string, unknown> = { ...payload };
  if (namespace === null) return claims;
  let inner = payload[namespace];
  if (typeof inner === 'string') {
    try {
      inner = JSON.parse(inner) as unknown;
    } catch {
      inner = null;
    }
  }
  if (!inner || typeof inner !== 'object' || Array.isArray(inner)) return claims;
  for (const [key, value] of Object.entries(inner as Record<string, unknown>)) {
    if (REGISTERED.has(key)) continue;
    claims[key] = value;
    const param = key.toLowerCase().replace(/^x-hasura-/, '').replace(/-/g, '_');
    if (!REGISTERED.has(param) && !(param in inner)) claims[param] = value;
  }
  return claims;
}

const REGISTERED = new Set(['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti']);
