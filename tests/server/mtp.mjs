// mtp.mjs — `dsc serve --mtp` (speculative decoding: the checkpoint's MTP
// layer drafts a token per slot, the decode step verifies it) answers
// exactly what the server without drafts answers: the same text, tokens,
// logprobs, finish reasons and usage, alone and with slots busy together,
// after a prompt restored from the block store, with penalties, stop
// strings and several choices (with --batch-invariant, also four requests
// at once against each alone); /metrics counts the drafts. --mtp-p-min
// withholds the doubtful guesses and changes nothing else.
//
// usage: node mtp.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { check, checkServerLogs, metrics, setup, startServer, stopServer } from './lib.mjs';

const env = setup(process.argv);
const LONG = 'The quick brown fox jumps over the lazy dog. '.repeat(5); // 3 whole 64-token blocks

const post = async (s, p, body) => {
  const r = await fetch(`${s.base}${p}`, { method: 'POST', body: JSON.stringify(body),
                                           headers: { 'content-type': 'application/json' } });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
};
// What must not change with drafts: everything but ids, times, fingerprints
// and the prompt cache's hits (which depend on what came before).
const answer = (j) => JSON.stringify({ choices: j.choices, prompt: j.usage.prompt_tokens,
                                       completion: j.usage.completion_tokens });

const ASKS = [
  ['greedy', { prompt: 'Once upon a time', max_tokens: 48, temperature: 0, ignore_eos: true }],
  ['sampled (seed)', { prompt: 'Once upon a time', max_tokens: 48, temperature: 0.9, seed: 3, ignore_eos: true }],
  ['logprobs, top 3', { prompt: 'The cat', max_tokens: 24, temperature: 0, logprobs: 3, ignore_eos: true }],
  ['penalties', { prompt: 'abc abc abc', max_tokens: 32, temperature: 0, frequency_penalty: 0.8, presence_penalty: 0.3,
                  repetition_penalty: 1.2, ignore_eos: true }],
  ['stop strings', { prompt: 'Once upon a time', max_tokens: 200, seed: 11, stop: 'etaoinshrdlucmfw'.split('').slice(0, 4) }],
  ['n = 3', { prompt: 'Hello', max_tokens: 20, n: 3, temperature: 0.8, seed: 5, ignore_eos: true }],
  ['max_tokens 2 (one draft at most)', { prompt: 'Hi', max_tokens: 2, temperature: 0, ignore_eos: true }],
  ['long prompt', { prompt: LONG, max_tokens: 16, temperature: 0, ignore_eos: true }],
];

// The golden model with the main model's final norm and the MTP head's norm
// set to zero: every logit is 0, so greedy decoding gives token 0 every time
// and so does the module's draft, which is then always taken. (The golden
// model's random drafts are almost never taken.)
function zeroHeadsModel(from, to) {
  fs.mkdirSync(to, { recursive: true });
  fs.copyFileSync(path.join(from, 'config.json'), path.join(to, 'config.json'));
  const b = fs.readFileSync(path.join(from, 'model.safetensors'));
  const n = Number(b.readBigUInt64LE(0)), h = JSON.parse(b.subarray(8, 8 + n).toString());
  const layers = JSON.parse(fs.readFileSync(path.join(from, 'config.json'))).num_hidden_layers;
  for (const name of ['model.norm.weight', `model.layers.${layers}.shared_head.norm.weight`]) {
    const [a, e] = h[name].data_offsets;
    b.fill(0, 8 + n + a, 8 + n + e);
  }
  fs.writeFileSync(path.join(to, 'model.safetensors'), b);
  return to;
}

