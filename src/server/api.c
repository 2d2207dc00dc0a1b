/*
 * api.c — request bodies of the OpenAI API, parsed and checked before any
 * work starts: wrong JSON or wrong types give a 400 naming the field, in
 * the wording of the OpenAI API where it has one. Fields this server does
 * not know are ignored (as vLLM's and llama.cpp's servers do); known ones
 * that would change the answer and that it does not implement (the
 * deprecated functions, a response format other than text, json_object or
 * json_schema, a schema it cannot hold an answer to, best_of above n) are a
 * 400 rather than silently dropped.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../runtime/pyjson.h"
#include "srv.h"

#define INVALID "invalid_request_error"

static const char *json_type(const cJSON *j) {
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "an unknown value";
}

static int bad_type(srv_err *e, const char *param, const char *want, const cJSON *j) {
    return srv_fail(e, 400, INVALID, param, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.",
                    param, want, json_type(j));
}

static int bad_value(srv_err *e, const char *param, const char *fmt, double v) {
    char msg[160];
    snprintf(msg, sizeof msg, fmt, v);
    return srv_fail(e, 400, INVALID, param, "invalid_value", "Invalid '%s': %s", param, msg);
}

/* The member key of obj, or NULL when absent or JSON null. */
static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

static int get_bool(const cJSON *obj, const char *key, int *out, srv_err *e) {
    const cJSON *j = field(obj, key);
    if (!j) return 0;
    if (!cJSON_IsBool(j)) return bad_type(e, key, "a boolean", j);
    *out = cJSON_IsTrue(j);
    return 0;
}

static int get_num(const cJSON *obj, const char *key, double lo, double hi, double *out, srv_err *e) {
    const cJSON *j = field(obj, key);
    if (!j) return 0;
    if (!cJSON_IsNumber(j)) return bad_type(e, key, "a number", j);
    double v = j->valuedouble;
    if (!(v >= lo)) return bad_value(e, key, "expected a value >= %.16g", lo);
    if (!(v <= hi)) return bad_value(e, key, "expected a value <= %.16g", hi);
    *out = v;
    return 0;
}

static int get_int(const cJSON *obj, const char *key, double lo, double hi, double *out, srv_err *e) {
    const cJSON *j = field(obj, key);
    if (j && (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))) return bad_type(e, key, "an integer", j);
    return get_num(obj, key, lo, hi, out, e);
}

static int get_string(const cJSON *obj, const char *key, const char **out, srv_err *e) {
    const cJSON *j = field(obj, key);
    if (!j) return 0;
    if (!cJSON_IsString(j)) return bad_type(e, key, "a string", j);
    *out = j->valuestring;
    return 0;
}

static char *dup_or_fail(const char *s, srv_err *e) {
    char *d = strdup(s);
    if (!d) srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return d;
}

/* A message's content: a string, or an array of {"type": "text", "text": s}
 * parts joined. */
static int message_content(const cJSON *m, size_t i, int null_ok, char **out, srv_err *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!c || cJSON_IsNull(c)) {
        if (!null_ok) return srv_fail(e, 400, INVALID, param, "invalid_value", "Missing required parameter: '%s'.", param);
        return (*out = dup_or_fail("", e)) ? 0 : -1;
    }
    if (cJSON_IsString(c)) return (*out = dup_or_fail(c->valuestring, e)) ? 0 : -1;
    if (!cJSON_IsArray(c)) return bad_type(e, param, "a string or an array of content parts", c);
    sbuf b = {0};
    sbuf_puts(&b, "");
    const cJSON *part;
    size_t k = 0;
    cJSON_ArrayForEach(part, c) {
        snprintf(param, sizeof param, "messages[%zu].content[%zu]", i, k++);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            sbuf_free(&b);
            return bad_type(e, param, "an object with a string 'type'", part);
        }
        if (strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            sbuf_free(&b);
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "Invalid '%s': only text parts ({\"type\": \"text\", \"text\": ...}) are supported.", param);
        }
        sbuf_puts(&b, text->valuestring);
    }
    if (b.oom) {
        sbuf_free(&b);
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    size_t n;
    *out = sbuf_take(&b, &n);
    return 0;
}

/* A function name as OpenAI's API takes it: 1 to 64 of A-Z a-z 0-9 _ . - */
static int fn_name(const cJSON *j, const char *param, const char **out, srv_err *e) {
    if (!cJSON_IsString(j)) return bad_type(e, param, "a string", j);
    const char *s = j->valuestring;
    size_t n = strlen(s), ok = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-");
    if (n == 0 || n > DSC_TOOL_NAME_MAX || ok != n)
        return srv_fail(e, 400, INVALID, param, "invalid_value",
                        "Invalid '%s': '%.80s' is not a function name (1 to %d of a-z, A-Z, 0-9, '_', '.', '-').", param, s,
                        DSC_TOOL_NAME_MAX);
    *out = s;
    return 0;
}

