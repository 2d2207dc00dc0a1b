/*
 * chat.c — the DeepSeek-V3 / R1 chat template (as in their
 * tokenizer_config.json, tool calls and results as its 0324 revision writes
 * them), DeepSeek-V3.1's (thinking switched on and off) and DeepSeek-V3.2's
 * encoding (its calls in DSML) rendered straight to token ids; the split of
 * a reasoning model's output into <think> reasoning and answer, and of a
 * V3.2 answer into text and a DSML block of calls, and that block parsed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/status.h"
#include "runtime/pyjson.h"

#define CHAT_BOS "<｜begin▁of▁sentence｜>"
#define CHAT_EOS "<｜end▁of▁sentence｜>"
#define CHAT_USER "<｜User｜>"
#define CHAT_ASSISTANT "<｜Assistant｜>"

/* The ids being written. Text between two markers is gathered and
 * tokenized as one piece, as a template's output string is tokenized whole
 * (pieces written one after another, "a.\n\n" then the next system message,
 * a call's name, fence and arguments, can merge across their seams). */
typedef struct {
    const dsc_tokenizer *tok;
    int32_t *ids;
    size_t cap, n;
    char *text;          /* the text since the last marker */
    size_t n_text, cap_text;
    int special;         /* its chat markers taken as such (one kind of text a piece) */
} chat_out;

static dsc_status flush_text(chat_out *o) {
    if (o->n_text == 0) return DSC_OK;
    size_t got = 0, room = o->n < o->cap ? o->cap - o->n : 0;
    dsc_status s = dsc_tokenize(o->tok, o->text, o->n_text, o->special, o->ids ? o->ids + (o->n < o->cap ? o->n : 0) : NULL,
                                room, &got);
    o->n_text = 0;
    if (s != DSC_OK && !(s == DSC_ERR_ARG && got > room)) return s;
    o->n += got;
    return DSC_OK;
}

static dsc_status put_special(chat_out *o, const char *text) {
    dsc_status s = flush_text(o);
    if (s) return s;
    int32_t id = dsc_tokenizer_find(o->tok, text);
    if (id < 0) return dsc_fail(DSC_ERR_ARG, "chat template: the tokenizer has no token '%s'", text);
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
    return DSC_OK;
}

static dsc_status put_text(chat_out *o, const char *text, size_t len, int parse_special) {
    if (len == 0) return DSC_OK;
    dsc_status s = o->special != parse_special ? flush_text(o) : DSC_OK;
    if (s) return s;
    o->special = parse_special;
    if (o->n_text + len > o->cap_text) {
        size_t cap = (o->n_text + len) * 2 + 256;
        char *g = realloc(o->text, cap);
        if (!g) return dsc_fail(DSC_ERR_NOMEM, "chat template: out of memory");
        o->text = g, o->cap_text = cap;
    }
    memcpy(o->text + o->n_text, text, len);
    o->n_text += len;
    return DSC_OK;
}

/* R1 history: an assistant turn keeps only what follows its last </think>. */
static const char *after_think(const char *s) {
    const char *p = s, *q;
    while ((q = strstr(p, "</think>"))) p = q + strlen("</think>");
    return p;
}

/* An assistant turn that called functions: its text, then the calls, as
 * DeepSeek-V3 writes them ("function", the name, the arguments in a json
 * fence; one call a line) or V3.1 (the name, the arguments; chained). */
static dsc_status put_calls(chat_out *o, const dsc_chat_message *m, int v31) {
    dsc_status s = put_special(o, "<｜tool▁calls▁begin｜>");
    for (size_t k = 0; k < m->n_tool_calls && !s; k++) {
        const dsc_tool_call *t = &m->tool_calls[k];
        if (!t->name || !t->arguments) return dsc_fail(DSC_ERR_ARG, "chat: tool call %zu has no name or arguments", k);
        if (k && !v31) s = put_text(o, "\n", 1, 0);
        if (!s) s = put_special(o, "<｜tool▁call▁begin｜>");
        if (!s && !v31) s = put_text(o, "function", 8, 0);
        if (!s && !v31) s = put_special(o, "<｜tool▁sep｜>");
        if (!s) s = put_text(o, t->name, strlen(t->name), 0);
        if (!s && v31) s = put_special(o, "<｜tool▁sep｜>");
        if (!s && !v31) s = put_text(o, "\n```json\n", 9, 0);
        if (!s) s = put_text(o, t->arguments, strlen(t->arguments), 0);
        if (!s && !v31) s = put_text(o, "\n```", 4, 0);
        if (!s) s = put_special(o, "<｜tool▁call▁end｜>");
    }
    return s ? s : put_special(o, "<｜tool▁calls▁end｜>");
}

