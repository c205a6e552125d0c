export { callerKey, useCallerConcurrency } from './concurrency.ts';
export { createAuthenticator, connectionHeaders, unauthenticated, ADMIN_SECRET_HEADER, type Authenticator, type Session } from './auth.ts';
export { signToken, type TokenRequest } from './token.ts';
export {
  useCaller,
  useQueryLimits,
  useErrorCodes,
  depthLimitRule,
  aliasLimitRule,
  createMaskError,
  DEFAULT_MAX_ALIASES,
  INTERNAL_ERROR_MESSAGE,
  type InternalErrorLogger,
} from './plugins.ts';
export {
  createGateway,
  originAllowed,
  GRAPHQL_PATH,
  type Gateway,
  type GatewayOptions,
  type ReadinessCheck,
  type ServerContext,
  type TransportStats,
  type Yoga,
} from './http.ts';
export { createWebSocketTransport, closeReason, WsCloseCode, type WebSocketStats, type WebSocketTransport, type WebSocketTransportOptions } from './ws.ts';
export { createLogger, requestId, REQUEST_ID_HEADER, type Logger } from './log.ts';
export { METRICS_PATH } from './metrics-access.ts';
export { serve, printSdl, printToken, resolvePort, DEFAULT_PORT, DEFAULT_HOST, type ServeOptions } from './serve.ts';
