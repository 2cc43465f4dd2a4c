// Several brokers (issue 7): `--broker URL1,URL2` (or GRID_BROKER) lists
// replicas, and the CLI and the agent fail over from one that is down to the
// next. Two brokers on two SQLite files would share nothing, so these tests
// run ONE broker and put in front of it what a dead or dying replica looks
// like: a port nobody listens on (connection refused), and a small HTTP
// proxy in this process that forwards to the broker and can be told to drop
// an answer (the request applied, the answer lost) or to die.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import {
  SLOW, tempDir, startBroker, grid, gridJson, newKey, provideMachineCli, startAgent, waitFor, spec,
} from './lib.mjs';

const root = process.getuid && process.getuid() === 0;

// A loopback URL with nothing listening on it.
async function deadUrl() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

// An HTTP proxy to `target`. drop(req) true: the request is forwarded and
// applied, then the connection is cut instead of answering. close(): the
// proxy dies, its open connections with it. seen: "METHOD /path" forwarded.
async function startProxy(t, target, { drop = () => false } = {}) {
  const sockets = new Set();
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      const up = http.request(target + req.url, { method: req.method, headers: req.headers, agent: false }, (ur) => {
        const body = [];
        ur.on('data', (c) => body.push(c));
        ur.on('end', () => {
          if (drop(req)) return req.socket.destroy();
          res.writeHead(ur.statusCode, ur.headers);
          res.end(Buffer.concat(body));
        });
      });
      up.on('error', () => req.socket.destroy());
      up.end(Buffer.concat(chunks));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
  t.after(() => proxy.close());
  return proxy;
}

async function setup(t, opts = {}) {
  const dir = await tempDir(t);
  const broker = await startBroker(t, { db: path.join(dir, 'b.db'), dir, ...opts });
  return { dir, broker, url: broker.url };
}

test('the CLI goes on to the next broker when the first is down', async (t) => {
  const { dir, url } = await setup(t);
  const dead = await deadUrl();
  const list = `${dead},${url}`;
  const me = await newKey(dir, 'me');

  // --broker on the command line.
  const login = await grid(dir, ['--broker', list, '--json', 'login'], { key: me.key });
  assert.equal(login.code, 0, login.stderr);
  assert.equal(JSON.parse(login.stdout).address, me.address.toLowerCase());
  const text = await grid(dir, ['--broker', list, 'login'], { key: me.key });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`logged in to ${url} as`), 'names the broker that answered');

  // GRID_BROKER, as the env var.
  const f = await gridJson(dir, ['wallet', 'faucet', '25'], { key: me.key, broker: list });
  assert.equal(f.available, '25.000000');
  const bal = await gridJson(dir, ['wallet', 'balance'], { key: me.key, broker: list });
  assert.equal(bal.available, '25.000000');
  // The token cached by one command is used by the next (no new login).
  const tokens = fs.readdirSync(path.join(dir, 'home', 'tokens'));
  assert.equal(tokens.length, 1, tokens.join(' '));

  // Unauthenticated requests too, and a broker list that ends in the dead one.
  await provideMachineCli(dir, url, me.key, { price: '1.50' });
  const found = await gridJson(dir, ['offers', 'search', 'gpu_name=RTX_4090'], { broker: `${url},${dead}` });
  assert.ok(found.offers.length > 0);
  const again = await gridJson(dir, ['offers', 'search', 'gpu_name=RTX_4090'], { broker: list });
  assert.deepEqual(again.offers.map((o) => o.id), found.offers.map((o) => o.id));
});

test('with every broker down the CLI fails naming each URL; a bad URL is named', async (t) => {
  const dir = await tempDir(t);
  const me = await newKey(dir, 'me');
  const [d1, d2] = [await deadUrl(), await deadUrl()];
  for (const args of [['wallet', 'balance'], ['offers', 'search'], ['login']]) {
    const r = await grid(dir, args, { key: me.key, broker: `${d1},${d2}` });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^grid: no broker answered: /);
    assert.ok(r.stderr.includes(`cannot reach broker at ${d1}`), r.stderr);
    assert.ok(r.stderr.includes(`cannot reach broker at ${d2}`), r.stderr);
  }
  for (const [list, named] of [
    [`${d1},ftp://x`, '"ftp://x"'],
    [`${d1},,${d2}`, 'empty URL'],
    [`${d1},127.0.0.1:8080`, '"127.0.0.1:8080"'],
    [`${d1},${d1}/`, `${d1} is listed twice`],
  ]) {
    const r = await grid(dir, ['--broker', list, 'offers', 'search']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^grid: --broker: /);
    assert.ok(r.stderr.includes(named), r.stderr);
  }
});