/* The system messages joined by a blank line (V3.2: by nothing), the tools after them. */
static dsc_status put_system(chat_out *o, const dsc_chat_message *msgs, size_t n, const char *tools, int v32) {
    dsc_status s = put_special(o, CHAT_BOS);
    int first_sys = 1;
    for (size_t i = 0; i < n && !s; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return dsc_fail(DSC_ERR_ARG, "chat message %zu has no role or content", i);
        if (strcmp(msgs[i].role, "system")) continue;
        if (!first_sys && !v32) s = put_text(o, "\n\n", 2, 0);
        if (!s) s = put_text(o, msgs[i].content, strlen(msgs[i].content), 0);
        first_sys = 0;
    }
    if (!s && tools && *tools) {
        if (!first_sys) s = put_text(o, "\n\n", 2, 0);
        if (!s) s = put_text(o, tools, strlen(tools), 1);
    }
    return s;
}

static dsc_status check_calls(const dsc_chat_message *m, size_t i) {
    if (m->n_tool_calls > 0 && (strcmp(m->role, "assistant") || !m->tool_calls))
        return dsc_fail(DSC_ERR_ARG, "chat message %zu: only an assistant's message holds tool calls", i);
    return DSC_OK;
}

/* DeepSeek-V3.1's template (thinking switched per conversation): an
 * answer to a user turn opens "<｜Assistant｜>" then "<think>" (thinking)
 * or "</think>"; earlier answers keep the text after their first
 * "</think>"; calls chained as V3.1 writes them; each result
 * "<｜tool▁output▁begin｜>r<｜tool▁output▁end｜>", and the answer after
 * results goes on from there with no marker (nor one asked for). */
static dsc_status render_v31(chat_out *o, const dsc_chat_message *msgs, size_t n, const char *tools, unsigned flags) {
    const int thinking = (flags & DSC_CHAT_REASONING) != 0;
    int last_user = 0, after_tool = 0;
    dsc_status s = put_system(o, msgs, n, tools, 0);
    for (size_t i = 0; i < n && !s; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(role, "system")) continue;
        if ((s = check_calls(&msgs[i], i))) break;
        if (!strcmp(role, "user")) {
            after_tool = 0, last_user = 1;
            if (!(s = put_special(o, CHAT_USER))) s = put_text(o, c, strlen(c), 0);
        } else if (!strcmp(role, "assistant") && msgs[i].n_tool_calls) {
            if (last_user && !(s = put_special(o, CHAT_ASSISTANT))) s = put_text(o, "</think>", 8, 1);
            last_user = after_tool = 0;
            if (!s) s = put_text(o, c, strlen(c), 0);
            if (!s) s = put_calls(o, &msgs[i], 1);
            if (!s) s = put_special(o, CHAT_EOS);
        } else if (!strcmp(role, "assistant")) {
            const int open = (flags & DSC_CHAT_PREFIX) && i + 1 == n;
            if (last_user && !(s = put_special(o, CHAT_ASSISTANT)))
                s = open && thinking ? put_text(o, "<think>", 7, 1) : put_text(o, "</think>", 8, 1);
            last_user = 0;
            if (!after_tool) {
                const char *q = strstr(c, "</think>");
                if (q) c = q + 8;
            }
            after_tool = 0;
            if (!s) s = put_text(o, c, strlen(c), 0);
            if (!s && !open) s = put_special(o, CHAT_EOS);
        } else if (!strcmp(role, "tool")) {
            last_user = 0, after_tool = 1;
            if (!(s = put_special(o, "<｜tool▁output▁begin｜>")) && !(s = put_text(o, c, strlen(c), 0)))
                s = put_special(o, "<｜tool▁output▁end｜>");
        } else {
            s = dsc_fail(DSC_ERR_ARG, "chat message %zu: role '%.32s' is not system, user, assistant or tool", i, role);
        }
    }
    if (!s && (flags & DSC_CHAT_PREFIX) &&
        (n == 0 || strcmp(msgs[n - 1].role, "assistant") || msgs[n - 1].n_tool_calls))
        return dsc_fail(DSC_ERR_ARG, "chat: a prefix to continue must be the last message, the assistant's");
    if (!s && (flags & DSC_CHAT_GENERATION_PROMPT) && !(flags & DSC_CHAT_PREFIX) && last_user) {
        s = put_special(o, CHAT_ASSISTANT);
        if (!s) s = thinking ? put_text(o, "<think>", 7, 1) : put_text(o, "</think>", 8, 1);
    }
    return s;
}

