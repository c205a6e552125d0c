export type ChangeErrorCode =
  /** `readAfter` was asked for a position whose successors retention already deleted. */
  | 'POSITION_EXPIRED'
  /** A position that is not a decimal string, as `Change.position` always is. */
  | 'INVALID_POSITION'
  /** The `rowgate` schema is missing: run `rowgate capture` (or `installCapture`) first. */
  | 'CAPTURE_NOT_INSTALLED'
  /** `installCapture` was given a name that is not a table of the schema. */
  | 'NOT_A_TABLE'
  /** `changeLog.capture` is "wal" but the server or role cannot decode the WAL. */
  | 'WAL_UNAVAILABLE'
  /** The feed was closed. */
  | 'FEED_CLOSED'
  /** WAL capture: no WAL reader appended what a wait needed within 60 s (no gateway leads, or it is far behind). */
  | 'WAL_BEHIND';

/** Every error of change capture carries a stable code and says what to do. */
export class ChangeError extends Error {
  constructor(
    readonly code: ChangeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ChangeError';
  }
}
