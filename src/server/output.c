/*
 * output.c — response bodies in the shapes of the OpenAI and DeepSeek APIs:
 * chat.completion and its chunks (reasoning in reasoning_content, as
 * DeepSeek's API does; function calls in tool_calls, streamed begun, then
 * their arguments in pieces), text_completion and its chunks, usage with
 * DeepSeek's prompt_cache_hit_tokens / prompt_cache_miss_tokens, and
 * logprobs in both the chat and the legacy completions layout.
 * Strings go through sbuf_json_str, so the output is valid JSON even when
 * a token ends inside a UTF-8 character.
 */
#include <math.h>
#include <string.h>

#include "srv.h"

static void token_text(const srv_server *S, int32_t id, char *buf, size_t cap, size_t *n) {
    if (dsc_token_bytes(S->tok, id, buf, cap, n)) *n = 0;
}

static void lp_bytes(sbuf *o, const char *b, size_t n) {
    sbuf_puts(o, "[");
    for (size_t i = 0; i < n; i++) sbuf_printf(o, "%s%u", i ? "," : "", (unsigned char)b[i]);
    sbuf_puts(o, "]");
}

/* {"token": .., "logprob": .., "bytes": [..]} */
static void lp_item(const srv_server *S, int32_t id, float lp, sbuf *o) {
    char buf[256];
    size_t n;
    token_text(S, id, buf, sizeof buf, &n);
    sbuf_puts(o, "{\"token\":");
    sbuf_json_str(o, buf, n);
    sbuf_printf(o, ",\"logprob\":%.6g,\"bytes\":", lp);
    lp_bytes(o, buf, n);
}

/* Chat layout: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}. */
static void lp_chat(const srv_server *S, const srv_lp *lp, size_t n, sbuf *o) {
    sbuf_puts(o, "{\"content\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sbuf_puts(o, ",");
        lp_item(S, lp[i].token, lp[i].logprob, o);
        sbuf_puts(o, ",\"top_logprobs\":[");
        for (int k = 0; k < lp[i].n_top; k++) {
            if (k) sbuf_puts(o, ",");
            lp_item(S, lp[i].top[k].id, lp[i].top[k].logprob, o);
            sbuf_puts(o, "}");
        }
        sbuf_puts(o, "]}");
    }
    sbuf_puts(o, "],\"refusal\":null}");
}

/* Legacy completions layout: tokens, token_logprobs, top_logprobs, text_offset. */
/* Returns the text offset after the n tokens (the next chunk's first). */
static size_t lp_completion(const srv_server *S, const srv_lp *lp, size_t n, size_t offset, sbuf *o) {
    char buf[256];
    size_t k;
    sbuf_puts(o, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        token_text(S, lp[i].token, buf, sizeof buf, &k);
        if (i) sbuf_puts(o, ",");
        sbuf_json_str(o, buf, k);
    }
    sbuf_puts(o, "],\"token_logprobs\":[");
    for (size_t i = 0; i < n; i++) { /* NAN: an echoed prompt's first token, after nothing */
        if (isnan(lp[i].logprob)) sbuf_puts(o, i ? ",null" : "null");
        else sbuf_printf(o, "%s%.6g", i ? "," : "", lp[i].logprob);
    }
    sbuf_puts(o, "],\"top_logprobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (isnan(lp[i].logprob)) {
            sbuf_puts(o, i ? ",null" : "null");
            continue;
        }
        /* An object, so one key per text: tokens whose text is the same (two
         * pieces of one UTF-8 character both come out as U+FFFD) keep the
         * first, the likeliest. */
        sbuf key[SRV_MAX_TOP] = {{0}};
        int n_key = 0;
        sbuf_puts(o, i ? ",{" : "{");
        for (int t = 0; t < lp[i].n_top && t < SRV_MAX_TOP; t++) {
            token_text(S, lp[i].top[t].id, buf, sizeof buf, &k);
            sbuf *q = &key[n_key];
            sbuf_json_str(q, buf, k);
            int seen = q->oom;
            for (int j = 0; j < n_key && !seen; j++) seen = key[j].n == q->n && !memcmp(key[j].p, q->p, q->n);
            if (seen) {
                sbuf_free(q);
                continue;
            }
            sbuf_printf(o, "%s%s:%.6g", n_key ? "," : "", q->p, lp[i].top[t].logprob);
            n_key++;
        }
        for (int j = 0; j < n_key; j++) sbuf_free(&key[j]);
        sbuf_puts(o, "}");
    }
    sbuf_puts(o, "],\"text_offset\":[");
    for (size_t i = 0; i < n; i++) {
        token_text(S, lp[i].token, buf, sizeof buf, &k);
        sbuf_printf(o, "%s%zu", i ? "," : "", offset);
        offset += k;
    }
    sbuf_puts(o, "]}");
    return offset;
}

