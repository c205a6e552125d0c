import { SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { signToken } from '../src/server/token.ts';
import { startTiny } from './support/server.ts';

// OpenTelemetry spans (tracing.enabled): one per operation, named and typed, marked on errors, and
// without what callers sent (document, variables) or what they got (results).

function recorder() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider();
  provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
  return { provider, spans: () => exporter.getFinishedSpans() };
}

describe('tracing.enabled', async () => {
  const { provider, spans } = recorder();
  const gw = await startTiny({ tracing: { enabled: true } }, { tracerProvider: provider });
  const headers = { authorization: `Bearer ${await signToken(gw.config, { sender: 'alice' })}` };

  it('gives each operation a SERVER span with its name and type, and nothing the caller sent or got', async () => {
    const res = await gw.post({ query: 'query Who($pad: String) { whoami claim(name: $pad) }', variables: { pad: 'variable-value-xyz' } }, headers);
    expect(res.body.data?.['whoami']).toBe('alice');
    const span = spans().find((s) => s.name === 'query.Who');
    expect(span?.attributes).toMatchObject({ 'graphql.execute.operationName': 'Who', 'graphql.execute.operationType': 'query' });
    expect(span?.status.code).not.toBe(SpanStatusCode.ERROR);
    const recorded = JSON.stringify(spans().map((s) => ({ attributes: s.attributes, events: s.events })));
    for (const sent of ['variable-value-xyz', 'claim(name', 'alice']) expect(recorded).not.toContain(sent);
  });

  it('marks the span of an operation that answered with errors', async () => {
    await gw.post({ query: 'query Boom { whoami boom }' }, headers);
    expect(spans().find((s) => s.name === 'query.Boom')?.status.code).toBe(SpanStatusCode.ERROR);
  });
});

describe('tracing off (the default)', async () => {
  const { provider, spans } = recorder();
  const gw = await startTiny({}, { tracerProvider: provider });

  it('makes no spans', async () => {
    await gw.post({ query: 'query Who { whoami }' }, { authorization: `Bearer ${await signToken(gw.config, { sender: 'alice' })}` });
    expect(spans()).toEqual([]);
  });
});
