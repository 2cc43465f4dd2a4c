// Health, metrics and start-up failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { tempDir, startBroker, grid, api, account, faucet } from './lib.mjs';

test('/healthz answers ok', async (t) => {
  const dir = await tempDir(t);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const r = await api(b.url, 'GET', '/healthz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { status: 'ok', leader: true, seq: 0 }, 'one broker on SQLite: the leader, no change log');
  assert.match(r.headers.get('content-type'), /application\/json/);
});

test('/metrics is Prometheus text that counts requests and errors', async (t) => {
  const dir = await tempDir(t);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const a = await account(b.url);
  await faucet(b.url, a, '1');
  await api(b.url, 'GET', '/v1/wallet/balance'); // a 401
  const r = await fetch(b.url + '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain/);
  const text = await r.text();
  assert.match(text, /^# HELP grid_http_requests_total .+$/m);
  assert.match(text, /^# TYPE grid_http_requests_total counter$/m);
  const value = (name) => {
    const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
    assert.ok(m, `${name} in:\n${text}`);
    return Number(m[1]);
  };
  assert.ok(value('grid_http_requests_total') >= 3);
  assert.ok(value('grid_http_client_errors_total') >= 1);
  assert.equal(value('grid_http_server_errors_total'), 0);
  assert.equal(value('grid_machines'), 0);
  assert.equal(value('grid_store_commits_total'), 2, 'the token secret of a new database, and the faucet credit');
  // Every sample line is NAME VALUE, every metric has HELP and TYPE.
  for (const line of text.trim().split('\n')) {
    if (line.startsWith('#')) assert.match(line, /^# (HELP|TYPE) [a-z_]+ .+$/);
    else assert.match(line, /^[a-z_]+ -?\d+(\.\d+)?$/);
  }
});

test('grid broker on a busy port exits non-zero with a message', async (t) => {
  const dir = await tempDir(t);
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = server.address().port;
  const r = await grid(dir, ['broker', '--db', path.join(dir, 'b.db'), '--listen', `127.0.0.1:${port}`, '--dev'], { timeoutMs: 20000 });
  assert.notEqual(r.code, 0, r.stderr);
  assert.equal(r.signal, null, 'it exited on its own');
  assert.match(r.stderr, /grid broker: .*(in use|bind|listen|address)/i);
  assert.doesNotMatch(r.stdout, /listening/);
});

test('grid broker with a bad --listen or an unopenable db exits non-zero', async (t) => {
  const dir = await tempDir(t);
  for (const listen of ['nonsense', '127.0.0.1:99999', '127.0.0.1:abc']) {
    const r = await grid(dir, ['broker', '--db', path.join(dir, 'b.db'), '--listen', listen], { timeoutMs: 20000 });
    assert.notEqual(r.code, 0, `${listen}: ${r.stderr}`);
    assert.match(r.stderr, /listen/, listen);
  }
  const r = await grid(dir, ['broker', '--db', path.join(dir, 'no/such/dir/b.db'), '--listen', '127.0.0.1:0'], { timeoutMs: 20000 });
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /^grid broker: /m);
  const tick = await grid(dir, ['broker', '--db', path.join(dir, 'c.db'), '--listen', '127.0.0.1:0', '--tick', '0.01'], { timeoutMs: 20000 });
  assert.notEqual(tick.code, 0, tick.stderr);
  assert.match(tick.stderr, /tick/);
});

test('SIGTERM shuts the broker down cleanly', async (t) => {
  const dir = await tempDir(t);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const { code, signal } = await b.kill('SIGTERM');
  assert.equal(code, 0, b.stderr);
  assert.equal(signal, null);
  assert.match(b.stderr, /shutting down/);
});
