// Key files: grid and ethers read each other's Web3 Secret Storage v3 files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Wallet, encryptKeystoreJson } from 'ethers';
import { tempDir, grid, gridJson, startBroker, PASSWORD } from './lib.mjs';

test('grid keys new writes a 0600 file that ethers opens', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'k.json');
  const r = await gridJson(dir, ['keys', 'new', '--out', file]);
  assert.match(r.address, /^0x[0-9a-fA-F]{40}$/);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const w = await Wallet.fromEncryptedJson(fs.readFileSync(file, 'utf8'), PASSWORD);
  assert.equal(w.address, r.address, 'checksummed address matches');
  // keys address agrees; keys export prints the same private key.
  const a = await gridJson(dir, ['keys', 'address'], { key: file });
  assert.equal(a.address, w.address);
  const ex = await grid(dir, ['keys', 'export'], { key: file });
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(ex.stdout.trim().toLowerCase().replace(/^0x/, ''), w.privateKey.toLowerCase().replace(/^0x/, ''));
  assert.match(ex.stderr, /WARNING/);
});

test('an ethers keystore works for keys address, keys export and login', async (t) => {
  const dir = await tempDir(t);
  const w = Wallet.createRandom();
  const json = await encryptKeystoreJson({ address: w.address, privateKey: w.privateKey }, PASSWORD, { scrypt: { N: 1024 } });
  const file = path.join(dir, 'ethers.json');
  fs.writeFileSync(file, json, { mode: 0o600 });
  const a = await gridJson(dir, ['keys', 'address'], { key: file });
  assert.equal(a.address, w.address);
  const ex = await grid(dir, ['keys', 'export'], { key: file });
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(ex.stdout.trim().toLowerCase().replace(/^0x/, ''), w.privateKey.slice(2).toLowerCase());

  const broker = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const login = await gridJson(dir, ['login'], { key: file, broker: broker.url });
  assert.equal(login.address, w.address.toLowerCase());
  const bal = await gridJson(dir, ['wallet', 'balance'], { key: file, broker: broker.url });
  assert.equal(bal.available, '0.000000');
});

test('ethers default keystore (scrypt N=131072) is read too', { skip: !!process.env.GRID_SANITIZED && 'slow under ASan' }, async (t) => {
  const dir = await tempDir(t);
  const w = Wallet.createRandom();
  const file = path.join(dir, 'default.json');
  fs.writeFileSync(file, await w.encrypt(PASSWORD), { mode: 0o600 });
  const ex = await grid(dir, ['keys', 'export'], { key: file });
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(ex.stdout.trim().toLowerCase().replace(/^0x/, ''), w.privateKey.slice(2).toLowerCase());
});

test('keys import from stdin hex gives the same address as ethers', async (t) => {
  const dir = await tempDir(t);
  const w = Wallet.createRandom();
  for (const [name, hex] of [['with0x', w.privateKey + '\n'], ['bare', w.privateKey.slice(2)]]) {
    const file = path.join(dir, `${name}.json`);
    const r = await gridJson(dir, ['keys', 'import', '--out', file], { input: hex });
    assert.equal(r.address, w.address, name);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const back = await Wallet.fromEncryptedJson(fs.readFileSync(file, 'utf8'), PASSWORD);
    assert.equal(back.privateKey, w.privateKey);
  }
  // Garbage on stdin is refused and writes nothing.
  const bad = path.join(dir, 'bad.json');
  const r = await grid(dir, ['keys', 'import', '--out', bad], { input: 'not hex\n' });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(fs.existsSync(bad), false);
});

test('keys new and keys import refuse to overwrite an existing file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'k.json');
  const first = await gridJson(dir, ['keys', 'new', '--out', file]);
  const before = fs.readFileSync(file, 'utf8');
  const again = await grid(dir, ['keys', 'new', '--out', file]);
  assert.notEqual(again.code, 0);
  assert.ok(again.stderr.trim().length > 0);
  const imp = await grid(dir, ['keys', 'import', '--out', file], { input: Wallet.createRandom().privateKey });
  assert.notEqual(imp.code, 0);
  assert.equal(fs.readFileSync(file, 'utf8'), before, 'file unchanged');
  const a = await gridJson(dir, ['keys', 'address'], { key: file });
  assert.equal(a.address, first.address);
});

test('a wrong password fails with a one-line message', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'k.json');
  await gridJson(dir, ['keys', 'new', '--out', file]);
  const r = await grid(dir, ['keys', 'export'], { key: file, env: { GRID_KEY_PASSWORD: 'wrong' } });
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, '', 'no key printed');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^grid: /);
  assert.match(lines[0], /password|decrypt|mac/i);
});
