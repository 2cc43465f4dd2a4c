// `grid agent --runtime podman` end to end: a renter rents with
// `grid leases create --image localhost/grid-test:1 --ssh-key KEY.pub -p 8080`,
// the host runs the image with podman, `grid leases show` gives the SSH
// command, and a real `ssh` client logs in on 127.0.0.1 and runs a command in
// the container; the published port serves; an image the host does not have
// fails the lease with a clear reason; a stop leaves no container running.
// Needs root and podman (installed by scripts/install-deps.sh); the image is
// built from a local rootfs by scripts/make-test-image.sh (no registry).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  SLOW, tempDir, startBroker, gridJson, grid, newKey, account, faucet, apiOk, nonceInfo, leaseBody, sleep,
  startAgent, waitFor, auditDb,
} from './lib.mjs';

const root = process.getuid && process.getuid() === 0;
const hasPodman = spawnSync('podman', ['--version']).status === 0;
const skip = (!root && 'needs root') || (!hasPodman && 'needs podman (scripts/install-deps.sh)');
const IMAGE = 'localhost/grid-test:1';
const SOURCE = path.resolve(import.meta.dirname, '../..');

const containersOf = (leaseId, stateDir) =>
  execFileSync('podman', ['ps', '-q', '--filter', `label=grid.lease=lease-${leaseId}`,
    '--filter', `label=grid.state_dir=${path.join(stateDir, 'podman')}`], { encoding: 'utf8' }).trim();

test('podman runtime: SSH into the container with `ssh`, a published port, a missing image, stop', { skip }, async (t) => {
  execFileSync('bash', [path.join(SOURCE, 'scripts/make-test-image.sh'), IMAGE], { stdio: 'inherit' });
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);
  const db = path.join(dir, 'b.db');
  const b = await startBroker(t, { db, dir, tick: '0.5', extraArgs: ['--heartbeat', '0.5'] });
  const prov = await newKey(dir, 'prov');
  const pb = { key: prov.key, broker: b.url };
  const tok = await gridJson(dir, ['provider', 'join-token', 'create'], pb);
  const stateDir = path.join(dir, 'agent');
  const agent = await startAgent(t, dir, b.url, ['--join-token', tok.token, '--state-dir', stateDir, '--runtime', 'podman',
    '--simulate-gpus', '2xRTX-4090', '--geolocation', 'DE', '--grace', '1000']);
  const [machine] = (await gridJson(dir, ['machines', 'list'], pb)).machines;
  await gridJson(dir, ['machines', 'list-offer', String(machine.id), '--price-gpu', '0.50'], pb);

  const renter = await newKey(dir, 'renter');
  const rb = { key: renter.key, broker: b.url };
  await gridJson(dir, ['wallet', 'faucet', '20'], rb);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'renter@test', '-f', path.join(dir, 'id')]);

  // A private key by mistake is refused before anything is sent.
  const wrongKey = await grid(dir, ['leases', 'create', String(machine.id * 1000 + 1), '--image', IMAGE,
    '--ssh-key', path.join(dir, 'id'), '--', 'true'], rb);
  assert.equal(wrongKey.code, 1);
  assert.match(wrongKey.stderr, /private key; give the \.pub file/);

  const created = await gridJson(dir, ['leases', 'create', String(machine.id * 1000 + 1), '--image', IMAGE,
    '--ssh-key', path.join(dir, 'id.pub'), '-p', '8080', '--',
    'sh', '-c', 'echo "hello from podman gpus=$CUDA_VISIBLE_DEVICES"; mkdir -p /tmp/www; echo served > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www'], rb);
  assert.deepEqual(created.ports, [8080]);
  const lease = await waitFor('the lease to run', async () => {
    const l = await gridJson(dir, ['leases', 'show', String(created.id)], rb);
    return l.state === 'running' && l;
  }).catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
  assert.ok(lease.ssh, JSON.stringify(lease));
  assert.equal(lease.ssh.host, '127.0.0.1');
  const shown = await grid(dir, ['leases', 'show', String(created.id)], rb);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`ssh: ssh -p ${lease.ssh.port} root@127\\.0\\.0\\.1`));
  const web = lease.endpoints.find((e) => e.container_port === 8080);
  assert.ok(web && web.host_port > 0, JSON.stringify(lease.endpoints));

  // A real OpenSSH client logs in with the renter's key and runs a command
  // inside the container (sshd may need a moment after the start).
  let login;
  await waitFor('an SSH login', async () => {
    login = spawnSync('ssh', ['-i', path.join(dir, 'id'), '-p', String(lease.ssh.port), '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=5',
      `root@${lease.ssh.host}`, 'echo inside=$(hostname); ls /work && echo work-ok'], { encoding: 'utf8', timeout: 15000 });
    return login.status === 0;
  }, 20000 * SLOW).catch((e) => { throw new Error(`${e.message}: ${login && login.stderr}`); });
  assert.match(login.stdout, /inside=\S+/);
  assert.match(login.stdout, /work-ok/);
  // Another key is refused.
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'other')]);
  const refused = spawnSync('ssh', ['-i', path.join(dir, 'other'), '-p', String(lease.ssh.port), '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', `root@${lease.ssh.host}`, 'true'],
  { encoding: 'utf8', timeout: 15000 });
  assert.notEqual(refused.status, 0, 'a key the renter did not give is refused');

  // The published port serves from the container.
  const page = await waitFor('the published port', async () => {
    try {
      const r = await fetch(`http://${web.host}:${web.host_port}/index.html`);
      return r.ok && (await r.text());
    } catch { return false; }
  });
  assert.equal(page.trim(), 'served');

  // Output reaches the renter; GPUs are simulated, so none is visible.
  await waitFor('the output', async () => {
    const logs = await grid(dir, ['leases', 'logs', String(created.id)], rb);
    return /hello from podman gpus=/.test(logs.stdout);
  });

  // Stop: the container is gone.
  assert.ok(containersOf(created.id, stateDir), 'the container runs');
  await gridJson(dir, ['leases', 'stop', String(created.id)], rb);
  await waitFor('the container to go', () => containersOf(created.id, stateDir) === '');

  // An image the host does not have: the lease fails, saying so, and is not billed.
  const missing = await gridJson(dir, ['leases', 'create', String(machine.id * 1000 + 1), '--image', 'localhost/no-such-image:1',
    '--', 'true'], rb);
  const failed = await waitFor('the lease to fail', async () => {
    const l = await gridJson(dir, ['leases', 'show', String(missing.id)], rb);
    return l.state === 'ended' && l;
  });
  assert.equal(failed.end_reason, 'failed');
  assert.match(failed.message, /no-such-image/);
  assert.equal(failed.charged, '0.000000');

  await b.kill('SIGTERM');
  const audit = await auditDb(dir, db);
  assert.equal(audit.code, 0, audit.stdout + audit.stderr);
});