#define DSML "｜DSML｜"

/* One call in DSML: <｜DSML｜invoke name="NAME">, a line per argument,
 * <｜DSML｜parameter name="KEY" string="true">VALUE</｜DSML｜parameter> (a
 * string as it is; any other value as JSON, string="false"). */
static dsc_status put_invoke(chat_out *o, const dsc_tool_call *t, size_t k) {
    if (!t->name || !t->arguments) return dsc_fail(DSC_ERR_ARG, "chat: tool call %zu has no name or arguments", k);
    cJSON *args = fio_parse_json(t->arguments, strlen(t->arguments)), *a;
    if (!cJSON_IsObject(args)) {
        cJSON_Delete(args);
        return dsc_fail(DSC_ERR_ARG, "chat: tool call %zu ('%.64s'): its arguments are not a JSON object", k, t->name);
    }
    dsc_status s = put_text(o, "<" DSML "invoke name=\"", strlen("<" DSML "invoke name=\""), 1);
    if (!s) s = put_text(o, t->name, strlen(t->name), 0);
    if (!s) s = put_text(o, "\">\n", 3, 1);
    int first = 1;
    cJSON_ArrayForEach(a, args) {
        if (s) break;
        const int str = cJSON_IsString(a);
        char *v = str ? NULL : pyjson_print(a);
        if (!str && !v) {
            s = dsc_fail(DSC_ERR_NOMEM, "chat: out of memory");
            break;
        }
        if (!first) s = put_text(o, "\n", 1, 1);
        first = 0;
        if (!s) s = put_text(o, "<" DSML "parameter name=\"", strlen("<" DSML "parameter name=\""), 1);
        if (!s) s = put_text(o, a->string, strlen(a->string), 0);
        if (!s) s = put_text(o, str ? "\" string=\"true\">" : "\" string=\"false\">", str ? 16 : 17, 1);
        if (!s) s = put_text(o, str ? a->valuestring : v, strlen(str ? a->valuestring : v), 0);
        if (!s) s = put_text(o, "</" DSML "parameter>", strlen("</" DSML "parameter>"), 1);
        free(v);
    }
    cJSON_Delete(args);
    if (!s) s = put_text(o, "\n</" DSML "invoke>", strlen("\n</" DSML "invoke>"), 1);
    return s;
}

/* An assistant's content "R</think>A" (R may open with "<think>") as its
 * reasoning R (NULL without "</think>") and answer A. */
static const char *split_reasoning(const char *c, const char **r, size_t *nr) {
    const char *q = strstr(c, "</think>");
    if (!q) {
        *r = NULL, *nr = 0;
        return c;
    }
    *r = strncmp(c, "<think>", 7) ? c : c + 7;
    *nr = (size_t)(q - *r);
    return q + 8;
}

