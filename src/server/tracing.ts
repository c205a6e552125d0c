import { useOpenTelemetry } from '@envelop/opentelemetry';
import { SpanKind, trace, type TracerProvider } from '@opentelemetry/api';

/**
 * OpenTelemetry spans for every operation on every transport (`tracing.enabled`), through
 * @envelop/opentelemetry: one SERVER span per query or mutation (`query.Name`) and one per
 * subscription for as long as it runs, with the operation's name and type, marked ERROR when the
 * result carries errors. Spans go to `provider`, by default the process's global provider: rowgate
 * bundles no SDK or exporter, so an operator registers one (e.g. @opentelemetry/sdk-node with OTLP,
 * started with `node --import`) and, with its http instrumentation, the spans hang under the HTTP
 * request's. The document, the variables and the result stay out of spans (they hold callers'
 * values and rows), and so do per-field resolver spans (a span per field of every row costs more
 * than the query).
 */
export function useTracing(provider: TracerProvider = trace.getTracerProvider()): ReturnType<typeof useOpenTelemetry> {
  return useOpenTelemetry({ document: false, variables: false, result: false, resolvers: false }, provider, SpanKind.SERVER, {}, 'rowgate');
}
