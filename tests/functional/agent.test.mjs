// `grid agent` end to end: a real agent process with simulated GPUs and the
// process runtime enrolls with a join token, runs a renter's workload in its
// namespaces, reports it, stops it when the renter stops, survives kill -9
// with its workload re-adopted (not started twice). Needs root (namespaces,
// cgroups), as CI has.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  GRID_BIN, SLOW, tempDir, startBroker, cliEnv, gridJson, grid, newKey, account, faucet, apiOk, api,
  nonceInfo, leaseBody, sleep, auditDb, startAgent, waitFor, processesWith,
} from './lib.mjs';

const root = process.getuid && process.getuid() === 0;

test('grid agent runs a lease with simulated GPUs, stops it, and re-adopts it after kill -9', { skip: !root && 'needs root' }, async (t) => {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);  // workloads run as unprivileged uids below the agent's state dir
  const db = path.join(dir, 'b.db');
  const b = await startBroker(t, { db, dir, tick: '0.5', extraArgs: ['--heartbeat', '0.5', '--host-grace', '60'] });
  const prov = await newKey(dir, 'prov');
  const tok = await gridJson(dir, ['provider', 'join-token', 'create', '--ttl', '1h'], { key: prov.key, broker: b.url });
  assert.match(tok.token, /^gjt_/);
  const stateDir = path.join(dir, 'agent');
  const agentArgs = ['--state-dir', stateDir, '--simulate-gpus', '2xRTX-4090', '--geolocation', 'DE', '--grace', '500'];
  let agent = await startAgent(t, dir, b.url, ['--join-token', tok.token, ...agentArgs]);
  assert.match(agent.stdout, /2 SIMULATED GPU/);
  assert.equal(fs.statSync(path.join(stateDir, 'machine.key')).mode & 0o777, 0o600);

  const [machine] = (await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: b.url })).machines;
  assert.equal(machine.spec.simulated, true);
  assert.equal(machine.spec.num_gpus, 2);
  assert.equal(machine.online, true);
  await gridJson(dir, ['machines', 'list-offer', String(machine.id), '--price-gpu', '0.35'], { key: prov.key, broker: b.url });
  const offers = (await apiOk(b.url, 'GET', `/v1/offers?q=machine_id%3D${machine.id}`)).offers;
  assert.ok(offers.every((o) => o.simulated === true), 'simulated in search');

  // A workload that prints what it was given and keeps running.
  const renter = await account(b.url);
  await faucet(b.url, renter, '50');
  const { chain_id } = await nonceInfo(b.url);
  const marker = `grid-agent-test-${process.pid}-${Date.now()}`;
  const body = await leaseBody(renter.wallet, chain_id, {
    offerId: machine.id * 1000 + 2, gpus: 2, pricePerHourMicros: 700_000n,
    command: ['sh', '-c', `echo "gpus=$CUDA_VISIBLE_DEVICES"; sleep 3600; true ${marker}`],
  });
  const lease = await apiOk(b.url, 'POST', '/v1/leases', body, renter.token);
  let last;
  const running = await waitFor('the lease to run', async () => {
    last = await apiOk(b.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token);
    return last.state === 'running' && last;
  }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}\nagent:\n${agent.stderr}`);
  });
  assert.match(running.message, /simulated/);
  await waitFor('the workload process', () => processesWith(marker).length === 1);
  const pid = processesWith(marker)[0];
  // Its output reaches the renter through the broker; the simulated GPUs are
  // exposed by index, and the lease carries the host's metering.
  await waitFor('the workload output', async () => {
    const logs = await apiOk(b.url, 'GET', `/v1/leases/${lease.id}/logs?offset=0`, undefined, renter.token);
    return logs.data.includes('gpus=0,1');
  });
  const metered = await waitFor('metering', async () => {
    const l = await apiOk(b.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token);
    return l.metering && l;
  });
  assert.ok(metered.metering.wall_seconds >= 0);
  // No network in the process runtime's namespace; the GPU figures are from
  // simulated GPUs and say so.
  assert.equal(metered.metering.net_rx_bytes, 0);
  assert.equal(metered.metering.net_tx_bytes, 0);
  assert.equal(metered.metering.gpu_simulated, true);
  assert.ok(metered.metering.gpu_energy_joules >= 0, JSON.stringify(metered.metering));
  assert.equal(metered.metering.gpu_utilization_pct, 0);
  const stranger = await account(b.url);
  assert.equal((await api(b.url, 'GET', `/v1/leases/${lease.id}/logs`, undefined, stranger.token)).status, 404);

  // kill -9 the agent: the workload goes on; a new agent re-adopts it.
  agent.proc.kill('SIGKILL');
  await agent.exited;
  assert.deepEqual(processesWith(marker), [pid], 'the workload survives its agent');
  agent = await startAgent(t, dir, b.url, agentArgs);  // no token needed the second time
  await waitFor('re-adoption', () => /re-adopted lease-/.test(agent.stderr));
  await sleep(1500 * SLOW);
  assert.deepEqual(processesWith(marker), [pid], 'not started twice');
  assert.equal((await apiOk(b.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token)).state, 'running');

  // The renter stops: the agent stops the workload; nothing of it survives.
  await apiOk(b.url, 'POST', `/v1/leases/${lease.id}/stop`, undefined, renter.token);
  await waitFor('the workload to be stopped', () => processesWith(marker).length === 0);

  // A workload that ends by itself is reported ended (exited).
  const body2 = await leaseBody(renter.wallet, chain_id, {
    offerId: machine.id * 1000 + 1, gpus: 1, pricePerHourMicros: 350_000n, command: ['sh', '-c', 'echo done'],
  });
  const short = await apiOk(b.url, 'POST', '/v1/leases', body2, renter.token);
  const ended = await waitFor('the short lease to end', async () => {
    const l = await apiOk(b.url, 'GET', `/v1/leases/${short.id}`, undefined, renter.token);
    return l.state === 'ended' && l;
  });
  assert.equal(ended.end_reason, 'exited');
  const shortLogs = await apiOk(b.url, 'GET', `/v1/leases/${short.id}/logs`, undefined, renter.token);
  assert.equal(shortLogs.data, 'done\n', 'the final output arrives before the end is reported');
  // An image the process runtime cannot run fails clearly.
  const body3 = await leaseBody(renter.wallet, chain_id, {
    offerId: machine.id * 1000 + 1, gpus: 1, pricePerHourMicros: 350_000n, image: 'ubuntu:22.04', command: ['true'],
  });
  const bad = await apiOk(b.url, 'POST', '/v1/leases', body3, renter.token);
  const failed = await waitFor('the bad image to fail', async () => {
    const l = await apiOk(b.url, 'GET', `/v1/leases/${bad.id}`, undefined, renter.token);
    return l.state === 'ended' && l;
  });
  assert.equal(failed.end_reason, 'failed');
  assert.match(failed.message, /process runtime runs only --image host/);
  assert.equal(failed.charged, '0.000000');

  agent.proc.kill('SIGTERM');
  await agent.exited;
  await b.kill('SIGTERM');
  const audit = await auditDb(dir, db);
  assert.equal(audit.code, 0, audit.stdout + audit.stderr);
});

// The agent's long-poll: with a heartbeat period of a minute, a new lease
// still starts (and a stopped one still stops) within moments, because the
// broker answers the agent's held request the moment the lease changes.
test('with a 60 s heartbeat, leases start and stop at once through the long-poll', { skip: !root && 'needs root' }, async (t) => {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir, extraArgs: ['--heartbeat', '60'] });
  const prov = await newKey(dir, 'prov');
  const tok = await gridJson(dir, ['provider', 'join-token', 'create'], { key: prov.key, broker: b.url });
  const agent = await startAgent(t, dir, b.url, ['--join-token', tok.token, '--state-dir', path.join(dir, 'agent'),
    '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE', '--grace', '500']);
  const [machine] = (await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: b.url })).machines;
  await gridJson(dir, ['machines', 'list-offer', String(machine.id), '--price-gpu', '0.35'], { key: prov.key, broker: b.url });
  const renter = await account(b.url);
  await faucet(b.url, renter, '10');
  const { chain_id } = await nonceInfo(b.url);
  // The agent's first heartbeat is behind it; the next is a minute away.
  await sleep(500);
  const marker = `grid-agent-push-${process.pid}-${Date.now()}`;
  const t0 = Date.now();
  const lease = await apiOk(b.url, 'POST', '/v1/leases', await leaseBody(renter.wallet, chain_id, {
    offerId: machine.id * 1000 + 1, gpus: 1, pricePerHourMicros: 350_000n,
    command: ['sh', '-c', `echo first line; sleep 3600; true ${marker}`],
  }), renter.token);
  await waitFor('the first output line', async () => {
    const logs = await apiOk(b.url, 'GET', `/v1/leases/${lease.id}/logs?offset=0`, undefined, renter.token);
    return logs.data.includes('first line');
  }, 10000 * SLOW).catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
  assert.ok(Date.now() - t0 < 10000 * SLOW, 'long before the next heartbeat');
  assert.equal((await apiOk(b.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token)).state, 'running');
  const t1 = Date.now();
  await apiOk(b.url, 'POST', `/v1/leases/${lease.id}/stop`, {}, renter.token);
  await waitFor('the workload to be stopped', () => processesWith(marker).length === 0, 10000 * SLOW);
  assert.ok(Date.now() - t1 < 10000 * SLOW, 'stopped long before the next heartbeat');
});

test('a workload that dies while its agent is down is reported, never restarted', { skip: !root && 'needs root' }, async (t) => {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir, tick: '0.5', extraArgs: ['--heartbeat', '0.5'] });
  const prov = await newKey(dir, 'prov');
  const tok = await gridJson(dir, ['provider', 'join-token', 'create'], { key: prov.key, broker: b.url });
  const agentArgs = ['--state-dir', path.join(dir, 'agent'), '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE'];
  let agent = await startAgent(t, dir, b.url, ['--join-token', tok.token, ...agentArgs]);
  const [machine] = (await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: b.url })).machines;
  await gridJson(dir, ['machines', 'list-offer', String(machine.id), '--price-gpu', '0.35'], { key: prov.key, broker: b.url });
  const renter = await account(b.url);
  await faucet(b.url, renter, '10');
  const { chain_id } = await nonceInfo(b.url);
  const marker = `grid-agent-lost-${process.pid}-${Date.now()}`;
  const lease = await apiOk(b.url, 'POST', '/v1/leases', await leaseBody(renter.wallet, chain_id, {
    offerId: machine.id * 1000 + 1, gpus: 1, pricePerHourMicros: 350_000n,
    command: ['sh', '-c', `echo up; sleep 3600; true ${marker}`],
  }), renter.token);
  await waitFor('the workload', () => processesWith(marker).length === 1);
  agent.proc.kill('SIGKILL');
  await agent.exited;
  for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');  // dies while no agent watches
  await waitFor('the workload to die', () => processesWith(marker).length === 0);
  agent = await startAgent(t, dir, b.url, agentArgs);
  const ended = await waitFor('the lease to end', async () => {
    const l = await apiOk(b.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token);
    return l.state === 'ended' && l;
  });
  assert.equal(ended.end_reason, 'failed');
  assert.match(ended.message, /signal 9|lost/);
  await sleep(1000 * SLOW);
  assert.equal(processesWith(marker).length, 0, 'not restarted');
  assert.match((await apiOk(b.url, 'GET', `/v1/leases/${lease.id}/logs`, undefined, renter.token)).data, /up/);
});

test('an agent config file sets the site and lists the machine at its price', { skip: !root && 'needs root' }, async (t) => {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);
  const b = await startBroker(t, { db: path.join(dir, 'b.db'), dir, extraArgs: ['--heartbeat', '0.5'] });
  const prov = await newKey(dir, 'prov');
  const tok = await gridJson(dir, ['provider', 'join-token', 'create'], { key: prov.key, broker: b.url });
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ geolocation: 'DE', price_gpus: '0.40' }));
  const r = await grid(dir, ['--broker', b.url, 'agent', '--join-token', tok.token, '--state-dir', path.join(dir, 'a0'),
    '--config', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /price_gpus: unknown key/);
  const cfg = path.join(dir, 'agent.json');
  fs.writeFileSync(cfg, JSON.stringify({
    geolocation: 'NL', datacenter: true, inet_up: 900, inet_down: 950, price_gpu: '0.40', min_chunk: 1,
    simulate_gpus: '1xRTX-4090',
  }));
  await startAgent(t, dir, b.url, ['--join-token', tok.token, '--state-dir', path.join(dir, 'a1'), '--config', cfg]);
  const [m] = (await gridJson(dir, ['machines', 'list'], { key: prov.key, broker: b.url })).machines;
  assert.equal(m.listed, true);
  assert.equal(m.price_gpu, '0.400000');
  assert.equal(m.spec.geolocation, 'NL');
  assert.equal(m.spec.datacenter, true);
  assert.equal(m.spec.inet_down, 950);
  const offers = (await apiOk(b.url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`)).offers;
  assert.equal(offers.length, 1);
  assert.equal(offers[0].dph_total, '0.400000');
  assert.equal(offers[0].simulated, true);
});
