/*
 * responses.c — OpenAI's Responses API (POST /v1/responses), for the
 * clients written against it (the `openai` packages' `responses.create` and
 * `responses.stream`, agent frameworks built on them): a request is
 * translated into the chat request it means and checked by the same parser
 * (api.c), and answered in the Responses shapes. dsc keeps no responses:
 * each request carries its whole conversation in `input`.
 *
 *   instructions                        -> a system message
 *   input: a string                     -> a user message
 *   input items: messages (user, assistant, system, developer; text parts)
 *                function_call          -> an assistant message's tool_calls
 *                function_call_output   -> a tool message
 *                reasoning              -> dropped (the history keeps answers)
 *   tools [{type: function, name, description, parameters, strict}],
 *   tool_choice, parallel_tool_calls    -> the same, in the chat shapes
 *   text.format (text, json_object, json_schema) -> response_format
 *   reasoning.effort ("none": off)      -> thinking on or off (a model that switches it)
 *   max_output_tokens, temperature, top_p, stream; the chat request's
 *   own fields the Responses API lacks (seed, stop, logit_bias,
 *   frequency_penalty, presence_penalty) and dsc's and vLLM's extensions
 *   (top_k, min_p, repetition_penalty, reasoning_budget,
 *   chat_template_kwargs, thinking), as in a chat request
 *
 * The answer's output items: reasoning (a reasoning model's, its text as
 * reasoning_text content), message (output_text), function_call (call_id,
 * name, arguments); status completed, or incomplete with
 * incomplete_details.reason max_output_tokens; usage input_tokens (with
 * input_tokens_details.cached_tokens), output_tokens (with
 * output_tokens_details.reasoning_tokens), total_tokens. A stream sends
 * response.created and response.in_progress, then per item
 * response.output_item.added, its content part's added event, its deltas
 * (reasoning_text, output_text, function_call_arguments), their done events
 * and response.output_item.done, then response.completed (or
 * response.incomplete), every event numbered (sequence_number).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

#define INVALID "invalid_request_error"

static int bad(srv_err *e, const char *param, const char *fmt, const char *what) {
    return srv_fail(e, 400, INVALID, param, "invalid_value", fmt, param, what);
}

static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(j) ? NULL : j;
}

/* The text of a message's content: a string, or its text parts joined. */
static int content_text(const cJSON *c, const char *param, sbuf *out, srv_err *e) {
    if (cJSON_IsString(c)) return sbuf_puts(out, c->valuestring), 0;
    if (!cJSON_IsArray(c)) return bad(e, param, "%s: expected a string or an array of %s", "content parts");
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *type = get(p, "type"), *text = get(p, "text");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if ((!strcmp(t, "input_text") || !strcmp(t, "output_text") || !strcmp(t, "text")) && cJSON_IsString(text))
            sbuf_puts(out, text->valuestring);
        else if (!strcmp(t, "refusal") && cJSON_IsString(get(p, "refusal")))
            sbuf_puts(out, get(p, "refusal")->valuestring);
        else
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "%s: content parts of type '%.32s' are not supported (text only)", param, t);
    }
    return 0;
}

/* The assistant message a function_call item joins: the last message when
 * it is the assistant's (its calls so far), else a new one without text. */
static cJSON *calls_of(cJSON *msgs) {
    cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *role = last ? cJSON_GetObjectItemCaseSensitive(last, "role") : NULL;
    if (!last || !cJSON_IsString(role) || strcmp(role->valuestring, "assistant")) last = srv_add_message(msgs, "assistant", NULL);
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(last, "tool_calls");
    return calls ? calls : cJSON_AddArrayToObject(last, "tool_calls");
}