/* An assistant message's tool_calls: [{"id", "type": "function",
 * "function": {"name", "arguments": text of a JSON object}}] (arguments
 * given as an object are taken as its text). */
static int message_calls(const cJSON *m, size_t i, dsc_chat_message *msg, srv_err *e) {
    char param[96];
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    const cJSON *tc = field(m, "tool_calls"), *x;
    if (!tc || (cJSON_IsArray(tc) && cJSON_GetArraySize(tc) == 0)) return 0;
    if (strcmp(msg->role, "assistant"))
        return srv_fail(e, 400, INVALID, param, "invalid_value", "Invalid '%s': only an assistant's message has tool calls.",
                        param);
    if (!cJSON_IsArray(tc)) return bad_type(e, param, "an array", tc);
    dsc_tool_call *calls = calloc((size_t)cJSON_GetArraySize(tc), sizeof *calls);
    if (!calls) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    msg->tool_calls = calls;
    size_t k = 0;
    cJSON_ArrayForEach(x, tc) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu]", i, k);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(x, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(x, "function");
        if (!cJSON_IsObject(x) || !cJSON_IsObject(fn))
            return bad_type(e, param, "an object with a 'function' object", cJSON_IsObject(x) ? fn : x);
        if (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "function")))
            return srv_fail(e, 400, INVALID, param, "invalid_value", "Invalid '%s': its 'type' must be 'function'.", param);
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function.name", i, k);
        const char *name;
        if (fn_name(cJSON_GetObjectItemCaseSensitive(fn, "name"), param, &name, e)) return -1;
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function.arguments", i, k);
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        char *text = NULL;
        if (cJSON_IsString(args)) text = strdup(args->valuestring);
        else if (cJSON_IsObject(args)) text = cJSON_PrintUnformatted(args);
        else return bad_type(e, param, "a string (a JSON object's text)", args);
        if (!text || !(calls[k].name = strdup(name))) {
            free(text);
            return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        calls[k].arguments = text;
        msg->n_tool_calls = ++k;
    }
    return 0;
}

static int parse_messages(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!ms) return srv_fail(e, 400, INVALID, "messages", "missing_required_parameter",
                             "Missing required parameter: 'messages'.");
    if (!cJSON_IsArray(ms)) return bad_type(e, "messages", "an array", ms);
    size_t n = (size_t)cJSON_GetArraySize(ms);
    if (n == 0) return srv_fail(e, 400, INVALID, "messages", "empty_array",
                                "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    if (!(a->msgs = calloc(n, sizeof *a->msgs))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        size_t i = a->n_msgs;
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!cJSON_IsObject(m)) return bad_type(e, param, "an object", m);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!cJSON_IsString(role)) return bad_type(e, param, "a string", role);
        const char *r = role->valuestring;
        if (!strcmp(r, "system") || !strcmp(r, "developer")) a->msgs[i].role = "system";
        else if (!strcmp(r, "user")) a->msgs[i].role = "user";
        else if (!strcmp(r, "assistant")) a->msgs[i].role = "assistant";
        else if (!strcmp(r, "tool")) a->msgs[i].role = "tool";
        else
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "Invalid value for '%s': '%.32s' is not one of 'system', 'developer', 'user', 'assistant', "
                            "'tool'.", param, r);
        char *content = NULL;
        if (message_content(m, i, a->msgs[i].role[0] == 'a', &content, e)) return -1;
        a->msgs[i].content = content;
        a->n_msgs++;
        if (message_calls(m, i, &a->msgs[i], e)) return -1;
        snprintf(param, sizeof param, "messages[%zu].prefix", i);
        const cJSON *pj = field(m, "prefix");
        if (pj && !cJSON_IsBool(pj)) return bad_type(e, param, "a boolean", pj);
        const int prefix = cJSON_IsTrue(pj);
        if (prefix && (i + 1 != n || a->msgs[i].role[0] != 'a'))
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "Invalid '%s': only the last message, an assistant's, can be a prefix to continue.", param);
        a->prefix = prefix;
    }
    return 0;
}

/* One prompt's token ids (an array of integers >= 0). */
static int prompt_ids(const cJSON *p, const char *param, srv_ask *a, srv_err *e) {
    size_t n = (size_t)cJSON_GetArraySize(p);
    if (n == 0) return srv_fail(e, 400, INVALID, param, "invalid_value", "Invalid '%s': an empty list of token ids.", param);
    if (!(a->prompt_ids = malloc(n * sizeof *a->prompt_ids)))
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > INT32_MAX)
            return srv_fail(e, 400, INVALID, param, "invalid_type",
                            "Invalid '%s': token ids must be integers >= 0 (a list of prompts holds strings or lists "
                            "of ids).", param);
        a->prompt_ids[a->n_prompt_ids++] = (int32_t)t->valuedouble;
    }
    return 0;
}

