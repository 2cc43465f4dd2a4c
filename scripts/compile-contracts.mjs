#!/usr/bin/env node
// Compiles contracts/*.sol with solc-js (npm `solc`, pinned in package.json;
// it bundles its compiler, so this works offline) into
// build/contracts/<ContractName>.json = {contractName, abi, bytecode,
// deployedBytecode, compiler, evmVersion}.
//
// Idempotent and fast: when every output recorded by the last run is newer
// than every source and than this script, nothing is compiled (solc-js is not
// even loaded). Writes are atomic (temp file + rename), so test files that run
// in parallel and compile at the same time never read half a file.
//
// Usage: node scripts/compile-contracts.mjs [--force] [--quiet]
// As a module: import { compileContracts } from './compile-contracts.mjs'.
// Exits non-zero with the compiler's messages when a source does not compile.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CONTRACTS_DIR = path.join(ROOT, 'contracts');
export const OUT_DIR = path.join(ROOT, 'build', 'contracts');
// Cancun: PUSH0 (shanghai) and MCOPY/transient storage are available; every
// current EVM chain and anvil 1.7.1's default hardfork (latest) accept it.
// Pinned so the bytecode does not change when solc's default moves on.
export const EVM_VERSION = 'cancun';
export const SOLC_VERSION = '0.8.37';

const SCRIPT = fileURLToPath(import.meta.url);
const MANIFEST = path.join(OUT_DIR, '.manifest.json');

function mtimeMs(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

function sources() {
  return fs
    .readdirSync(CONTRACTS_DIR, { recursive: true })
    .filter((f) => f.endsWith('.sol'))
    .map((f) => path.join('contracts', f).split(path.sep).join('/'))
    .sort();
}

function upToDate(srcs) {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(MANIFEST, 'utf8'));
  } catch {
    return false;
  }
  if (JSON.stringify(manifest.sources) !== JSON.stringify(srcs)) return false;
  const newestInput = Math.max(mtimeMs(SCRIPT), ...srcs.map((s) => mtimeMs(path.join(ROOT, s))));
  return manifest.outputs.every((o) => mtimeMs(path.join(OUT_DIR, o)) >= newestInput) && mtimeMs(MANIFEST) >= newestInput;
}

function writeAtomic(file, text) {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

// Returns {compiled: boolean, outputs: [paths]}; throws an Error whose
// message holds the compiler's errors when compilation fails.
export function compileContracts({ force = false, quiet = false } = {}) {
  const srcs = sources();
  if (!force && upToDate(srcs)) {
    const manifest = JSON.parse(fs.readFileSync(MANIFEST, 'utf8'));
    return { compiled: false, outputs: manifest.outputs.map((o) => path.join(OUT_DIR, o)) };
  }
  const solc = createRequire(import.meta.url)('solc');
  const version = solc.version();
  if (!version.startsWith(SOLC_VERSION + '+')) throw new Error(`solc ${version} installed, ${SOLC_VERSION} expected (run npm ci)`);
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(srcs.map((s) => [s, { content: fs.readFileSync(path.join(ROOT, s), 'utf8') }])),
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: EVM_VERSION,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), {
      import: () => ({ error: 'imports from outside contracts/ are not supported' }),
    }),
  );
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  const warnings = (output.errors || []).filter((e) => e.severity !== 'error');
  if (!quiet) for (const w of warnings) process.stderr.write(w.formattedMessage || w.message);
  if (errors.length) {
    throw new Error(`solc ${version} failed:\n` + errors.map((e) => e.formattedMessage || e.message).join('\n'));
  }
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const outputs = [];
  const seen = new Map();
  for (const [file, contracts] of Object.entries(output.contracts || {})) {
    for (const [name, c] of Object.entries(contracts)) {
      if (seen.has(name)) throw new Error(`contract ${name} is defined in both ${seen.get(name)} and ${file}`);
      seen.set(name, file);
      const artifact = {
        contractName: name,
        sourceName: file,
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
        compiler: `solc-js ${version}`,
        evmVersion: EVM_VERSION,
      };
      writeAtomic(path.join(OUT_DIR, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
      outputs.push(`${name}.json`);
    }
  }
  writeAtomic(MANIFEST, JSON.stringify({ sources: srcs, outputs }, null, 2) + '\n');
  if (!quiet) process.stderr.write(`compile-contracts: ${outputs.join(', ')} (solc ${version}, evm ${EVM_VERSION})\n`);
  return { compiled: true, outputs: outputs.map((o) => path.join(OUT_DIR, o)) };
}

// Reads one compiled artifact, compiling first when needed.
export function loadArtifact(name) {
  compileContracts({ quiet: true });
  return JSON.parse(fs.readFileSync(path.join(OUT_DIR, `${name}.json`), 'utf8'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === SCRIPT) {
  const args = process.argv.slice(2);
  try {
    const r = compileContracts({ force: args.includes('--force'), quiet: args.includes('--quiet') });
    if (!r.compiled && !args.includes('--quiet')) process.stderr.write('compile-contracts: up to date\n');
  } catch (e) {
    process.stderr.write(e.message + '\n');
    process.exit(1);
  }
}