/* DeepSeek-V3.2's encoding (encoding_dsv32.py in its release; no Jinja
 * template): the system messages joined by nothing, then (a blank line)
 * the tools; a user turn <｜User｜>TEXT<｜Assistant｜> then "<think>" for
 * the last one in thinking mode, else "</think>"; an answer after the last
 * user turn keeps its reasoning ("R</think>") in thinking mode, and is its
 * text, then its calls ("\n\n<｜DSML｜function_calls>\n" the invokes a line
 * each "\n</｜DSML｜function_calls>"), then <｜end▁of▁sentence｜>; the
 * results of a turn's calls "\n\n<function_results>", "\n<result>R</result>"
 * each, "\n</function_results>\n\n" then "<think>" or "</think>" as after a
 * user turn; a prefix to continue is its text alone. */
static dsc_status render_v32(chat_out *o, const dsc_chat_message *msgs, size_t n, const char *tools, unsigned flags) {
    const int thinking = (flags & DSC_CHAT_REASONING) != 0;
    size_t last_user = SIZE_MAX, asst = SIZE_MAX; /* the last user turn; the answer whose results come */
    for (size_t i = 0; i < n; i++)
        if (msgs[i].role && !strcmp(msgs[i].role, "user")) last_user = i;
    dsc_status s = put_system(o, msgs, n, NULL, 1);
    if (!s && tools && *tools && !(s = put_text(o, "\n\n", 2, 0))) s = put_text(o, tools, strlen(tools), 1);
    const char *open_think = thinking ? "<think>" : "</think>";
    for (size_t i = 0; i < n && !s; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content;
        const int after = last_user == SIZE_MAX || i > last_user;
        if (!strcmp(role, "system")) continue;
        if ((s = check_calls(&msgs[i], i))) break;
        if (!strcmp(role, "user")) {
            if (!(s = put_special(o, CHAT_USER)) && !(s = put_text(o, c, strlen(c), 0)) && !(s = put_special(o, CHAT_ASSISTANT)))
                s = put_text(o, i == last_user ? open_think : "</think>", i == last_user && thinking ? 7 : 8, 1);
        } else if (!strcmp(role, "assistant")) {
            const char *r;
            size_t nr;
            const char *a = split_reasoning(c, &r, &nr);
            if ((flags & DSC_CHAT_PREFIX) && i + 1 == n && !msgs[i].n_tool_calls) {
                s = put_text(o, a, strlen(a), 0);
                break;
            }
            if (thinking && after && !(s = put_text(o, r ? r : "", r ? nr : 0, 0))) s = put_text(o, "</think>", 8, 1);
            if (!s) s = put_text(o, a, strlen(a), 0);
            if (!s && msgs[i].n_tool_calls) {
                s = put_text(o, "\n\n<" DSML "function_calls>\n", strlen("\n\n<" DSML "function_calls>\n"), 1);
                for (size_t k = 0; k < msgs[i].n_tool_calls && !s; k++) {
                    if (k) s = put_text(o, "\n", 1, 1);
                    if (!s) s = put_invoke(o, &msgs[i].tool_calls[k], k);
                }
                if (!s) s = put_text(o, "\n</" DSML "function_calls>", strlen("\n</" DSML "function_calls>"), 1);
            }
            if (!s) s = put_special(o, CHAT_EOS);
            asst = msgs[i].n_tool_calls ? i : SIZE_MAX;
        } else if (!strcmp(role, "tool")) {
            if (asst == SIZE_MAX)
                return dsc_fail(DSC_ERR_ARG, "chat message %zu: a tool result with no call before it to answer", i);
            const size_t order = i - asst, calls = msgs[asst].n_tool_calls;
            if (order > calls)
                return dsc_fail(DSC_ERR_ARG, "chat message %zu: more tool results than the %zu calls before them", i, calls);
            if (order == 1) s = put_text(o, "\n\n<function_results>", 20, 1);
            if (!s) s = put_text(o, "\n<result>", 9, 1);
            if (!s) s = put_text(o, c, strlen(c), 0);
            if (!s) s = put_text(o, "</result>", 9, 1);
            if (!s && order == calls && !(s = put_text(o, "\n</function_results>\n\n", 22, 1)))
                s = put_text(o, after && thinking ? "<think>" : "</think>", after && thinking ? 7 : 8, 1);
        } else {
            s = dsc_fail(DSC_ERR_ARG, "chat message %zu: role '%.32s' is not system, user, assistant or tool", i, role);
        }
    }
    if (!s && (flags & DSC_CHAT_PREFIX) &&
        (n == 0 || strcmp(msgs[n - 1].role, "assistant") || msgs[n - 1].n_tool_calls))
        return dsc_fail(DSC_ERR_ARG, "chat: a prefix to continue must be the last message, the assistant's");
    return s;
}

