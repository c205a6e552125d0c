import { SignJWT } from 'jose';
import { ConfigError, type Config } from '../config/index.ts';

export interface TokenRequest {
  sender: string;
  claims?: Record<string, unknown>;
  /** How long the token lives: jose's duration syntax (`30s`, `15m`, `1h`, `7d`) or seconds. Default `1h`. */
  expires?: string | number;
}

/**
 * Signs an HS256 JWT with the configured secret, as `rowgate token` prints it (dev and tests).
 * The sender goes into the claim the gateway reads it from (`auth.jwt.senderClaim`), and the
 * configured issuer and audience are set so that the gateway accepts the token.
 */
export async function signToken(config: Pick<Config, 'auth'>, request: TokenRequest): Promise<string> {
  const { jwt } = config.auth;
  if (!jwt.secret) {
    throw new ConfigError('no JWT secret: set auth.jwt.secret in the config or ROWGATE_JWT_SECRET in the environment');
  }
  if (!jwt.algorithms.includes('HS256')) {
    throw new ConfigError(`auth.jwt.algorithms (${jwt.algorithms.join(', ')}) does not include HS256, so the gateway would refuse the token`);
  }
  const builder = new SignJWT({ ...request.claims, [jwt.senderClaim]: request.sender })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(typeof request.expires === 'number' ? Math.floor(Date.now() / 1000) + request.expires : (request.expires ?? '1h'));
  if (jwt.issuer !== null) builder.setIssuer(jwt.issuer);
  if (jwt.audience !== null) builder.setAudience(jwt.audience);
  return builder.sign(new TextEncoder().encode(jwt.secret));
}
