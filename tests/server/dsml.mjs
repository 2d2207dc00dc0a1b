// dsml.mjs — DeepSeek-V3.2's function calls (DSML blocks in the answer's
// text) through the official `openai` client: a random V3.2 checkpoint
// (dsc init) whose tiny tokenizer has a whole block as one token, written
// when logit_bias asks for it; the block parsed into tool_calls (strings as
// they are, other values as JSON), streamed and not, the text before it
// kept as content; a block out of the format kept as text; tool_choice
// "none" leaves the text alone; "required" refused (no grammar holds DSML).
//
// usage: node dsml.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { check, checkServerLogs, setup, startServer, stopServer, tinyTokenizerWith } from './lib.mjs';

const env = setup(process.argv);
const client = (s) => new OpenAI({ apiKey: 'none', baseURL: `${s.base}/v1`, maxRetries: 0, timeout: 30000 });

const cfg = { model_type: 'deepseek_v32', vocab_size: 512, hidden_size: 64, intermediate_size: 96, moe_intermediate_size: 32,
              num_hidden_layers: 1, num_attention_heads: 2, q_lora_rank: 32, kv_lora_rank: 128, qk_nope_head_dim: 16,
              qk_rope_head_dim: 16, v_head_dim: 16, n_routed_experts: 4, n_shared_experts: 1, num_experts_per_tok: 2,
              first_k_dense_replace: 1, norm_topk_prob: true, routed_scaling_factor: 2.5, max_position_embeddings: 4096,
              rope_scaling: null, index_n_heads: 4, index_head_dim: 128, index_topk: 16 };
fs.writeFileSync(path.join(env.tmp, 'v32.json'), JSON.stringify(cfg));
env.model = path.join(env.tmp, 'v32');
execFileSync(env.dsc, ['init', '-c', path.join(env.tmp, 'v32.json'), '-o', env.model], { stdio: 'ignore' });

const D = '｜DSML｜';
const BLOCK = `Let me check.\n\n<${D}function_calls>\n<${D}invoke name="get_weather">\n` +
              `<${D}parameter name="city" string="true">Paris, "left bank"</${D}parameter>\n` +
              `<${D}parameter name="days" string="false">2</${D}parameter>\n</${D}invoke>\n` +
              `<${D}invoke name="get_time">\n\n</${D}invoke>\n</${D}function_calls>`;
const BAD = `<${D}function_calls>\n<${D}invoke name="get_weather">\n</${D}function_calls>`;
const { path: tokPath, ids: [BLOCK_ID, BAD_ID] } = tinyTokenizerWith(env, 'dsml', [BLOCK, BAD]);

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city',
                                   parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } } },
  { type: 'function', function: { name: 'get_time', description: 'The time now' } },
];
const MESSAGES = [{ role: 'user', content: 'Weather in Paris?' }];
const WANT = [['get_weather', { city: 'Paris, "left bank"', days: 2 }], ['get_time', {}]];

const s = await startServer(env, ['-c', '4096', '--tokenizer', tokPath]);
const ask = (body) => client(s).chat.completions.create({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 4,
                                                         logit_bias: { [BLOCK_ID]: 100 }, ...body });
const calls = (tc) => tc.map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
try {
  await check('V3.2: the server takes its encoding', () => {
    assert.match(s.log, /V3\.2 encoding/);
  });
  await check('V3.2: a DSML block becomes tool_calls, the text before it content', async () => {
    const r = await ask({});
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, 'Let me check.');
    assert.deepEqual(calls(c.message.tool_calls), WANT);
    assert.ok(c.message.tool_calls.every((t) => t.type === 'function' && /^call_/.test(t.id)));
  });
  await check('V3.2: streamed, the client reassembles the same calls', async () => {
    const st = client(s).chat.completions.stream({ model: 'dsc', messages: MESSAGES, tools: TOOLS, max_tokens: 4,
                                                   logit_bias: { [BLOCK_ID]: 100 } });
    const r = await st.finalChatCompletion();
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, 'Let me check.');
    assert.deepEqual(calls(c.message.tool_calls), WANT);
  });
  await check('V3.2: a block out of the format stays text', async () => {
    const r = await ask({ logit_bias: { [BAD_ID]: 100 } });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'stop');
    assert.equal(c.message.content, BAD);
    assert.ok(!c.message.tool_calls || c.message.tool_calls.length === 0);
  });
  await check('V3.2: tool_choice none leaves a block as text', async () => {
    const r = await ask({ tool_choice: 'none', max_tokens: 1 });
    const c = r.choices[0];
    assert.equal(c.message.content, BLOCK);
    assert.ok(!c.message.tool_calls || c.message.tool_calls.length === 0);
  });
  await check('V3.2: tool_choice required is a 400', async () => {
    await assert.rejects(ask({ tool_choice: 'required' }), (e) => e.status === 400 && e.param === 'tool_choice');
  });
  await check('V3.2: the calls sent back are the prompt of the encoding', async () => {
    const r = await ask({});
    const m = r.choices[0].message;
    const res = await fetch(`${s.base}/apply-template`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [...MESSAGES, { role: 'assistant', content: m.content, tool_calls: m.tool_calls },
                                        { role: 'tool', tool_call_id: m.tool_calls[0].id, content: '21' },
                                        { role: 'tool', tool_call_id: m.tool_calls[1].id, content: 'noon' }] }) });
    const p = (await res.json()).prompt;
    assert.ok(p.endsWith(`<｜User｜>Weather in Paris?<｜Assistant｜></think>${BLOCK}<｜end▁of▁sentence｜>\n\n` +
                         '<function_results>\n<result>21</result>\n<result>noon</result>\n</function_results>\n\n</think>'), p);
  });
} finally {
  await stopServer(s);
}
checkServerLogs(env);
