// load.mjs — a bounded load test on loopback: 64 concurrent clients, each
// sending ROUNDS requests (streaming and not, chat and completions) to one
// `dsc serve --parallel 8`. Every response must be complete and well-formed;
// prints requests/s, generated tokens/s, the mean decode batch size from
// /metrics, and the server's resident memory before, at peak and after.
//
// usage: node load.mjs DSC_BINARY GOLDEN_DIR TMP_DIR
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { check, checkServerLogs, metrics, sanitized, setup, sleep, startServer, stopServer } from './lib.mjs';

const env = setup(process.argv);
const CLIENTS = 64, ROUNDS = 2, WAVES = 2, MAX_TOKENS = 32;

async function one(ai, k, i) {
  const stream = (k + i) % 2 === 1, chat = (k + i) % 4 !== 2;
  const seed = k * 100 + i;
  if (chat) {
    const body = { model: 'dsc', messages: [{ role: 'user', content: `Client ${k} asks question ${i}.` }],
                   max_tokens: MAX_TOKENS, seed };
    if (!stream) {
      const r = await ai.chat.completions.create(body);
      assert.equal(r.choices.length, 1);
      assert.equal(typeof r.choices[0].message.content, 'string');
      assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
      assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
      return r.usage.completion_tokens;
    }
    let finish = null, usage = null;
    for await (const ch of await ai.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) if (c.finish_reason) finish = c.finish_reason;
    }
    assert.ok(['stop', 'length'].includes(finish), `finish ${finish}`);
    assert.ok(usage && usage.completion_tokens >= 1 && usage.completion_tokens <= MAX_TOKENS);
    return usage.completion_tokens;
  }
  const r = await ai.completions.create({ model: 'dsc', prompt: `Client ${k}, line ${i}:`, max_tokens: MAX_TOKENS, seed });
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  return r.usage.completion_tokens;
}

async function main() {
  const s = await startServer(env, ['--parallel', '8', '-c', '1024', '--queue', '128']);
  const ai = new OpenAI({ apiKey: 'none', baseURL: `${s.base}/v1`, maxRetries: 0, timeout: 30000 });
  await ai.chat.completions.create({ model: 'dsc', messages: [{ role: 'user', content: 'warm up' }], max_tokens: 4 });
  await sleep(200);
  const m0 = await metrics(s);
  let peak = 0;
  const sampler = setInterval(() => metrics(s).then((m) => { peak = Math.max(peak, m.dsc_process_resident_bytes); }, () => {}), 100);
  const errors = [], rss = [];
  let tokens = 0, requests = 0, dt = 0;
  for (let w = 0; w < WAVES; w++) { // the same load twice: memory must not grow from one wave to the next
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, async (_, k) => {
      for (let i = 0; i < ROUNDS; i++) {
        try { const n = await one(ai, k, w * ROUNDS + i); tokens += n; requests++; } catch (e) { errors.push(String(e.message || e)); }
      }
    }));
    dt += (performance.now() - t0) / 1000;
    await sleep(300); // the engine goes idle and trims
    rss.push((await metrics(s)).dsc_process_resident_bytes);
  }
  clearInterval(sampler);
  const m1 = await metrics(s);
  const steps = m1.dsc_decode_steps_total - m0.dsc_decode_steps_total;
  const batch = (m1.dsc_decode_batch_tokens_total - m0.dsc_decode_batch_tokens_total) / Math.max(steps, 1);
  const mib = (b) => (b / 1048576).toFixed(1);
  await check(`load: ${CLIENTS} concurrent clients x ${ROUNDS * WAVES} requests, every response well-formed`, async () => {
    assert.equal(errors.length, 0, `${errors.length} errors, first: ${errors[0]}`);
    assert.equal(requests, CLIENTS * ROUNDS * WAVES);
    return `${(requests / dt).toFixed(1)} requests/s, ${(tokens / dt).toFixed(0)} generated tokens/s, ` +
           `mean decode batch ${batch.toFixed(2)} of 8, ${dt.toFixed(2)} s`;
  });
  await check('load: decode batches formed (mean batch > 2)', async () => {
    assert.ok(batch > 2, `mean batch ${batch}`);
  });
  await check('load: new prompts joined running decode steps', async () => {
    const joined = m1.dsc_prefill_joined_tokens_total - m0.dsc_prefill_joined_tokens_total;
    const all = m1.dsc_prefill_tokens_total - m0.dsc_prefill_tokens_total;
    assert.ok(joined > 0 && joined <= all, `joined ${joined} of ${all}`);
    return `${joined} of ${all} prompt tokens`;
  });
  await check('load: server idle again (no slot busy, queue empty), memory back near its idle level', async () => {
    assert.equal(m1.dsc_slots_busy, 0);
    assert.equal(m1.dsc_queue_depth, 0);
    const idle = m0.dsc_process_resident_bytes, [after1, after] = rss;
    const note = `RSS ${mib(idle)} MiB idle, ${mib(peak)} MiB peak, ${mib(after1)} / ${mib(after)} MiB after waves 1 / 2`;
    if (sanitized(env)) return `${note}; not checked under a sanitizer`;
    assert.ok(after <= idle + 16 * 1048576, note);
    assert.ok(after <= after1 + 4 * 1048576, `grows: ${note}`);
    return note;
  });
  await stopServer(s);
  await checkServerLogs();
}

const watchdog = setTimeout(() => { console.log('FAIL watchdog: load test took over 60 s'); process.exit(1); }, 60000);
main().catch((e) => { console.log(`FAIL load aborted: ${String(e.stack || e).split('\n').slice(0, 3).join(' ')}`); })
  .finally(() => { clearTimeout(watchdog); process.exit(0); });
