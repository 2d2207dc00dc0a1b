// responses.mjs — OpenAI's Responses API (POST /v1/responses) through the
// official `openai` client: answers and their output items (reasoning,
// message, function calls), streams reassembled by the client's own helper,
// conversations carried back as input items (the prompt the same as the chat
// request that means it), structured outputs, thinking switched on a model
// that switches it, and the requests refused.
//
// usage: node responses.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { R1_CONFIG, V31_CONFIG, check, checkServerLogs, setup, startServer, stopServer, tinyTokenizerWith } from './lib.mjs';

const env = setup(process.argv);
const MARKERS = ['<｜tool▁calls▁begin｜>', '<｜tool▁calls▁end｜>', '<｜tool▁call▁begin｜>', '<｜tool▁call▁end｜>',
                 '<｜tool▁sep｜>', '<｜tool▁outputs▁begin｜>', '<｜tool▁outputs▁end｜>', '<｜tool▁output▁begin｜>',
                 '<｜tool▁output▁end｜>'];
// with the R1 template (a reasoning model), as the tiny tokenizer's own
const { path: tokPath, ids: IDS } = tinyTokenizerWith(env, 'responses', MARKERS, R1_CONFIG);
const THINK_END = 261;
const CLOSE = { [2 + '}'.charCodeAt(0)]: 6, [2 + '"'.charCodeAt(0)]: 4, [IDS[1]]: 3, [THINK_END]: 12 };
const TOOLS = [{ type: 'function', name: 'get_weather', description: 'The weather in a city now',
                 parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'],
                               additionalProperties: false }, strict: true },
               { type: 'function', name: 'get_time', description: 'The time in a zone' }];
const client = (s) => new OpenAI({ apiKey: 'none', baseURL: `${s.base}/v1`, maxRetries: 0, timeout: 30000 });
const post = (s, p, body) => fetch(`${s.base}${p}`, { method: 'POST', body: JSON.stringify(body),
                                                     headers: { 'content-type': 'application/json' } });
const items = (r, type) => r.output.filter((x) => x.type === type);

