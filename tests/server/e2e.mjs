// e2e.mjs — drives a running `dsc serve` with the official `openai` client
// (and plain fetch / raw sockets where the client cannot go): the tiny
// golden checkpoint has random weights, so the checks are about structure,
// counts and consistency, never about the text.
//
// usage: node e2e.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import OpenAI from 'openai';
import { check, checkServerLogs, metrics, setup, sleep, startServer, stopServer, tinyTokenizerWith } from './lib.mjs';

const env = setup(process.argv);
const KEY = 'sk-dsc-test';
const SYS = 'You are terse.';
const USER = 'Say hello.';
// Tiny tokenizer: printable ASCII is one id per byte; the R1 template adds
// BOS, <｜User｜>, <｜Assistant｜>, <think> and "\n".
const PROMPT_TOKENS = 5 + SYS.length + USER.length;
const LONG = 'The quick brown fox jumps over the lazy dog. '.repeat(5); // 225 bytes: 3 whole 64-token blocks

const client = (s, key = KEY) => new OpenAI({ apiKey: key, baseURL: `${s.base}/v1`, maxRetries: 0, timeout: 20000 });
const post = (s, p, body, headers = {}, signal = undefined) => fetch(`${s.base}${p}`, {
  method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), signal,
  headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
});

function assertUsage(u, nPrompt) {
  assert.equal(typeof u, 'object', 'usage missing');
  if (nPrompt !== undefined) assert.equal(u.prompt_tokens, nPrompt, 'prompt_tokens');
  assert.ok(u.completion_tokens >= 1, 'completion_tokens >= 1');
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, 'total_tokens');
  assert.equal(u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens, u.prompt_tokens, 'hit + miss = prompt');
  assert.ok(u.prompt_cache_hit_tokens >= 0 && u.prompt_cache_hit_tokens < u.prompt_tokens, 'hit in [0, prompt)');
  const r = u.completion_tokens_details?.reasoning_tokens;
  assert.ok(Number.isInteger(r) && r >= 0 && r <= u.completion_tokens, 'reasoning_tokens');
}

async function assertErrorShape(res, status, param) {
  assert.equal(res.status, status, `status ${res.status}`);
  const j = await res.json();
  assert.ok(j.error && typeof j.error.message === 'string' && j.error.message.length > 0, 'error.message');
  for (const k of ['type', 'param', 'code']) assert.ok(k in j.error, `error.${k} present`);
  if (param !== undefined) assert.equal(j.error.param, param, 'error.param');
  return j.error;
}

// Reads a streamed chat completion, reassembling every choice.
async function collectChat(stream) {
  const out = { chunks: 0, ids: new Set(), choices: [], usage: null, roleFirst: true };
  for await (const ch of stream) {
    out.chunks++;
    out.ids.add(ch.id);
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) out.usage = ch.usage;
    for (const c of ch.choices) {
      const o = (out.choices[c.index] ??= { reasoning: '', content: '', finish: null, roles: 0, lp: 0, first: true });
      if (o.first && c.delta.role !== 'assistant') out.roleFirst = false;
      o.first = false;
      if (c.delta.role) o.roles++;
      o.reasoning += c.delta.reasoning_content ?? '';
      o.content += c.delta.content ?? '';
      if (c.logprobs?.content) o.lp += c.logprobs.content.length;
      if (c.finish_reason) { assert.equal(o.finish, null, 'one finish_reason per choice'); o.finish = c.finish_reason; }
    }
  }
  return out;
}

