// busy.mjs — a request's answer does not depend on what else the server is
// doing: the same text, tokens and logprobs (to the last digit printed) for
// a request sent to an idle server and for the same request sent while
// another slot is generating and other prompts arrive with it. Short prompts
// always join a step's pass and long ones go in whole chunks, so neither the
// form of a prompt's attention nor where its chunks begin changes with load.
//
// usage: node busy.mjs DSC_BINARY GOLDEN_DIR TMP_DIR   (one PASS/FAIL line per check)
import assert from 'node:assert/strict';
import { check, checkServerLogs, metrics, setup, startServer, stopServer } from './lib.mjs';

const env = setup(process.argv);
// Prompts that share no first token, so no request reuses another's cache.
const LONG = 'The quick brown fox jumps over the lazy dog. '.repeat(5); // > 2 chunks of 64
const MID = 'Pack my box with five dozen liquor jugs, then ' + 'sing a song of sixpence, '.repeat(2); // 64 < n <= 128
const ASKS = [
  ['short, logprobs', { prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 3, ignore_eos: true }],
  ['short, sampled', { prompt: 'Hello there', max_tokens: 12, temperature: 0.9, seed: 4, logprobs: 1, ignore_eos: true }],
  ['64 < prompt <= one chunk', { prompt: MID, max_tokens: 8, temperature: 0, logprobs: 2, ignore_eos: true }],
  ['prompt of several chunks', { prompt: LONG, max_tokens: 8, temperature: 0, logprobs: 2, ignore_eos: true }],
  ['chat', { messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 12, temperature: 0, logprobs: true,
             top_logprobs: 2 }],
];

const post = async (s, body) => {
  const at = body.messages ? '/v1/chat/completions' : '/v1/completions';
  const r = await fetch(`${s.base}${at}`, { method: 'POST', body: JSON.stringify(body),
                                            headers: { 'content-type': 'application/json' } });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
};
const answer = (j) => JSON.stringify({ choices: j.choices, usage: [j.usage.prompt_tokens, j.usage.completion_tokens] });

// A streamed request that keeps a slot generating; resolves `started` at its
// first token, and the returned promise at its end.
function background(s) {
  let started;
  const first = new Promise((r) => { started = r; });
  const done = (async () => {
    const r = await fetch(`${s.base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Zebras', max_tokens: 900, temperature: 0, ignore_eos: true, stream: true }) });
    assert.equal(r.status, 200);
    for await (const _ of r.body) started();
  })();
  return { first, done };
}

async function main() {
  // -b 64: chunks of 64, so the long prompts go in several.
  const args = ['--parallel', '6', '-c', '1024', '-b', '64', '--batch-invariant'];
  const idle = await startServer(env, args);
  const busy = await startServer(env, args);
  const want = {};
  for (const [name, q] of ASKS) want[name] = answer(await post(idle, q));

  const bg = background(busy);
  await bg.first;
  const got = await Promise.all(ASKS.map(([, q]) => post(busy, q)));
  const m = await metrics(busy);
  const bgRunning = !(await Promise.race([bg.done.then(() => true), Promise.resolve(false)]));
  for (let i = 0; i < ASKS.length; i++)
    await check(`busy server, ${ASKS[i][0]}: the answer of an idle one`, async () => {
      assert.equal(answer(got[i]), want[ASKS[i][0]]);
    });
  await check('busy server: the requests ran beside a generating slot and joined its steps', async () => {
    const joined = m.dsc_prefill_joined_tokens_total;
    assert.ok(bgRunning, 'the generating slot had finished before the requests did');
    assert.ok(joined > 0, `joined ${joined}`);
    return `${joined} prompt tokens joined a step`;
  });
  await bg.done;
  await stopServer(idle);
  await stopServer(busy);
  await checkServerLogs();
}

main().catch((e) => { console.log(`FAIL busy.mjs: ${e.stack || e}`); process.exitCode = 1; });