/* prompt: a string, token ids, or a list of up to SRV_MAX_PROMPTS of
 * either; a->n_prompts says how many, and prompt a->prompt_k is taken. */
static int parse_prompt(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return srv_fail(e, 400, INVALID, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.");
    a->n_prompts = 1;
    if (cJSON_IsString(p)) return (a->prompt = dup_or_fail(p->valuestring, e)) ? 0 : -1;
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return srv_fail(e, 400, INVALID, "prompt", "invalid_type",
                        "Invalid type for 'prompt': expected a string, an array of token ids, or an array of those.");
    if (cJSON_IsNumber(p->child)) return prompt_ids(p, "prompt", a, e);
    const int n = cJSON_GetArraySize(p);
    if (n > SRV_MAX_PROMPTS)
        return srv_fail(e, 400, INVALID, "prompt", "invalid_value", "Invalid 'prompt': at most %d prompts a request.",
                        SRV_MAX_PROMPTS);
    const cJSON *x;
    int k = 0;
    cJSON_ArrayForEach(x, p) { /* every one checked, prompt_k kept */
        char param[32];
        snprintf(param, sizeof param, "prompt[%d]", k);
        if (!cJSON_IsString(x) && !cJSON_IsArray(x)) return bad_type(e, param, "a string or an array of token ids", x);
        if (k == a->prompt_k) {
            if (cJSON_IsString(x) && !(a->prompt = dup_or_fail(x->valuestring, e))) return -1;
            if (cJSON_IsArray(x) && prompt_ids(x, param, a, e)) return -1;
        } else if (cJSON_IsArray(x)) {
            srv_ask t = {0};
            const int rc = prompt_ids(x, param, &t, e);
            free(t.prompt_ids);
            if (rc) return -1;
        }
        k++;
    }
    a->n_prompts = n;
    return 0;
}

static int parse_stop(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *s = field(root, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (!s->valuestring[0]) return 0;
        return (a->stop[a->n_stop++] = dup_or_fail(s->valuestring, e)) ? 0 : -1;
    }
    if (!cJSON_IsArray(s)) return bad_type(e, "stop", "a string or an array of strings", s);
    if (cJSON_GetArraySize(s) > SRV_MAX_STOP)
        return srv_fail(e, 400, INVALID, "stop", "invalid_value", "Invalid 'stop': at most %d sequences are allowed.",
                        SRV_MAX_STOP);
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!cJSON_IsString(x))
            return srv_fail(e, 400, INVALID, "stop", "invalid_type",
                            "Invalid type for 'stop': expected an array of strings, but an element is %s.", json_type(x));
        if (!x->valuestring[0]) continue;
        if (!(a->stop[a->n_stop++] = dup_or_fail(x->valuestring, e))) return -1;
    }
    return 0;
}

static int unsupported(srv_err *e, const char *param, const char *why) {
    return srv_fail(e, 400, INVALID, param, "unsupported_value", "'%s' is not supported: %s", param, why);
}

/* vLLM's extensions to the sampling parameters (llama.cpp's server names
 * the repetition penalty repeat_penalty: either name is taken, not both). */
static int parse_sampling(const cJSON *root, srv_ask *a, srv_err *e) {
    double v = 0;
    if (get_int(root, "top_k", -1, 1 << 30, &v, e)) return -1;
    a->top_k = v > 0 ? (int)v : 0;
    v = -1;
    if (get_int(root, "reasoning_budget", -1, 1 << 30, &v, e)) return -1;
    a->reasoning_budget = (int)v;
    v = 0;
    if (get_num(root, "min_p", 0, 1, &v, e)) return -1;
    a->min_p = (float)v;
    const char *rp = field(root, "repetition_penalty") ? "repetition_penalty" : "repeat_penalty";
    if (field(root, "repetition_penalty") && field(root, "repeat_penalty"))
        return srv_fail(e, 400, INVALID, "repeat_penalty", "invalid_value",
                        "Give 'repetition_penalty' or 'repeat_penalty', not both.");
    v = 1;
    if (field(root, rp) && cJSON_IsNumber(field(root, rp)) && !(field(root, rp)->valuedouble > 0))
        return bad_value(e, rp, "expected a value > %g", 0); /* before the range check, which would say >= 0 */
    if (get_num(root, rp, 0, 10, &v, e)) return -1;
    a->repetition_penalty = (float)v;
    return 0;
}

/* OpenAI's logit_bias: {"token id": bias in [-100, 100], ...}, added to the
 * logits before sampling (before the penalties, as vLLM does; logprobs stay
 * those of the raw logits). A key twice is already refused by parse_body;
 * ids are checked against the vocabulary at submission. */
