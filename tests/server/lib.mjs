// lib.mjs — helpers shared by e2e.mjs and load.mjs: start/stop `dsc serve`
// on 127.0.0.1 with a free port (--port 0, read back from its log line),
// PASS/FAIL reporting, /metrics parsing.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TOKENIZER = path.resolve(HERE, '../data/tiny-tokenizer/tokenizer.json');
export const R1_CONFIG = path.resolve(HERE, '../data/tiny-tokenizer/tokenizer_config.json');
export const V31_CONFIG = path.resolve(HERE, '../chat/deepseek-v3.1/tokenizer_config.json');

export function setup(argv) {
  const [dsc, golden, tmp] = argv.slice(2);
  if (!dsc || !golden || !tmp) {
    console.error('usage: node SCRIPT DSC_BINARY GOLDEN_DIR TMP_DIR');
    process.exit(2);
  }
  return { dsc, model: path.join(golden, 'models/v3-tiny/model'), tmp };
}

// The tiny tokenizer with its last merges made the given added tokens (ids
// 512 - tokens.length .. 511, in order), written as DIR/tokenizer.json in
// the test's tmp directory, beside a copy of the file config names as its
// tokenizer_config.json (none: the plain V3 template).
// Returns the file's path and the ids.
export function tinyTokenizerWith(env, dir, tokens, config) {
  const t = JSON.parse(fs.readFileSync(TOKENIZER, 'utf8'));
  const ids = tokens.map((_, i) => 512 - tokens.length + i);
  const gone = new Set(Object.entries(t.model.vocab).filter(([, v]) => ids.includes(v)).map(([k]) => k));
  for (const k of gone) delete t.model.vocab[k];
  t.model.merges = t.model.merges.filter((m) => !gone.has((Array.isArray(m) ? m : m.split(' ')).join('')));
  ids.forEach((id, i) => t.added_tokens.push({ id, content: tokens[i], single_word: false, lstrip: false, rstrip: false,
                                               normalized: false, special: true }));
  fs.mkdirSync(path.join(env.tmp, dir), { recursive: true });
  const file = path.join(env.tmp, dir, 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(t));
  if (config) fs.copyFileSync(config, path.join(env.tmp, dir, 'tokenizer_config.json'));
  return { path: file, ids };
}

let passed = 0, failed = 0;
export const counts = () => ({ passed, failed });

// Runs one check: fn throws (assert) on failure; a returned string is printed.
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    passed++;
    console.log(`PASS ${name}${typeof note === 'string' && note ? ` (${note})` : ''} [${Date.now() - t0} ms]`);
  } catch (e) {
    failed++;
    const msg = String(e && e.message ? e.message : e).replace(/\s+/g, ' ').slice(0, 400);
    console.log(`FAIL ${name}: ${msg}`);
  }
}

const running = new Set(), started = [];
process.on('unhandledRejection', (e) => {
  failed++;
  console.log(`FAIL unhandled rejection: ${String(e && e.stack ? e.stack : e).split('\n').slice(0, 3).join(' ')}`);
});
process.on('exit', () => { for (const p of running) { try { p.kill('SIGKILL'); } catch {} } });

// Starts `dsc serve` and resolves once it listens; the log is kept in s.log.
export async function startServer(env, args) {
  const p = spawn(env.dsc, ['serve', '-m', env.model, '--tokenizer', TOKENIZER, '--port', '0', '-t', '1', ...args],
                  { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(p);
  fs.appendFileSync(path.join(env.tmp, 'pids'), `${p.pid}\n`); // run.sh kills these even if node dies
  const s = { p, log: '', port: 0, exited: null, stopping: false };
  started.push(s);
  p.on('exit', (code, sig) => {
    s.exited = { code, sig };
    running.delete(p);
    if (process.env.DSC_SERVER_LOGS) fs.writeFileSync(path.join(process.env.DSC_SERVER_LOGS, `server-${p.pid}.log`), s.log);
    if (!s.stopping || code !== 0) { // show why, for the FAIL lines that follow
      console.log(`# server on port ${s.port} exited (code ${code}, signal ${sig}); its log ends:`);
      const lines = s.log.trimEnd().split('\n');
      const at = lines.findIndex((l) => /ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer/.test(l));
      for (const l of at >= 0 ? lines.slice(at, at + 30) : lines.slice(-25)) console.log(`#   ${l}`);
    }
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${s.log}`)), 15000);
    p.stderr.on('data', (d) => {
      s.log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(s.log);
      if (m && !s.port) { s.port = +m[1]; clearTimeout(timer); resolve(); }
    });
    p.on('exit', (code) => { clearTimeout(timer); if (!s.port) reject(new Error(`server exited (${code}): ${s.log}`)); });
  });
  s.base = `http://127.0.0.1:${s.port}`;
  return s;
}

// SIGTERM, then SIGKILL after 5 s; resolves with the exit status.
export async function stopServer(s) {
  if (!s || s.exited) return s && s.exited;
  const done = new Promise((r) => s.p.once('exit', (code, sig) => r({ code, sig })));
  s.stopping = true;
  s.p.kill('SIGTERM');
  const t = setTimeout(() => s.p.kill('SIGKILL'), 5000);
  const r = await done;
  clearTimeout(t);
  return r;
}

// Every server this script started exited cleanly, with no sanitizer report.
export async function checkServerLogs() {
  await check(`${started.length} server processes: clean exits, no sanitizer report`, async () => {
    for (const s of started) {
      if (!s.exited) await stopServer(s);
      if (/AddressSanitizer|runtime error:|ThreadSanitizer|LeakSanitizer/.test(s.log)) throw new Error(`report in the log of port ${s.port}`);
      if (s.exited.code !== 0) throw new Error(`server on port ${s.port} exited with ${JSON.stringify(s.exited)}`);
    }
  });
}

export async function metrics(s) {
  const text = await (await fetch(`${s.base}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    const x = /^(dsc_[a-z_]+(?:\{[^}]*\})?) (-?[0-9.e+]+)$/.exec(line);
    if (x) m[x[1]] = Number(x[2]);
  }
  return m;
}

// Built with a sanitizer (ASan's quarantine, TSan's shadow keep memory resident).
export const sanitized = (env) => { const b = fs.readFileSync(env.dsc); return b.includes('__asan_init') || b.includes('__tsan_init'); };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