/* One item of `input`, as chat messages. */
static int item(const cJSON *it, int i, cJSON *msgs, srv_err *e) {
    char param[64];
    snprintf(param, sizeof param, "input[%d]", i);
    if (!cJSON_IsObject(it)) return bad(e, param, "%s: expected %s", "an object (an input item)");
    const cJSON *type = get(it, "type"), *role = get(it, "role");
    const char *t = cJSON_IsString(type) ? type->valuestring : role ? "message" : "";
    if (!strcmp(t, "message")) {
        snprintf(param, sizeof param, "input[%d].role", i);
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        if (strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "system") && strcmp(r, "developer"))
            return bad(e, param, "%s: expected %s", "'user', 'assistant', 'system' or 'developer'");
        sbuf text = {0};
        sbuf_puts(&text, "");
        snprintf(param, sizeof param, "input[%d].content", i);
        int rc = content_text(get(it, "content"), param, &text, e);
        if (!rc && text.oom) rc = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        if (!rc) srv_add_message(msgs, !strcmp(r, "developer") ? "system" : r, text.p);
        sbuf_free(&text);
        return rc;
    }
    if (!strcmp(t, "function_call")) {
        const cJSON *name = get(it, "name"), *args = get(it, "arguments"), *id = get(it, "call_id");
        if (!cJSON_IsString(name) || !cJSON_IsString(args))
            return bad(e, param, "%s: expected %s", "a function_call with a string 'name' and 'arguments'");
        cJSON *call = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "id", cJSON_IsString(id) ? id->valuestring : "");
        cJSON_AddStringToObject(call, "type", "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
        cJSON_AddStringToObject(fn, "arguments", args->valuestring);
        cJSON_AddItemToObject(call, "function", fn);
        cJSON_AddItemToArray(calls_of(msgs), call);
        return 0;
    }
    if (!strcmp(t, "function_call_output")) {
        sbuf out = {0};
        sbuf_puts(&out, "");
        snprintf(param, sizeof param, "input[%d].output", i);
        const cJSON *o = get(it, "output");
        int rc = o ? content_text(o, param, &out, e) : bad(e, param, "%s: %s", "Field required");
        if (!rc && out.oom) rc = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        if (!rc) {
            cJSON *m = srv_add_message(msgs, "tool", out.p);
            const cJSON *id = get(it, "call_id");
            if (cJSON_IsString(id)) cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
        }
        sbuf_free(&out);
        return rc;
    }
    if (!strcmp(t, "reasoning")) return 0; /* an earlier answer's reasoning is not shown again */
    snprintf(param, sizeof param, "input[%d].type", i);
    if (!strcmp(t, "item_reference"))
        return bad(e, param, "%s: %s", "item references need stored responses, and dsc keeps none: send the items");
    return srv_fail(e, 400, INVALID, param, "invalid_value", "%s: input items of type '%.32s' are not supported", param, t);
}

static void copy(const cJSON *in, const char *from, cJSON *out, const char *to) {
    const cJSON *j = get(in, from);
    if (j) cJSON_AddItemToObject(out, to, cJSON_Duplicate(j, 1));
}

/* tools and tool_choice, in the chat shapes. */
static int tools(const cJSON *in, cJSON *out, srv_err *e) {
    const cJSON *ts = get(in, "tools"), *t, *tc = get(in, "tool_choice");
    char param[48];
    if (ts && !cJSON_IsArray(ts)) return bad(e, "tools", "%s: expected %s", "an array");
    cJSON *ot = ts ? cJSON_AddArrayToObject(out, "tools") : NULL;
    int i = 0;
    cJSON_ArrayForEach(t, ts) {
        snprintf(param, sizeof param, "tools[%d].type", i++);
        const cJSON *type = get(t, "type");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(ty, "function"))
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "%s: tools of type '%.40s' (the API's own) are not supported: give a function "
                            "(name, description, parameters)", param, ty);
        cJSON *w = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        cJSON_AddStringToObject(w, "type", "function");
        copy(t, "name", fn, "name");
        copy(t, "description", fn, "description");
        copy(t, "parameters", fn, "parameters");
        copy(t, "strict", fn, "strict");
        cJSON_AddItemToObject(w, "function", fn);
        cJSON_AddItemToArray(ot, w);
    }
    if (cJSON_IsString(tc)) {
        cJSON_AddStringToObject(out, "tool_choice", tc->valuestring);
    } else if (tc) {
        const cJSON *type = get(tc, "type"), *name = get(tc, "name");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsString(name))
            return bad(e, "tool_choice", "%s: expected %s",
                       "'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}");
        cJSON *o = cJSON_AddObjectToObject(out, "tool_choice"), *fn = cJSON_AddObjectToObject(o, "function");
        cJSON_AddStringToObject(o, "type", "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
    }
    return 0;
}