static int parse_logit_bias(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *j = field(root, "logit_bias"), *x;
    if (!j) return 0;
    if (!cJSON_IsObject(j)) return bad_type(e, "logit_bias", "an object", j);
    const int n = cJSON_GetArraySize(j);
    if (n == 0) return 0;
    a->bias_tok = malloc(sizeof *a->bias_tok * (size_t)n);
    a->bias = malloc(sizeof *a->bias * (size_t)n);
    if (!a->bias_tok || !a->bias) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    cJSON_ArrayForEach(x, j) {
        const char *s = x->string;
        char *end = NULL;
        const long id = s && *s >= '0' && *s <= '9' && strlen(s) <= 10 ? strtol(s, &end, 10) : -1;
        if (id < 0 || id > INT32_MAX || !end || *end)
            return srv_fail(e, 400, INVALID, "logit_bias", "invalid_value",
                            "Invalid key in 'logit_bias': '%.32s' is not a token id (a decimal integer >= 0).", s ? s : "");
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= -100 && x->valuedouble <= 100))
            return srv_fail(e, 400, INVALID, "logit_bias", "invalid_value",
                            "Invalid value in 'logit_bias' for token %ld: expected a number from -100 to 100.", id);
        a->bias_tok[a->n_bias] = (int32_t)id;
        a->bias[a->n_bias++] = (float)x->valuedouble;
    }
    return 0;
}

/* What the prompt says of the functions offered, after the system
 * messages: each one's name, description and parameters (a JSON Schema),
 * and the format of a call (the markers are special tokens there): dsc's
 * words for DeepSeek-V3's format, or (v31) DeepSeek-V3.1's model card's for
 * its own (the calls chained, each NAME<｜tool▁sep｜>ARGUMENTS). */
static void tools_text(const cJSON *tools, sbuf *b, int v31) {
    const cJSON *t;
    sbuf_puts(b, v31 ? "## Tools\nYou have access to the following tools:\n" : "## Tools\n\nYou can call these functions:\n");
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        sbuf_printf(b, "\n### %s\n", name->valuestring);
        if (v31) sbuf_printf(b, "Description: %s\n\n", cJSON_IsString(desc) ? desc->valuestring : "");
        else if (cJSON_IsString(desc) && desc->valuestring[0]) sbuf_printf(b, "Description: %s\n", desc->valuestring);
        char *p = cJSON_IsObject(params) ? cJSON_PrintUnformatted(params) : NULL;
        sbuf_printf(b, "Parameters: %s\n", p ? p : "{\"type\":\"object\",\"properties\":{}}");
        if (!p && cJSON_IsObject(params)) b->oom = 1;
        free(p);
    }
    if (v31)
        sbuf_puts(b, "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
                     "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
                     "<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n"
                     "- `tool_call_name` must be an exact match to one of the available tools\n"
                     "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
                     "- For multiple tool calls, chain them directly without separators or spaces");
    else
        sbuf_puts(b, "\nTo call functions, answer with <｜tool▁calls▁begin｜>, then each call as "
                     "<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGUMENTS\n```<｜tool▁call▁end｜>, "
                     "one call a line, and <｜tool▁calls▁end｜> after the last. NAME is one of the functions above; "
                     "ARGUMENTS is a JSON object that follows its parameters.");
}

/* The functions offered as DeepSeek-V3.2's encoding describes them (after
 * the system prompt): how to write a DSML block, then each function's
 * object as Python's json.dumps writes it, a line each. */
static void tools_text_v32(const cJSON *tools, sbuf *b) {
    const cJSON *t;
    sbuf_puts(b, "## Tools\nYou have access to a set of tools you can use to answer the user's question.\n"
                 "You can invoke functions by writing a \"<｜DSML｜function_calls>\" block like the following as part of "
                 "your reply to the user:\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"$FUNCTION_NAME\">\n"
                 "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
                 "...\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"$FUNCTION_NAME2\">\n...\n</｜DSML｜invoke>\n"
                 "</｜DSML｜function_calls>\nString and scalar parameters should be specified as is without any escaping or "
                 "quotes, while lists and objects should use JSON format. The \"string\" attribute should be set to "
                 "\"true\" for string type parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n"
                 "If the thinking_mode is enabled, then after function results you should strongly consider outputting a "
                 "thinking block. Here is an example:\n<｜DSML｜function_calls>\n...\n</｜DSML｜function_calls>\n"
                 "<function_results>\n...\n</function_results>\n<think>...thinking about results</think>\n"
                 "Here are the functions available in JSONSchema format:\n<functions>\n");
    int first = 1;
    cJSON_ArrayForEach(t, tools) {
        char *p = pyjson_print(cJSON_GetObjectItemCaseSensitive(t, "function"));
        if (!p) b->oom = 1;
        else sbuf_printf(b, "%s%s", first ? "" : "\n", p);
        first = 0;
        free(p);
    }
    sbuf_puts(b, "\n</functions>\n");
}

