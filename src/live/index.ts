export { LiveEngine, SCHEMA_CHANGED, type EvaluationKind, type LiveKind, type LiveObserver, type LiveStats } from './engine.ts';
export { type Change, type ChangeSource, comparePositions } from './source.ts';
export { eventOp } from './change-stream.ts';
