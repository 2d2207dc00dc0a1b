// bench.mjs — aggregate generated tokens/s of `dsc serve` at 1, 4, 8 and 16
// concurrent streams (continuous batching: one pass over the weights per
// decode step for every stream). A program that prints figures, not a test.
//
// usage: node bench.mjs DSC_BINARY MODEL_DIR [-n TOKENS] [-t THREADS] [--streams 1,4,8,16] [--rounds R]
//                       [--tokenizer FILE]
//
// Each round runs every stream count in turn and prints its table; the
// speedup is against that round's single-stream rate (measured minutes
// apart, rates on a shared machine drift, so a ratio only means something
// within one round). With R > 1 the last table gives the median of the
// rounds' speedups (and of their rates).
//
// Each stream is a /v1/completions request for TOKENS tokens (ignore_eos,
// greedy) after a short prompt given as token ids, so any checkpoint works
// with any tokenizer; the tiny test tokenizer is the default.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : def; };
const N = +opt('-n', '64'), threads = opt('-t', '0'), rounds = Math.max(1, +opt('--rounds', '1'));
const streams = opt('--streams', '1,4,8,16').split(',').map(Number);
const tokenizer = opt('--tokenizer', path.resolve(HERE, '../data/tiny-tokenizer/tokenizer.json'));
const [dsc, model] = args;
if (!dsc || !model) { console.error('usage: node bench.mjs DSC_BINARY MODEL_DIR [-n TOKENS] [-t THREADS] [--streams 1,4,8,16] [--rounds R]'); process.exit(2); }

const maxStreams = Math.max(...streams);
const srv = spawn(dsc, ['serve', '-m', model, '--tokenizer', tokenizer, '--port', '0', '--parallel', String(maxStreams),
                        '-c', String(N + 64), ...(threads !== '0' ? ['-t', threads] : [])], { stdio: ['ignore', 'ignore', 'pipe'] });
process.on('exit', () => srv.kill('SIGKILL'));
let log = '';
const port = await new Promise((resolve, reject) => {
  srv.stderr.on('data', (d) => { log += d; const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log); if (m) resolve(+m[1]); });
  srv.on('exit', (c) => reject(new Error(`dsc serve exited (${c}): ${log}`)));
});
const base = `http://127.0.0.1:${port}`;
console.log(log.trim().split('\n').pop());

async function metrics() {
  const m = {};
  for (const l of (await (await fetch(`${base}/metrics`)).text()).split('\n')) {
    const x = /^(dsc_[a-z_]+) (\S+)$/.exec(l);
    if (x) m[x[1]] = +x[2];
  }
  return m;
}

// One streamed completion; resolves with [time of the first token, tokens].
async function stream(k) {
  const body = { prompt: [0, 20 + k, 30 + k, 40 + k], max_tokens: N, temperature: 0, ignore_eos: true, stream: true,
                 stream_options: { include_usage: true } };
  const res = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  let first = 0, usage = null, buf = '';
  for await (const part of res.body) {
    if (!first) first = performance.now();
    buf += Buffer.from(part).toString();
    for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
      const line = buf.slice(0, i);
      if (line.startsWith('data: {')) { const j = JSON.parse(line.slice(6)); if (j.usage) usage = j.usage; }
    }
  }
  return [first, usage.completion_tokens];
}

await stream(0); // warm up
const header = 'streams  tokens  wall s  aggregate tok/s  per stream tok/s  mean decode batch  speedup';
const row = (c, tokens, dt, rate, batch, speedup) =>
  `${String(c).padStart(7)}  ${String(tokens).padStart(6)}  ${dt.toFixed(2).padStart(6)}  ${rate.toFixed(1).padStart(15)}  ` +
  `${(rate / c).toFixed(1).padStart(16)}  ${batch.toFixed(2).padStart(17)}  ${speedup.toFixed(2).padStart(6)}x`;
const median = (v) => { const a = [...v].sort((x, y) => x - y); return a.length % 2 ? a[a.length >> 1] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2; };
const results = streams.map(() => []); // per stream count: [tokens, dt, rate, batch, speedup] of every round
for (let r = 0; r < rounds; r++) {
  if (rounds > 1) console.log(`round ${r + 1} of ${rounds}`);
  console.log(header);
  let single = 0;
  for (const [i, c] of streams.entries()) {
    const m0 = await metrics();
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: c }, (_, k) => stream(k)));
    const dt = (performance.now() - t0) / 1000;
    const m1 = await metrics();
    const tokens = rs.reduce((a, [, n]) => a + n, 0);
    const rate = tokens / dt;
    if (i === 0) single = rate / c;
    const batch = (m1.dsc_decode_batch_tokens_total - m0.dsc_decode_batch_tokens_total) /
                  Math.max(1, m1.dsc_decode_steps_total - m0.dsc_decode_steps_total);
    results[i].push([tokens, dt, rate, batch, rate / single]);
    console.log(row(c, tokens, dt, rate, batch, rate / single));
  }
}
if (rounds > 1) {
  console.log(`median of ${rounds} rounds`);
  console.log(header);
  for (const [i, c] of streams.entries()) {
    const col = (k) => median(results[i].map((x) => x[k]));
    console.log(row(c, col(0), col(1), col(2), col(3), col(4)));
  }
}
srv.kill('SIGTERM');