static void head(const srv_server *S, const srv_req *r, const char *object, sbuf *o) {
    sbuf_puts(o, "{\"id\":");
    sbuf_json_str(o, r->id, strlen(r->id));
    sbuf_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, r->created);
    sbuf_json_str(o, S->model_name, strlen(S->model_name));
    sbuf_printf(o, ",\"system_fingerprint\":\"%s\"", S->fingerprint);
}

/* The counts of a request's prompts together. */
static void usage(srv_req *const *rs, int n_req, sbuf *o) {
    long long gen = 0, reason = 0, prompt = 0, hit = 0;
    for (int k = 0; k < n_req; k++) {
        const srv_req *r = rs[k];
        for (int i = 0; i < r->a.n; i++) gen += r->ch[i].n_gen, reason += r->ch[i].n_reason;
        prompt += r->n_prompt, hit += r->n_hit;
    }
    sbuf_printf(o,
                "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld,"
                "\"prompt_cache_hit_tokens\":%lld,\"prompt_cache_miss_tokens\":%lld,"
                "\"prompt_tokens_details\":{\"cached_tokens\":%lld},"
                "\"completion_tokens_details\":{\"reasoning_tokens\":%lld}}",
                prompt, gen, prompt + gen, hit, prompt - hit, hit, reason);
}

static void finish_reason(const char *finish, sbuf *o) {
    if (finish) sbuf_printf(o, "\"finish_reason\":\"%s\"", finish);
    else sbuf_puts(o, "\"finish_reason\":null");
}