/* tools: [{"type": "function", "function": {"name", "description",
 * "parameters"}}], tool_choice ("none", "auto", "required" or {"type":
 * "function", "function": {"name"}}) and parallel_tool_calls. */
static int parse_tools(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *tools = field(root, "tools"), *t, *tc = field(root, "tool_choice");
    char param[64];
    a->parallel_tool_calls = 1;
    if (get_bool(root, "parallel_tool_calls", &a->parallel_tool_calls, e)) return -1;
    if (tools && !cJSON_IsArray(tools)) return bad_type(e, "tools", "an array", tools);
    const int n = tools ? cJSON_GetArraySize(tools) : 0;
    if (n > DSC_TOOL_MAX)
        return srv_fail(e, 400, INVALID, "tools", "invalid_value", "Invalid 'tools': at most %d functions are allowed.",
                        DSC_TOOL_MAX);
    if (n && (!(a->tool_names = calloc((size_t)n, sizeof *a->tool_names)) ||
              !(a->tool_schema = calloc((size_t)n, sizeof *a->tool_schema))))
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    int k = 0;
    cJSON_ArrayForEach(t, tools) {
        snprintf(param, sizeof param, "tools[%d]", k);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t)) return bad_type(e, param, "an object", t);
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
            return srv_fail(e, 400, INVALID, param, "invalid_value",
                            "Invalid '%s': its 'type' must be 'function' (the only kind of tool).", param);
        snprintf(param, sizeof param, "tools[%d].function", k);
        if (!cJSON_IsObject(fn)) return bad_type(e, param, "an object", fn);
        const cJSON *desc = field(fn, "description"), *params = field(fn, "parameters");
        snprintf(param, sizeof param, "tools[%d].function.description", k);
        if (desc && !cJSON_IsString(desc)) return bad_type(e, param, "a string", desc);
        snprintf(param, sizeof param, "tools[%d].function.parameters", k);
        if (params && !cJSON_IsObject(params)) return bad_type(e, param, "an object (a JSON Schema)", params);
        snprintf(param, sizeof param, "tools[%d].function.name", k);
        const char *name;
        if (fn_name(cJSON_GetObjectItemCaseSensitive(fn, "name"), param, &name, e)) return -1;
        for (int i = 0; i < k; i++)
            if (!strcmp(a->tool_names[i], name))
                return srv_fail(e, 400, INVALID, param, "invalid_value",
                                "Invalid '%s': the function '%s' is given twice.", param, name);
        if (!(a->tool_names[k] = dup_or_fail(name, e))) return -1;
        a->n_tools = ++k;
        /* the arguments held to the parameters where the grammar can hold them; a
         * strict function's must be (OpenAI's strict mode), another's fall back to
         * any object */
        const cJSON *strict = field(fn, "strict");
        snprintf(param, sizeof param, "tools[%d].function.strict", k - 1);
        if (strict && !cJSON_IsBool(strict)) return bad_type(e, param, "a boolean", strict);
        char *text = params ? cJSON_PrintUnformatted(params) : NULL;
        if (params && !text) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        const dsc_status st = text ? dsc_json_schema_new(text, strlen(text), &a->tool_schema[k - 1]) : DSC_OK;
        free(text);
        if (st == DSC_ERR_NOMEM) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        snprintf(param, sizeof param, "tools[%d].function.parameters", k - 1);
        if (st && cJSON_IsTrue(strict))
            return srv_fail(e, 400, INVALID, param, "unsupported_value",
                            "Invalid '%s': a strict function's arguments must follow it, and %s.", param, dsc_last_error());
    }
    a->tool_choice = n ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
    if (tc && cJSON_IsString(tc)) {
        const char *c = tc->valuestring;
        if (!strcmp(c, "none")) a->tool_choice = SRV_TOOLS_NONE;
        else if (!strcmp(c, "auto")) a->tool_choice = n ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
        else if (!strcmp(c, "required")) a->tool_choice = SRV_TOOLS_REQUIRED;
        else
            return srv_fail(e, 400, INVALID, "tool_choice", "invalid_value",
                            "Invalid 'tool_choice': '%.32s' is not one of 'none', 'auto', 'required' or a function.", c);
    } else if (tc) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        if (!cJSON_IsObject(tc) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsObject(fn))
            return bad_type(e, "tool_choice", "'none', 'auto', 'required' or {\"type\": \"function\", \"function\": "
                            "{\"name\": ...}}", tc);
        const char *name;
        if (fn_name(cJSON_GetObjectItemCaseSensitive(fn, "name"), "tool_choice.function.name", &name, e)) return -1;
        int found = 0;
        for (int i = 0; i < n; i++) found |= !strcmp(a->tool_names[i], name);
        if (!found)
            return srv_fail(e, 400, INVALID, "tool_choice", "invalid_value",
                            "Invalid 'tool_choice': the function '%s' is not among 'tools'.", name);
        if (!(a->tool_forced = dup_or_fail(name, e))) return -1;
        a->tool_choice = SRV_TOOLS_REQUIRED;
    }
    if (a->tool_choice == SRV_TOOLS_REQUIRED && !n)
        return srv_fail(e, 400, INVALID, "tool_choice", "invalid_value",
                        "Invalid 'tool_choice': a call is required, but no 'tools' are given.");
    if (a->tool_choice != SRV_TOOLS_NONE) {
        sbuf b = {0}, b31 = {0}, b32 = {0};
        tools_text(tools, &b, 0);
        tools_text(tools, &b31, 1);
        tools_text_v32(tools, &b32);
        if (b.oom || b31.oom || b32.oom) {
            sbuf_free(&b);
            sbuf_free(&b31);
            sbuf_free(&b32);
            return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        size_t len;
        a->tools_text = sbuf_take(&b, &len);
        a->tools_text_v31 = sbuf_take(&b31, &len);
        a->tools_text_v32 = sbuf_take(&b32, &len);
    }
    return 0;
}