test('a request applied but unanswered is resent only when that is safe', async (t) => {
  const { dir, url } = await setup(t);
  const prov = await newKey(dir, 'prov');
  const rent = await newKey(dir, 'rent');
  // The proxy applies each POST it forwards, then cuts the connection.
  const proxy = await startProxy(t, url, { drop: (req) => req.method === 'POST' });
  const list = `${proxy.url},${url}`;

  // Login: the nonce the proxy's broker issued is lost with its answer;
  // the next broker is asked for a nonce of its own, and signs in.
  const login = await grid(dir, ['login'], { key: prov.key, broker: list });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, new RegExp(`logged in to ${url} as`));
  assert.deepEqual(proxy.seen, ['POST /v1/auth/nonce']);

  // The faucet carries an idempotency key: resent to the second broker,
  // credited once.
  const f = await gridJson(dir, ['wallet', 'faucet', '10'], { key: prov.key, broker: list });
  assert.equal(f.available, '10.000000');
  assert.equal(proxy.seen.at(-1), 'POST /v1/wallet/faucet');
  const bal = await gridJson(dir, ['wallet', 'balance'], { key: prov.key, broker: url });
  assert.equal(bal.available, '10.000000', 'credited once');

  // Registering a machine has no key: it is not resent, and the error says so.
  const specFile = path.join(dir, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec()));
  const reg = await grid(dir, ['machines', 'register', '--spec', specFile], { key: prov.key, broker: list });
  assert.equal(reg.code, 1, reg.stdout);
  assert.equal(proxy.seen.at(-1), 'POST /v1/machines');
  assert.match(reg.stderr, /POST \/v1\/machines may have taken effect there, so it was not sent to another broker/);
  assert.ok(reg.stderr.includes(proxy.url), reg.stderr);
  const machines = await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: url });
  assert.equal(machines.machines.length, 1, 'applied once, by the first broker only');

  // A lease order carries its nonce: resent, refused by the second broker as
  // a replay, and the CLI finds the lease the first one created.
  const m = machines.machines[0];
  await gridJson(dir, ['machines', 'list-offer', String(m.id), '--price-gpu', '0.50'], { key: prov.key, broker: url });
  await gridJson(dir, ['wallet', 'faucet', '10'], { key: rent.key, broker: url });
  const leaseProxy = await startProxy(t, url, { drop: (req) => req.method === 'POST' && req.url === '/v1/leases' });
  const lease = await gridJson(dir, ['leases', 'create', String(m.id * 1000 + 1), '--image', 'host'],
    { key: rent.key, broker: `${leaseProxy.url},${url}` });
  assert.equal(leaseProxy.seen.at(-1), 'POST /v1/leases', leaseProxy.seen.join(', '));
  const leases = await gridJson(dir, ['leases', 'list'], { key: rent.key, broker: url });
  assert.equal(leases.leases.length, 1, 'one lease, not two');
  assert.equal(leases.leases[0].id, lease.id);
  assert.equal(leases.leases[0].order.nonce, lease.order.nonce);
});

test('an agent with a dead broker first enrolls, heartbeats, and fails over again when its broker dies',
  { skip: !root && 'needs root' }, async (t) => {
    const { dir, url } = await setup(t, { tick: '0.5', extraArgs: ['--heartbeat', '0.5', '--host-grace', '60'] });
    fs.chmodSync(dir, 0o711);  // workloads run as unprivileged uids below the agent's state dir
    const prov = await newKey(dir, 'prov');
    const tok = await gridJson(dir, ['provider', 'join-token', 'create', '--ttl', '1h'], { key: prov.key, broker: url });
    const dead = await deadUrl();
    const proxy = await startProxy(t, url);
    const list = `${dead},${proxy.url},${url}`;
    const agent = await startAgent(t, dir, list, ['--join-token', tok.token, '--state-dir', path.join(dir, 'agent'),
      '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE']);
    assert.ok(agent.stdout.includes(`heartbeat to ${proxy.url}`), agent.stdout);
    assert.ok(agent.stderr.includes(`heartbeat switched from broker ${dead} to ${proxy.url}`), agent.stderr);
    await waitFor('the long-poll through the proxy', () => proxy.seen.includes('POST /v1/agent/wait'));

    const machine = async () => (await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: url })).machines[0];
    const first = await machine();
    assert.equal(first.online, true);
    const beats = () => proxy.seen.filter((s) => s === 'POST /v1/agent/heartbeat').length;
    await waitFor('heartbeats through the proxy', () => beats() >= 2);

    // The proxy dies: heartbeat and long-poll move to the last URL, one
    // line each, and the machine stays online. (The long-poll's line comes
    // with the new broker's first answer, which may be held for the whole
    // long-poll, 20 s, when no lease changes; and a long-poll parked at the
    // proxy since the start goes from the dead URL straight to the last.)
    proxy.close();
    const cut = Date.now();
    await waitFor('the heartbeat to switch', () =>
      agent.stderr.includes(`heartbeat switched from broker ${proxy.url} to ${url}`));
    await waitFor('a heartbeat after the switch', async () => Date.parse((await machine()).last_seen) > cut + 500);
    assert.equal((await machine()).online, true);
    await waitFor('the long-poll to switch', () =>
      new RegExp(`long-poll switched from broker \\S+ to ${url} `).test(agent.stderr), 30000 * SLOW)
      .catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
    const lines = (what) => agent.stderr.split('\n').filter((l) => l.includes(`${what} switched from broker`));
    assert.equal(lines('heartbeat').length, 2, agent.stderr);
    assert.ok(lines('long-poll').length <= 2, agent.stderr);
    assert.match(lines('heartbeat')[1], /end of stream|Connection reset|Connection refused/);
    assert.ok(!/heartbeat failed/.test(agent.stderr), agent.stderr);
  });
