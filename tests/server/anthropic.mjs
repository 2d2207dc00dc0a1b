// anthropic.mjs — the Anthropic Messages API (POST /v1/messages, and under
// /anthropic as the DeepSeek API serves it) through the official
// @anthropic-ai/sdk client: text answers, stop sequences, token counts, tool
// use and tool results, streams reassembled by the client's own helper,
// thinking blocks of a reasoning model, and errors in Anthropic's shape.
//
// usage: node anthropic.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { check, checkServerLogs, setup, startServer, stopServer, tinyTokenizerWith } from './lib.mjs';

const env = setup(process.argv);
const KEY = 'sk-dsc-test';
const { path: tokPath } = tinyTokenizerWith(env, 'anthropic', [
  '<｜tool▁calls▁begin｜>', '<｜tool▁calls▁end｜>', '<｜tool▁call▁begin｜>', '<｜tool▁call▁end｜>', '<｜tool▁sep｜>',
  '<｜tool▁outputs▁begin｜>', '<｜tool▁outputs▁end｜>', '<｜tool▁output▁begin｜>', '<｜tool▁output▁end｜>']);
const client = (s, base = '', key = KEY) => new Anthropic({ apiKey: key, baseURL: `${s.base}${base}`, maxRetries: 0, timeout: 30000 });
const TOOLS = [{ name: 'get_weather', description: 'The weather in a city',
                 input_schema: { type: 'object', properties: { city: { type: 'string', maxLength: 6 },
                                                               unit: { enum: ['c', 'f'] } },
                                 required: ['city', 'unit'], additionalProperties: false } }];
const USER = [{ role: 'user', content: 'What is the weather in Oslo?' }];

const s = await startServer(env, ['--parallel', '2', '-c', '1024', '--api-key', KEY, '--tokenizer', tokPath]);
const an = client(s);
try {
  let plain;
  await check('a text answer: one text block, stop_reason, usage as count_tokens counts the prompt', async () => {
    const m = await an.messages.create({ model: 'dsc', max_tokens: 24, temperature: 0, system: 'Be brief.', messages: USER });
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.match(m.id, /^msg_/);
    assert.equal(m.content.length, 1);
    assert.equal(m.content[0].type, 'text');
    assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason), m.stop_reason);
    const n = await an.messages.countTokens({ model: 'dsc', system: 'Be brief.', messages: USER });
    assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, n.input_tokens);
    assert.ok(m.usage.output_tokens >= 1 && m.usage.output_tokens <= 24);
    plain = m;
  });

  await check('stop_sequences: the text before it, stop_reason stop_sequence naming it', async () => {
    const text = plain.content[0].text, cut = [...text].slice(3, 5).join('');
    assert.ok(cut.length > 0, 'an answer long enough');
    const m = await an.messages.create({ model: 'dsc', max_tokens: 24, temperature: 0, system: 'Be brief.', messages: USER,
                                         stop_sequences: [cut] });
    assert.equal(m.stop_reason, 'stop_sequence');
    assert.equal(m.stop_sequence, cut);
    assert.equal(m.content[0].text, text.slice(0, text.indexOf(cut)));
  });

  let used;
  await check('tools, tool_choice any, no parallel use: a tool_use block whose input follows the input_schema, stop_reason tool_use', async () => {
    const m = await an.messages.create({ model: 'dsc', max_tokens: 300, temperature: 0, messages: USER, tools: TOOLS,
                                         tool_choice: { type: 'any', disable_parallel_tool_use: true } });
    assert.equal(m.stop_reason, 'tool_use');
    const uses = m.content.filter((b) => b.type === 'tool_use');
    assert.ok(uses.length >= 1, JSON.stringify(m.content));
    for (const u of uses) {
      assert.equal(u.name, 'get_weather');
      assert.deepEqual(Object.keys(u.input).sort(), ['city', 'unit']);
      assert.ok(typeof u.input.city === 'string' && [...u.input.city].length <= 6 && ['c', 'f'].includes(u.input.unit));
      assert.match(u.id, /^toolu_/);
    }
    used = m;
    return `${uses.length} tool_use blocks`;
  });

  await check('streamed (messages.stream, finalMessage): the same blocks and stop_reason', async () => {
    const st = an.messages.stream({ model: 'dsc', max_tokens: 300, temperature: 0, messages: USER, tools: TOOLS,
                                    tool_choice: { type: 'any', disable_parallel_tool_use: true } });
    const events = [], partial = {}; // the input_json_delta pieces of each block
    st.on('streamEvent', (ev) => {
      events.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') (partial[ev.index] ??= []).push(ev.delta.partial_json);
    });
    const m = await st.finalMessage();
    assert.equal(m.stop_reason, used.stop_reason);
    assert.deepEqual(m.content.map((b) => [b.type, b.name, b.input]), used.content.map((b) => [b.type, b.name, b.input]));
    // the input in pieces as it was written, together one JSON object: the block's input
    m.content.forEach((b, i) => {
      if (b.type !== 'tool_use') return;
      assert.ok(partial[i]?.length > 1, `block ${i}: ${JSON.stringify(partial[i])}`);
      assert.deepEqual(JSON.parse(partial[i].join('')), b.input);
    });
    assert.equal(events[0], 'message_start');
    assert.equal(events.at(-1), 'message_stop');
    assert.ok(events.includes('content_block_start') && events.includes('content_block_delta') && events.includes('message_delta'));
    const t = an.messages.stream({ model: 'dsc', max_tokens: 24, temperature: 0, system: 'Be brief.', messages: USER });
    assert.equal((await t.finalText()), plain.content[0].text, 'a text stream: the text of the answer');
  });

  await check('tool results sent back (under /anthropic, as the DeepSeek API serves it): answered, counted alike', async () => {
    const d = client(s, '/anthropic');
    const msgs = [...USER, { role: 'assistant', content: [{ type: 'text', text: 'Let me look.' }, ...used.content] },
                  { role: 'user', content: [...used.content.filter((b) => b.type === 'tool_use').map((b, i) => (
                    { type: 'tool_result', tool_use_id: b.id, content: i ? [{ type: 'text', text: 'rain' }] : '12 C' })),
                  { type: 'text', text: 'Summarize.' }] }];
    const m = await d.messages.create({ model: 'dsc', max_tokens: 8, temperature: 0, messages: msgs, tools: TOOLS });
    const n = await d.messages.countTokens({ model: 'dsc', messages: msgs, tools: TOOLS });
    assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, n.input_tokens);
    assert.ok(n.input_tokens > 300, 'the tools and the calls are in the prompt');
  });

  await check('errors in Anthropic\'s shape: a missing max_tokens, an image, a bad role, bad tools, a wrong key', async () => {
    for (const [body, what] of [[{ messages: USER }, /max_tokens/],
                                [{ max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }, /image/],
                                [{ max_tokens: 4, messages: [{ role: 'robot', content: 'x' }] }, /role/],
                                // the chat request's errors named by the fields sent
                                [{ max_tokens: 4, messages: USER, tools: [TOOLS[0], { name: 'a b', input_schema: {} }] },
                                 /'tools\.1\.name'/],
                                [{ max_tokens: 4, messages: USER, tools: [{ name: 'f', input_schema: 'x' }] }, /'tools\.0\.input_schema'/]]) {
      const r = await fetch(`${s.base}/v1/messages`, { method: 'POST', body: JSON.stringify({ model: 'dsc', ...body }),
                                                       headers: { 'content-type': 'application/json', 'x-api-key': KEY } });
      assert.equal(r.status, 400);
      const j = await r.json();
      assert.equal(j.type, 'error');
      assert.equal(j.error.type, 'invalid_request_error');
      assert.match(j.error.message, what);
    }
    const e = await client(s, '', 'wrong').messages.create({ model: 'dsc', max_tokens: 4, messages: USER }).then(() => null, (x) => x);
    assert.ok(e instanceof Anthropic.AuthenticationError, String(e));
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, 'authentication_error');
  });
} finally {
  await stopServer(s);
}