/* The conversation into o (its text pieces not yet all tokenized). */
static dsc_status render(chat_out *o, const dsc_chat_message *msgs, size_t n, const char *tools, unsigned flags) {
    if (flags & DSC_CHAT_DSML) return render_v32(o, msgs, n, tools, flags);
    if (flags & DSC_CHAT_HYBRID) return render_v31(o, msgs, n, tools, flags);
    dsc_status s = put_system(o, msgs, n, tools, 0);
    int in_outputs = 0; /* a run of tool results is open */
    for (size_t i = 0; i < n && !s; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(role, "system")) continue;
        const int tool = !strcmp(role, "tool"), calls = msgs[i].n_tool_calls > 0;
        if ((s = check_calls(&msgs[i], i))) break;
        if (in_outputs && !tool) { /* the results end; an answer follows them without <｜Assistant｜> */
            s = put_special(o, "<｜tool▁outputs▁end｜>");
            in_outputs = 0;
            if (!s && !strcmp(role, "assistant") && !calls) {
                const int open = (flags & DSC_CHAT_PREFIX) && i + 1 == n;
                if (flags & DSC_CHAT_REASONING) c = after_think(c);
                if (!(s = put_text(o, c, strlen(c), 0)) && !open) s = put_special(o, CHAT_EOS);
                continue;
            }
        }
        if (s) break;
        if (!strcmp(role, "user")) {
            if (!(s = put_special(o, CHAT_USER))) s = put_text(o, c, strlen(c), 0);
        } else if (!strcmp(role, "assistant")) {
            const int open = (flags & DSC_CHAT_PREFIX) && i + 1 == n && !calls;
            if (flags & DSC_CHAT_REASONING) c = after_think(c);
            if (!(s = put_special(o, CHAT_ASSISTANT)) && !(s = put_text(o, c, strlen(c), 0)) && calls)
                s = put_calls(o, &msgs[i], 0);
            if (!s && !open) s = put_special(o, CHAT_EOS);
        } else if (tool) {
            s = in_outputs ? put_text(o, "\n", 1, 0) : put_special(o, "<｜tool▁outputs▁begin｜>");
            if (!s) s = put_special(o, "<｜tool▁output▁begin｜>");
            if (!s) s = put_text(o, c, strlen(c), 0);
            if (!s) s = put_special(o, "<｜tool▁output▁end｜>");
            in_outputs = 1;
        } else {
            s = dsc_fail(DSC_ERR_ARG, "chat message %zu: role '%.32s' is not system, user, assistant or tool", i, role);
        }
    }
    if (!s && (flags & DSC_CHAT_PREFIX) &&
        (n == 0 || strcmp(msgs[n - 1].role, "assistant") || msgs[n - 1].n_tool_calls))
        return dsc_fail(DSC_ERR_ARG, "chat: a prefix to continue must be the last message, the assistant's");
    if (!s && in_outputs) { /* the answer goes on after the results */
        s = put_special(o, "<｜tool▁outputs▁end｜>");
    } else if (!s && (flags & DSC_CHAT_GENERATION_PROMPT) && !(flags & DSC_CHAT_PREFIX)) {
        s = put_special(o, CHAT_ASSISTANT);
        if (!s && (flags & DSC_CHAT_REASONING)) s = put_text(o, "<think>\n", 8, 1);
    }
    return s;
}

