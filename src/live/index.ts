export { LiveEngine, SCHEMA_CHANGED, type EvaluationKind, type LiveKind, type LiveObserver, type LiveStats } from './engine.ts';
export { type Change, type ChangeSource, comparePositions, EVENT_POSITION, eventPosition } from './source.ts';
export { eventOp } from './change-stream.ts';
