// tools.mjs — function calling through the official `openai` client: tools,
// tool_choice (auto, none, required, one function), parallel_tool_calls,
// streamed calls reassembled by the client's own helper, a conversation
// carrying calls and results back, and the requests refused. The tiny
// golden checkpoint has random weights: the grammar (src/runtime/json_mode.c)
// is what makes its calls well formed, so the checks are about the format,
// the names, the counts and the agreement of the ways of asking.
//
// usage: node tools.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { V31_CONFIG, check, checkServerLogs, setup, startServer, stopServer, tinyTokenizerWith } from './lib.mjs';

const env = setup(process.argv);
const client = (s) => new OpenAI({ apiKey: 'none', baseURL: `${s.base}/v1`, maxRetries: 0, timeout: 30000 });
const post = (s, p, body) => fetch(`${s.base}${p}`, { method: 'POST', body: JSON.stringify(body),
                                                     headers: { 'content-type': 'application/json' } });

// The tiny tokenizer with its last nine merges made DeepSeek's tool-call
// markers (ids 503..511, in this order), its template the plain V3 one.
const MARKERS = ['<｜tool▁calls▁begin｜>', '<｜tool▁calls▁end｜>', '<｜tool▁call▁begin｜>', '<｜tool▁call▁end｜>',
                 '<｜tool▁sep｜>', '<｜tool▁outputs▁begin｜>', '<｜tool▁outputs▁end｜>', '<｜tool▁output▁begin｜>',
                 '<｜tool▁output▁end｜>'];
const { path: tokPath, ids: IDS } = tinyTokenizerWith(env, 'tools', MARKERS);
const CALLS_BEGIN = IDS[0], THINK_END = 261;

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city now',
                                   parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', description: 'The time in a zone' } },
  { type: 'function', function: { name: 'get' } },
];
const NAMES = TOOLS.map((x) => x.function.name);
const MESSAGES = [{ role: 'user', content: 'What is the weather in Paris?' }];
// Random weights: the closers of JSON favoured, so that arguments end soon.
const CLOSE = { [2 + '}'.charCodeAt(0)]: 6, [2 + '"'.charCodeAt(0)]: 4, [IDS[1]]: 3 };

function assertCalls(msg, { names = NAMES, one = false } = {}) {
  assert.ok(Array.isArray(msg.tool_calls) && msg.tool_calls.length >= 1, `tool_calls: ${JSON.stringify(msg)}`);
  if (one) assert.equal(msg.tool_calls.length, 1, 'one call');
  const ids = new Set();
  for (const c of msg.tool_calls) {
    assert.equal(c.type, 'function');
    assert.ok(names.includes(c.function.name), `name ${c.function.name}`);
    const args = JSON.parse(c.function.arguments);
    assert.ok(args && typeof args === 'object' && !Array.isArray(args), 'arguments: a JSON object');
    assert.match(c.id, /^call_/);
    ids.add(c.id);
  }
  assert.equal(ids.size, msg.tool_calls.length, 'ids unique');
}

const s = await startServer(env, ['--parallel', '2', '-c', '1024', '--tokenizer', tokPath]);
const oa = client(s);
const ask = (body) => oa.chat.completions.create({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 300,
                                                  seed: 11, logit_bias: CLOSE, ...body });