async function main() {
  const plain = await startServer(env, ['--parallel', '4', '-c', '512']);
  const spec = await startServer(env, ['--parallel', '4', '-c', '512', '--mtp']);

  await check('serve --mtp: the start line names the drafts', async () => {
    assert.match(spec.log, /MTP drafts/);
    assert.doesNotMatch(plain.log, /MTP drafts/);
  });

  const want = {};
  for (const [name, q] of ASKS) {
    want[name] = answer(await post(plain, '/v1/completions', q));
    await check(`serve --mtp, ${name}: the answer without drafts`, async () => {
      const got = answer(await post(spec, '/v1/completions', q));
      assert.equal(got, want[name]);
    });
  }

  await check('serve --mtp, chat: the answer without drafts', async () => {
    const q = { messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 40, temperature: 0.7, seed: 9 };
    assert.equal(answer(await post(spec, '/v1/chat/completions', q)), answer(await post(plain, '/v1/chat/completions', q)));
  });

  // Requests that arrive together share steps (a short prompt joins the pass
  // of the others' decode tokens), which can change the last bits of their
  // logits against a request alone; --batch-invariant makes every row the
  // same bits in any step, so drafts are checked apart from that.
  const plainBI = await startServer(env, ['--parallel', '4', '-c', '512', '--batch-invariant']);
  const specBI = await startServer(env, ['--parallel', '4', '-c', '512', '--batch-invariant', '--mtp']);
  await check('serve --mtp --batch-invariant, four requests at once: each the answer without drafts, one at a time', async () => {
    const four = ASKS.slice(0, 4), alone = [];
    for (const [, q] of four) alone.push(answer(await post(plainBI, '/v1/completions', q)));
    const got = await Promise.all(four.map(([, q]) => post(specBI, '/v1/completions', q)));
    got.forEach((j, i) => assert.equal(answer(j), alone[i], four[i][0]));
  });
  await check('serve --mtp --batch-invariant, JSON mode, two at once: the answers without drafts', async () => {
    const Q = '"'.charCodeAt(0) + 2, C = '}'.charCodeAt(0) + 2;
    const asks = [1, 2].map((seed) => ({ prompt: 'Data:', max_tokens: 300, temperature: 1, seed, logprobs: 1,
                                         response_format: { type: 'json_object' }, logit_bias: { [Q]: 4, [C]: 2 } }));
    const alone = [];
    for (const q of asks) alone.push(answer(await post(plainBI, '/v1/completions', q)));
    const got = await Promise.all(asks.map((q) => post(specBI, '/v1/completions', q)));
    got.forEach((j, i) => {
      assert.equal(answer(j), alone[i]);
      assert.equal(typeof JSON.parse(j.choices[0].text), 'object');
    });
  });
  await stopServer(plainBI);
  await stopServer(specBI);

  await check('serve --mtp: a prompt restored from the block store drafts as before', async () => {
    const q = { prompt: LONG + 'And then', max_tokens: 24, temperature: 0, ignore_eos: true };
    const w = answer(await post(plain, '/v1/completions', q));
    await post(spec, '/v1/completions', { prompt: 'Other.', max_tokens: 2, n: 4 }); // every slot reused
    const m0 = await metrics(spec);
    const j = await post(spec, '/v1/completions', q);
    const m1 = await metrics(spec);
    assert.equal(m1.dsc_prompt_cache_restores_total - m0.dsc_prompt_cache_restores_total, 1, 'one restore');
    assert.ok(j.usage.prompt_cache_hit_tokens >= 192, `hit ${j.usage.prompt_cache_hit_tokens}`);
    assert.equal(answer(j), w);
    return `hit ${j.usage.prompt_cache_hit_tokens}`;
  });

  await check('serve --mtp: /metrics counts the drafts verified', async () => {
    const m = await metrics(spec), p = await metrics(plain);
    const d = m.dsc_mtp_drafted_tokens_total, a = m.dsc_mtp_accepted_tokens_total;
    assert.ok(d > 0 && a >= 0 && a <= d, `drafted ${d}, taken ${a}`);
    assert.equal(p.dsc_mtp_drafted_tokens_total, 0, 'no drafts without --mtp');
    return `${a} of ${d} random drafts taken`;
  });
  await stopServer(spec);

  // --mtp-p-min 0.05: the random module's guesses fall on both sides of it.
  const pmin = await startServer(env, ['--parallel', '4', '-c', '512', '--mtp', '--mtp-p-min', '0.05']);
  await check('serve --mtp --mtp-p-min: the start line names the bound', async () => {
    assert.match(pmin.log, /MTP drafts where at least 0\.05 likely/);
  });
  await check('serve --mtp --mtp-p-min 0.05: the answers without drafts; guesses verified and withheld', async () => {
    for (const [name, q] of ASKS.slice(0, 2))
      assert.equal(answer(await post(pmin, '/v1/completions', q)), want[name], name);
    const m = await metrics(pmin), p = await metrics(plain);
    const d = m.dsc_mtp_drafted_tokens_total, w = m.dsc_mtp_withheld_tokens_total;
    assert.ok(d > 0 && w > 0, `${d} verified, ${w} withheld`);
    assert.equal(p.dsc_mtp_withheld_tokens_total, 0, 'none withheld without --mtp');
    return `${d} guesses verified, ${w} withheld`;
  });
  await stopServer(pmin);
  await stopServer(plain);

  // Drafts that are taken: the bookkeeping of two tokens from one pass.
  const zenv = { ...env, model: zeroHeadsModel(env.model, path.join(env.tmp, 'zero-heads')) };
  const zplain = await startServer(zenv, ['--parallel', '2', '-c', '64']);
  const zspec = await startServer(zenv, ['--parallel', '2', '-c', '64', '--mtp']);
  const ZASKS = [
    ['7 tokens, logprobs', { prompt: 'Once', max_tokens: 7, temperature: 0, logprobs: 2, ignore_eos: true }],
    ['8 tokens', { prompt: 'Once', max_tokens: 8, temperature: 0, ignore_eos: true }],
    ['chat to the end of the context', { messages: [{ role: 'user', content: 'Go on.' }], temperature: 0, ignore_eos: true }],
    ['n = 2', { prompt: 'Once', max_tokens: 15, temperature: 0, n: 2, ignore_eos: true }],
  ];
  for (const [name, q] of ZASKS)
    await check(`serve --mtp, drafts taken, ${name}: the answer without drafts`, async () => {
      const at = q.messages ? '/v1/chat/completions' : '/v1/completions';
      const w = await post(zplain, at, q), g = await post(zspec, at, q);
      assert.equal(answer(g), answer(w));
      return `${g.usage.completion_tokens} tokens, ${g.choices[0].finish_reason}`;
    });
  await check('serve --mtp, drafts taken, streamed: the same text, tokens and offsets (two tokens a chunk)', async () => {
    const q = { prompt: 'Once', max_tokens: 9, temperature: 0, ignore_eos: true, stream: true, logprobs: 1 };
    const read = async (s) => {
      const r = await fetch(`${s.base}/v1/completions`, { method: 'POST', body: JSON.stringify(q),
                                                          headers: { 'content-type': 'application/json' } });
      const o = { text: '', tokens: [], lp: [], offsets: [], finish: [], chunks: 0 };
      for (const l of (await r.text()).split('\n').filter((x) => x.startsWith('data: {'))) {
        o.chunks++;
        for (const c of JSON.parse(l.slice(6)).choices) {
          o.text += c.text;
          if (c.logprobs) o.tokens.push(...c.logprobs.tokens), o.lp.push(...c.logprobs.token_logprobs),
            o.offsets.push(...c.logprobs.text_offset);
          if (c.finish_reason) o.finish.push(c.finish_reason);
        }
      }
      return o;
    };
    const w = await read(zplain), g = await read(zspec), nw = w.chunks, ng = g.chunks;
    delete w.chunks, delete g.chunks;
    assert.deepEqual(g, w);
    assert.equal(g.tokens.length, 9);
    return `${ng} chunks against ${nw}`;
  });
  await check('serve --mtp, drafts taken: the slot holds what it evaluated (a continuation hits all of it)', async () => {
    const a = [0, 81, 112, 101, 103], hits = [];
    for (const s of [zplain, zspec]) {
      await post(s, '/v1/completions', { prompt: a, max_tokens: 9, temperature: 0, ignore_eos: true });
      const j = await post(s, '/v1/completions', { prompt: [...a, ...Array(9).fill(0), 7], max_tokens: 3,
                                                   temperature: 0, ignore_eos: true });
      hits.push(j.usage.prompt_cache_hit_tokens);
    }
    // the prompt and 8 of the 9 tokens (the last one sampled is never evaluated)
    assert.deepEqual(hits, [a.length + 8, a.length + 8]);
  });
  await check('serve --mtp, drafts taken: /metrics counts them; about two tokens a slot pass', async () => {
    const m = await metrics(zspec), p = await metrics(zplain);
    const d = m.dsc_mtp_drafted_tokens_total, a = m.dsc_mtp_accepted_tokens_total;
    assert.ok(a > 0 && a <= d, `drafted ${d}, taken ${a}`);
    const per = (x) => x.dsc_completion_tokens_total / x.dsc_decode_batch_tokens_total;
    assert.ok(per(m) > 1.5 * per(p), `tokens per slot pass ${per(m)} with drafts, ${per(p)} without`);
    return `${a} of ${d} drafts taken; tokens per slot pass ${per(m).toFixed(2)} against ${per(p).toFixed(2)}`;
  });
  // --mtp-max-batch 1: a slot drafts only while it generates alone.
  const zone = await startServer(zenv, ['--parallel', '2', '-c', '64', '--mtp', '--mtp-max-batch', '1']);
  await check('serve --mtp --mtp-max-batch 1: the start line names the bound', async () => {
    assert.match(zone.log, /MTP drafts while at most 1 slots generate/);
  });
  for (const [name, q, drafts] of [
    ['n = 2 (two slots at once: no drafts)', { prompt: 'Once', max_tokens: 15, temperature: 0, n: 2, ignore_eos: true }, false],
    ['one request (one slot: drafts)', { prompt: 'Once', max_tokens: 8, temperature: 0, ignore_eos: true }, true],
  ])
    await check(`serve --mtp --mtp-max-batch 1, drafts taken, ${name}: the answer without drafts`, async () => {
      const m0 = await metrics(zone);
      const w = await post(zplain, '/v1/completions', q), g = await post(zone, '/v1/completions', q);
      const d = (await metrics(zone)).dsc_mtp_drafted_tokens_total - m0.dsc_mtp_drafted_tokens_total;
      assert.equal(answer(g), answer(w));
      if (drafts) assert.ok(d > 0, `${d} drafts`);
      else assert.equal(d, 0, 'drafts with two slots generating');
      return `${d} drafts`;
    });
  await stopServer(zone);
  // The zero-heads module gives every token 1/V, below any bound: no guess is verified.
  const zmin = await startServer(zenv, ['--parallel', '2', '-c', '64', '--mtp', '--mtp-p-min', '0.5']);
  await check('serve --mtp --mtp-p-min 0.5, guesses of 1/V: the answer without drafts, every guess withheld', async () => {
    const q = { prompt: 'Once', max_tokens: 8, temperature: 0, ignore_eos: true };
    const w = await post(zplain, '/v1/completions', q), g = await post(zmin, '/v1/completions', q);
    const m = await metrics(zmin);
    assert.equal(answer(g), answer(w));
    assert.equal(m.dsc_mtp_drafted_tokens_total, 0, 'guesses verified');
    // 8 tokens: the first from the prompt's pass, then 7 steps, the last of
    // which may yield only one (max_tokens), so no guess there: 6 guesses.
    assert.equal(m.dsc_mtp_withheld_tokens_total, 6, 'a guess withheld at every step that may yield two');
    return `${m.dsc_mtp_withheld_tokens_total} withheld`;
  });
  await stopServer(zmin);
  await checkServerLogs();
}

const watchdog = setTimeout(() => { console.log('FAIL watchdog: mtp took over 80 s'); process.exit(1); }, 80000);
main().catch((e) => { console.log(`FAIL mtp aborted: ${String(e.stack || e).split('\n').slice(0, 3).join(' ')}`); })
  .finally(() => { clearTimeout(watchdog); process.exit(0); });