/* text.format -> response_format; reasoning.effort -> thinking. */
static int formats(const cJSON *in, cJSON *out, srv_err *e) {
    const cJSON *text = get(in, "text"), *fmt = text ? get(text, "format") : NULL, *re = get(in, "reasoning");
    if (text && !cJSON_IsObject(text)) return bad(e, "text", "%s: expected %s", "an object");
    if (fmt) {
        const cJSON *type = get(fmt, "type");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        cJSON *rf = cJSON_AddObjectToObject(out, "response_format");
        if (!strcmp(ty, "json_schema")) {
            cJSON_AddStringToObject(rf, "type", "json_schema");
            cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
            copy(fmt, "name", js, "name");
            copy(fmt, "schema", js, "schema");
            copy(fmt, "strict", js, "strict");
            copy(fmt, "description", js, "description");
        } else if (!strcmp(ty, "text") || !strcmp(ty, "json_object")) {
            cJSON_AddStringToObject(rf, "type", ty);
        } else {
            return bad(e, "text.format.type", "%s: expected %s", "'text', 'json_object' or 'json_schema'");
        }
    }
    if (re) {
        const cJSON *effort = cJSON_IsObject(re) ? get(re, "effort") : NULL;
        if (!cJSON_IsObject(re) || (effort && !cJSON_IsString(effort)))
            return bad(e, "reasoning", "%s: expected %s", "an object with a string 'effort'");
        cJSON *th = cJSON_AddObjectToObject(out, "thinking");
        cJSON_AddStringToObject(th, "type", effort && !strcmp(effort->valuestring, "none") ? "disabled" : "enabled");
    }
    return 0;
}