try {
  let first;
  await check('tool_choice required: calls alone, each a name offered with a JSON object, finish tool_calls', async () => {
    const r = await ask({ tool_choice: 'required' });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, null, 'no text before the calls');
    assertCalls(c.message);
    first = r;
    return `${c.message.tool_calls.length} calls: ${c.message.tool_calls.map((x) => x.function.name).join(', ')}`;
  });

  await check('streamed: the client helper reassembles the same calls', async () => {
    const st = oa.chat.completions.stream({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 300, seed: 11,
                                            logit_bias: CLOSE, tool_choice: 'required' });
    const pieces = []; // [index, has id and name, arguments piece]
    st.on('chunk', (ch) => {
      for (const c of ch.choices) for (const t of c.delta.tool_calls ?? [])
        pieces.push([t.index, t.id !== undefined && t.function?.name !== undefined, t.function?.arguments ?? '']);
    });
    const r = await st.finalChatCompletion();
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assert.deepEqual(c.message.tool_calls.map((x) => [x.id.length > 5, x.function.name, x.function.arguments]),
                     first.choices[0].message.tool_calls.map((x) => [true, x.function.name, x.function.arguments]));
    // each call begun once with its id and name, then its arguments in pieces, in order
    c.message.tool_calls.forEach((call, k) => {
      const mine = pieces.filter((p) => p[0] === k);
      assert.ok(mine.length >= 1 && mine[0][1] && mine.slice(1).every((p) => !p[1]), `call ${k}: ${JSON.stringify(mine)}`);
      assert.equal(mine.map((p) => p[2]).join(''), call.function.arguments, `call ${k}: the pieces`);
    });
    const indices = pieces.map((p) => p[0]);
    assert.deepEqual(indices, [...indices].sort((a, b) => a - b), 'calls one after another');
    assert.ok(pieces.length > c.message.tool_calls.length, `the arguments in pieces: ${pieces.length} deltas`);
    return `${c.message.tool_calls.length} calls in ${pieces.length} deltas`;
  });

  await check('tool_choice naming a function: only it is called', async () => {
    const r = await ask({ tool_choice: { type: 'function', function: { name: 'get_time' } }, seed: 5 });
    assertCalls(r.choices[0].message, { names: ['get_time'] });
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
  });

  await check('parallel_tool_calls false: one call, in four samples', async () => {
    const r = await ask({ tool_choice: 'required', parallel_tool_calls: false, n: 2, seed: 3, temperature: 1.5 });
    for (const c of r.choices) assertCalls(c.message, { one: true });
    const r2 = await ask({ tool_choice: 'required', parallel_tool_calls: false, n: 2, seed: 4, temperature: 1.5 });
    for (const c of r2.choices) assertCalls(c.message, { one: true });
  });

  await check('auto: text, then the calls once the model opens them (<｜tool▁calls▁begin｜> favoured)', async () => {
    const r = await ask({ logit_bias: { ...CLOSE, [CALLS_BEGIN]: 8 }, seed: 2 });
    const c = r.choices[0];
    assertCalls(c.message);
    assert.equal(c.finish_reason, 'tool_calls');
    assert.ok(!/tool▁/.test(c.message.content ?? ''), 'no marker in the text');
    return `text before the calls: ${(c.message.content ?? '').length} bytes`;
  });

  await check('tool_choice none (the marker favoured as much): no calls, no markers, no tools in the prompt', async () => {
    const r = await ask({ tool_choice: 'none', logit_bias: { [CALLS_BEGIN]: 100 }, max_tokens: 40 });
    const c = r.choices[0];
    assert.equal(c.message.tool_calls, undefined);
    assert.ok(typeof c.message.content === 'string' && !/tool▁/.test(c.message.content), c.message.content);
    const plain = await oa.chat.completions.create({ model: 'dsc', messages: MESSAGES, max_tokens: 1 });
    assert.equal(r.usage.prompt_tokens, plain.usage.prompt_tokens);
  });

  await check('the calls and results sent back: the prompt is /apply-template\'s, tokenized', async () => {
    const calls = first.choices[0].message.tool_calls;
    const messages = [...MESSAGES, { role: 'assistant', content: null, tool_calls: calls },
                      ...calls.map((c, i) => ({ role: 'tool', tool_call_id: c.id, content: `result ${i}` }))];
    const r = await oa.chat.completions.create({ model: 'dsc', messages, tools: TOOLS, max_tokens: 4 });
    const text = (await (await post(s, '/apply-template', { messages, tools: TOOLS })).json()).prompt;
    assert.ok(text.includes('<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>result 0<｜tool▁output▁end｜>'), text);
    assert.ok(text.endsWith('<｜tool▁outputs▁end｜>'), 'the answer goes on after the results');
    const ids = (await (await post(s, '/tokenize', { content: text })).json()).tokens;
    assert.equal(r.usage.prompt_tokens, ids.length);
    for (const id of IDS.slice(0, 5)) assert.ok(ids.includes(id), `marker ${id} a token of its own`);
  });

  await check('a function\'s parameters (strict or not) hold its arguments: required keys, types, enum, no other keys', async () => {
    const tools = [{ type: 'function', function: { name: 'set_alarm', strict: true, parameters: {
      type: 'object', properties: { hour: { type: 'integer' }, label: { type: 'string', maxLength: 6 },
                                    days: { type: 'array', items: { enum: ['mon', 'tue'] }, maxItems: 2 } },
      required: ['hour', 'label', 'days'], additionalProperties: false } } },
                   { type: 'function', function: { name: 'note', parameters: { type: 'object', properties: { text: { type: 'string' } },
                                                                                 required: ['text'] } } }];
    let n = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = await oa.chat.completions.create({ model: 'dsc', messages: MESSAGES, tools, tool_choice: 'required',
                                                  max_tokens: 370, seed,
                                                  logit_bias: { ...CLOSE, [2 + '"'.charCodeAt(0)]: 7, [2 + ']'.charCodeAt(0)]: 4 } });
      for (const c of r.choices[0].message.tool_calls ?? []) {
        const a = JSON.parse(c.function.arguments);
        if (c.function.name === 'set_alarm') {
          assert.deepEqual(Object.keys(a).sort(), ['days', 'hour', 'label'], c.function.arguments);
          assert.ok(Number.isInteger(a.hour) && typeof a.label === 'string' && [...a.label].length <= 6, c.function.arguments);
          assert.ok(a.days.length <= 2 && a.days.every((d) => d === 'mon' || d === 'tue'), c.function.arguments);
        } else {
          assert.deepEqual(Object.keys(a), ['text'], c.function.arguments);
          assert.equal(typeof a.text, 'string');
        }
        n++;
      }
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
    }
    // parameters the grammar cannot hold to: a 400 for a strict function, any object for another
    const odd = { type: 'object', properties: { when: { type: 'string', format: 'uri' } } };
    const res = await post(s, '/v1/chat/completions', { messages: MESSAGES, max_tokens: 2,
      tools: [{ type: 'function', function: { name: 'f', strict: true, parameters: odd } }] });
    assert.equal(res.status, 400);
    const e = (await res.json()).error;
    assert.equal(e.param, 'tools[0].function.parameters');
    assert.match(e.message, /format/);
    const ok = await post(s, '/v1/chat/completions', { messages: MESSAGES, max_tokens: 2,
      tools: [{ type: 'function', function: { name: 'f', parameters: odd } }] });
    assert.equal(ok.status, 200);
    return `${n} calls`;
  });

  await check('refused with a 400 naming the field', async () => {
    const bad = [
      [{ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ tools: TOOLS, tool_choice: 'sometimes' }, 'tool_choice'],
      [{ tools: [{ type: 'retrieval' }] }, 'tools[0]'],
      [{ tools: [{ type: 'function', function: { name: 'two words' } }] }, 'tools[0].function.name'],
      [{ tools: [TOOLS[0], TOOLS[0]] }, 'tools[1].function.name'],
      [{ tools: [{ type: 'function', function: { name: 'f', parameters: 'x' } }] }, 'tools[0].function.parameters'],
      [{ tools: TOOLS, response_format: { type: 'json_object' } }, 'response_format'],
      [{ functions: [{ name: 'f' }] }, 'functions'],
      [{ tools: TOOLS, parallel_tool_calls: 'yes' }, 'parallel_tool_calls'],
    ];
    for (const [body, param] of bad) {
      const res = await post(s, '/v1/chat/completions', { messages: MESSAGES, max_tokens: 2, ...body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((await res.json()).error.param, param, JSON.stringify(body));
    }
    const res = await post(s, '/v1/completions', { prompt: 'x', tools: TOOLS, max_tokens: 2 });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.param, 'tools');
  });
} finally {
  await stopServer(s);
}

