/*
 * anthropic.c — the Anthropic Messages API (POST /v1/messages, as the
 * DeepSeek API also serves it under /anthropic), for the clients written
 * against it: a request is translated into the chat request it means and
 * checked by the same parser (api.c), and answered in the Messages shapes.
 *
 *   system (a string or text blocks)   -> a system message
 *   user text blocks                    -> a user message
 *   user tool_result blocks             -> tool messages (before the text)
 *   assistant text / tool_use blocks    -> an assistant message with tool_calls
 *   assistant thinking blocks           -> dropped (R1's history keeps answers only)
 *   tools {name, description, input_schema}, tool_choice auto / any / tool /
 *   none, disable_parallel_tool_use     -> tools, tool_choice, parallel_tool_calls
 *   max_tokens, stop_sequences, temperature, top_p, top_k, stream
 *   thinking {enabled, budget_tokens} / {disabled} -> reasoning_budget N / 0,
 *                                          thinking {type} (a model that switches it)
 *
 * The answer's content blocks: thinking (a reasoning model's), text,
 * tool_use (input: the call's arguments); stop_reason end_turn, max_tokens,
 * stop_sequence (with the sequence) or tool_use; usage input_tokens (the
 * prompt's tokens not read from the cache), cache_read_input_tokens,
 * output_tokens. A stream sends message_start, then each block's
 * content_block_start, deltas (thinking_delta, text_delta,
 * input_json_delta) and content_block_stop, then message_delta and
 * message_stop, as Anthropic's API does.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

#define INVALID "invalid_request_error"

static int need(const cJSON *j, int ok, const char *param, const char *want, srv_err *e) {
    if (ok) return 0;
    return srv_fail(e, 400, INVALID, param, "invalid_type", "%s: %s%s", param, j ? "expected " : "Field required",
                    j ? want : "");
}

/* The text of a content: a string, or text blocks joined (other blocks refused). */
static int text_of(const cJSON *c, const char *param, sbuf *out, srv_err *e) {
    if (cJSON_IsString(c)) return sbuf_puts(out, c->valuestring), 0;
    if (need(c, cJSON_IsArray(c), param, "a string or an array of text blocks", e)) return -1;
    const cJSON *b;
    cJSON_ArrayForEach(b, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type"), *text = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text))
            return srv_fail(e, 400, INVALID, param, "invalid_value", "%s: only text blocks are supported here", param);
        sbuf_puts(out, text->valuestring);
    }
    return 0;
}