/* response_format {"type": "json_schema", "json_schema": {"name",
 * "schema", "strict", "description"}}: the schema compiled, or a 400
 * naming what it cannot hold the answer to. */
static int parse_schema(const cJSON *rf, srv_ask *a, srv_err *e) {
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    if (!cJSON_IsObject(js)) return bad_type(e, "response_format.json_schema", "an object", js);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name"), *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    const char *n;
    if (fn_name(name, "response_format.json_schema.name", &n, e)) return -1;
    const cJSON *strict = field(js, "strict");
    if (strict && !cJSON_IsBool(strict)) return bad_type(e, "response_format.json_schema.strict", "a boolean", strict);
    if (!cJSON_IsObject(schema)) return bad_type(e, "response_format.json_schema.schema", "an object (a JSON Schema)", schema);
    char *text = cJSON_PrintUnformatted(schema);
    if (!text) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const dsc_status st = dsc_json_schema_new(text, strlen(text), &a->schema);
    free(text);
    if (st == DSC_ERR_NOMEM) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    if (st)
        return srv_fail(e, 400, INVALID, "response_format.json_schema.schema", "unsupported_value",
                        "Invalid 'response_format.json_schema.schema': %s.", dsc_last_error());
    return 0;
}

/* The parameters that ask for what this server does not do. */
static int parse_unsupported(const cJSON *root, srv_ask *a, srv_err *e) {
    const cJSON *j;
    if ((j = field(root, "functions")) && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > 0))
        return unsupported(e, "functions", "give the functions as 'tools' (the deprecated 'functions' is not taken).");
    if ((j = field(root, "function_call")) &&
        !(cJSON_IsString(j) && (!strcmp(j->valuestring, "none") || !strcmp(j->valuestring, "auto"))))
        return unsupported(e, "function_call", "use 'tool_choice' ('function_call' is deprecated).");
    if (a->kind == SRV_CHAT ? parse_tools(root, a, e) : 0) return -1;
    if (a->kind == SRV_COMPLETION && (j = field(root, "tools")) && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > 0))
        return unsupported(e, "tools", "functions are called in chat completions (/v1/chat/completions).");
    if ((j = field(root, "response_format"))) {
        const cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
        if (!cJSON_IsString(t)) return bad_type(e, "response_format", "an object with a string 'type'", j);
        a->json = !strcmp(t->valuestring, "json_object");
        if (!strcmp(t->valuestring, "json_schema") && parse_schema(j, a, e)) return -1;
        if ((a->json || a->schema) && a->tool_choice != SRV_TOOLS_NONE)
            return srv_fail(e, 400, INVALID, "response_format", "invalid_value",
                            "'response_format' %s cannot go with 'tools' (a call's arguments are JSON already); "
                            "give one of them, or 'tool_choice': 'none'.", t->valuestring);
        if (strcmp(t->valuestring, "text") && !a->json && !a->schema)
            return srv_fail(e, 400, INVALID, "response_format", "unsupported_value",
                            "'response_format' of type '%.40s' is not supported: only 'text', 'json_object' and "
                            "'json_schema' are.", t->valuestring);
    }
    double v = 0;
    if (get_num(root, "frequency_penalty", -2, 2, &v, e)) return -1;
    a->frequency_penalty = (float)v;
    v = 0;
    if (get_num(root, "presence_penalty", -2, 2, &v, e)) return -1;
    a->presence_penalty = (float)v;
    if (a->kind == SRV_COMPLETION) {
        v = a->n;
        if (get_int(root, "best_of", 1, SRV_MAX_N, &v, e)) return -1;
        if (v != a->n) return unsupported(e, "best_of", "it must equal 'n' (every sample is returned).");
    }
    if (field(root, "stream_options") && !a->stream)
        return srv_fail(e, 400, INVALID, "stream_options", "invalid_value",
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    return 0;
}