// A tokenizer without the markers: tools refused, tool_choice none served.
const plain = await startServer(env, ['-c', '512']);
try {
  await check('a tokenizer without the tool-call tokens: tools a 400, tool_choice none answered', async () => {
    const res = await post(plain, '/v1/chat/completions', { messages: MESSAGES, tools: TOOLS, max_tokens: 2 });
    assert.equal(res.status, 400);
    const e = (await res.json()).error;
    assert.equal(e.param, 'tools');
    assert.match(e.message, /tool▁calls▁begin/);
    const ok = await post(plain, '/v1/chat/completions', { messages: MESSAGES, tools: TOOLS, tool_choice: 'none', max_tokens: 2 });
    assert.equal(ok.status, 200);
  });
} finally {
  await stopServer(plain);
}

// A reasoning model: the reasoning is free, the calls come after </think>.
const r1 = await startServer(env, ['-c', '1024', '--think', '--tokenizer', tokPath]);
try {
  await check('reasoning (--think): reasoning_content first, then the calls', async () => {
    const r = await client(r1).chat.completions.create({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 300,
                                                         seed: 7, tool_choice: 'required',
                                                         logit_bias: { ...CLOSE, [THINK_END]: 6 } });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assertCalls(c.message);
    assert.ok(typeof c.message.reasoning_content === 'string', 'reasoning_content');
    return `${c.message.reasoning_content.length} bytes of reasoning`;
  });
} finally {
  await stopServer(r1);
}