async function main() {
  const s = await startServer(env, ['--parallel', '4', '-c', '512', '--api-key', KEY, '--queue', '64']);
  const ai = client(s);
  const msgs = [{ role: 'system', content: SYS }, { role: 'user', content: USER }];
  let first;

  await check('GET /health', async () => {
    const r = await fetch(`${s.base}/health`);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).status, 'ok');
  });

  await check('GET /v1/models (openai client)', async () => {
    const list = await ai.models.list();
    assert.equal(list.data.length, 1);
    assert.equal(list.data[0].object, 'model');
    assert.equal(typeof list.data[0].id, 'string');
    const m = await ai.models.retrieve(list.data[0].id);
    assert.equal(m.id, list.data[0].id);
    const err = await ai.models.retrieve('no-such-model').then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
  });

  await check('chat, non-streaming: structure, template, usage', async () => {
    const r = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 24, seed: 7, temperature: 0.8 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.equal(typeof c.message.reasoning_content, 'string', 'reasoning_content (R1 template detected)');
    assert.ok(['stop', 'length'].includes(c.finish_reason));
    assertUsage(r.usage, PROMPT_TOKENS);
    assert.ok(r.usage.completion_tokens <= 24);
    if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 24);
    first = r;
    return `prompt ${r.usage.prompt_tokens}, completion ${r.usage.completion_tokens}, reasoning ${r.usage.completion_tokens_details.reasoning_tokens}`;
  });

  let second;
  await check('prompt cache: repeated prompt hits (prompt_cache_hit_tokens > 0)', async () => {
    second = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 24, seed: 7, temperature: 0.8 });
    assert.ok(second.usage.prompt_cache_hit_tokens > 0, `hit ${second.usage.prompt_cache_hit_tokens}`);
    assert.equal(second.usage.prompt_cache_hit_tokens, PROMPT_TOKENS - 1);
    return `hit ${second.usage.prompt_cache_hit_tokens} of ${second.usage.prompt_tokens}`;
  });

  await check('chat, streaming: deltas reassemble to the same answer, usage chunk, [DONE]', async () => {
    const stream = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 24, seed: 7, temperature: 0.8,
                                                      stream: true, stream_options: { include_usage: true } });
    const o = await collectChat(stream);
    assert.equal(o.ids.size, 1, 'one id for all chunks');
    assert.ok(o.roleFirst, 'first delta carries the role');
    assert.equal(o.choices.length, 1);
    const c = o.choices[0], want = second.choices[0];
    assert.equal(c.roles, 1);
    assert.equal(c.reasoning, want.message.reasoning_content, 'reasoning reassembled from deltas');
    assert.equal(c.content, want.message.content, 'content reassembled from deltas');
    assert.equal(c.finish, want.finish_reason);
    assertUsage(o.usage, PROMPT_TOKENS);
    assert.equal(o.usage.completion_tokens, second.usage.completion_tokens);
    return `${o.chunks} chunks, ${c.reasoning.length} reasoning bytes`;
  });

  await check('n = 3: three choices, one prompt, usage sums the choices', async () => {
    const r = await ai.chat.completions.create({ model: 'dsc', messages: [{ role: 'user', content: 'Pick a number.' }],
                                                n: 3, max_tokens: 12, temperature: 1, seed: 3, logprobs: true });
    assert.equal(r.choices.length, 3);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    const lens = r.choices.map((c) => c.logprobs.content.length);
    assert.equal(lens.reduce((a, b) => a + b), r.usage.completion_tokens, 'completion_tokens = sum over choices');
    assert.equal(r.usage.prompt_tokens, 5 + 'Pick a number.'.length);
    const texts = new Set(r.choices.map((c) => c.message.reasoning_content + '|' + c.message.content));
    assert.ok(texts.size >= 2, 'choices differ (seed + index)');
    return `tokens ${lens.join('+')}`;
  });

  await check('n = 3, streaming: every index finishes', async () => {
    const o = await collectChat(await ai.chat.completions.create({
      model: 'dsc', messages: [{ role: 'user', content: 'Pick a number.' }], n: 3, max_tokens: 12, stream: true,
      stream_options: { include_usage: true } }));
    assert.equal(o.choices.length, 3);
    for (const c of o.choices) assert.ok(['stop', 'length'].includes(c.finish));
    assertUsage(o.usage);
  });

  await check('logprobs / top_logprobs', async () => {
    const r = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 6, logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, r.usage.completion_tokens);
    for (const t of lp) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0 && Array.isArray(t.bytes));
      assert.equal(t.top_logprobs.length, 3);
      for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob, 'top sorted');
      assert.ok(t.logprob <= t.top_logprobs[0].logprob + 1e-5);
    }
  });
  await check('completions logprobs: one key per text in each top_logprobs object (pieces of a UTF-8 character)', async () => {
    // Byte tokens 0x80-0xFF each read as U+FFFD; as keys of one object they would repeat.
    const r = await post(s, '/v1/completions', { prompt: 'é', max_tokens: 12, logprobs: 5, seed: 3, ignore_eos: true });
    assert.equal(r.status, 200);
    const raw = await r.text();
    // JSON.parse keeps one of repeated keys, so read the keys off the text: the strings followed by
    // ':' inside each object of the top_logprobs array.
    const objects = [];
    let i = raw.indexOf('"top_logprobs":[') + 16, cur = null;
    while (i < raw.length && raw[i] !== ']') {
      const ch = raw[i];
      if (ch === '"') {
        let j = i + 1;
        while (raw[j] !== '"') j += raw[j] === '\\' ? 2 : 1;
        if (raw[j + 1] === ':') cur.push(JSON.parse(raw.slice(i, j + 1)));
        i = j + 1;
      } else {
        if (ch === '{') cur = [];
        if (ch === '}') objects.push(cur);
        i++;
      }
    }
    assert.equal(objects.length, 12, raw.slice(0, 300));
    let keys = 0, fffd = 0;
    for (const ks of objects) {
      assert.equal(new Set(ks).size, ks.length, `repeated key in ${JSON.stringify(ks)}`);
      assert.ok(ks.length >= 1);
      keys += ks.length;
      fffd += ks.includes('\ufffd');
    }
    assert.ok(fffd >= 1, 'no U+FFFD key: the check did not meet the case');
    return `${keys} keys in 12 objects, ${fffd} with U+FFFD`;
  });

  await check('completions: stop strings cut the text (finish_reason stop)', async () => {
    const stop = 'etaoinshrdlucmfw'.split(''); // 16 single letters: one soon appears in random text
    const r = await ai.completions.create({ model: 'dsc', prompt: 'Once upon a time', max_tokens: 400, stop, seed: 11 });
    assert.equal(r.object, 'text_completion');
    const t = r.choices[0].text;
    for (const x of stop) assert.ok(!t.includes(x), `text contains stop '${x}'`);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens < 400);
    return `stopped after ${r.usage.completion_tokens} tokens`;
  });

  await check('completions, streaming', async () => {
    const st = await ai.completions.create({ model: 'dsc', prompt: 'Once upon a time', max_tokens: 8, stream: true,
                                             stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null;
    for await (const ch of st) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) { text += c.text; if (c.finish_reason) finish = c.finish_reason; }
    }
    assert.ok(['stop', 'length'].includes(finish));
    assertUsage(usage, 1 + 'Once upon a time'.length);
  });

  await check('completions logprobs, streamed: the same tokens and text offsets as not streamed', async () => {
    const q = { model: 'dsc', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 1, ignore_eos: true };
    const whole = (await ai.completions.create(q)).choices[0].logprobs;
    const st = await ai.completions.create({ ...q, stream: true });
    const tokens = [], offsets = [];
    for await (const ch of st)
      for (const c of ch.choices) if (c.logprobs) { tokens.push(...c.logprobs.tokens); offsets.push(...c.logprobs.text_offset); }
    assert.deepEqual(tokens, whole.tokens);
    assert.deepEqual(offsets, whole.text_offset);
    assert.ok(offsets.length === 8 && offsets[7] > 0, `offsets ${offsets}`);
  });

  await check('context end mid-answer: finish_reason length, never beyond the context', async () => {
    // ignore_eos (an extension, as in vLLM): generate until max_tokens, here the context end.
    const r = await ai.chat.completions.create({ model: 'dsc', messages: [{ role: 'user', content: 'Go on.' }], ignore_eos: true });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens + r.usage.completion_tokens, 512);
    const st = await ai.chat.completions.create({ model: 'dsc', messages: [{ role: 'user', content: 'Go on.' }],
                                                  ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    const o = await collectChat(st);
    assert.equal(o.choices[0].finish, 'length');
    assert.equal(o.usage.total_tokens, 512);
    return `${r.usage.completion_tokens} tokens generated`;
  });

  await check('block store: a long prefix restored after the slots were reused', async () => {
    const long = [{ role: 'user', content: LONG }];
    const a = await ai.chat.completions.create({ model: 'dsc', messages: long, max_tokens: 4 });
    const n = a.usage.prompt_tokens, block = Math.floor(n / 64) * 64;
    await ai.chat.completions.create({ model: 'dsc', messages: [{ role: 'user', content: 'Other.' }], n: 4, max_tokens: 2 });
    const m0 = await metrics(s);
    const b = await ai.chat.completions.create({ model: 'dsc', messages: long, max_tokens: 4 });
    const m1 = await metrics(s);
    assert.equal(b.usage.prompt_cache_hit_tokens, Math.min(block, n - 1), `hit ${b.usage.prompt_cache_hit_tokens}`);
    assert.equal(m1.dsc_prompt_cache_restores_total - m0.dsc_prompt_cache_restores_total, 1, 'one restore');
    return `prompt ${n}, hit ${b.usage.prompt_cache_hit_tokens}`;
  });

  await check('POST /tokenize and /detokenize round trip', async () => {
    const t = await (await post(s, '/tokenize', { content: 'Hello, world' })).json();
    assert.deepEqual(t.tokens, [...Buffer.from('Hello, world')].map((b) => b + 2));
    const t2 = await (await post(s, '/tokenize', { content: 'Hi', add_special: true })).json();
    assert.deepEqual(t2.tokens, [0, 'H'.charCodeAt(0) + 2, 'i'.charCodeAt(0) + 2]);
    const d = await (await post(s, '/detokenize', { tokens: t.tokens })).json();
    assert.equal(d.content, 'Hello, world');
  });

  // ------------------------------------------------------------ errors
  await check('400 for a string holding \\u0000, which would cut it short; an escaped backslash before u0000 is text', async () => {
    const e = await assertErrorShape(await post(s, '/v1/chat/completions', '{"messages": [{"role": "user", "content": "a\\u0000b"}], "max_tokens": 2}'), 400);
    assert.match(e.message, /NUL/);
    const ok = await post(s, '/v1/chat/completions', '{"messages": [{"role": "user", "content": "a\\\\u0000b"}], "max_tokens": 2}');
    assert.equal(ok.status, 200);
  });
  await check('400 malformed JSON (error shape)', async () => {
    await assertErrorShape(await post(s, '/v1/chat/completions', '{"messages": [{"role": "user", "content": "hi"}'), 400);
  });
  await check('400 for a key given twice in one object (readers differ on which value it means)', async () => {
    const r = await post(s, '/v1/chat/completions', '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "max_tokens": 4}');
    assert.equal(r.status, 400);
    const err = (await r.json()).error;
    assert.equal(err.code, 'invalid_json');
    assert.match(err.message, /"max_tokens" appears twice/);
  });
  await check('400 wrong type (openai client: BadRequestError naming the field)', async () => {
    for (const [body, param] of [[{ messages: 'hello' }, 'messages'], [{ messages: msgs, temperature: 'hot' }, 'temperature'],
                                 [{ messages: msgs, max_tokens: 1.5 }, 'max_tokens'], [{ messages: msgs, stop: 5 }, 'stop'],
                                 [{ messages: msgs, seed: 2 ** 53 }, 'seed'], [{ messages: msgs, seed: 1e19 }, 'seed'],
                                 [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role']]) {
      const err = await ai.chat.completions.create({ model: 'dsc', ...body }).then(() => null, (e) => e);
      assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, param);
      assert.equal(typeof err.error.message, 'string');
    }
  });
  await check('400 for what the server does not do (tools with a tokenizer without their tokens, JSON schemas, best_of), not ignored', async () => {
    for (const [body, param] of [[{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
                                 [{ tool_choice: 'required' }, 'tool_choice'],
                                 [{ functions: [{ name: 'f' }] }, 'functions'],
                                 [{ response_format: { type: 'json_schema', json_schema: { name: 'n', schema: {} } } },
                                  'response_format.json_schema.schema'],
                                 [{ frequency_penalty: 2.5 }, 'frequency_penalty'],
                                 [{ presence_penalty: -3 }, 'presence_penalty'],
                                 [{ stream_options: { include_usage: true } }, 'stream_options']]) {
      const err = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 2, ...body }).then(() => null, (e) => e);
      assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${err}`);
      assert.equal(err.param, param);
    }
    const c = await ai.completions.create({ model: 'dsc', prompt: 'ab', max_tokens: 2, best_of: 3 }).then(() => null, (e) => e);
    assert.ok(c instanceof OpenAI.BadRequestError && c.param === 'best_of', String(c));
    const ok = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 2, response_format: { type: 'text' },
                                                  frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, tool_choice: 'none' });
    assert.equal(ok.choices.length, 1);
  });
  await check('frequency and presence penalties: greedy answers move away from repeated tokens', async () => {
    const ask = (extra) => ai.completions.create({ model: 'dsc', prompt: 'The', max_tokens: 40, temperature: 0,
                                                  ignore_eos: true, ...extra }).then((r) => r.choices[0].text);
    const plain = await ask({});
    assert.equal(await ask({ frequency_penalty: 0, presence_penalty: 0 }), plain);
    const freq = await ask({ frequency_penalty: 2 }), pres = await ask({ presence_penalty: 2 });
    assert.notEqual(freq, plain, 'frequency_penalty changed nothing');
    assert.notEqual(pres, plain, 'presence_penalty changed nothing');
    const distinct = (t) => new Set(t).size;
    assert.ok(distinct(pres) >= distinct(plain), `presence_penalty: ${distinct(pres)} distinct characters against ${distinct(plain)}`);
  });
  await check('logit_bias: +100 forces a token, -100 on all others leaves one; logprobs stay raw; bad maps are a 400', async () => {
    const A = 'A'.charCodeAt(0) + 2, Z = 'Z'.charCodeAt(0) + 2, V = 512; // the tiny tokenizer: byte b is id b + 2
    const ask = async (extra) => {
      const r = await post(s, '/v1/completions', { prompt: 'The', max_tokens: 12, ignore_eos: true, ...extra });
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()).choices[0];
    };
    const greedy = await ask({ temperature: 0, logprobs: 1 });
    const forced = await ask({ temperature: 0, logprobs: 1, logit_bias: { [A]: 100 } });
    assert.equal(forced.text, 'A'.repeat(12));
    const raw = forced.logprobs.token_logprobs, top = forced.logprobs.top_logprobs;
    assert.ok(raw.some((lp, i) => lp < Math.max(...Object.values(top[i]))), 'logprobs are the raw logits\' (A is not the likeliest there)');
    assert.ok(!greedy.text.startsWith('AAAA'), 'the model alone writes A anyway');
    const others = Object.fromEntries(Array.from({ length: V }, (_, i) => [i, i === Z ? 0 : -100]));
    assert.equal((await ask({ temperature: 1.5, seed: 4, logit_bias: others })).text, 'Z'.repeat(12));
    assert.equal((await ask({ temperature: 0, logit_bias: {} })).text, greedy.text, 'an empty map');
    assert.equal((await ask({ temperature: 0, logit_bias: { [A]: 0 } })).text, greedy.text, 'a bias of 0');
    const chat = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 5, temperature: 0,
                                                    logit_bias: { [Z]: 100 } });
    assert.equal(chat.choices[0].message.content + (chat.choices[0].message.reasoning_content ?? ''), 'ZZZZZ');
    for (const bad of [{ x: 1 }, { '-1': 1 }, { '1.5': 1 }, { ' 7': 1 }, { 7: 101 }, { 7: -100.5 }, { 7: '3' }, { 7: null },
                       { [V]: 1 }, { 99999999999: 1 }]) {
      const e = await assertErrorShape(await post(s, '/v1/completions', { prompt: 'The', max_tokens: 2, logit_bias: bad }),
                                       400, 'logit_bias');
      assert.match(e.message, /logit_bias/);
    }
    await assertErrorShape(await post(s, '/v1/completions', { prompt: 'The', max_tokens: 2, logit_bias: [1] }), 400,
                           'logit_bias');
  });
  await check('response_format json_object: one JSON object, then stop; chat: after the reasoning', async () => {
    const Q = '"'.charCodeAt(0) + 2, C = '}'.charCodeAt(0) + 2;
    const closers = { [Q]: 4, [C]: 2 }; // the random model's strings and objects end within the limit
    let fields = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const r = await post(s, '/v1/completions', { prompt: 'Data:', max_tokens: 400, temperature: 1, seed,
                                                   response_format: { type: 'json_object' }, logit_bias: closers });
      const j = await r.json();
      assert.equal(r.status, 200, JSON.stringify(j));
      const text = j.choices[0].text, o = JSON.parse(text);
      assert.ok(o && typeof o === 'object' && !Array.isArray(o), `not an object: ${text}`);
      assert.equal(j.choices[0].finish_reason, 'stop', text);
      fields += Object.keys(o).length;
    }
    assert.ok(fields > 0, 'every object empty');
    // the same seed without JSON mode writes no JSON
    const free = await post(s, '/v1/completions', { prompt: 'Data:', max_tokens: 40, temperature: 1, seed: 1, logit_bias: closers });
    const freeText = (await free.json()).choices[0].text;
    assert.throws(() => JSON.parse(freeText), undefined, freeText);
    const think = (await (await post(s, '/tokenize', { content: '</think>' })).json()).tokens;
    assert.equal(think.length, 1, '</think> is one token');
    const chat = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 400, temperature: 1, seed: 2,
                                                    response_format: { type: 'json_object' },
                                                    logit_bias: { ...closers, [think[0]]: 100 } });
    const m = chat.choices[0].message;
    assert.equal(m.reasoning_content, '', 'the reasoning ends at once');
    assert.equal(typeof JSON.parse(m.content), 'object', m.content);
    assert.equal(chat.choices[0].finish_reason, 'stop');
    await assertErrorShape(await post(s, '/v1/completions', { prompt: 'x', max_tokens: 2, response_format: { type: 'yaml' } }),
                           400, 'response_format');
    return `6 objects, ${fields} fields`;
  });
  await check('response_format json_schema: every answer a document of the schema (pydantic\'s shape: $defs, anyOf, enum, bounds, format)', async () => {
    const schema = {
      $defs: { Addr: { type: 'object', title: 'Addr', properties: { city: { type: 'string', minLength: 2, maxLength: 12 },
                                                                  zip: { anyOf: [{ type: 'string' }, { type: 'null' }] } },
                       required: ['city', 'zip'], additionalProperties: false },
               Kind: { enum: ['home', 'work', 7] } },
      type: 'object', title: 'Person',
      properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 0, maximum: 120 },
                    score: { type: 'number', exclusiveMinimum: 0, maximum: 1 }, born: { type: 'string', format: 'date' },
                    kind: { $ref: '#/$defs/Kind' }, step: { type: 'number', multipleOf: 0.25, minimum: -3, maximum: 3 },
                    addr: { $ref: '#/$defs/Addr' }, tags: { type: 'array', items: { type: 'boolean' }, minItems: 1, maxItems: 3 } },
      required: ['name', 'age', 'score', 'born', 'kind', 'addr', 'tags', 'step'], additionalProperties: false,
    };
    const chars = (x) => [...x].length;
    const isPerson = (o) => {
      const keys = Object.keys(o).sort().join();
      assert.equal(keys, 'addr,age,born,kind,name,score,step,tags', `keys ${keys}`);
      assert.ok(Number.isInteger(o.step * 4) && o.step >= -3 && o.step <= 3, `step ${o.step}`);
      const day = new Date(`${o.born}T00:00:00Z`); // a real day: the same date back
      assert.ok(/^\d{4}-\d{2}-\d{2}$/.test(o.born) && day.toISOString().slice(0, 10) === o.born, `born ${o.born}`);
      assert.ok(typeof o.name === 'string' && chars(o.name) <= 10, 'name');
      assert.ok(Number.isInteger(o.age) && o.age >= 0 && o.age <= 120, `age ${o.age}`);
      assert.ok(typeof o.score === 'number' && o.score > 0 && o.score <= 1, `score ${o.score}`);
      assert.ok(['home', 'work', 7].includes(o.kind), 'kind');
      assert.equal(Object.keys(o.addr).sort().join(), 'city,zip');
      assert.ok(typeof o.addr.city === 'string' && chars(o.addr.city) >= 2 && chars(o.addr.city) <= 12, 'city');
      assert.ok(o.addr.zip === null || typeof o.addr.zip === 'string', 'zip');
      assert.ok(Array.isArray(o.tags) && o.tags.length >= 1 && o.tags.length <= 3 && o.tags.every((t) => typeof t === 'boolean'));
    };
    const Q = '"'.charCodeAt(0) + 2, C = '}'.charCodeAt(0) + 2;
    const THINK_END = (await (await post(s, '/tokenize', { content: '</think>' })).json()).tokens[0];
    const bias = { [Q]: 3, [C]: 2, [THINK_END]: 100 }; // the reasoning ends at once; strings and objects close soon
    const rf = { type: 'json_schema', json_schema: { name: 'Person', strict: true, schema } };
    let first;
    for (let seed = 1; seed <= 5; seed++) {
      const r = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 400, temperature: 1, seed,
                                                   response_format: rf, logit_bias: bias });
      assert.equal(r.choices[0].finish_reason, 'stop', r.choices[0].message.content);
      isPerson(JSON.parse(r.choices[0].message.content));
      first ??= r.choices[0].message.content;
    }
    // streamed: the same document
    const st = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 400, temperature: 1, seed: 1,
                                                  response_format: rf, logit_bias: bias, stream: true });
    let text = '';
    for await (const ch of st) text += ch.choices[0]?.delta?.content ?? '';
    assert.equal(text, first);
    // a tagged union (pydantic's discriminated Union[Cat, Dog]): the tag first, then the alternative it names
    const pets = { $defs: { Cat: { type: 'object', properties: { kind: { const: 'cat' }, lives: { type: 'integer', minimum: 1, maximum: 9 } },
                                   required: ['kind', 'lives'], additionalProperties: false },
                            Dog: { type: 'object', properties: { kind: { const: 'dog' }, good: { type: 'boolean' } },
                                   required: ['kind', 'good'], additionalProperties: false } },
                   type: 'object', properties: { pet: { oneOf: [{ $ref: '#/$defs/Cat' }, { $ref: '#/$defs/Dog' }],
                                                        discriminator: { propertyName: 'kind' } } },
                   required: ['pet'], additionalProperties: false };
    for (let seed = 1; seed <= 4; seed++) {
      const r = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 200, temperature: 1, seed, logit_bias: bias,
        response_format: { type: 'json_schema', json_schema: { name: 'Pets', strict: true, schema: pets } } });
      const { pet } = JSON.parse(r.choices[0].message.content);
      assert.ok(pet.kind === 'cat' ? Number.isInteger(pet.lives) && pet.lives >= 1 && pet.lives <= 9 && Object.keys(pet).length === 2
                                   : pet.kind === 'dog' && typeof pet.good === 'boolean' && Object.keys(pet).length === 2,
                r.choices[0].message.content);
      assert.ok(/^\s*\{\s*"pet"\s*:\s*\{\s*"kind"/.test(r.choices[0].message.content), `the tag first: ${JSON.stringify(r.choices[0].message.content)}`);
    }
    // refused: what the grammar cannot hold to, named
    for (const [sch, what] of [[{ type: 'object', properties: { d: { type: 'string', format: 'uri' } } }, /format 'uri'/],
                               [{ type: 'object', properties: { n: { type: ['integer', 'number'] } } }, /alike/],
                               [{ type: 'object', properties: { n: { type: 'integer', minimum: 3, maximum: 2 } } }, /no integer/],
                               [{}, /root/]]) {
      const e = await assertErrorShape(await post(s, '/v1/chat/completions', { messages: msgs, max_tokens: 2,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: sch } } }), 400, 'response_format.json_schema.schema');
      assert.match(e.message, what);
    }
    await assertErrorShape(await post(s, '/v1/chat/completions', { messages: msgs, max_tokens: 2,
      response_format: { type: 'json_schema', json_schema: { schema } } }), 400, 'response_format.json_schema.name');
    return `5 documents, e.g. ${first.length} bytes`;
  });
  await check('echo: the prompt before the answer, its tokens\' logprobs (the first null) as the answer\'s would be', async () => {
    const comp = async (body) => {
      const r = await post(s, '/v1/completions', { temperature: 0, ignore_eos: true, ...body });
      const j = await r.json();
      assert.equal(r.status, 200, JSON.stringify(j));
      return j;
    };
    const P = 'The cat sat on';
    const a = await comp({ prompt: P, max_tokens: 6, logprobs: 2, echo: true });
    const c = a.choices[0], lp = c.logprobs, np = a.usage.prompt_tokens - 1; // the BOS the server added is not echoed
    assert.ok(c.text.startsWith(P), c.text);
    assert.equal(lp.tokens.length, np + 6);
    assert.equal(lp.tokens.slice(0, np).join(''), P);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    assert.ok(lp.token_logprobs.slice(1).every((x) => typeof x === 'number' && x <= 0));
    assert.deepEqual(lp.text_offset.slice(0, 3), [0, lp.tokens[0].length, lp.tokens[0].length + lp.tokens[1].length]);
    assert.equal(a.usage.completion_tokens, 6);
    const plain = await comp({ prompt: P, max_tokens: 6, logprobs: 2 });
    assert.equal(c.text, P + plain.choices[0].text, 'echo + the answer without echo');
    assert.deepEqual(lp.token_logprobs.slice(np), plain.choices[0].logprobs.token_logprobs);
    // each prompt token's logprob: as the same token's when it is generated after the tokens before it
    // (forced by logit_bias, which leaves logprobs raw): the prompt's rows against decode steps
    const ids = [0, ...(await (await post(s, '/tokenize', { content: P })).json()).tokens];
    const b = await comp({ prompt: ids, max_tokens: 0, logprobs: 1, echo: true });
    const blp = b.choices[0].logprobs;
    assert.equal(blp.tokens.length, ids.length, 'token ids: no BOS added, every id echoed');
    assert.equal(blp.token_logprobs[0], null);
    assert.equal(b.choices[0].text, '<｜begin▁of▁sentence｜>' + P);
    assert.equal(b.choices[0].finish_reason, 'length');
    assert.equal(b.usage.completion_tokens, 0);
    let worst = 0;
    for (let k = 1; k < ids.length; k++) {
      const g = await comp({ prompt: ids.slice(0, k), max_tokens: 1, logprobs: 1, logit_bias: { [ids[k]]: 100 } });
      assert.equal(g.choices[0].logprobs.tokens[0], blp.tokens[k]);
      const d = Math.abs(g.choices[0].logprobs.token_logprobs[0] - blp.token_logprobs[k]);
      assert.ok(d < 1e-4, `token ${k}: ${blp.token_logprobs[k]} echoed, ${g.choices[0].logprobs.token_logprobs[0]} generated`);
      worst = Math.max(worst, d);
    }
    assert.ok(blp.top_logprobs.slice(1).every((t) => Object.keys(t).length === 1));
    // n = 2 and streaming echo the prompt too
    const two = await comp({ prompt: P, max_tokens: 3, n: 2, temperature: 1, seed: 5, echo: true });
    assert.ok(two.choices.every((x) => x.text.startsWith(P) && x.logprobs === null));
    const r = await post(s, '/v1/completions', { prompt: P, max_tokens: 6, temperature: 0, ignore_eos: true, echo: true,
                                                 logprobs: 2, stream: true });
    let text = '', toks = [];
    for (const line of (await r.text()).split('\n'))
      if (line.startsWith('data: {')) {
        const ch = JSON.parse(line.slice(6)).choices[0];
        text += ch.text;
        if (ch.logprobs) toks.push(...ch.logprobs.tokens);
      }
    assert.equal(text, c.text);
    assert.deepEqual(toks, lp.tokens);
    const zero = await post(s, '/v1/completions', { prompt: P, max_tokens: 0 });
    await assertErrorShape(zero, 400, 'max_tokens');
    return `${ids.length} prompt tokens, echoed and generated logprobs within ${worst.toExponential(1)}`;
  });
  await check('suffix (fill in the middle): BOS, fim begin, prompt, fim hole, suffix, fim end; 400 without FIM tokens', async () => {
    // the tiny tokenizer with its last three merges made the FIM tokens
    const { path: tokPath, ids } = tinyTokenizerWith(env, 'fim', ['<｜fim▁begin｜>', '<｜fim▁hole｜>', '<｜fim▁end｜>']);
    // --batch-invariant: the second request of the same tokens reuses the first's cache, to the bit
    const f = await startServer(env, ['--parallel', '2', '-c', '256', '--batch-invariant', '--tokenizer', tokPath]);
    try {
      const ask = async (body) => {
        const r = await post(f, '/v1/completions', { max_tokens: 8, temperature: 0, ignore_eos: true, logprobs: 1, ...body });
        const j = await r.json();
        assert.equal(r.status, 200, JSON.stringify(j));
        return j;
      };
      const tok = async (text) => (await (await post(f, '/tokenize', { content: text })).json()).tokens;
      const pre = 'def add(a, b):\n    ', suf = '\n    return c\n';
      const fim = await ask({ prompt: pre, suffix: suf });
      const want = [0, ids[0], ...(await tok(pre)), ids[1], ...(await tok(suf)), ids[2]];
      const same = await ask({ prompt: want });
      assert.equal(fim.usage.prompt_tokens, want.length);
      assert.deepEqual(fim.choices, same.choices, 'the answer to the FIM token ids given as the prompt');
      const plain = await ask({ prompt: pre });
      assert.notDeepEqual(fim.choices[0].logprobs.token_logprobs, plain.choices[0].logprobs.token_logprobs,
                          'the suffix changed nothing');
      assert.deepEqual((await ask({ prompt: pre, suffix: '' })).choices, plain.choices, 'an empty suffix is none');
      for (const [body, why] of [[{ prompt: [5, 6], suffix: 'x' }, /text prompt/], [{ prompt: 'a', suffix: 'x', echo: true }, /echo/]]) {
        const e = await assertErrorShape(await post(f, '/v1/completions', { max_tokens: 2, ...body }), 400, 'suffix');
        assert.match(e.message, why);
      }
    } finally {
      await stopServer(f);
    }
    const e = await assertErrorShape(await post(s, '/v1/completions', { prompt: 'a', suffix: 'b', max_tokens: 2 }), 400, 'suffix');
    assert.match(e.message, /fim/);
  });
  await check('chat prefix completion (DeepSeek\'s): the last message, the assistant\'s with prefix: true, is continued', async () => {
    const f = await startServer(env, ['--parallel', '2', '-c', '256', '--batch-invariant']); // answers to the bit
    try {
      const U = 'Write quick sort.', P = '```python\n';
      const r = await post(f, '/v1/chat/completions', { messages: [{ role: 'user', content: U },
                                                                    { role: 'assistant', content: P, prefix: true }],
                                                        max_tokens: 8, temperature: 0, ignore_eos: true });
      const j = await r.json();
      assert.equal(r.status, 200, JSON.stringify(j));
      // the same tokens as a completion: the template's markers, the prefix, no <think> (the answer goes on)
      const c = await (await post(f, '/v1/completions', { prompt: `<｜User｜>${U}<｜Assistant｜>${P}`, max_tokens: 8,
                                                          temperature: 0, ignore_eos: true })).json();
      assert.equal(j.usage.prompt_tokens, c.usage.prompt_tokens);
      assert.equal(j.choices[0].message.content, c.choices[0].text);
      assert.equal(j.choices[0].message.reasoning_content, '', 'the answer, not reasoning');
      for (const [msgs, at] of [[[{ role: 'assistant', content: 'a', prefix: true }, { role: 'user', content: 'b' }], 0],
                                [[{ role: 'user', content: 'a', prefix: true }], 0], [[{ role: 'user', content: 'a' },
                                  { role: 'assistant', content: 'b', prefix: 'yes' }], 1]]) {
        const e = await assertErrorShape(await post(f, '/v1/chat/completions', { messages: msgs, max_tokens: 2 }), 400,
                                         `messages[${at}].prefix`);
        assert.match(e.message, /prefix|boolean/);
      }
    } finally {
      await stopServer(f);
    }
  });
  await check('several prompts in one completion (lm-eval\'s batches): choices prompt by prompt, each as alone', async () => {
    const f = await startServer(env, ['--parallel', '3', '-c', '256', '--batch-invariant']); // answers to the bit
    try {
      const ask = async (body) => {
        const r = await post(f, '/v1/completions', { max_tokens: 5, temperature: 0, ignore_eos: true, logprobs: 2, ...body });
        const j = await r.json();
        assert.equal(r.status, 200, JSON.stringify(j));
        return j;
      };
      const prompts = ['The quick brown fox', [65, 66, 67, 68], 'jumps over', 'the lazy dog.'];
      const all = await ask({ prompt: prompts, n: 2 });
      assert.equal(all.choices.length, 8);
      assert.deepEqual(all.choices.map((c) => c.index), [0, 1, 2, 3, 4, 5, 6, 7]);
      let prompt = 0, completion = 0;
      for (let k = 0; k < prompts.length; k++) {
        const one = await ask({ prompt: prompts[k], n: 2 });
        prompt += one.usage.prompt_tokens, completion += one.usage.completion_tokens;
        for (let j = 0; j < 2; j++) {
          const a = all.choices[2 * k + j], b = one.choices[j];
          assert.equal(a.text, b.text, `prompt ${k} choice ${j}`);
          assert.deepEqual(a.logprobs, b.logprobs, `prompt ${k} choice ${j}: logprobs`);
        }
      }
      assert.equal(all.usage.prompt_tokens, prompt, 'prompt tokens summed');
      assert.equal(all.usage.completion_tokens, completion, 'completion tokens summed');
      // scoring as lm-eval's local-completions does: echo, logprobs, nothing generated
      const scored = await ask({ prompt: prompts, echo: true, max_tokens: 0, logprobs: 1 });
      for (let k = 0; k < prompts.length; k++) {
        const one = await ask({ prompt: prompts[k], echo: true, max_tokens: 0, logprobs: 1 });
        assert.deepEqual(scored.choices[k].logprobs, one.choices[0].logprobs, `prompt ${k}: echoed logprobs`);
      }
      // streamed: every chunk one id, each index's text the unstreamed one's
      const res = await post(f, '/v1/completions', { prompt: prompts, n: 2, max_tokens: 5, temperature: 0, ignore_eos: true,
                                                     stream: true, stream_options: { include_usage: true } });
      const text = await res.text(), ids = new Set(), got = Array(8).fill(''), fin = Array(8).fill(null);
      let usage = null;
      for (const line of text.split('\n').filter((l) => l.startsWith('data: ') && l !== 'data: [DONE]')) {
        const ch = JSON.parse(line.slice(6));
        ids.add(ch.id);
        if (ch.usage) usage = ch.usage;
        for (const c of ch.choices) got[c.index] += c.text, fin[c.index] ??= c.finish_reason;
      }
      assert.ok(text.trimEnd().endsWith('data: [DONE]'), 'ends with [DONE]');
      assert.equal(ids.size, 1, 'one id');
      assert.deepEqual(got, all.choices.map((c) => c.text));
      assert.deepEqual(fin, Array(8).fill('length'));
      assert.equal(usage.prompt_tokens, prompt);
      // refused: a bad element names itself; too many prompts; an empty list of ids
      for (const [prompt, param] of [[['a', 3], 'prompt[1]'], [['a', []], 'prompt[1]'], [['a', [1, -1]], 'prompt[1]'],
                                     [Array(129).fill('a'), 'prompt']]) {
        await assertErrorShape(await post(f, '/v1/completions', { prompt, max_tokens: 1 }), 400, param);
      }
      return `${prompts.length} prompts x n = 2`;
    } finally {
      await stopServer(f);
    }
  });
  await check('top_k, min_p and repetition_penalty (vLLM\'s extensions; repeat_penalty as llama.cpp names it)', async () => {
    const ask = (extra) => post(s, '/v1/completions', { prompt: 'The', max_tokens: 40, ignore_eos: true, ...extra })
      .then(async (r) => { assert.equal(r.status, 200, await r.clone().text()); return (await r.json()).choices[0].text; });
    const greedy = await ask({ temperature: 0 });
    const hot = { temperature: 1.5, seed: 11 };
    const sampled = await ask(hot);
    assert.notEqual(sampled, greedy, 'sampling at temperature 1.5 gave the greedy text');
    // Left with the likeliest token alone, sampling is greedy decoding.
    assert.equal(await ask({ ...hot, top_k: 1 }), greedy, 'top_k 1');
    assert.equal(await ask({ ...hot, min_p: 1 }), greedy, 'min_p 1');
    assert.equal(await ask({ ...hot, top_k: -1, min_p: 0, repetition_penalty: 1 }), sampled, 'the values that turn them off');
    const rep = await ask({ temperature: 0, repetition_penalty: 1.5 });
    assert.notEqual(rep, greedy, 'repetition_penalty changed nothing');
    assert.equal(await ask({ temperature: 0, repeat_penalty: 1.5 }), rep, 'repeat_penalty is the same');
    for (const bad of [{ top_k: -2 }, { top_k: 1.5 }, { min_p: 1.5 }, { repetition_penalty: 0 },
                       { repetition_penalty: 1.1, repeat_penalty: 1.1 }]) {
      const r = await post(s, '/v1/completions', { prompt: 'The', max_tokens: 2, ...bad });
      await assertErrorShape(r, 400, Object.keys(bad).at(-1));
    }
  });
  await check('400 prompt + max_tokens beyond the context names the limit', async () => {
    const err = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 1000 }).then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.code, 'context_length_exceeded');
    assert.match(err.message, /512/);
    assert.equal(err.param, 'max_tokens');
    const e2 = await assertErrorShape(await post(s, '/v1/completions', { prompt: 'x'.repeat(600) }), 400, 'prompt');
    assert.match(e2.message, /512/);
  });
  await check('413 body over the limit', async () => {
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat((8 << 20) + 1024) }] });
    await assertErrorShape(await post(s, '/v1/chat/completions', big), 413);
  });
  await check('401 wrong or missing API key', async () => {
    const err = await client(s, 'sk-wrong').chat.completions.create({ model: 'dsc', messages: msgs }).then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.match(err.message, /Incorrect API key/);
    const r = await fetch(`${s.base}/v1/models`);
    assert.match((await assertErrorShape(r, 401)).message, /No API key provided/);
  });
  await check('404 unknown endpoint, 405 wrong method', async () => {
    await assertErrorShape(await post(s, '/v1/nothing', {}), 404);
    await assertErrorShape(await fetch(`${s.base}/v1/chat/completions`, { headers: { authorization: `Bearer ${KEY}` } }), 405);
  });
  await check('malformed HTTP (bad request line, header, huge header) then still serving', async () => {
    for (const raw of ['GARBAGE\r\n\r\n', 'POST /v1/chat/completions HTTP/1.1\r\nHost x\r\n\r\n',
                       `GET /health HTTP/1.1\r\nX-Big: ${'a'.repeat(200000)}\r\n\r\n`,
                       'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}',
                       'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']) {
      await new Promise((resolve) => {
        const sock = net.connect(s.port, '127.0.0.1', () => sock.end(raw));
        sock.on('data', () => {});
        sock.on('error', resolve);
        sock.on('close', resolve);
        setTimeout(() => { sock.destroy(); resolve(); }, 2000);
      });
    }
    assert.equal((await fetch(`${s.base}/health`)).status, 200);
    assert.equal(s.exited, null);
  });

  await check('501 at once for a Transfer-Encoding other than chunked (the body\'s length is unknown)', async () => {
    const body = JSON.stringify({ messages: msgs, max_tokens: 2 });
    const got = await new Promise((resolve) => {
      let data = '';
      const sock = net.connect(s.port, '127.0.0.1', () => sock.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nTransfer-Encoding: gzip\r\n\r\n${body}`));
      sock.on('data', (d) => { data += d; });
      sock.on('error', () => resolve(data));
      sock.on('close', () => resolve(data));
      setTimeout(() => { sock.destroy(); resolve(data); }, 5000);
    });
    assert.match(got, /^HTTP\/1\.1 501 /, got.slice(0, 200));
    const err = JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4)).error;
    assert.equal(err.code, 'unsupported_transfer_encoding');
    assert.match(err.message, /gzip/);
  });

  await check('400 for HTTP/1.1 without Host and for Content-Lengths that disagree; HTTP/1.0 without Host is served', async () => {
    const raw = (req) => new Promise((resolve) => {
      let data = '';
      const sock = net.connect(s.port, '127.0.0.1', () => sock.write(req));
      sock.on('data', (d) => { data += d; });
      sock.on('error', () => resolve(data));
      sock.on('close', () => resolve(data));
      setTimeout(() => { sock.destroy(); resolve(data); }, 5000);
    });
    const tok = '{"content": "hello"}';
    const got = [
      await raw('GET /health HTTP/1.1\r\nConnection: close\r\n\r\n'),
      await raw(`POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${tok.length}\r\nContent-Length: 5\r\n\r\n${tok}`),
      await raw('GET /health HTTP/1.0\r\n\r\n'),
      await raw(`POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${tok.length}\r\nContent-Length: ${tok.length}\r\nConnection: close\r\n\r\n${tok}`),
    ];
    const status = got.map((g) => g.slice(0, 12));
    assert.deepEqual(status, ['HTTP/1.1 400', 'HTTP/1.1 400', 'HTTP/1.1 200', 'HTTP/1.1 200'], got.join('\n'));
    assert.match(got[0], /"code":"missing_host"/);
    assert.match(got[1], /"code":"conflicting_content_length"/);
  });

  await check('fuzz: 400 mutated HTTP requests (headers, bodies, JSON), then still serving', async () => {
    let seed = 12345;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed >>> 8) % n; };
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true, n: 2, stop: ['a'] });
    const bases = [
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"prompt": "ab",\r\n0d\r\n "max_tokens":\r\n3\r\n 2}\r\n0\r\n\r\n`,
      `POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 20\r\n\r\n{"content": "hello"}`,
      'GET /health HTTP/1.1\r\nHost: x\r\n\r\n',
    ];
    const junk = ['Content-Length: -1', 'Content-Length: 18446744073709551616', 'Transfer-Encoding: chunked', 'Expect: 100-continue',
                  'X: \u0000\u0001', 'NoColonHere', `${'h'.repeat(5000)}: v`, 'Content-Length: 5', 'Connection: close', '\t folded'];
    const mutate = (s) => {
      for (let k = 1 + rnd(4); k > 0; k--) {
        const at = rnd(s.length + 1);
        switch (rnd(6)) {
          case 0: s = s.slice(0, at) + String.fromCharCode(rnd(256)) + s.slice(at + 1); break;
          case 1: s = s.slice(0, at) + s.slice(at + rnd(16)); break;
          case 2: s = s.slice(0, at) + s.slice(at, at + rnd(32)) + s.slice(at); break;
          case 3: { const h = s.indexOf('\r\n'); s = s.slice(0, h + 2) + junk[rnd(junk.length)] + '\r\n' + s.slice(h + 2); break; }
          case 4: s = s.slice(0, at); break;
          default: s = s.replace(/[{}\[\]":,]/, (c) => '{}[]":,0'[rnd(8)] ?? c);
        }
      }
      return s;
    };
    const one = (raw) => new Promise((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1', () => { sock.write(Buffer.from(raw, 'latin1')); if (rnd(2)) sock.end(); });
      sock.on('data', () => {});
      sock.on('error', resolve);
      sock.on('close', resolve);
      setTimeout(() => { sock.destroy(); resolve(); }, 150);
    });
    for (let i = 0; i < 400; i += 16) await Promise.all(Array.from({ length: 16 }, () => one(mutate(bases[rnd(bases.length)]))));
    for (let i = 0; i < 100 && (await metrics(s)).dsc_slots_busy > 0; i++) await sleep(10);
    assert.equal((await fetch(`${s.base}/health`)).status, 200);
    assert.equal(s.exited, null);
    const r = await ai.chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  });

  await check('GET /metrics (Prometheus text)', async () => {
    const m = await metrics(s);
    for (const k of ['dsc_requests_total', 'dsc_completion_tokens_total', 'dsc_prompt_tokens_total', 'dsc_queue_depth',
                     'dsc_decode_batch_size', 'dsc_decode_steps_total', 'dsc_prompt_cache_hit_tokens_total',
                     'dsc_http_responses_total{code="200"}', 'dsc_http_responses_total{code="400"}'])
      assert.ok(k in m, `${k} missing`);
    assert.ok(m.dsc_requests_total >= 10 && m.dsc_completion_tokens_total > 0 && m.dsc_prompt_cache_hit_tokens_total > 0);
    assert.ok(m['dsc_http_responses_total{code="400"}'] >= 3);
    return `requests ${m.dsc_requests_total}, hit tokens ${m.dsc_prompt_cache_hit_tokens_total}`;
  });
  await stopServer(s);
  await check('server logged one line per request', async () => {
    const lines = s.log.split('\n').filter((l) => /^dsc serve: \S+ "[A-Z]+ \S+" \d{3} /.test(l));
    assert.ok(lines.length >= 30, `${lines.length} lines`);
    assert.ok(!/AddressSanitizer|runtime error|ThreadSanitizer/.test(s.log), 'sanitizer report');
  });

  // ------------------------------------------------------------ one slot: queue full, disconnects
  const q = await startServer(env, ['--parallel', '1', '--queue', '1', '-c', '4096']);
  const slow = { messages: [{ role: 'user', content: 'Count.' }], max_tokens: 4000, ignore_eos: true, seed: 5 };
  await check('503 with Retry-After when the queue is full', async () => {
    // Streams answer with their headers at once: 200 for the slot and the queue, 503 for the rest.
    const m0 = await metrics(q);
    const ac = new AbortController();
    const rs = await Promise.all(Array.from({ length: 12 }, () =>
      post(q, '/v1/chat/completions', { ...slow, stream: true }, {}, ac.signal)));
    const busy = rs.filter((r) => r.status === 503), ok = rs.filter((r) => r.status === 200);
    assert.ok(busy.length >= 1, `statuses ${rs.map((r) => r.status)}`);
    assert.equal(busy.length + ok.length, 12, `statuses ${rs.map((r) => r.status)}`);
    assert.ok(ok.length >= 1 && ok.length <= 2, `${ok.length} admitted with one slot and a queue of one`);
    assert.ok(busy.every((r) => /^\d+$/.test(r.headers.get('retry-after') ?? '')), 'Retry-After');
    await assertErrorShape(busy[0], 503);
    for (const r of ok) assert.match(r.headers.get('content-type'), /text\/event-stream/);
    ac.abort();
    for (let i = 0; i < 200; i++) { // the aborted streams free the slot and the queue
      const m = await metrics(q);
      if (m.dsc_slots_busy === 0 && m.dsc_queue_depth === 0 &&
          m.dsc_requests_cancelled_total - m0.dsc_requests_cancelled_total === ok.length) break;
      await sleep(10);
    }
    return `${ok.length} admitted, ${busy.length} refused`;
  });
  await check('client disconnecting mid-stream frees its slot at once', async () => {
    const m0 = await metrics(q);
    const ac = new AbortController();
    const st = await client(q).chat.completions.create({ model: 'dsc', ...slow, stream: true }, { signal: ac.signal });
    let n = 0;
    try { for await (const ch of st) { if (ch.choices[0]?.delta?.reasoning_content && ++n >= 3) ac.abort(); } } catch {}
    const t0 = Date.now();
    const r = await client(q).chat.completions.create({ model: 'dsc', messages: msgs, max_tokens: 4 });
    const dt = Date.now() - t0;
    assert.ok(r.choices.length === 1);
    const m1 = await metrics(q);
    assert.equal(m1.dsc_requests_cancelled_total - m0.dsc_requests_cancelled_total, 1, 'cancelled');
    assert.ok(dt < 400, `next request took ${dt} ms`);
    return `next request in ${dt} ms`;
  });
  await check('client disconnecting while waiting (non-streaming) frees its slot or queue place', async () => {
    const m0 = await metrics(q);
    const a1 = new AbortController(), a2 = new AbortController();
    const p1 = post(q, '/v1/chat/completions', slow, {}, a1.signal).catch(() => null);
    for (let i = 0; i < 100 && (await metrics(q)).dsc_slots_busy < 1; i++) await sleep(5); // p1 holds the slot
    const p2 = post(q, '/v1/chat/completions', slow, {}, a2.signal).catch(() => null);
    for (let i = 0; i < 100 && (await metrics(q)).dsc_queue_depth < 1; i++) await sleep(5); // p2 waits in the queue
    a2.abort();
    await p2;
    await sleep(150);
    const m1 = await metrics(q);
    assert.equal(m1.dsc_requests_cancelled_total - m0.dsc_requests_cancelled_total, 1, 'queued request cancelled');
    assert.equal(m1.dsc_queue_depth, 0);
    a1.abort();
    await p1;
    await sleep(150);
    const m2 = await metrics(q);
    assert.equal(m2.dsc_requests_cancelled_total - m0.dsc_requests_cancelled_total, 2, 'running request cancelled');
    assert.equal(m2.dsc_slots_busy, 0);
  });
  await check('SIGTERM with a stream running and one queued: clean exit within 3 s', async () => {
    const r1 = await post(q, '/v1/chat/completions', { ...slow, stream: true });
    for (let i = 0; i < 100 && (await metrics(q)).dsc_slots_busy < 1; i++) await sleep(5);
    const r2 = post(q, '/v1/chat/completions', slow).then((r) => r.status, () => 'closed');
    for (let i = 0; i < 100 && (await metrics(q)).dsc_queue_depth < 1; i++) await sleep(5);
    const t0 = Date.now();
    const exit = await stopServer(q);
    assert.equal(exit.code, 0, JSON.stringify(exit));
    assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms to stop`);
    await r1.text().catch(() => '');   // the stream ends (cut short)
    const b2 = await r2;
    assert.ok(b2 === 500 || b2 === 503 || b2 === 'closed', `queued request: ${b2}`);
    return `stopped in ${Date.now() - t0} ms`;
  });

  // ------------------------------------------------------------ --timeout: slow clients, long answers
  const t = await startServer(env, ['--parallel', '1', '--queue', '1', '-c', '16384', '--timeout', '1']);
  await check('--timeout: clients trickling a request are closed, and the server serves others', async () => {
    // 80 clients, more than the 66 connections the server takes, each sending a byte every 200 ms:
    // libmicrohttpd's idle timeout never fires on them.
    const m0 = await metrics(t);
    const socks = await Promise.all(Array.from({ length: 80 }, () => new Promise((resolve) => {
      const sock = net.connect(t.port, '127.0.0.1');
      const s = { sock, closed: false };
      sock.on('connect', () => sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n'));
      sock.on('data', () => {});
      sock.on('error', () => { s.closed = true; });
      sock.on('close', () => { s.closed = true; });
      s.timer = setInterval(() => { if (!s.closed) sock.write('X'); }, 200);
      setTimeout(() => resolve(s), 20);
    })));
    const t0 = Date.now();
    while (Date.now() - t0 < 5000 && socks.some((s) => !s.closed)) await sleep(50);
    const open = socks.filter((s) => !s.closed).length;
    for (const s of socks) { clearInterval(s.timer); s.sock.destroy(); }
    assert.equal(open, 0, `${open} of 80 still open after ${Date.now() - t0} ms`);
    assert.equal((await fetch(`${t.base}/health`)).status, 200);
    const closed = (await metrics(t)).dsc_connections_timed_out_total - m0.dsc_connections_timed_out_total;
    assert.ok(closed >= 60, `${closed} closed by the timeout`);
    assert.match(t.log, /connection closed: no whole request within --timeout 1 s/);
    return `${closed} closed by the timeout within ${Date.now() - t0} ms`;
  });
  await check('--timeout: an answer that takes longer, running or queued, is not cut', async () => {
    // The deadline ends once the request is in: a generation holding the slot past it, and one
    // waiting in the queue meanwhile, both go on (were they cut at 1 s, the first would be
    // cancelled and the second would start at once).
    const m0 = await metrics(t);
    const ac = new AbortController();
    const p1 = post(t, '/v1/completions', { prompt: 'a', max_tokens: 16000, ignore_eos: true }, {}, ac.signal)
      .catch(() => 'aborted');
    for (let i = 0; i < 200 && (await metrics(t)).dsc_slots_busy < 1; i++) await sleep(5);
    const t0 = Date.now();
    const p2 = post(t, '/v1/completions', { prompt: 'b', max_tokens: 4 });
    await sleep(1600);
    const m1 = await metrics(t);
    assert.equal(m1.dsc_slots_busy, 1, 'the long generation still runs after 1.6 s');
    assert.equal(m1.dsc_queue_depth, 1, 'the second request still waits after 1.6 s');
    assert.equal(m1.dsc_requests_cancelled_total, m0.dsc_requests_cancelled_total, 'nothing cancelled');
    ac.abort();
    assert.equal(await p1, 'aborted');
    const r2 = await p2;
    const dt = Date.now() - t0;
    assert.equal(r2.status, 200);
    assert.equal((await r2.json()).choices.length, 1);
    assert.ok(dt >= 1600, `${dt} ms`);
    return `queued answer after ${dt} ms`;
  });
  await stopServer(t);

  // ------------------------------------------------------------ persistence across a restart
  const dir = path.join(env.tmp, 'cache');
  const longMsgs = [{ role: 'user', content: LONG }];
  let blockHit = 0;
  let p1 = await startServer(env, ['--parallel', '2', '-c', '512', '--cache-dir', dir]);
  const first1 = await client(p1).chat.completions.create({ model: 'dsc', messages: longMsgs, max_tokens: 4 });
  const code1 = await stopServer(p1);
  await check('--cache-dir: blocks written on the way down', async () => {
    assert.equal(code1.code, 0, `exit ${JSON.stringify(code1)}`);
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.dsckv'));
    assert.equal(files.length, 1, `files ${files}`);
    assert.equal(first1.usage.prompt_cache_hit_tokens, 0);
  });
  fs.writeFileSync(path.join(dir, '0123456789abcdef.dsckv'), 'not a cache file');
  fs.writeFileSync(path.join(dir, 'fedcba9876543210.dsckv'), Buffer.alloc(40, 0x41));
  p1 = await startServer(env, ['--parallel', '2', '-c', '512', '--cache-dir', dir]);
  await check('--cache-dir: hit after a restart; bad files ignored with a log line', async () => {
    const r = await client(p1).chat.completions.create({ model: 'dsc', messages: longMsgs, max_tokens: 4 });
    blockHit = r.usage.prompt_cache_hit_tokens;
    assert.equal(blockHit, Math.floor(r.usage.prompt_tokens / 64) * 64, `hit ${blockHit} of ${r.usage.prompt_tokens}`);
    assert.ok(blockHit > 0);
    assert.equal((p1.log.match(/: ignored \(/g) ?? []).length, 2, p1.log);
    const m = await metrics(p1);
    assert.equal(m.dsc_prompt_cache_disk_loads_total, 1);
    return `hit ${blockHit} of ${r.usage.prompt_tokens} after restart`;
  });
  await stopServer(p1);
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.dsckv'))) { // flip a byte of the state
    const file = path.join(dir, f), b = fs.readFileSync(file);
    if (b.length > 1000) { b[b.length - 5] ^= 0xff; fs.writeFileSync(file, b); }
  }
  p1 = await startServer(env, ['--parallel', '2', '-c', '512', '--cache-dir', dir]);
  await check('--cache-dir: a corrupted state is detected (checksum), no hit, no crash', async () => {
    const r = await client(p1).chat.completions.create({ model: 'dsc', messages: longMsgs, max_tokens: 4 });
    assert.equal(r.usage.prompt_cache_hit_tokens, 0);
    assert.match(p1.log, /checksum mismatch/);
    assert.equal(p1.exited, null);
  });
  await stopServer(p1);
  await checkServerLogs();
}

const watchdog = setTimeout(() => { console.log('FAIL watchdog: e2e took over 80 s'); process.exit(1); }, 80000);
main().catch((e) => { console.log(`FAIL e2e aborted: ${String(e.stack || e).split('\n').slice(0, 3).join(' ')}`); })
  .finally(() => { clearTimeout(watchdog); process.exit(0); });
