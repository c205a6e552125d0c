/** What bench/soak.ts and its client process (bench/soak-client.ts) share: operations and messages. */

/** Change streams: `after` is always passed (the first one from the orchestrator), so every event is checkable. */
export const STREAMS = {
  account: {
    table: 'account',
    query: 'subscription S($after: String) { account_changes(after: $after) { op position row { id name } old { id name } } }',
    field: 'account_changes',
  },
  player: {
    table: 'player',
    query: 'subscription S($after: String) { player_changes(after: $after) { op position row { id level score } old { id level } } }',
    field: 'player_changes',
  },
  /** With a `where`: updates of `level` across 50 move rows in (INSERT) and out (DELETE). */
  player_hi: {
    table: 'player',
    query: 'subscription S($after: String) { player_changes(where: { level: { _gt: 50 } }, after: $after) { op position row { id level } old { id level } } }',
    field: 'player_changes',
  },
  document: {
    table: 'document',
    query: 'subscription S($after: String) { document_changes(after: $after) { op position row { id title grp_id } old { id grp_id } } }',
    field: 'document_changes',
  },
} as const;
export type StreamKind = keyof typeof STREAMS;

/** Live queries: ordered, so that the final result can be compared with a query's, as JSON. */
export const LIVES = {
  accounts: { query: 'subscription { account(order_by: { id: asc }) { id name players(order_by: { id: asc }) { id level score } } }', field: 'account' },
  documents: { query: 'subscription { document(order_by: { id: asc }) { id title grp_id grp { name } } }', field: 'document' },
  players: { query: 'subscription { player_aggregate { aggregate { count } } }', field: 'player_aggregate' },
} as const;
export type LiveKind = keyof typeof LIVES;

export interface ClientSpec {
  id: number;
  sender: string;
  /** The client's persistent subscription (one per socket; temporary ones come and go beside it). */
  stream?: StreamKind;
  live?: LiveKind;
  /** Lets its tokens expire and expects the gateway to close the socket with 4403 (then reconnects). */
  expiring: boolean;
}

/** One change-stream subscription from `after` to its unsubscribe/close: [position, op letter, row id]. */
export interface Segment {
  client: number;
  sender: string;
  kind: StreamKind;
  after: string;
  persistent: boolean;
  open: boolean;
  events: [string, string, number][];
  /** Events that arrived out of position order (or repeated a position) within the segment. */
  disorder: number;
}

export interface PhaseOptions {
  url: string;
  configPath: string;
  clients: ClientSpec[];
  /** Position every persistent change stream starts after. */
  after: string;
  tokenSeconds: number;
  /** Mean seconds between churn actions per client, and the share of them that reconnect (the rest open a temporary subscription). */
  churnSeconds: number;
  reconnectShare: number;
}

export type ToClient =
  | ({ type: 'start' } & PhaseOptions)
  | { type: 'stats' }
  | { type: 'segments' }
  /** Stop churning, end temporary subscriptions, reconnect everyone once more (resuming), wait until all are subscribed. */
  | { type: 'quiesce'; timeoutMs: number }
  /** Compare every live client's last result with a query of the same selection; report. */
  | { type: 'final' }
  | { type: 'leave' }
  | { type: 'exit' };

export interface ClientStats {
  type: 'stats';
  connected: number;
  /** Subscriptions the clients hold open (persistent + temporary). */
  subscriptions: number;
  /** Stream events and live results received since the start of the phase. */
  events: number;
  connects: number;
  reconnects: number;
  refreshes: number;
  expiries: number;
  /** ms from a token's exp to the 4403 close, for the expiring clients. */
  expiryDelays: number[];
  tempSubscriptions: number;
  errors: number;
  errorSamples: string[];
  errorKinds: Record<string, number>;
}

export interface FinalReport {
  type: 'final';
  liveChecked: number;
  liveMismatches: number;
  mismatchSamples: string[];
}