const s = await startServer(env, ['-c', '2048', '--tokenizer', tokPath]);
const oa = client(s);
try {
  let first;
  await check('an answer: reasoning and message items, output_text, usage, the settings repeated', async () => {
    const r = await oa.responses.create({ model: 'dsc', input: 'Say hi.', instructions: 'Be brief.', max_output_tokens: 60,
                                          seed: 3, logit_bias: undefined, temperature: 0.8,
                                          metadata: { run: 'a' }, ...{ top_k: 20 } });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.ok(['completed', 'incomplete'].includes(r.status), r.status);
    const reasoning = items(r, 'reasoning'), msg = items(r, 'message');
    assert.equal(reasoning.length, 1, JSON.stringify(r.output));
    assert.equal(reasoning[0].content[0].type, 'reasoning_text');
    assert.equal(r.output[0].type, 'reasoning', 'the reasoning first');
    if (msg.length) {
      assert.equal(msg[0].role, 'assistant');
      assert.equal(msg[0].content[0].type, 'output_text');
      assert.equal(r.output_text, msg[0].content[0].text, 'the client\'s output_text');
    }
    assert.equal(r.instructions, 'Be brief.');
    assert.equal(r.temperature, 0.8);
    assert.deepEqual(r.metadata, { run: 'a' });
    assert.equal(r.max_output_tokens, 60);
    const u = r.usage;
    assert.ok(u.output_tokens >= 1 && u.output_tokens <= 60 && u.total_tokens === u.input_tokens + u.output_tokens, JSON.stringify(u));
    assert.ok(u.output_tokens_details.reasoning_tokens >= 1, JSON.stringify(u));
    // the prompt: the chat request it means
    const chat = await oa.chat.completions.create({ model: 'dsc', max_tokens: 1,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hi.' }] });
    assert.equal(u.input_tokens, chat.usage.prompt_tokens);
    first = r;
    return `${r.status}, ${reasoning[0].content[0].text.length} bytes of reasoning, ${u.output_tokens} tokens`;
  });

  await check('max_output_tokens reached: status incomplete, incomplete_details max_output_tokens', async () => {
    const r = await oa.responses.create({ model: 'dsc', input: 'Say hi.', max_output_tokens: 3, seed: 3 });
    assert.equal(r.status, 'incomplete');
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(r.usage.output_tokens, 3);
  });

  await check('streamed: the client helper reassembles the same response, events numbered in order', async () => {
    const body = { model: 'dsc', input: 'Say hi.', instructions: 'Be brief.', max_output_tokens: 60, seed: 3, temperature: 0.8,
                   top_k: 20, logit_bias: { [THINK_END]: 3 } };
    const want = await oa.responses.create(body);
    const st = oa.responses.stream(body);
    const types = [], seqs = [];
    let text = '', reasoning = '';
    st.on('event', (ev) => {
      types.push(ev.type), seqs.push(ev.sequence_number);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.reasoning_text.delta') reasoning += ev.delta;
    });
    const r = await st.finalResponse();
    assert.deepEqual(seqs, seqs.map((_, i) => i), 'sequence numbers 0, 1, ...');
    assert.equal(types[0], 'response.created');
    assert.equal(types[1], 'response.in_progress');
    assert.equal(types.at(-1), want.status === 'completed' ? 'response.completed' : 'response.incomplete');
    assert.deepEqual(r.output.map((x) => [x.type, x.content?.[0]?.text]), want.output.map((x) => [x.type, x.content?.[0]?.text]));
    assert.equal(reasoning, items(want, 'reasoning')[0].content[0].text);
    assert.equal(text, want.output_text);
    assert.ok(reasoning.length > 0 && text.length > 0, `reasoning and text both: ${JSON.stringify(want.output)}`);
    const counts = (u) => [u.input_tokens, u.output_tokens, u.output_tokens_details.reasoning_tokens, u.total_tokens];
    assert.deepEqual(counts(r.usage), counts(want.usage));
    return `${types.length} events, ${reasoning.length} + ${text.length} bytes`;
  });

  let calls;
  await check('tools, tool_choice required: function_call items whose arguments follow the parameters', async () => {
    const r = await oa.responses.create({ model: 'dsc', input: 'Weather in Oslo?', tools: TOOLS, tool_choice: 'required',
                                          max_output_tokens: 300, seed: 11, logit_bias: CLOSE });
    calls = items(r, 'function_call');
    assert.ok(calls.length >= 1, JSON.stringify(r.output));
    for (const c of calls) {
      assert.ok(['get_weather', 'get_time'].includes(c.name), c.name);
      assert.match(c.call_id, /^call_/);
      assert.match(c.id, /^fc_/);
      const a = JSON.parse(c.arguments);
      if (c.name === 'get_weather') {
        assert.deepEqual(Object.keys(a), ['city'], c.arguments);
        assert.ok([...a.city].length <= 8, c.arguments);
      }
    }
    assert.equal(r.status, 'completed');
    return `${calls.length} calls: ${calls.map((c) => c.name + c.arguments).join(' ')}`;
  });

  await check('tools streamed: the arguments\' deltas make each call\'s arguments', async () => {
    const body = { model: 'dsc', input: 'Weather in Oslo?', tools: TOOLS, max_output_tokens: 300, seed: 5, logit_bias: CLOSE,
                   tool_choice: { type: 'function', name: 'get_weather' } };
    const want = items(await oa.responses.create(body), 'function_call');
    const st = oa.responses.stream(body);
    const deltas = {};
    let n = 0;
    st.on('response.function_call_arguments.delta', (ev) => { n++; deltas[ev.output_index] = (deltas[ev.output_index] ?? '') + ev.delta; });
    const r = await st.finalResponse();
    const got = items(r, 'function_call');
    assert.deepEqual(got.map((c) => [c.name, c.arguments]), want.map((c) => [c.name, c.arguments]));
    r.output.forEach((x, i) => { if (x.type === 'function_call') assert.equal(deltas[i], x.arguments, `item ${i}`); });
    assert.ok(got.every((c) => c.name === 'get_weather'));
    assert.ok(n >= got.length, `${n} deltas`); // (more pieces the further the answer got between two reads)
    return `${got.length} calls in ${n} deltas: ${got[0].arguments}`;
  });

  await check('the calls and their outputs sent back as input items: the prompt of the chat request they mean', async () => {
    const input = [{ role: 'user', content: 'Weather in Oslo?' },
                   { type: 'reasoning', id: 'rs_x', summary: [] },
                   ...calls.map((c) => ({ type: 'function_call', call_id: c.call_id, name: c.name, arguments: c.arguments })),
                   ...calls.map((c, i) => ({ type: 'function_call_output', call_id: c.call_id, output: `result ${i}` }))];
    const r = await oa.responses.create({ model: 'dsc', input, tools: TOOLS, max_output_tokens: 2 });
    const messages = [{ role: 'user', content: 'Weather in Oslo?' },
                      { role: 'assistant', content: null, tool_calls: calls.map((c) => ({ id: c.call_id, type: 'function',
                        function: { name: c.name, arguments: c.arguments } })) },
                      ...calls.map((c, i) => ({ role: 'tool', tool_call_id: c.call_id, content: `result ${i}` }))];
    const tools = TOOLS.map(({ type, ...fn }) => ({ type, function: fn }));
    const chat = await oa.chat.completions.create({ model: 'dsc', messages, tools, max_tokens: 1 });
    assert.equal(r.usage.input_tokens, chat.usage.prompt_tokens);
    const text = (await (await post(s, '/apply-template', { messages, tools })).json()).prompt;
    assert.ok(text.includes('<｜tool▁output▁begin｜>result 0<｜tool▁output▁end｜>'), text);
    // a message with input_text parts, a developer message
    const r2 = await oa.responses.create({ model: 'dsc', max_output_tokens: 1, input: [
      { role: 'developer', content: 'Be brief.' },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Say ' }, { type: 'input_text', text: 'hi.' }] }] });
    assert.equal(r2.usage.input_tokens, first.usage.input_tokens);
  });

  await check('text.format json_schema: the answer one JSON object the schema accepts', async () => {
    const schema = { type: 'object', properties: { mood: { enum: ['ok', 'fine'] } }, required: ['mood'], additionalProperties: false };
    const r = await oa.responses.create({ model: 'dsc', input: 'Mood?', max_output_tokens: 200, seed: 2,
                                          text: { format: { type: 'json_schema', name: 'm', schema, strict: true } },
                                          logit_bias: { [THINK_END]: 12 } });
    const m = JSON.parse(r.output_text);
    assert.ok(['ok', 'fine'].includes(m.mood) && Object.keys(m).length === 1, r.output_text);
    assert.equal(r.text.format.type, 'json_schema');
    return r.output_text;
  });

  await check('refused with a 400 naming the field', async () => {
    const bad = [
      [{ input: 'x', previous_response_id: 'resp_1' }, 'previous_response_id'],
      [{ input: 'x', conversation: 'conv_1' }, 'conversation'],
      [{}, 'input'],
      [{ input: 3 }, 'input'],
      [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x' }] }] }, 'input[0].content'],
      [{ input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
      [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0].type'],
      [{ input: [{ type: 'function_call', name: 'f' }] }, 'input[0]'],
      [{ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
      [{ input: 'x', tools: TOOLS, tool_choice: { type: 'mcp' } }, 'tool_choice'],
      [{ input: 'x', text: { format: { type: 'xml' } } }, 'text.format.type'],
      [{ input: 'x', max_tool_calls: 2 }, 'max_tool_calls'],
      [{ input: 'x', max_output_tokens: -1 }, 'max_output_tokens'], // the chat request's errors named as sent
      [{ input: [] }, 'input'],
      [{ input: 'x', tools: [{ type: 'function', name: 'a b' }] }, 'tools[0].name'],
      [{ input: 'x', text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object', properties: {
        u: { type: 'string', format: 'uri' } } } } } }, 'text.format.schema'],
    ];
    for (const [body, param] of bad) {
      const res = await post(s, '/v1/responses', { model: 'dsc', ...body });
      assert.equal(res.status, 400, JSON.stringify(body));
      const e = (await res.json()).error;
      assert.equal(e.param, param, JSON.stringify(body));
      assert.ok(e.message.length > 0 && !/'(max_tokens|messages|response_format)|\.function\./.test(e.message), e.message);
    }
    const res = await post(s, '/v1/responses', '{"input": ');
    assert.equal(res.status, 400);
  });
} finally {
  await stopServer(s);
}

// DeepSeek-V3.1's template: reasoning.effort switches thinking.
const v31 = tinyTokenizerWith(env, 'responses31', MARKERS, V31_CONFIG);
const s31 = await startServer(env, ['-c', '2048', '--tokenizer', v31.path]);
try {
  await check('V3.1: reasoning.effort switches thinking on, "none" and no reasoning leave it off', async () => {
    const ask = (extra) => client(s31).responses.create({ model: 'dsc', input: 'hi', max_output_tokens: 12, seed: 4,
                                                          logit_bias: { [THINK_END]: 2 }, ...extra });
    const on = await ask({ reasoning: { effort: 'high' } }), off = await ask({ reasoning: { effort: 'none' } }), plain = await ask({});
    assert.equal(items(on, 'reasoning').length, 1, JSON.stringify(on.output));
    assert.equal(items(off, 'reasoning').length, 0, JSON.stringify(off.output));
    assert.equal(items(plain, 'reasoning').length, 0, JSON.stringify(plain.output));
    assert.equal(off.usage.output_tokens_details.reasoning_tokens, 0);
    assert.deepEqual(on.reasoning, { effort: 'high' });
  });
} finally {
  await stopServer(s31);
}

await checkServerLogs();