// DeepSeek-V3.1's template (tokenizer_config.json beside the tokenizer): its
// call format (NAME<｜tool▁sep｜>ARGS, calls chained), thinking as asked.
const v31 = tinyTokenizerWith(env, 'tools31', MARKERS, V31_CONFIG);
const s31 = await startServer(env, ['-c', '2048', '--tokenizer', v31.path]);
try {
  const oa31 = client(s31);
  const ask31 = (body) => oa31.chat.completions.create({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 300,
                                                         seed: 11, logit_bias: CLOSE, tool_choice: 'required', ...body });
  let calls31;
  await check('V3.1: calls in its format, parsed; no reasoning unless asked', async () => {
    const r = await ask31({});
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assertCalls(c.message);
    assert.equal(c.message.reasoning_content, undefined, 'no reasoning_content');
    calls31 = c.message.tool_calls;
    // the answer's tokens: the markers of V3.1's format, no "function" nor fence
    const lp = await ask31({ logprobs: true });
    const text = lp.choices[0].logprobs.content.map((t) => t.token).join('');
    assert.ok(text.startsWith(`${MARKERS[0]}${MARKERS[2]}${calls31[0].function.name}${MARKERS[4]}`), text);
    assert.ok(!/function|```/.test(text) && text.endsWith(`${MARKERS[3]}${MARKERS[1]}`), text);
    assert.equal(text.split(MARKERS[2]).length - 1, calls31.length, `one begin marker a call: ${text}`);
    return `${calls31.length} calls: ${text.slice(0, 80)}...`;
  });
  await check('V3.1: streamed, the pieces of each call make its arguments', async () => {
    const body = { model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 300, seed: 3, logit_bias: CLOSE,
                   tool_choice: { type: 'function', function: { name: 'get_weather' } } };
    const want = (await oa31.chat.completions.create(body)).choices[0].message.tool_calls;
    const st = oa31.chat.completions.stream(body);
    const pieces = [];
    st.on('chunk', (ch) => {
      for (const c of ch.choices) for (const t of c.delta.tool_calls ?? []) pieces.push([t.index, t.function?.arguments ?? '']);
    });
    const r = await st.finalChatCompletion();
    assert.deepEqual(r.choices[0].message.tool_calls.map((x) => [x.function.name, x.function.arguments]),
                     want.map((x) => [x.function.name, x.function.arguments]));
    want.forEach((call, k) => assert.equal(pieces.filter((p) => p[0] === k).map((p) => p[1]).join(''),
                                           call.function.arguments, `call ${k}`));
    // (how many pieces depends on how far the answer got between two reads of the stream)
    return `${want.length} calls in ${pieces.length} deltas: ${want[0].function.arguments}`;
  });
  await check('V3.1: thinking asked (chat_template_kwargs): reasoning_content, then the calls', async () => {
    const r = await ask31({ chat_template_kwargs: { thinking: true }, seed: 7,
                            logit_bias: { ...CLOSE, [THINK_END]: 6 } });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assertCalls(c.message);
    assert.equal(typeof c.message.reasoning_content, 'string', 'reasoning_content');
    const off = await ask31({ thinking: { type: 'disabled' }, seed: 7, logit_bias: { ...CLOSE, [THINK_END]: 6 } });
    assert.equal(off.choices[0].message.reasoning_content, undefined);
    assert.ok(r.usage.prompt_tokens === off.usage.prompt_tokens, 'the same prompt length (<think> against </think>)');
    return `${c.message.reasoning_content.length} bytes of reasoning`;
  });
  await check('V3.1, Anthropic API: thinking enabled gives a thinking block, disabled none', async () => {
    const msg = async (thinking) => (await post(s31, '/v1/messages', { model: 'dsc', max_tokens: 40, thinking,
      messages: [{ role: 'user', content: 'hi' }], metadata: {} })).json();
    const on = await msg({ type: 'enabled', budget_tokens: 8 }), off = await msg({ type: 'disabled' });
    assert.equal(on.content[0]?.type, 'thinking', JSON.stringify(on));
    assert.ok(off.content.every((b) => b.type !== 'thinking'), JSON.stringify(off));
    return `${on.content[0].thinking.length} bytes of thinking`;
  });
  await check('V3.1: the calls sent back are written in its format', async () => {
    const messages = [...MESSAGES, { role: 'assistant', content: null, tool_calls: calls31 },
                      ...calls31.map((c, i) => ({ role: 'tool', tool_call_id: c.id, content: `result ${i}` }))];
    const text = (await (await post(s31, '/apply-template', { messages, tools: TOOLS })).json()).prompt;
    const want = calls31.map((c) => `${MARKERS[2]}${c.function.name}${MARKERS[4]}${c.function.arguments}${MARKERS[3]}`).join('');
    assert.ok(text.includes(`<｜Assistant｜></think>${MARKERS[0]}${want}${MARKERS[1]}<｜end▁of▁sentence｜>`), text);
    assert.ok(text.endsWith(`${MARKERS[7]}result ${calls31.length - 1}${MARKERS[8]}`), text);
    const r = await oa31.chat.completions.create({ model: 'dsc', messages, tools: TOOLS, max_tokens: 4 });
    const ids = (await (await post(s31, '/tokenize', { content: text })).json()).tokens;
    assert.equal(r.usage.prompt_tokens, ids.length);
  });
} finally {
  await stopServer(s31);
}

await checkServerLogs();
