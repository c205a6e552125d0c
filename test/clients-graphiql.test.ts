import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startRowgate, type RunningRowgate } from './support/cli.ts';

// GraphiQL as `npm start` serves it, in headless Chromium (Debian's package; .ci/run installs it):
// the demo opens with alice's token in the Headers tab and a query; running it shows her rows only.
const db = useTestDatabase();
vi.setConfig({ testTimeout: 120_000 });
const CHROMIUM = '/usr/bin/chromium';

const profile = mkdtempSync(join(tmpdir(), 'rowgate-chromium-'));
const browser: BrowserContext | null = await chromium
  .launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1600 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  .catch((err: unknown) => {
    console.warn(`clients-graphiql: skipped, ${CHROMIUM} could not be started: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return null;
  });

let demo: RunningRowgate;

beforeAll(async () => {
  if (!browser) return;
  // The demo creates its tables and data in the empty test database, as on a first `npm start`.
  demo = await startRowgate(profile, ['demo', '--port', '0'], { DATABASE_URL: db.url });
});
afterAll(async () => {
  await browser?.close();
  if (demo) expect(await demo.stop(), demo.output()).toBe(0);
  rmSync(profile, { recursive: true, force: true });
});

/** An editor's text as shown: Monaco draws spaces as no-break spaces. */
async function text(editor: Locator): Promise<string> {
  return (await editor.innerText()).replace(/\u00a0/g, ' ');
}

describe.skipIf(!browser)('GraphiQL in headless Chromium', () => {
  it("renders offline, runs the pre-filled query with alice's pre-filled token, and shows her rows only", async () => {
    const page = await browser!.newPage();
    // Served from the installed package: the page must not need anything but the gateway.
    const elsewhere: string[] = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (!['blob:', 'data:'].includes(url.protocol) && url.origin !== new URL(demo.url).origin) elsewhere.push(r.url());
    });
    await page.goto(demo.url);
    const editor = page.locator('.graphiql-query-editor');
    await editor.getByText('document { title author grp { name } }').waitFor();
    // The opening comment says where the token is and where the other callers' tokens are.
    expect(await text(editor)).toMatch(/The Headers tab below holds alice's token[\s\S]*printed tokens for bob and carol/);

    await page.getByRole('button', { name: 'Headers' }).click();
    const headers = page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden)');
    await headers.getByText('Bearer ').waitFor();
    const token = /"Authorization": "Bearer ([\w-]+\.([\w-]+)\.[\w-]+)"/.exec(await text(headers));
    expect(token, 'a bearer token in the Headers tab').not.toBeNull();
    expect(JSON.parse(Buffer.from(token![2]!, 'base64url').toString())).toMatchObject({ sub: 'alice' });

    await page.click('.graphiql-execute-button');
    const response = page.locator('.graphiql-response');
    await response.getByText('"data"').waitFor();
    // The pane is tall enough to hold every line of the answer.
    const shown = JSON.parse(await text(response)) as { data: { account: unknown[]; document: { title: string }[] } };
    expect(shown.data.account).toEqual([{ name: 'Alice', players: [{ level: 3 }] }]);
    // Her own document and bob's in the group she reads; not ops' Runbook, nor bob's or carol's accounts.
    expect(shown.data.document.sort((a, b) => a.title.localeCompare(b.title))).toEqual([
      { title: 'Notes', author: 'bob', grp: { name: 'design' } },
      { title: 'Roadmap', author: 'alice', grp: { name: 'design' } },
    ]);
    expect(elsewhere).toEqual([]);
  });
});