/* The chat request a Responses request means (NULL and e filled if it is not one). */
static cJSON *translate(const cJSON *in, srv_err *e) {
    cJSON *out = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(out, "messages");
    const cJSON *input = get(in, "input"), *ins = get(in, "instructions"), *it;
    int rc = 0;
    static const char *const stateful[] = {"previous_response_id", "conversation", "background"};
    for (size_t k = 0; k < sizeof stateful / sizeof *stateful && !rc; k++) {
        const cJSON *j = get(in, stateful[k]);
        if (j && !cJSON_IsFalse(j))
            rc = srv_fail(e, 400, INVALID, stateful[k], "unsupported_value",
                          "'%s' is not supported: dsc keeps no responses; send the whole conversation in 'input'.",
                          stateful[k]);
    }
    const cJSON *mtc = get(in, "max_tool_calls"), *tlp = get(in, "top_logprobs");
    if (!rc && mtc) rc = bad(e, "max_tool_calls", "'%s' is not supported: %s", "bound the calls with parallel_tool_calls.");
    if (!rc && tlp && !(cJSON_IsNumber(tlp) && tlp->valuedouble == 0))
        rc = bad(e, "top_logprobs", "'%s' is not supported: %s", "use /v1/chat/completions for logprobs.");
    if (!rc && ins && !cJSON_IsString(ins)) rc = bad(e, "instructions", "%s: expected %s", "a string");
    if (!rc && ins) srv_add_message(msgs, "system", ins->valuestring);
    if (!rc && !input) rc = bad(e, "input", "%s: %s", "Field required");
    if (!rc && cJSON_IsString(input)) srv_add_message(msgs, "user", input->valuestring);
    else if (!rc && !cJSON_IsArray(input)) rc = bad(e, "input", "%s: expected %s", "a string or an array of input items");
    int i = 0;
    if (!rc && cJSON_IsArray(input)) cJSON_ArrayForEach(it, input) if ((rc = item(it, i++, msgs, e))) break;
    if (!rc) rc = tools(in, out, e);
    if (!rc) rc = formats(in, out, e);
    copy(in, "model", out, "model");
    copy(in, "max_output_tokens", out, "max_tokens");
    copy(in, "parallel_tool_calls", out, "parallel_tool_calls");
    static const char *const same[] = {"temperature", "top_p", "stream", "user", "seed", "top_k", "min_p",
                                       "repetition_penalty", "reasoning_budget", "chat_template_kwargs",
                                       "logit_bias", "stop", "frequency_penalty", "presence_penalty"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) copy(in, same[k], out, same[k]);
    if (!get(out, "thinking")) copy(in, "thinking", out, "thinking");
    if (rc) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

/* What the answer says back of the request: its settings, as OpenAI's does. */
static char *echo(const cJSON *in) {
    cJSON *o = cJSON_CreateObject();
    const cJSON *ins = get(in, "instructions"), *ts = get(in, "tools"), *tc = get(in, "tool_choice");
    const cJSON *ptc = get(in, "parallel_tool_calls"), *mot = get(in, "max_output_tokens"), *md = get(in, "metadata");
    const cJSON *text = get(in, "text"), *re = get(in, "reasoning"), *t = get(in, "temperature"), *p = get(in, "top_p");
    cJSON_AddItemToObject(o, "instructions", ins ? cJSON_Duplicate(ins, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "max_output_tokens", mot ? cJSON_Duplicate(mot, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "metadata", md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject());
    cJSON_AddItemToObject(o, "parallel_tool_calls", ptc ? cJSON_Duplicate(ptc, 1) : cJSON_CreateTrue());
    cJSON_AddNullToObject(o, "previous_response_id");
    cJSON_AddItemToObject(o, "reasoning", re ? cJSON_Duplicate(re, 1) : cJSON_CreateObject());
    cJSON_AddFalseToObject(o, "store");
    cJSON_AddItemToObject(o, "temperature", t ? cJSON_Duplicate(t, 1) : cJSON_CreateNumber(1));
    if (text) cJSON_AddItemToObject(o, "text", cJSON_Duplicate(text, 1));
    else cJSON_AddRawToObject(o, "text", "{\"format\":{\"type\":\"text\"}}");
    cJSON_AddItemToObject(o, "tool_choice", tc ? cJSON_Duplicate(tc, 1) : cJSON_CreateString("auto"));
    cJSON_AddItemToObject(o, "tools", ts ? cJSON_Duplicate(ts, 1) : cJSON_CreateArray());
    cJSON_AddItemToObject(o, "top_p", p ? cJSON_Duplicate(p, 1) : cJSON_CreateNumber(1));
    cJSON_AddStringToObject(o, "truncation", "disabled");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    const size_t n = s ? strlen(s) : 0;
    if (n >= 2) { /* the members alone, "{" and "}" dropped, to splice into the answer */
        memmove(s, s + 1, n - 2);
        s[n - 2] = 0;
    }
    return s;
}

/* An error of the chat request, said of the Responses request's fields:
 * the param renamed (max_tokens -> max_output_tokens, messages -> input,
 * response_format.json_schema -> text.format, tools[i].function.x ->
 * tools[i].x, tool_choice.function.name -> tool_choice.name), and so in
 * the message. */
static void rename_param(srv_err *e) {
    static const char *const from[][2] = {{"max_tokens", "max_output_tokens"}, {"response_format.json_schema", "text.format"},
                                          {"response_format", "text.format"}, {"tool_choice.function", "tool_choice"}};
    char old[sizeof e->param], now[sizeof e->param];
    snprintf(old, sizeof old, "%s", e->param);
    now[0] = 0;
    for (size_t k = 0; k < sizeof from / sizeof *from && !now[0]; k++) {
        const size_t n = strlen(from[k][0]);
        if (!strncmp(old, from[k][0], n) && (old[n] == 0 || old[n] == '.'))
            snprintf(now, sizeof now, "%s%s", from[k][1], old + n);
    }
    const char *f = strstr(old, "].function.");
    if (!now[0] && !strncmp(old, "tools[", 6) && f)
        snprintf(now, sizeof now, "%.*s].%s", (int)(f - old), old, f + strlen("].function."));
    if (!now[0] && !strncmp(old, "messages", 8)) snprintf(now, sizeof now, "input");
    if (now[0]) srv_err_rename(e, now);
}

int srv_parse_responses(const char *body, size_t len, srv_ask *a, srv_err *e) {
    memset(a, 0, sizeof *a);
    cJSON *in = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return srv_fail(e, 400, INVALID, NULL, "invalid_json", "The request body is not one JSON object.");
    }
    cJSON *out = translate(in, e);
    char *settings = out ? echo(in) : NULL;
    cJSON_Delete(in);
    if (!out) return -1;
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (!text || !settings) {
        free(text);
        free(settings);
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    const int rc = srv_parse(SRV_CHAT, text, strlen(text), a, e);
    free(text);
    if (rc) rename_param(e);
    a->responses = 1;
    a->resp_settings = settings;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                   */

static const char *suffix(const char *id) { return id + strcspn(id, "-_") + 1; }

static void item_id(const srv_req *r, const char *kind, sbuf *o) { sbuf_printf(o, "\"%s_%s\"", kind, suffix(r->id)); }

static void reasoning_item(const srv_req *r, const char *text, size_t n, sbuf *o) {
    sbuf_puts(o, "{\"id\":");
    item_id(r, "rs", o);
    sbuf_puts(o, ",\"type\":\"reasoning\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\",\"text\":");
    sbuf_json_str(o, text, n);
    sbuf_puts(o, "}]}");
}

static void text_part(const char *text, size_t n, sbuf *o) {
    sbuf_puts(o, "{\"type\":\"output_text\",\"text\":");
    sbuf_json_str(o, text, n);
    sbuf_puts(o, ",\"annotations\":[],\"logprobs\":[]}");
}

/* Whether the answer was cut by max_output_tokens. */
static int cut(const srv_req *r) { return r->ch[0].finish && !strcmp(r->ch[0].finish, "length"); }

/* Whether the output holds a message item: text, or no other item. */
static int has_message(const srv_req *r) {
    const srv_choice *c = &r->ch[0];
    return c->content.n || (!c->n_calls && !(r->reasoning && c->reason.n));
}

/* done: the item whole (status completed, or incomplete when cut), else as it opens (empty). */
static void message_item(const srv_req *r, const char *text, size_t n, int done, sbuf *o) {
    sbuf_puts(o, "{\"id\":");
    item_id(r, "msg", o);
    sbuf_printf(o, ",\"type\":\"message\",\"status\":\"%s\",\"role\":\"assistant\",\"content\":[",
                !done ? "in_progress" : cut(r) ? "incomplete" : "completed");
    if (done) text_part(text, n, o);
    sbuf_puts(o, "]}");
}

static void call_item(const srv_call *call, const char *args, size_t n, int done, sbuf *o) {
    sbuf_printf(o, "{\"id\":\"fc_%s\",\"type\":\"function_call\",\"status\":\"%s\",\"call_id\":\"%s\",\"name\":",
                suffix(call->id), done ? "completed" : "in_progress", call->id);
    sbuf_json_str(o, call->name, strlen(call->name));
    sbuf_puts(o, ",\"arguments\":");
    sbuf_json_str(o, args, n);
    sbuf_puts(o, "}");
}

/* The response object: its output items when done, else none (status in_progress). */
static void response(const srv_server *S, const srv_req *r, int done, sbuf *o) {
    const srv_choice *c = &r->ch[0];
    const int incomplete = done && cut(r);
    sbuf_puts(o, "{\"id\":");
    item_id(r, "resp", o);
    sbuf_printf(o, ",\"object\":\"response\",\"created_at\":%lld,\"status\":\"%s\",\"error\":null,"
                   "\"incomplete_details\":%s,\"model\":", r->created,
                !done ? "in_progress" : incomplete ? "incomplete" : "completed",
                incomplete ? "{\"reason\":\"max_output_tokens\"}" : "null");
    sbuf_json_str(o, S->model_name, strlen(S->model_name));
    sbuf_puts(o, ",\"output\":[");
    const char *sep = "";
    if (done && r->reasoning && c->reason.n) reasoning_item(r, c->reason.p, c->reason.n, o), sep = ",";
    if (done && has_message(r))
        sbuf_puts(o, sep), message_item(r, c->content.p ? c->content.p : "", c->content.n, 1, o), sep = ",";
    for (int k = 0; done && k < c->n_calls; k++, sep = ",")
        sbuf_puts(o, sep), call_item(&c->calls[k], c->calls[k].arguments, strlen(c->calls[k].arguments), 1, o);
    sbuf_printf(o, "],%s,\"usage\":", r->a.resp_settings);
    if (done)
        sbuf_printf(o, "{\"input_tokens\":%d,\"input_tokens_details\":{\"cached_tokens\":%d},\"output_tokens\":%d,"
                       "\"output_tokens_details\":{\"reasoning_tokens\":%d},\"total_tokens\":%d}}",
                    r->n_prompt, r->n_hit, c->n_gen, c->n_reason, r->n_prompt + c->n_gen);
    else sbuf_puts(o, "null}");
}

void out_responses_final(const srv_server *S, const srv_req *r, sbuf *o) { response(S, r, 1, o); }

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */

/* An event: its name, and its data up to where the caller writes the rest
 * of the object's members (then close_event). */
static void event(srv_resp_stream *st, const char *name, sbuf *o) {
    sbuf_printf(o, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%d", name, name, st->seq++);
}

static void close_event(sbuf *o) { sbuf_puts(o, "}\n\n"); }

static void with_response(const srv_server *S, const srv_req *r, srv_resp_stream *st, const char *name, int done,
                          sbuf *o) {
    event(st, name, o);
    sbuf_puts(o, ",\"response\":");
    response(S, r, done, o);
    close_event(o);
}

void resp_stream_start(const srv_server *S, const srv_req *r, srv_resp_stream *st, sbuf *o) {
    memset(st, 0, sizeof *st);
    st->item = -1;
    with_response(S, r, st, "response.created", 0, o);
    with_response(S, r, st, "response.in_progress", 0, o);
}

/* The item open (kind 1 reasoning, 2 message, 3 a call) done: its text's
 * done events, then output_item.done with it whole. */
static void item_stop(const srv_req *r, srv_resp_stream *st, sbuf *o) {
    const srv_choice *c = &r->ch[0];
    if (st->kind == 1) {
        event(st, "response.reasoning_text.done", o);
        sbuf_puts(o, ",\"item_id\":"), item_id(r, "rs", o);
        sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"text\":", st->item);
        sbuf_json_str(o, c->reason.p, st->sent_reason);
        close_event(o);
        event(st, "response.content_part.done", o);
        sbuf_puts(o, ",\"item_id\":"), item_id(r, "rs", o);
        sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"part\":{\"type\":\"reasoning_text\",\"text\":", st->item);
        sbuf_json_str(o, c->reason.p, st->sent_reason);
        sbuf_puts(o, "}");
        close_event(o);
        event(st, "response.output_item.done", o);
        sbuf_printf(o, ",\"output_index\":%d,\"item\":", st->item);
        reasoning_item(r, c->reason.p, st->sent_reason, o);
        close_event(o);
    } else if (st->kind == 2) {
        const char *text = c->content.p ? c->content.p : "";
        event(st, "response.output_text.done", o);
        sbuf_puts(o, ",\"item_id\":"), item_id(r, "msg", o);
        sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"text\":", st->item);
        sbuf_json_str(o, text, st->sent_content);
        sbuf_puts(o, ",\"logprobs\":[]");
        close_event(o);
        event(st, "response.content_part.done", o);
        sbuf_puts(o, ",\"item_id\":"), item_id(r, "msg", o);
        sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"part\":", st->item);
        text_part(text, st->sent_content, o);
        close_event(o);
        event(st, "response.output_item.done", o);
        sbuf_printf(o, ",\"output_index\":%d,\"item\":", st->item);
        message_item(r, text, st->sent_content, 1, o);
        close_event(o);
    }
    st->kind = 0;
}

/* kind 1 reasoning, 2 message: an item of that kind open (the one before done). */
static void item_open(const srv_req *r, srv_resp_stream *st, int kind, sbuf *o) {
    if (st->kind == kind) return;
    item_stop(r, st, o);
    st->kind = kind, st->item++;
    event(st, "response.output_item.added", o);
    sbuf_printf(o, ",\"output_index\":%d,\"item\":", st->item);
    if (kind == 1) sbuf_puts(o, "{\"id\":"), item_id(r, "rs", o), sbuf_puts(o, ",\"type\":\"reasoning\",\"summary\":[],\"content\":[]}");
    else message_item(r, "", 0, 0, o), st->had_message = 1;
    close_event(o);
    event(st, "response.content_part.added", o);
    sbuf_puts(o, ",\"item_id\":"), item_id(r, kind == 1 ? "rs" : "msg", o);
    sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"part\":", st->item);
    if (kind == 1) sbuf_puts(o, "{\"type\":\"reasoning_text\",\"text\":\"\"}");
    else text_part("", 0, o);
    close_event(o);
}