/* One message of the conversation, as chat messages. */
static int message(const cJSON *m, int i, cJSON *msgs, srv_err *e) {
    char param[64];
    snprintf(param, sizeof param, "messages.%d.role", i);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (need(role, cJSON_IsString(role), param, "'user' or 'assistant'", e)) return -1;
    const int user = !strcmp(role->valuestring, "user");
    if (!user && strcmp(role->valuestring, "assistant"))
        return srv_fail(e, 400, INVALID, param, "invalid_value", "%s: expected 'user' or 'assistant'", param);
    snprintf(param, sizeof param, "messages.%d.content", i);
    if (cJSON_IsString(content)) return srv_add_message(msgs, role->valuestring, content->valuestring), 0;
    if (need(content, cJSON_IsArray(content), param, "a string or an array of content blocks", e)) return -1;
    sbuf text = {0};
    sbuf_puts(&text, "");
    cJSON *calls = cJSON_CreateArray();
    const cJSON *b;
    int k = 0, rc = 0, results = 0;
    cJSON_ArrayForEach(b, content) {
        snprintf(param, sizeof param, "messages.%d.content.%d", i, k++);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (!strcmp(t, "text")) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(b, "text");
            if ((rc = need(x, cJSON_IsString(x), param, "a text block with a string 'text'", e))) break;
            sbuf_puts(&text, x->valuestring);
        } else if (!user && (!strcmp(t, "thinking") || !strcmp(t, "redacted_thinking"))) {
            continue; /* the reasoning of an earlier answer is not shown again */
        } else if (!user && !strcmp(t, "tool_use")) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id"), *name = cJSON_GetObjectItemCaseSensitive(b, "name");
            const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
            if ((rc = need(name, cJSON_IsString(name) && cJSON_IsObject(input), param,
                           "a tool_use block with a string 'name' and an object 'input'", e)))
                break;
            cJSON *call = cJSON_CreateObject(), *fn = cJSON_CreateObject();
            cJSON_AddStringToObject(call, "id", cJSON_IsString(id) ? id->valuestring : "");
            cJSON_AddStringToObject(call, "type", "function");
            cJSON_AddStringToObject(fn, "name", name->valuestring);
            char *args = cJSON_PrintUnformatted(input);
            cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
            free(args);
            cJSON_AddItemToObject(call, "function", fn);
            cJSON_AddItemToArray(calls, call);
        } else if (user && !strcmp(t, "tool_result")) { /* each a tool message, before the text */
            sbuf r = {0};
            sbuf_puts(&r, "");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(b, "content"), *err = cJSON_GetObjectItemCaseSensitive(b, "is_error");
            if (cJSON_IsTrue(err)) sbuf_puts(&r, "Error: ");
            if (c && (rc = text_of(c, param, &r, e))) {
                sbuf_free(&r);
                break;
            }
            srv_add_message(msgs, "tool", r.p);
            sbuf_free(&r);
            results++;
        } else {
            rc = srv_fail(e, 400, INVALID, param, "invalid_value", "%s: content blocks of type '%.32s' are not supported",
                          param, t);
            break;
        }
    }
    const int n_calls = cJSON_GetArraySize(calls);
    if (!rc && user && (text.n || !results)) srv_add_message(msgs, "user", text.p);
    if (!rc && !user) { /* its text (null beside calls, when there is none), then its calls */
        cJSON *am = srv_add_message(msgs, "assistant", text.n || !n_calls ? text.p : NULL);
        if (n_calls) cJSON_AddItemToObject(am, "tool_calls", calls), calls = NULL;
    }
    cJSON_Delete(calls);
    if (text.oom && !rc) rc = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    sbuf_free(&text);
    return rc;
}

static void copy(const cJSON *in, const char *from, cJSON *out, const char *to) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(in, from);
    if (j) cJSON_AddItemToObject(out, to, cJSON_Duplicate(j, 1));
}

