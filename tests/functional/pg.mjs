// PostgreSQL for the functional tests: a throwaway cluster in a temp dir
// (scripts/pg-test-cluster.sh's recipe), which a test may stop and start again
// on the same port, and a fresh database per test.
//
//   const c = await pgCluster(t, { own: true });  // null: no PostgreSQL here (t.skip it)
//   const url = await c.createDatabase();         // postgres://postgres@127.0.0.1:PORT/test_<hex>
//   await c.restart({ downMs: 2000 });            // own clusters only
//
// A cluster this module started is stopped by its postmaster's PID when the
// test ends (t.after) and, failing that, when the process exits; its dir is
// removed. Without `own`, the suite's cluster (GRID_TEST_PG_URL, as
// scripts/test.sh exports it) is used when there is one: a database in it is
// cheaper than a cluster of our own; it is never stopped here.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SCRIPT = path.join(ROOT, 'scripts/pg-test-cluster.sh');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(file, args, { timeoutMs = 120000, env } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20, env: env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// The directory with initdb and pg_ctl (PG_BIN, else Debian's layout,
// newest version first after 15), or null.
export function pgBin() {
  const ok = (d) => d && fs.existsSync(path.join(d, 'initdb')) && fs.existsSync(path.join(d, 'pg_ctl'));
  if (process.env.PG_BIN) return ok(process.env.PG_BIN) ? process.env.PG_BIN : null;
  const dirs = ['/usr/lib/postgresql/15/bin'];
  try {
    const vs = fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => b - a);
    dirs.push(...vs.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {}
  return dirs.find(ok) ?? null;
}

// psql: next to the server binaries, else on PATH.
function psqlPath() {
  const b = pgBin();
  if (b && fs.existsSync(path.join(b, 'psql'))) return path.join(b, 'psql');
  for (const d of (process.env.PATH || '').split(':')) {
    if (d && fs.existsSync(path.join(d, 'psql'))) return path.join(d, 'psql');
  }
  return null;
}

// Why PostgreSQL tests cannot run here (a sentence for t.skip), or null.
export function pgMissing({ own = false } = {}) {
  if (!psqlPath()) return 'no psql (PostgreSQL client): install postgresql-15 (scripts/install-deps.sh)';
  if ((own || !process.env.GRID_TEST_PG_URL) && !pgBin())
    return process.env.PG_BIN
      ? `PG_BIN=${process.env.PG_BIN} has no initdb and pg_ctl`
      : 'no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: install postgresql-15 or set PG_BIN';
  return null;
}

// Runs SQL with psql against `db` on the cluster; throws on failure.
async function psql(host, port, user, db, sql) {
  const r = await run(psqlPath(), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', host, '-p', String(port), '-U', user, '-d', db, '-c', sql],
    { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  if (r.code !== 0) throw new Error(`psql ${sql}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // PID 1 here may not reap a daemon's zombie: a zombie has exited.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

// postmasters this process started and has not stopped: sent a fast
// shutdown (SIGINT) if the process exits before the tests' hooks ran.
const running = new Set();
process.on('exit', () => {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGINT');
    } catch {}
  }
});

class OwnCluster {
  constructor(dir, port, bin) {
    this.dir = dir;
    this.port = port;
    this.bin = bin;
    this.host = '127.0.0.1';
    this.user = 'postgres';
    this.pid = null;
    this.own = true;
  }

  url(db = 'postgres') {
    return `postgres://${this.user}@${this.host}:${this.port}/${db}`;
  }

  readPid() {
    try {
      const pid = Number(fs.readFileSync(path.join(this.dir, 'data/postmaster.pid'), 'utf8').split('\n')[0]);
      return pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  get running() {
    return this.pid !== null && alive(this.pid);
  }

  // Fast shutdown (SIGINT to the postmaster, by PID): clients are cut off,
  // the server checkpoints and exits. SIGQUIT (immediate) after 30 s.
  async stop() {
    const pid = this.pid ?? this.readPid();
    if (pid === null) return;
    try {
      process.kill(pid, 'SIGINT');
    } catch {}
    const deadline = Date.now() + 30000;
    while (alive(pid)) {
      if (Date.now() > deadline) {
        try {
          process.kill(pid, 'SIGQUIT');
        } catch {}
        await sleep(1000);
        break;
      }
      await sleep(50);
    }
    running.delete(pid);
    this.pid = null;
  }

  // Starts the stopped cluster again on the same port (the brokers keep
  // their --db URL). Retries while the old socket lingers.
  async start() {
    if (this.running) return;
    const opts = `-c listen_addresses=127.0.0.1 -p ${this.port} -c unix_socket_directories=${this.dir} -c fsync=on -c synchronous_commit=on`;
    const args = ['-D', path.join(this.dir, 'data'), '-l', path.join(this.dir, 'server.log'), '-w', '-t', '60', '-o', opts, 'start'];
    let last;
    for (let attempt = 0; attempt < 20; attempt++) {
      const ctl = path.join(this.bin, 'pg_ctl');
      last = process.getuid() === 0 ? await run('runuser', ['-u', 'postgres', '--', ctl, ...args]) : await run(ctl, args);
      if (last.code === 0) {
        this.pid = this.readPid();
        if (this.pid) running.add(this.pid);
        return;
      }
      await sleep(250);
    }
    let log = '';
    try {
      log = fs.readFileSync(path.join(this.dir, 'server.log'), 'utf8').split('\n').slice(-20).join('\n');
    } catch {}
    throw new Error(`PostgreSQL did not start again on port ${this.port}: ${last.stdout}${last.stderr}\n${log}`);
  }

  async restart({ downMs = 0 } = {}) {
    await this.stop();
    if (downMs) await sleep(downMs);
    await this.start();
  }

  sql(sql, db = 'postgres') {
    return psql(this.host, this.port, this.user, db, sql);
  }

  // A fresh database; returns its URL.
  async createDatabase(prefix = 'test') {
    const name = `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
    await this.sql(`CREATE DATABASE ${name}`);
    return this.url(name);
  }
}

class SharedCluster {
  constructor(url) {
    const u = new URL(url);
    this.host = u.hostname;
    this.port = Number(u.port || 5432);
    this.user = decodeURIComponent(u.username || 'postgres');
    this.own = false;
  }

  url(db = 'postgres') {
    return `postgres://${this.user}@${this.host}:${this.port}/${db}`;
  }

  sql(sql, db = 'postgres') {
    return psql(this.host, this.port, this.user, db, sql);
  }

  async createDatabase(prefix = 'test') {
    const name = `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
    await this.sql(`CREATE DATABASE ${name}`);
    return this.url(name);
  }

  async restart() {
    throw new Error('the suite\'s shared cluster (GRID_TEST_PG_URL) is not restarted by tests; ask for { own: true }');
  }
}

// A cluster for test (or suite-level hooks object with .after) `t`: its own
// one when `own` is set or the suite has none, else the suite's
// (GRID_TEST_PG_URL). Returns null when PostgreSQL is missing (see
// pgMissing for the reason to skip with).
export async function pgCluster(t, { own = false } = {}) {
  if (pgMissing({ own })) return null;
  if (!own && process.env.GRID_TEST_PG_URL) return new SharedCluster(process.env.GRID_TEST_PG_URL);
  const bin = pgBin();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'grid-pg-'));
  const c = new OwnCluster(dir, 0, bin);
  t.after(async () => {
    await c.stop();
    if (!process.env.GRID_KEEP_TMP) await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  });
  const r = await run('bash', [SCRIPT, 'start', dir], { env: { ...process.env, PG_BIN: bin } });
  c.pid = c.readPid();
  if (c.pid) running.add(c.pid);
  const m = r.stdout.match(/GRID_TEST_PG_URL=postgres:\/\/[^@]+@127\.0\.0\.1:(\d+)\//);
  if (r.code !== 0 || !m) throw new Error(`pg-test-cluster.sh start failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  c.port = Number(m[1]);
  return c;
}