static void text_delta(const srv_req *r, srv_resp_stream *st, const char *name, const char *kind, const char *s,
                       size_t n, sbuf *o) {
    event(st, name, o);
    sbuf_puts(o, ",\"item_id\":"), item_id(r, kind, o);
    sbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"delta\":", st->item);
    sbuf_json_str(o, s, n);
    if (!strcmp(kind, "msg")) sbuf_puts(o, ",\"logprobs\":[]");
    close_event(o);
}

void resp_stream_collect(const srv_server *S, const srv_req *r, srv_resp_stream *st, sbuf *o) {
    const srv_choice *c = &r->ch[0];
    if (c->reason.n > st->sent_reason) {
        item_open(r, st, 1, o);
        text_delta(r, st, "response.reasoning_text.delta", "rs", c->reason.p + st->sent_reason,
                   c->reason.n - st->sent_reason, o);
        st->sent_reason = c->reason.n;
    }
    if (c->content.n > st->sent_content) {
        item_open(r, st, 2, o);
        text_delta(r, st, "response.output_text.delta", "msg", c->content.p + st->sent_content,
                   c->content.n - st->sent_content, o);
        st->sent_content = c->content.n;
    }
    for (;;) { /* each call an item: added with its call_id and name, then its arguments in pieces as they come */
        const char *args;
        size_t na;
        int whole;
        const srv_call *call = srv_choice_call(c, st->sent_calls, &args, &na, &whole);
        if (!call) break;
        if (!st->call_open) {
            item_stop(r, st, o);
            st->item++, st->kind = 3, st->call_open = 1, st->sent_args = 0;
            event(st, "response.output_item.added", o);
            sbuf_printf(o, ",\"output_index\":%d,\"item\":", st->item);
            call_item(call, "", 0, 0, o);
            close_event(o);
        }
        if (na > st->sent_args) {
            event(st, "response.function_call_arguments.delta", o);
            sbuf_printf(o, ",\"item_id\":\"fc_%s\",\"output_index\":%d,\"delta\":", suffix(call->id), st->item);
            sbuf_json_str(o, args + st->sent_args, na - st->sent_args);
            close_event(o);
        }
        st->sent_args = na;
        if (!whole) break;
        event(st, "response.function_call_arguments.done", o);
        sbuf_printf(o, ",\"item_id\":\"fc_%s\",\"output_index\":%d,\"name\":", suffix(call->id), st->item);
        sbuf_json_str(o, call->name, strlen(call->name));
        sbuf_puts(o, ",\"arguments\":");
        sbuf_json_str(o, args, na);
        close_event(o);
        event(st, "response.output_item.done", o);
        sbuf_printf(o, ",\"output_index\":%d,\"item\":", st->item);
        call_item(call, args, na, 1, o);
        close_event(o);
        st->sent_calls++, st->call_open = 0, st->kind = 0;
    }
    if (c->finish && !st->finished) {
        st->finished = 1;
        if (!st->had_message && has_message(r)) item_open(r, st, 2, o); /* an empty message, as the answer has */
        item_stop(r, st, o);
        with_response(S, r, st, strcmp(c->finish, "length") ? "response.completed" : "response.incomplete", 1, o);
    }
}

void resp_stream_end(const srv_req *r, srv_resp_stream *st, sbuf *o) {
    if (!r->error) return;
    event(st, "error", o);
    sbuf_puts(o, ",\"code\":\"server_error\",\"message\":");
    sbuf_json_str(o, r->error, strlen(r->error));
    sbuf_puts(o, ",\"param\":null");
    close_event(o);
}