/* The chat request a Messages request means (NULL and e filled if it is not one). */
static cJSON *translate(const cJSON *in, int counting, srv_err *e) {
    cJSON *out = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(out, "messages");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(in, "messages"), *m;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(in, "max_tokens"), *sys = cJSON_GetObjectItemCaseSensitive(in, "system");
    int rc = counting ? 0 : need(mt, cJSON_IsNumber(mt), "max_tokens", "an integer", e);
    if (!rc) rc = need(ms, cJSON_IsArray(ms), "messages", "an array", e);
    if (!rc && sys && !cJSON_IsNull(sys)) {
        sbuf t = {0};
        sbuf_puts(&t, "");
        if (!(rc = text_of(sys, "system", &t, e))) srv_add_message(msgs, "system", t.p);
        sbuf_free(&t);
    }
    int i = 0;
    if (!rc) cJSON_ArrayForEach(m, ms) if ((rc = message(m, i++, msgs, e))) break;
    copy(in, "model", out, "model");
    copy(in, "max_tokens", out, "max_tokens");
    copy(in, "stop_sequences", out, "stop");
    copy(in, "temperature", out, "temperature");
    copy(in, "top_p", out, "top_p");
    copy(in, "top_k", out, "top_k");
    copy(in, "stream", out, "stream");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(in, "thinking");
    if (!rc && th && !cJSON_IsNull(th)) { /* a reasoning model's budget: enabled with budget_tokens, or disabled (0) */
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(th, "type"), *bt = cJSON_GetObjectItemCaseSensitive(th, "budget_tokens");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        cJSON *ot = cJSON_AddObjectToObject(out, "thinking"); /* on or off, where the model switches it */
        if (ot) cJSON_AddStringToObject(ot, "type", ty);
        if (!strcmp(ty, "disabled")) cJSON_AddNumberToObject(out, "reasoning_budget", 0);
        else if (!strcmp(ty, "enabled") && cJSON_IsNumber(bt) && bt->valuedouble >= 0 && bt->valuedouble <= (1 << 30) &&
                 bt->valuedouble == (double)(int)bt->valuedouble)
            cJSON_AddNumberToObject(out, "reasoning_budget", bt->valuedouble);
        else {
            rc = srv_fail(e, 400, INVALID, "thinking", "invalid_value",
                          "thinking: expected {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}");
            goto done;
        }
    }
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(in, "tools"), *t;
    if (!rc && tools && !cJSON_IsNull(tools)) {
        if ((rc = need(tools, cJSON_IsArray(tools), "tools", "an array", e))) goto done;
        cJSON *ot = cJSON_AddArrayToObject(out, "tools");
        i = 0;
        cJSON_ArrayForEach(t, tools) {
            char param[48];
            snprintf(param, sizeof param, "tools.%d", i++);
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
            if (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "custom"))) {
                rc = srv_fail(e, 400, INVALID, param, "invalid_value",
                              "%s: tools of type '%.40s' (the API's own) are not supported: give a custom tool "
                              "(name, description, input_schema)", param, cJSON_IsString(type) ? type->valuestring : "?");
                goto done;
            }
            cJSON *w = cJSON_CreateObject(), *fn = cJSON_CreateObject();
            cJSON_AddStringToObject(w, "type", "function");
            copy(t, "name", fn, "name");
            copy(t, "description", fn, "description");
            copy(t, "input_schema", fn, "parameters");
            cJSON_AddItemToObject(w, "function", fn);
            cJSON_AddItemToArray(ot, w);
        }
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(in, "tool_choice");
    if (!rc && tc && !cJSON_IsNull(tc)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type"), *name = cJSON_GetObjectItemCaseSensitive(tc, "name");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        if (!strcmp(ty, "auto") || !strcmp(ty, "none")) cJSON_AddStringToObject(out, "tool_choice", ty);
        else if (!strcmp(ty, "any")) cJSON_AddStringToObject(out, "tool_choice", "required");
        else if (!strcmp(ty, "tool") && cJSON_IsString(name)) {
            cJSON *o = cJSON_AddObjectToObject(out, "tool_choice"), *fn = cJSON_AddObjectToObject(o, "function");
            cJSON_AddStringToObject(o, "type", "function");
            cJSON_AddStringToObject(fn, "name", name->valuestring);
        } else {
            rc = srv_fail(e, 400, INVALID, "tool_choice", "invalid_value",
                          "tool_choice: expected {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}");
            goto done;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "disable_parallel_tool_use")))
            cJSON_AddFalseToObject(out, "parallel_tool_calls");
    }
done:
    if (rc) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

/* An error of the chat request, said of the Messages request's fields
 * (stop -> stop_sequences, tools[i].function.parameters ->
 * tools.i.input_schema, tools[i].function.x -> tools.i.x,
 * tool_choice.function.name -> tool_choice.name). */
static void rename_param(srv_err *e) {
    char now[sizeof e->param];
    const char *p = e->param, *f = strstr(p, "].function.");
    int i;
    if (!strcmp(p, "stop") || !strncmp(p, "stop[", 5)) snprintf(now, sizeof now, "stop_sequences%s", p + 4);
    else if (!strncmp(p, "tool_choice.function.", 21)) snprintf(now, sizeof now, "tool_choice.%s", p + 21);
    else if (f && sscanf(p, "tools[%d]", &i) == 1)
        snprintf(now, sizeof now, "tools.%d.%s", i, strcmp(f + 11, "parameters") ? f + 11 : "input_schema");
    else return;
    srv_err_rename(e, now);
}

int srv_parse_anthropic(const char *body, size_t len, int counting, srv_ask *a, srv_err *e) {
    memset(a, 0, sizeof *a);
    cJSON *in = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return srv_fail(e, 400, INVALID, NULL, "invalid_json", "The request body is not one JSON object.");
    }
    cJSON *out = translate(in, counting, e);
    cJSON_Delete(in);
    if (!out) return -1;
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (!text) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const int rc = srv_parse(SRV_CHAT, text, strlen(text), a, e);
    free(text);
    if (rc) rename_param(e);
    a->anthropic = 1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                   */