/* Whether the request asks for thinking (a model that switches it, as
 * DeepSeek-V3.1 does): vLLM's and SGLang's chat_template_kwargs {"thinking"
 * or "enable_thinking": bool}, the DeepSeek API's "thinking": {"type":
 * "enabled" or "disabled"} and its model names deepseek-reasoner /
 * deepseek-chat, in that order of precedence; a->think -1 when unsaid. */
static int parse_think(const cJSON *root, const char *model, srv_ask *a, srv_err *e) {
    const cJSON *kw = field(root, "chat_template_kwargs"), *th = field(root, "thinking");
    a->think = model && !strcmp(model, "deepseek-reasoner") ? 1 : model && !strcmp(model, "deepseek-chat") ? 0 : -1;
    if (th) {
        const cJSON *type = cJSON_IsObject(th) ? cJSON_GetObjectItemCaseSensitive(th, "type") : NULL;
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(ty, "enabled") && strcmp(ty, "disabled"))
            return bad_type(e, "thinking", "{\"type\": \"enabled\"} or {\"type\": \"disabled\"}", th);
        a->think = !strcmp(ty, "enabled");
    }
    if (kw && !cJSON_IsObject(kw)) return bad_type(e, "chat_template_kwargs", "an object", kw);
    int on = -1;
    if (kw && (get_bool(kw, "enable_thinking", &on, e) || get_bool(kw, "thinking", &on, e))) return -1;
    if (on >= 0) a->think = on;
    return 0;
}