void out_chat_chunk(const srv_server *S, const srv_req *r, int i, const char *role, const char *reason, size_t nr,
                    const char *content, size_t nc, const srv_lp *lp, size_t n_lp, const char *finish, sbuf *o) {
    sbuf_puts(o, "data: ");
    head(S, r, "chat.completion.chunk", o);
    sbuf_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{", i);
    const char *sep = "";
    if (role) sbuf_printf(o, "\"role\":\"%s\"", role), sep = ",";
    if (reason) sbuf_printf(o, "%s\"reasoning_content\":", sep), sbuf_json_str(o, reason, nr), sep = ",";
    if (content) sbuf_printf(o, "%s\"content\":", sep), sbuf_json_str(o, content, nc);
    sbuf_puts(o, "},\"logprobs\":");
    if (n_lp) lp_chat(S, lp, n_lp, o);
    else sbuf_puts(o, "null");
    sbuf_puts(o, ",");
    finish_reason(finish, o);
    sbuf_puts(o, "}]");
    if (r->a.include_usage) sbuf_puts(o, ",\"usage\":null");
    sbuf_puts(o, "}\n\n");
}

/* {"index": k (streamed), "id", "type": "function", "function": {"name", "arguments"}} */
static void call_item(const srv_call *call, int k, sbuf *o) {
    sbuf_puts(o, "{");
    if (k >= 0) sbuf_printf(o, "\"index\":%d,", k);
    sbuf_puts(o, "\"id\":");
    sbuf_json_str(o, call->id, strlen(call->id));
    sbuf_puts(o, ",\"type\":\"function\",\"function\":{\"name\":");
    sbuf_json_str(o, call->name, strlen(call->name));
    sbuf_puts(o, ",\"arguments\":");
    sbuf_json_str(o, call->arguments, strlen(call->arguments));
    sbuf_puts(o, "}}");
}

void out_call_delta(const srv_server *S, const srv_req *r, int i, int k, const srv_call *begin, const char *args,
                    size_t n, sbuf *o) {
    sbuf_puts(o, "data: ");
    head(S, r, "chat.completion.chunk", o);
    sbuf_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{\"tool_calls\":[{\"index\":%d,", i, k);
    if (begin) {
        sbuf_puts(o, "\"id\":");
        sbuf_json_str(o, begin->id, strlen(begin->id));
        sbuf_puts(o, ",\"type\":\"function\",");
    }
    sbuf_puts(o, "\"function\":{");
    if (begin) sbuf_puts(o, "\"name\":"), sbuf_json_str(o, begin->name, strlen(begin->name)), sbuf_puts(o, ",");
    sbuf_puts(o, "\"arguments\":");
    sbuf_json_str(o, args, n);
    sbuf_puts(o, "}}]},\"logprobs\":null,\"finish_reason\":null}]");
    if (r->a.include_usage) sbuf_puts(o, ",\"usage\":null");
    sbuf_puts(o, "}\n\n");
}

void out_completion_chunk(const srv_server *S, const srv_req *r, int i, const char *text, size_t n, const srv_lp *lp,
                          size_t n_lp, size_t *offset, const char *finish, sbuf *o) {
    sbuf_puts(o, "data: ");
    head(S, r, "text_completion", o);
    sbuf_printf(o, ",\"choices\":[{\"index\":%d,\"text\":", i);
    sbuf_json_str(o, text, n);
    sbuf_puts(o, ",\"logprobs\":");
    if (n_lp) *offset = lp_completion(S, lp, n_lp, *offset, o);
    else sbuf_puts(o, "null");
    sbuf_puts(o, ",");
    finish_reason(finish, o);
    sbuf_puts(o, "}]");
    if (r->a.include_usage) sbuf_puts(o, ",\"usage\":null");
    sbuf_puts(o, "}\n\n");
}

void out_usage_chunk(const srv_server *S, srv_req *const *rs, int n_req, sbuf *o) {
    sbuf_puts(o, "data: ");
    head(S, rs[0], rs[0]->a.kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", o);
    sbuf_puts(o, ",\"choices\":[],");
    usage(rs, n_req, o);
    sbuf_puts(o, "}\n\n");
}

void out_final(const srv_server *S, srv_req *const *rs, int n_req, sbuf *o) {
    const int chat = rs[0]->a.kind == SRV_CHAT;
    head(S, rs[0], chat ? "chat.completion" : "text_completion", o);
    sbuf_puts(o, ",\"choices\":[");
    for (int k = 0, at = 0; k < n_req; k++)
    for (int i = 0; i < rs[k]->a.n; i++, at++) {
        const srv_req *r = rs[k];
        const srv_choice *c = &r->ch[i];
        sbuf_printf(o, "%s{\"index\":%d,", at ? "," : "", at);
        if (chat) {
            sbuf_puts(o, "\"message\":{\"role\":\"assistant\",\"content\":");
            if (c->n_calls && !c->content.n) sbuf_puts(o, "null"); /* as OpenAI answers calls alone */
            else sbuf_json_str(o, c->content.p, c->content.n);
            if (c->n_calls) {
                sbuf_puts(o, ",\"tool_calls\":[");
                for (int k = 0; k < c->n_calls; k++) {
                    if (k) sbuf_puts(o, ",");
                    call_item(&c->calls[k], -1, o);
                }
                sbuf_puts(o, "]");
            }
            if (r->reasoning) sbuf_puts(o, ",\"reasoning_content\":"), sbuf_json_str(o, c->reason.p, c->reason.n);
            sbuf_puts(o, ",\"refusal\":null},\"logprobs\":");
            if (r->a.logprobs) lp_chat(S, c->lp, c->n_lp, o);
            else sbuf_puts(o, "null");
        } else {
            sbuf_puts(o, "\"text\":");
            sbuf_json_str(o, c->content.p, c->content.n);
            sbuf_puts(o, ",\"logprobs\":");
            if (r->a.logprobs) lp_completion(S, c->lp, c->n_lp, 0, o);
            else sbuf_puts(o, "null");
        }
        sbuf_puts(o, ",");
        finish_reason(c->finish ? c->finish : "stop", o);
        sbuf_puts(o, "}");
    }
    sbuf_puts(o, "],");
    usage(rs, n_req, o);
    sbuf_puts(o, "}");
}