void srv_err_json_anthropic(const srv_err *e, sbuf *out) {
    const char *type = e->status == 401 ? "authentication_error" : e->status == 404 ? "not_found_error"
                     : e->status == 413 ? "request_too_large" : e->status == 503 ? "overloaded_error"
                     : e->status >= 500 ? "api_error" : "invalid_request_error";
    sbuf_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", type);
    sbuf_json_str(out, e->message, strlen(e->message));
    sbuf_puts(out, "}}");
}

static const char *stop_reason(const srv_choice *c) {
    if (!c->finish || !strcmp(c->finish, "stop")) return c->stop_hit ? "stop_sequence" : "end_turn";
    if (!strcmp(c->finish, "tool_calls")) return "tool_use";
    return "max_tokens";
}

static void stop_sequence(const srv_choice *c, sbuf *o) {
    if (c->stop_hit) sbuf_json_str(o, c->stop_hit, strlen(c->stop_hit));
    else sbuf_puts(o, "null");
}

static void msg_id(const srv_req *r, sbuf *o) { sbuf_printf(o, "\"msg_%s\"", r->id + strcspn(r->id, "-") + 1); }

/* {"type": "tool_use", "id", "name", "input"} (the arguments are one JSON object) */
static void tool_use(const srv_call *call, sbuf *o, int empty_input) {
    sbuf_printf(o, "{\"type\":\"tool_use\",\"id\":\"toolu_%s\",\"name\":", call->id + strcspn(call->id, "_") + 1);
    sbuf_json_str(o, call->name, strlen(call->name));
    sbuf_printf(o, ",\"input\":%s}", empty_input ? "{}" : call->arguments);
}

static void usage(const srv_req *r, long long out_tokens, sbuf *o) {
    sbuf_printf(o, "\"usage\":{\"input_tokens\":%d,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":%d,"
                   "\"output_tokens\":%lld}", r->n_prompt - r->n_hit, r->n_hit, out_tokens);
}