// A reasoning model: its reasoning comes as a thinking block, first.
const r1 = await startServer(env, ['-c', '512', '--think', '--tokenizer', tokPath]);
try {
  await check('reasoning (--think): a thinking block, streamed as thinking deltas', async () => {
    const m = await client(r1).messages.create({ model: 'dsc', max_tokens: 16, temperature: 0, messages: USER });
    assert.equal(m.content[0].type, 'thinking');
    assert.ok(m.content[0].thinking.length > 0);
    const st = client(r1).messages.stream({ model: 'dsc', max_tokens: 16, temperature: 0, messages: USER });
    const f = await st.finalMessage();
    assert.equal(f.content[0].type, 'thinking');
    assert.equal(f.content[0].thinking, m.content[0].thinking);
  });
  await check('a reasoning budget: thinking budget_tokens, disabled, and the OpenAI side\'s reasoning_budget', async () => {
    const tokens = async (text) => (await (await fetch(`${r1.base}/tokenize`, { method: 'POST',
      body: JSON.stringify({ content: text }) })).json()).tokens.length;
    // unbounded, this model never closes its reasoning within 16 tokens: all of them are thinking
    const free = await client(r1).messages.create({ model: 'dsc', max_tokens: 16, temperature: 0, messages: USER });
    assert.deepEqual(free.content.map((b) => b.type), ['thinking']);
    const m = await client(r1).messages.create({ model: 'dsc', max_tokens: 16, temperature: 0, messages: USER,
                                                thinking: { type: 'enabled', budget_tokens: 3 } });
    assert.deepEqual(m.content.map((b) => b.type), ['thinking', 'text'], JSON.stringify(m.content));
    const [cut, all] = [m.content[0].thinking, free.content[0].thinking]; // (the count: reasoning_tokens below)
    assert.ok(cut.length > 0 && cut.length < all.length && all.startsWith(cut), 'the same start, then cut');
    const off = await client(r1).messages.create({ model: 'dsc', max_tokens: 16, temperature: 0, messages: USER,
                                                  thinking: { type: 'disabled' } });
    assert.deepEqual(off.content.map((b) => b.type), ['text'], JSON.stringify(off.content));
    const bad = await fetch(`${r1.base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'dsc', max_tokens: 4, messages: USER, thinking: { type: 'enabled' } }) });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /thinking/);
    // the chat completions side: reasoning_tokens = the budget + "</think>"'s tokens
    const chat = async (extra) => (await (await fetch(`${r1.base}/v1/chat/completions`, { method: 'POST',
      body: JSON.stringify({ messages: USER, max_tokens: 16, temperature: 0, ...extra }) })).json());
    const c = await chat({ reasoning_budget: 5 });
    const end = await tokens('</think>');
    assert.equal(c.usage.completion_tokens_details.reasoning_tokens, 5 + end, JSON.stringify(c.usage));
    assert.ok(c.choices[0].message.content.length > 0, 'an answer after the reasoning');
    assert.equal((await chat({})).usage.completion_tokens_details.reasoning_tokens, 16);
    const e = await chat({ reasoning_budget: -2 });
    assert.equal(e.error?.param, 'reasoning_budget');
    return `thinking cut at 3 tokens; reasoning_tokens ${5 + end} with a budget of 5`;
  });
} finally {
  await stopServer(r1);
}

await checkServerLogs();
