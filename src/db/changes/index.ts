export { installCapture, installDdlNotice, removeCapture, type CaptureReport } from './install.ts';
export { type LogReads, type LogSnapshot } from './wal-snapshot.ts';
export { startChangeFeed, type CaptureInfo, type ChangeFeed, type ChangeFeedOptions, type ChangeBatch, type ChangeListener } from './feed.ts';
export { captureStatus, removeWal, resolveCapture, slotName, type CaptureMode, type WalStatus } from './wal-install.ts';
export { readAfter, stamp, cleanup, topPosition, parsePosition, type Change, type ChangeOp } from './log.ts';
export { ChangeError, type ChangeErrorCode } from './errors.ts';
export { CAPTURE_SCHEMA, CHANNEL, DDL_CHANNEL } from './schema.ts';