void out_anthropic_final(const srv_server *S, const srv_req *r, sbuf *o) {
    const srv_choice *c = &r->ch[0];
    sbuf_puts(o, "{\"id\":");
    msg_id(r, o);
    sbuf_puts(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    sbuf_json_str(o, S->model_name, strlen(S->model_name));
    sbuf_puts(o, ",\"content\":[");
    const char *sep = "";
    if (r->reasoning && c->reason.n) {
        sbuf_puts(o, "{\"type\":\"thinking\",\"thinking\":");
        sbuf_json_str(o, c->reason.p, c->reason.n);
        sbuf_puts(o, ",\"signature\":\"\"}"), sep = ",";
    }
    if (c->content.n || (!c->n_calls && !*sep)) {
        sbuf_printf(o, "%s{\"type\":\"text\",\"text\":", sep);
        sbuf_json_str(o, c->content.p ? c->content.p : "", c->content.n);
        sbuf_puts(o, "}"), sep = ",";
    }
    for (int k = 0; k < c->n_calls; k++, sep = ",") sbuf_puts(o, sep), tool_use(&c->calls[k], o, 0);
    sbuf_printf(o, "],\"stop_reason\":\"%s\",\"stop_sequence\":", stop_reason(c));
    stop_sequence(c, o);
    sbuf_puts(o, ",");
    usage(r, c->n_gen, o);
    sbuf_puts(o, "}");
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */

static void event(sbuf *o, const char *name) { sbuf_printf(o, "event: %s\ndata: ", name); }

void anth_stream_start(const srv_server *S, const srv_req *r, srv_anth_stream *st, sbuf *o) {
    st->block = -1, st->kind = 0;
    event(o, "message_start");
    sbuf_puts(o, "{\"type\":\"message_start\",\"message\":{\"id\":");
    msg_id(r, o);
    sbuf_puts(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    sbuf_json_str(o, S->model_name, strlen(S->model_name));
    sbuf_puts(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
    usage(r, 0, o);
    sbuf_puts(o, "}}\n\n");
    event(o, "ping");
    sbuf_puts(o, "{\"type\":\"ping\"}\n\n");
}

static void block_stop(srv_anth_stream *st, sbuf *o) {
    if (st->kind == 0) return;
    if (st->kind == 1) { /* a thinking block ends with its (empty) signature */
        event(o, "content_block_delta");
        sbuf_printf(o, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"signature_delta\","
                       "\"signature\":\"\"}}\n\n", st->block);
    }
    event(o, "content_block_stop");
    sbuf_printf(o, "{\"type\":\"content_block_stop\",\"index\":%d}\n\n", st->block);
    st->kind = 0;
}

/* kind 1 thinking, 2 text: a block of that kind open (the one before closed). */
static void block_open(srv_anth_stream *st, int kind, sbuf *o) {
    if (st->kind == kind) return;
    block_stop(st, o);
    st->kind = kind, st->block++;
    event(o, "content_block_start");
    sbuf_printf(o, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":%s}\n\n", st->block,
                kind == 1 ? "{\"type\":\"thinking\",\"thinking\":\"\"}" : "{\"type\":\"text\",\"text\":\"\"}");
}

static void delta(srv_anth_stream *st, const char *type, const char *key, const char *s, size_t n, sbuf *o) {
    event(o, "content_block_delta");
    sbuf_printf(o, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":", st->block, type, key);
    sbuf_json_str(o, s, n);
    sbuf_puts(o, "}}\n\n");
}

void anth_stream_collect(const srv_req *r, srv_anth_stream *st, sbuf *o) {
    const srv_choice *c = &r->ch[0];
    if (c->reason.n > st->sent_reason) {
        block_open(st, 1, o);
        delta(st, "thinking_delta", "thinking", c->reason.p + st->sent_reason, c->reason.n - st->sent_reason, o);
        st->sent_reason = c->reason.n;
    }
    if (c->content.n > st->sent_content) {
        block_open(st, 2, o);
        delta(st, "text_delta", "text", c->content.p + st->sent_content, c->content.n - st->sent_content, o);
        st->sent_content = c->content.n;
    }
    for (;;) { /* each call a tool_use block: begun with its id and name, then its input in pieces as it comes */
        const char *args;
        size_t na;
        int whole;
        const srv_call *call = srv_choice_call(c, st->sent_calls, &args, &na, &whole);
        if (!call) break;
        if (!st->call_open) {
            block_stop(st, o);
            st->block++;
            event(o, "content_block_start");
            sbuf_printf(o, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":", st->block);
            tool_use(call, o, 1);
            sbuf_puts(o, "}\n\n");
            st->kind = 3, st->call_open = 1, st->sent_args = 0;
        }
        if (na > st->sent_args) delta(st, "input_json_delta", "partial_json", args + st->sent_args, na - st->sent_args, o);
        st->sent_args = na;
        if (!whole) break;
        block_stop(st, o);
        st->sent_calls++, st->call_open = 0;
    }
    if (c->finish && !st->finished) {
        st->finished = 1;
        if (st->block < 0) block_open(st, 2, o); /* an answer of nothing: one empty text block */
        block_stop(st, o);
        event(o, "message_delta");
        sbuf_printf(o, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":", stop_reason(c));
        stop_sequence(c, o);
        sbuf_puts(o, "},");
        usage(r, c->n_gen, o);
        sbuf_puts(o, "}\n\n");
    }
}

void anth_stream_end(const srv_req *r, srv_anth_stream *st, sbuf *o) {
    (void)st;
    if (r->error) {
        srv_err e;
        srv_fail(&e, 500, "server_error", NULL, NULL, "%s", r->error);
        event(o, "error");
        srv_err_json_anthropic(&e, o);
        sbuf_puts(o, "\n\n");
        return;
    }
    event(o, "message_stop");
    sbuf_puts(o, "{\"type\":\"message_stop\"}\n\n");
}
