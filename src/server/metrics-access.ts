import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/index.ts';
import { ADMIN_SECRET_HEADER } from './auth.ts';

export const METRICS_PATH = '/metrics';

/**
 * Who may read `/metrics` on the main port: a request with the admin secret
 * (`x-rowgate-admin-secret`) or with `Authorization: Bearer <metrics.token>`. With neither
 * configured nobody may; a separate `metrics.port` is then the way to scrape. Compared in constant
 * time, as the admin secret is in auth.ts.
 */
export function metricsAccess(config: Config): (headers: IncomingHttpHeaders) => boolean {
  const admin = config.auth.adminSecret === null ? null : digest(config.auth.adminSecret);
  const bearer = config.metrics.token === null ? null : digest(`Bearer ${config.metrics.token}`);
  return (headers) => {
    const secret = headers[ADMIN_SECRET_HEADER];
    if (admin && typeof secret === 'string' && timingSafeEqual(digest(secret), admin)) return true;
    const authorization = headers.authorization;
    return bearer !== null && typeof authorization === 'string' && timingSafeEqual(digest(authorization), bearer);
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