static int parse_fields(const cJSON *root, srv_ask *a, srv_err *e) {
    const char *model = NULL, *user = NULL;
    double v;
    if (get_string(root, "model", &model, e) || get_string(root, "user", &user, e)) return -1;
    if (parse_think(root, model, a, e)) return -1;
    if (a->kind == SRV_CHAT ? parse_messages(root, a, e) : parse_prompt(root, a, e)) return -1;
    if (get_bool(root, "stream", &a->stream, e) || get_bool(root, "ignore_eos", &a->ignore_eos, e)) return -1;
    const cJSON *so = field(root, "stream_options");
    if (so && !cJSON_IsObject(so)) return bad_type(e, "stream_options", "an object", so);
    if (so && get_bool(so, "include_usage", &a->include_usage, e)) return -1;
    v = -1;
    if (get_int(root, "max_tokens", 0, 1 << 30, &v, e) || get_int(root, "max_completion_tokens", 0, 1 << 30, &v, e))
        return -1;
    a->max_tokens = (int)v;
    v = 1;
    if (get_num(root, "temperature", 0, 2, &v, e)) return -1;
    a->temperature = (float)v;
    v = 1;
    if (get_num(root, "top_p", 0, 1, &v, e)) return -1;
    a->top_p = v > 1e-6 ? (float)v : 1e-6f;
    if (field(root, "seed")) {
        /* Integers beyond 2^53 do not survive a JSON number as a double: refused, not rounded. */
        if (get_int(root, "seed", -9007199254740991.0, 9007199254740991.0, &v, e)) return -1;
        a->has_seed = 1;
        a->seed = (uint64_t)(int64_t)v;
    }
    if (parse_sampling(root, a, e) || parse_logit_bias(root, a, e)) return -1;
    v = 1;
    if (get_int(root, "n", 1, SRV_MAX_N, &v, e)) return -1;
    a->n = (int)v;
    if (parse_stop(root, a, e)) return -1;
    if (parse_unsupported(root, a, e)) return -1;
    if (a->kind == SRV_CHAT) {
        if (get_bool(root, "logprobs", &a->logprobs, e)) return -1;
        v = 0;
        if (get_int(root, "top_logprobs", 0, SRV_MAX_TOP, &v, e)) return -1;
        a->top_logprobs = (int)v;
        if (a->top_logprobs && !a->logprobs)
            return srv_fail(e, 400, INVALID, "top_logprobs", "invalid_value",
                            "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
    } else {
        v = -1;
        if (get_int(root, "logprobs", 0, 5, &v, e)) return -1;
        a->logprobs = v >= 0;
        a->top_logprobs = v > 0 ? (int)v : 0;
        if (get_bool(root, "echo", &a->echo, e)) return -1;
        const char *suffix = NULL;
        if (get_string(root, "suffix", &suffix, e)) return -1;
        if (suffix && *suffix) {
            if (!a->prompt)
                return srv_fail(e, 400, INVALID, "suffix", "invalid_value",
                                "'suffix' goes with a text prompt, not token ids: the gap is filled between the two texts.");
            if (a->echo) return srv_fail(e, 400, INVALID, "suffix", "invalid_value", "'suffix' cannot be used with 'echo'.");
            if (!(a->suffix = dup_or_fail(suffix, e))) return -1;
        }
    }
    if (a->max_tokens == 0 && !a->echo)
        return srv_fail(e, 400, INVALID, field(root, "max_tokens") ? "max_tokens" : "max_completion_tokens", "invalid_value",
                        "Invalid value: 0 tokens to generate is only for a completion with 'echo' (the prompt's "
                        "logprobs alone); give 1 or more.");
    return 0;
}

/* Parses a whole body as one JSON value (trailing bytes are an error). */
static cJSON *parse_body(const char *body, size_t len, srv_err *e) {
    if (body && fio_json_has_nul(body, len)) {
        srv_fail(e, 400, INVALID, NULL, "invalid_value",
                 "A string of the request holds \\u0000 (NUL), which would cut it short: remove it.");
        return NULL;
    }
    cJSON *root = fio_parse_json(body, len); /* one value, nothing after it */
    if (!root)
        srv_fail(e, 400, INVALID, NULL, "invalid_json",
                 "We could not parse the JSON body of your request (%s). The body must be one JSON object.",
                 fio_json_error());
    else if (!cJSON_IsObject(root)) {
        bad_type(e, "body", "an object", root);
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

int srv_parse(srv_kind kind, const char *body, size_t len, srv_ask *a, srv_err *e) {
    return srv_parse_prompt(kind, body, len, 0, a, e);
}

int srv_parse_prompt(srv_kind kind, const char *body, size_t len, int k, srv_ask *a, srv_err *e) {
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->prompt_k = k;
    a->n = 1;
    a->max_tokens = -1;
    a->temperature = a->top_p = a->repetition_penalty = 1;
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    int rc = parse_fields(root, a, e);
    cJSON_Delete(root);
    return rc;
}

void srv_ask_free(srv_ask *a) {
    for (size_t i = 0; i < a->n_msgs; i++) {
        free((char *)a->msgs[i].content);
        for (size_t k = 0; k < a->msgs[i].n_tool_calls; k++)
            free((char *)a->msgs[i].tool_calls[k].name), free((char *)a->msgs[i].tool_calls[k].arguments);
        free((dsc_tool_call *)a->msgs[i].tool_calls);
    }
    free(a->msgs);
    for (int i = 0; i < a->n_tools; i++) free(a->tool_names[i]), dsc_json_schema_free(a->tool_schema[i]);
    free(a->tool_names);
    free(a->tool_schema);
    free(a->tools_text);
    free(a->tools_text_v31);
    free(a->tools_text_v32);
    free(a->resp_settings);
    free(a->tool_forced);
    dsc_json_schema_free(a->schema);
    free(a->prompt);
    free(a->prompt_ids);
    free(a->suffix);
    free(a->bias_tok);
    free(a->bias);
    for (int i = 0; i < a->n_stop; i++) free(a->stop[i]);
    memset(a, 0, sizeof *a);
}

int srv_parse_tokenize(const char *body, size_t len, char **content, int *add_special, srv_err *e) {
    *content = NULL;
    *add_special = 0;
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    const char *c = NULL;
    int rc = get_string(root, "content", &c, e);
    if (!rc && !c) rc = srv_fail(e, 400, INVALID, "content", "missing_required_parameter",
                                 "Missing required parameter: 'content'.");
    if (!rc) rc = get_bool(root, "add_special", add_special, e);
    if (!rc && !(*content = dup_or_fail(c, e))) rc = -1;
    cJSON_Delete(root);
    return rc;
}

int srv_parse_detokenize(const char *body, size_t len, int32_t **ids, size_t *n, srv_err *e) {
    *ids = NULL;
    *n = 0;
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens"), *x;
    int rc = 0;
    if (!cJSON_IsArray(t)) rc = bad_type(e, "tokens", "an array of token ids", t);
    else if (!(*ids = malloc(((size_t)cJSON_GetArraySize(t) + 1) * sizeof **ids)))
        rc = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    else
        cJSON_ArrayForEach(x, t) {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
                x->valuedouble > INT32_MAX) {
                rc = bad_type(e, "tokens", "an array of token ids (integers >= 0)", x);
                break;
            }
            (*ids)[(*n)++] = (int32_t)x->valuedouble;
        }
    cJSON_Delete(root);
    if (rc) { /* nothing for the caller to free on an error */
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}