dsc_status dsc_chat_tokenize_tools(const dsc_tokenizer *tok, const dsc_chat_message *msgs, size_t n, const char *tools,
                                   unsigned flags, int32_t *ids, size_t cap, size_t *n_ids) {
    if (!tok || !n_ids || (!msgs && n > 0) || (!ids && cap > 0)) return dsc_fail(DSC_ERR_ARG, "dsc_chat_tokenize: NULL argument");
    *n_ids = 0;
    chat_out o = {.tok = tok, .ids = ids, .cap = ids ? cap : 0};
    dsc_status s = render(&o, msgs, n, tools, flags);
    if (!s) s = flush_text(&o);
    free(o.text);
    if (s) return s;
    *n_ids = o.n;
    if (o.n > cap) return dsc_fail(DSC_ERR_ARG, "chat: %zu tokens do not fit in %zu", o.n, cap);
    return DSC_OK;
}


dsc_status dsc_chat_tokenize(const dsc_tokenizer *tok, const dsc_chat_message *msgs, size_t n, unsigned flags,
                             int32_t *ids, size_t cap, size_t *n_ids) {
    return dsc_chat_tokenize_tools(tok, msgs, n, NULL, flags, ids, cap, n_ids);
}

dsc_status dsc_chat_detect(const char *path, unsigned *flags) {
    char *buf;
    size_t len;
    struct stat sb;
    if (!path || !flags) return dsc_fail(DSC_ERR_ARG, "dsc_chat_detect: NULL argument");
    if (lstat(path, &sb) != 0 && errno == ENOENT) return DSC_OK; /* no file: the plain template */
    dsc_status s = fio_read_file(path, (size_t)16 << 20, &buf, &len);
    if (s) return s;
    cJSON *root = fio_parse_json(buf, len);
    free(buf);
    if (!cJSON_IsObject(root)) {
        s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", path, root ? "not a JSON object" : fio_json_error());
        cJSON_Delete(root);
        return s;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (t && !cJSON_IsNull(t) && !cJSON_IsString(t) && !cJSON_IsArray(t)) {
        cJSON_Delete(root);
        return dsc_fail(DSC_ERR_FORMAT, "%s: chat_template is neither a string nor a list of templates", path);
    }
    if (cJSON_IsArray(t)) { /* [{"name", "template"}, ...]: the one named "default", else the first */
        const cJSON *e, *pick = cJSON_GetArrayItem(t, 0);
        cJSON_ArrayForEach(e, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default")) pick = e;
        }
        t = cJSON_GetObjectItemCaseSensitive(pick, "template");
    }
    if (cJSON_IsString(t) && strstr(t->valuestring, CHAT_ASSISTANT "</think>")) *flags |= DSC_CHAT_HYBRID;
    else if (cJSON_IsString(t) && strstr(t->valuestring, "<think>")) *flags |= DSC_CHAT_REASONING;
    cJSON_Delete(root);
    return DSC_OK;
}

unsigned dsc_chat_model_flags(unsigned flags, const dsc_model_info *info) {
    if (info && info->index_topk > 0 && !(flags & DSC_CHAT_HYBRID))
        flags |= DSC_CHAT_HYBRID | DSC_CHAT_DSML;
    return flags;
}

/* ------------------------------------------------------------------------ */
/* Reasoning split                                                           */

static const char *const tag_open = "<think>", *const tag_close = "</think>";

static void emit(dsc_think_split *st, char c, char *reason, size_t *nr, char *answer, size_t *na) {
    if (st->in_think) reason[(*nr)++] = c;
    else answer[(*na)++] = c;
}

void dsc_think_feed(dsc_think_split *st, const char *in, size_t n, char *reason, size_t *nr, char *answer, size_t *na) {
    *nr = *na = 0;
    for (size_t i = 0; i < n; i++) {
        st->hold[st->n_hold++] = in[i];
        const char *tag = st->in_think ? tag_close : tag_open;
        size_t tl = strlen(tag);
        if ((size_t)st->n_hold <= tl && memcmp(st->hold, tag, (size_t)st->n_hold) == 0) {
            if ((size_t)st->n_hold == tl) { /* a whole tag: switch, drop it */
                st->in_think = !st->in_think;
                st->n_hold = 0;
            }
            continue;
        }
        /* Not a tag: release the first held byte and retry the rest. */
        int k = st->n_hold;
        char tmp[16];
        memcpy(tmp, st->hold, (size_t)k);
        st->n_hold = 0;
        emit(st, tmp[0], reason, nr, answer, na);
        for (int j = 1; j < k; j++) {
            size_t a = 0, b = 0;
            dsc_think_feed(st, &tmp[j], 1, reason + *nr, &a, answer + *na, &b);
            *nr += a;
            *na += b;
        }
    }
}

void dsc_think_flush(dsc_think_split *st, char *reason, size_t *nr, char *answer, size_t *na) {
    *nr = *na = 0;
    for (int i = 0; i < st->n_hold; i++) emit(st, st->hold[i], reason, nr, answer, na);
    st->n_hold = 0;
}

/* ------------------------------------------------------------------------ */
/* DeepSeek-V3.2's calls (DSML)                                              */

static const char dsml_open[] = "<" DSML "function_calls>", dsml_close[] = "</" DSML "function_calls>";

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* hold = whitespace, then a beginning of the opening tag (maybe all of it): 2
 * when the tag is whole, 1 when it may still come, 0 when it cannot. */
static int hold_state(const char *h, size_t n) {
    size_t w = 0;
    while (w < n && is_ws(h[w])) w++;
    const size_t m = n - w, lt = sizeof dsml_open - 1;
    if (m > lt || memcmp(h + w, dsml_open, m)) return 0;
    return m == lt ? 2 : 1;
}

static void block_put(dsc_dsml_split *st, const char *p, size_t n) {
    if (st->oom) return;
    if (st->n_block + n + 1 > st->cap_block) {
        size_t cap = (st->n_block + n + 1) * 2 + 256;
        char *g = realloc(st->block, cap);
        if (!g) {
            st->oom = 1;
            return;
        }
        st->block = g, st->cap_block = cap;
    }
    memcpy(st->block + st->n_block, p, n);
    st->n_block += n;
    st->block[st->n_block] = 0;
}

int dsc_dsml_feed(dsc_dsml_split *st, const char *in, size_t n, char *out, size_t *n_out) {
    size_t no = 0;
    for (size_t i = 0; i < n; i++) {
        const char c = in[i];
        if (st->state == 3) {
            out[no++] = c;
            continue;
        }
        if (st->state == 2) break;
        if (st->state == 1) {
            block_put(st, &c, 1);
            const size_t lc = sizeof dsml_close - 1;
            if (st->n_block >= lc && !memcmp(st->block + st->n_block - lc, dsml_close, lc)) st->state = 2;
            continue;
        }
        st->hold[st->n_hold++] = c;
        while (st->n_hold) {
            const int h = hold_state(st->hold, st->n_hold);
            if (h == 2) { /* the block opens: the whitespace before it dropped */
                st->state = 1, st->n_hold = 0;
                block_put(st, dsml_open, sizeof dsml_open - 1);
                break;
            }
            if (h == 1 && st->n_hold < DSC_DSML_HOLD) break; /* it may still come */
            out[no++] = st->hold[0];                          /* the first byte cannot begin it */
            memmove(st->hold, st->hold + 1, --st->n_hold);
        }
    }
    *n_out = no;
    return st->state == 2;
}

const char *dsc_dsml_pending(dsc_dsml_split *st, size_t *n) {
    const int s = st->state;
    st->state = 3;
    if (s == 1) return *n = st->n_block, st->block ? st->block : "";
    if (s == 0) return *n = st->n_hold, st->n_hold = 0, st->hold;
    return *n = 0, "";
}

void dsc_dsml_free(dsc_dsml_split *st) {
    free(st->block);
    memset(st, 0, sizeof *st);
}

void dsc_tool_calls_free(dsc_tool_call *calls, size_t n_calls) {
    for (size_t i = 0; calls && i < n_calls; i++) free((char *)calls[i].name), free((char *)calls[i].arguments);
    free(calls);
}

/* p at s (end e): skips whitespace, then tag; NULL when tag is not next. */
static const char *dsml_expect(const char *p, const char *e, const char *tag) {
    while (p < e && is_ws(*p)) p++;
    const size_t n = strlen(tag);
    return (size_t)(e - p) >= n && !memcmp(p, tag, n) ? p + n : NULL;
}

static const char *dsml_find(const char *p, const char *e, const char *tag) {
    return memmem(p, (size_t)(e - p), tag, strlen(tag));
}

dsc_status dsc_dsml_parse(const char *text, size_t n, dsc_tool_call **calls, size_t *n_calls) {
    *calls = NULL, *n_calls = 0;
    const char *p = text, *e = text + n, *q;
    dsc_tool_call *out = NULL;
    size_t k = 0;
    dsc_status s = DSC_OK;
    cJSON *args = NULL;
    if (!(p = dsml_expect(p, e, dsml_open))) return dsc_fail(DSC_ERR_FORMAT, "DSML calls: no <" DSML "function_calls>");
    for (;;) {
        const char *nx = dsml_expect(p, e, "<" DSML "invoke name=\"");
        if (!nx) break;
        if (!(q = memchr(nx, '"', (size_t)(e - nx))) || !(p = dsml_expect(q + 1, e, ">"))) {
            s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu: its invoke tag is not closed", k);
            break;
        }
        if (q == nx) {
            s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu has no name", k);
            break;
        }
        dsc_tool_call *g = realloc(out, sizeof *g * (k + 1));
        args = cJSON_CreateObject();
        if (!g || !args) {
            if (g) out = g;
            s = dsc_fail(DSC_ERR_NOMEM, "DSML calls: out of memory");
            break;
        }
        out = g;
        out[k] = (dsc_tool_call){strndup(nx, (size_t)(q - nx)), NULL};
        k++;
        for (;;) { /* the arguments */
            const char *pn = dsml_expect(p, e, "<" DSML "parameter name=\"");
            if (!pn) break;
            const char *qe = memchr(pn, '"', (size_t)(e - pn)), *v, *ve;
            int str = -1;
            if (qe && (v = dsml_expect(qe + 1, e, "string=\"true\">"))) str = 1;
            else if (qe && (v = dsml_expect(qe + 1, e, "string=\"false\">"))) str = 0;
            if (str < 0 || !(ve = dsml_find(v, e, "</" DSML "parameter>"))) {
                s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu ('%s'): a parameter out of the format", k - 1, out[k - 1].name);
                break;
            }
            char *key = strndup(pn, (size_t)(qe - pn)), *val = strndup(v, (size_t)(ve - v));
            cJSON *x = !key || !val ? NULL : str ? cJSON_CreateString(val) : fio_parse_json(val, strlen(val));
            if (x && !cJSON_GetObjectItemCaseSensitive(args, key)) cJSON_AddItemToObject(args, key, x);
            else if (x) {
                cJSON_Delete(x);
                s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu ('%s'): parameter '%.64s' given twice", k - 1,
                             out[k - 1].name, key);
            } else if (key && val) {
                s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu ('%s'): parameter '%.64s' (string=\"false\") is not JSON",
                             k - 1, out[k - 1].name, key);
            } else {
                s = dsc_fail(DSC_ERR_NOMEM, "DSML calls: out of memory");
            }
            free(key), free(val);
            if (s) break;
            p = ve + strlen("</" DSML "parameter>");
        }
        if (s) break;
        if (!(p = dsml_expect(p, e, "</" DSML "invoke>"))) {
            s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: call %zu ('%s') is not closed by </" DSML "invoke>", k - 1, out[k - 1].name);
            break;
        }
        out[k - 1].arguments = cJSON_PrintUnformatted(args);
        cJSON_Delete(args), args = NULL;
        if (!out[k - 1].name || !out[k - 1].arguments) {
            s = dsc_fail(DSC_ERR_NOMEM, "DSML calls: out of memory");
            break;
        }
    }
    cJSON_Delete(args);
    if (!s && k == 0) s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: the block holds no <" DSML "invoke>");
    if (!s && !dsml_expect(p, e, dsml_close)) s = dsc_fail(DSC_ERR_FORMAT, "DSML calls: no </" DSML "function_calls> after the calls");
    if (s) {
        dsc_tool_calls_free(out, k);
        return s;
    }
    *calls = out, *n_calls = k;
    return DSC_OK;
}
