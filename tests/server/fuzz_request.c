/*
 * fuzz_request.c — libFuzzer target for the server's request parsers
 * (src/server/api.c, anthropic.c, responses.c): the first byte picks chat
 * (also parsed as an Anthropic Messages and an OpenAI Responses request),
 * completions, /tokenize or /detokenize, the rest is the body. Beyond "no crash, no sanitizer
 * report": a rejected body gives status 400 (or 500 for memory) and a
 * message; an accepted one satisfies the limits the engine relies on. Every
 * input also goes through the JSON string writer, whose output must parse
 * back as one JSON string.
 *
 *   replay: tests/fuzz/replay.sh replay_fuzz_request tests/server/corpus
 *   fuzz:   tests/fuzz/build.sh build-fuzz   (clang, libFuzzer; builds fuzz_request with the others)
 *           build-fuzz/fuzz_request NEW_DIR tests/server/corpus -max_len=4096
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void check_ask(const srv_ask *a) {
    CHECK(a->n >= 1 && a->n <= SRV_MAX_N);
    CHECK(a->think >= -1 && a->think <= 1);
    CHECK(!a->tools_text == !a->tools_text_v31);
    CHECK(a->n_stop >= 0 && a->n_stop <= SRV_MAX_STOP);
    for (int i = 0; i < a->n_stop; i++) CHECK(a->stop[i] && a->stop[i][0]);
    CHECK(a->temperature >= 0 && a->temperature <= 2);
    CHECK(a->top_p > 0 && a->top_p <= 1);
    CHECK(a->frequency_penalty >= -2 && a->frequency_penalty <= 2 && a->presence_penalty >= -2 && a->presence_penalty <= 2);
    CHECK(a->max_tokens == -1 || a->max_tokens >= 1 || (a->max_tokens == 0 && a->echo && a->kind == SRV_COMPLETION));
    CHECK(a->reasoning_budget >= -1);
    CHECK(a->n_bias >= 0 && (a->n_bias == 0 || (a->bias_tok && a->bias)));
    for (int i = 0; i < a->n_bias; i++) CHECK(a->bias_tok[i] >= 0 && a->bias[i] >= -100 && a->bias[i] <= 100);
    CHECK(a->json == 0 || a->json == 1);
    CHECK(!(a->json && a->schema));
    if (a->schema) { /* a compiled schema: its documents open with '{' (the root is an object) */
        dsc_schema_state st;
        dsc_schema_start(a->schema, &st);
        CHECK(!dsc_schema_complete(&st) && dsc_schema_feed(a->schema, &st, "[", 1) == -1 &&
              dsc_schema_feed(a->schema, &st, " {", 2) == 0);
    }
    CHECK(!a->suffix || (a->suffix[0] && a->prompt && !a->echo));
    CHECK(!a->prefix || (a->kind == SRV_CHAT && a->n_msgs >= 1 && !strcmp(a->msgs[a->n_msgs - 1].role, "assistant")));
    CHECK(a->top_logprobs >= 0 && a->top_logprobs <= SRV_MAX_TOP);
    if (a->kind == SRV_CHAT) {
        CHECK(a->n_msgs >= 1);
        for (size_t i = 0; i < a->n_msgs; i++) {
            const char *r = a->msgs[i].role;
            CHECK(a->msgs[i].content && (!strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant") ||
                                         !strcmp(r, "tool")));
            CHECK(!a->msgs[i].n_tool_calls || (!strcmp(r, "assistant") && a->msgs[i].tool_calls));
            for (size_t k = 0; k < a->msgs[i].n_tool_calls; k++)
                CHECK(a->msgs[i].tool_calls[k].name && a->msgs[i].tool_calls[k].name[0] &&
                      strlen(a->msgs[i].tool_calls[k].name) <= DSC_TOOL_NAME_MAX && a->msgs[i].tool_calls[k].arguments);
        }
        CHECK(a->n_tools >= 0 && a->n_tools <= DSC_TOOL_MAX && (a->n_tools == 0 || a->tool_names));
        CHECK((a->tools_text != NULL) == (a->tool_choice != SRV_TOOLS_NONE));
        CHECK(a->tool_choice == SRV_TOOLS_NONE || a->n_tools >= 1);
        CHECK((!a->json && !a->schema) || a->tool_choice == SRV_TOOLS_NONE);
        CHECK(a->parallel_tool_calls == 0 || a->parallel_tool_calls == 1);
        int forced_found = 0;
        for (int i = 0; i < a->n_tools; i++) {
            CHECK(a->tool_names[i] && a->tool_names[i][0] && strlen(a->tool_names[i]) <= DSC_TOOL_NAME_MAX);
            forced_found |= a->tool_forced && !strcmp(a->tool_forced, a->tool_names[i]);
        }
        CHECK(!a->tool_forced || (forced_found && a->tool_choice == SRV_TOOLS_REQUIRED));
    } else {
        CHECK(!a->n_tools && !a->tools_text && a->tool_choice == SRV_TOOLS_NONE);
        CHECK((a->prompt != NULL) != (a->prompt_ids != NULL));
        for (size_t i = 0; i < a->n_prompt_ids; i++) CHECK(a->prompt_ids[i] >= 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    srv_err e = {0};
    switch (data[0] % 4) {
    case 0:
    case 1: {
        srv_ask a;
        const srv_kind kind = data[0] % 4 ? SRV_COMPLETION : SRV_CHAT;
        if (srv_parse(kind, body, len, &a, &e) == 0) {
            check_ask(&a);
            const int n = a.n_prompts;
            CHECK(kind == SRV_CHAT ? n == 0 : n >= 1 && n <= SRV_MAX_PROMPTS);
            if (n > 1) { /* every prompt was checked: the last one parses too */
                srv_ask b;
                CHECK(srv_parse_prompt(kind, body, len, n - 1, &b, &e) == 0 && b.prompt_k == n - 1 && b.n_prompts == n);
                check_ask(&b);
                srv_ask_free(&b);
            }
        } else CHECK((e.status == 400 || e.status == 500) && e.message[0]);
        srv_ask_free(&a);
        if (kind == SRV_CHAT) { /* the same body as an Anthropic Messages request */
            if (srv_parse_anthropic(body, len, data[0] & 4, &a, &e) == 0) {
                check_ask(&a);
                CHECK(a.anthropic && a.kind == SRV_CHAT && a.n == 1);
            } else CHECK((e.status == 400 || e.status == 500) && e.message[0]);
            srv_ask_free(&a);
            /* ... and as an OpenAI Responses request */
            if (srv_parse_responses(body, len, &a, &e) == 0) {
                check_ask(&a);
                CHECK(a.responses && a.kind == SRV_CHAT && a.n == 1 && a.resp_settings);
            } else CHECK((e.status == 400 || e.status == 500) && e.message[0]);
            srv_ask_free(&a);
        }
        break;
    }
    case 2: {
        char *content;
        int add;
        if (srv_parse_tokenize(body, len, &content, &add, &e) == 0) CHECK(content && (add == 0 || add == 1));
        else CHECK(e.status == 400 && e.message[0] && !content);
        free(content);
        break;
    }
    default: {
        int32_t *ids;
        size_t n;
        if (srv_parse_detokenize(body, len, &ids, &n, &e) == 0)
            for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0);
        else CHECK((e.status == 400 || e.status == 500) && !ids && n == 0);
        free(ids);
        break;
    }
    }
    if (e.status) { /* the error body is JSON */
        sbuf o = {0};
        srv_err_json(&e, &o);
        cJSON *j = cJSON_Parse(o.p);
        CHECK(j && cJSON_IsObject(cJSON_GetObjectItem(j, "error")));
        cJSON_Delete(j);
        sbuf_free(&o);
    }
    sbuf o = {0};
    sbuf_json_str(&o, body, len);
    cJSON *j = cJSON_ParseWithLength(o.p, o.n);
    CHECK(j && cJSON_IsString(j));
    cJSON_Delete(j);
    sbuf_free(&o);
    return 0;
}
