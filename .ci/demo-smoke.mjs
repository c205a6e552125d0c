// Proves the README's first command: `npm start` boots the demo on the embedded PostgreSQL and
// answers a query with a printed token. Bounded in time; stops the demo with SIGINT.
import { spawn } from 'node:child_process';

const port = process.env.DEMO_PORT ?? '4510';
const env = { ...process.env, PORT: port };
delete env.DATABASE_URL;
const child = spawn('npm', ['start', '--silent'], { env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
let out = '';
const fail = (message) => {
  console.error(`demo smoke: ${message}\n--- output ---\n${out}`);
  try { process.kill(-child.pid, 'SIGKILL'); } catch {}
  process.exit(1);
};
const timer = setTimeout(() => fail('no token printed within 120 s'), 120_000);
child.stdout.on('data', async (chunk) => {
  out += chunk;
  const match = /^\s+alice\s+(\S+)/m.exec(out);
  if (!match || !out.includes('try:')) return;
  child.stdout.removeAllListeners('data');
  clearTimeout(timer);
  const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${match[1]}` },
    body: JSON.stringify({ query: '{ account { name } document(order_by: {id: asc}) { title } }' }),
  });
  const body = await res.json();
  const expected = { data: { account: [{ name: 'Alice' }], document: [{ title: 'Roadmap' }, { title: 'Notes' }] } };
  if (JSON.stringify(body) !== JSON.stringify(expected)) fail(`unexpected answer ${JSON.stringify(body)}`);
  console.log(`demo smoke: npm start answered ${JSON.stringify(body)}`);
  child.removeAllListeners('exit');
  process.kill(-child.pid, 'SIGINT');
  const stopTimer = setTimeout(() => fail('the demo did not stop within 30 s of SIGINT'), 30_000);
  child.on('exit', () => {
    clearTimeout(stopTimer);
    process.exit(0);
  });
});
child.on('exit', (code) => fail(`npm start exited early with ${code}`));
