/*
 * http.c — the HTTP side on libmicrohttpd: routing, bodies, API keys,
 * responses, server-sent events, and one log line per request.
 *
 * Thread per connection (MHD_USE_THREAD_PER_CONNECTION). A generation
 * request waits for the engine: the connection's thread blocks on the
 * request's condition variable (non-streaming: in the access handler;
 * streaming: in the content reader) and, between waits of at most 50 ms,
 * polls its socket, so a client that goes away is noticed at once even
 * while nothing is being written (queued, or a long prefill) and its slot
 * is freed. MHD does not watch a suspended connection's socket, so the
 * alternative (internal select + suspend/resume) would find a disconnect
 * only on the next write. Threads are bounded by the connection limit
 * (slots + queue + a margin); each mostly sleeps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

/* Entries of conn.sent per choice. */
#define SENT_N 8

typedef struct {
    srv_server *S;
    char method[16], url[200], peer[64];
    double t0;
    sbuf body;
    int too_large, status, fd, gone;
    srv_req **reqs;    /* generation: a request per prompt (completions may send several) */
    int n_reqs;
    int anthropic;     /* an Anthropic Messages request: answered, and refused, in its shapes */
    srv_anth_stream anth;
    int responses;     /* an OpenAI Responses request: answered in its shapes */
    srv_resp_stream resp;
    /* streaming */
    sbuf out;
    size_t out_off;
    size_t *sent;      /* per choice of every request (SENT_N): reasoning bytes, content bytes, logprobs,
                          finish sent, text offset, function calls sent whole, the next one's
                          begin sent, its arguments' bytes sent */
    int started, sse_done;
} conn;

enum { POLL_MS = 50 };

/* The client closed its side or reset the connection. */
static int peer_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return 1;
    char ch;
    ssize_t k = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Waits on r->cv for at most POLL_MS (r->mu held). */
static void wait_a_little(srv_req *r) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += POLL_MS * 1000000L;
    if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &t);
}

/* The client's address as text ("" if unknown). */
static void peer_name(struct MHD_Connection *mc, char *buf, size_t n) {
    buf[0] = 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)n);
}

/* ------------------------------------------------------------------------ */
/* Request deadlines (--timeout)                                             */
/*
 * libmicrohttpd's connection timeout counts idle time only: a client that
 * trickles a byte now and then keeps its connection (and its thread) for
 * ever, and a few hundred such clients shut every other one out. So each
 * connection has a deadline for a whole request: --timeout seconds from its
 * start, cleared once the whole request (head and body) is in, set again when the answer is done (a kept-alive connection waiting for
 * its next request). A watchdog thread shuts down the socket of a
 * connection past its deadline; libmicrohttpd then reads the end of the
 * stream and closes the connection. An entry leaves the list, under the
 * lock, when libmicrohttpd reports the connection closed, which it does
 * before it closes the socket, so a shut-down descriptor is never one that
 * was reused.
 */
typedef struct watch_ent {
    struct watch_ent *prev, *next;
    int fd;
    int served;      /* answers sent on this connection */
    double deadline; /* 0: none (a request is being read to its end or answered) */
    char peer[64];
} watch_ent;

typedef struct {
    pthread_mutex_t mu;
    watch_ent *head;
    pthread_t thread;
    atomic_int stop;
} watch_list;

static void *watch_main(void *arg) {
    srv_server *S = arg;
    watch_list *W = S->watch;
    while (!atomic_load(&W->stop)) {
        nanosleep(&(struct timespec){.tv_nsec = 100000000L}, NULL);
        const double now = srv_now();
        pthread_mutex_lock(&W->mu);
        for (watch_ent *e = W->head; e; e = e->next) {
            if (e->deadline <= 0 || now < e->deadline) continue;
            e->deadline = 0;
            shutdown(e->fd, SHUT_RDWR);
            atomic_fetch_add(&S->m.timed_out, 1);
            if (!e->served || S->p.verbose)
                srv_log("%s: connection closed: no whole request within --timeout %d s", e->peer[0] ? e->peer : "-",
                        S->p.req_timeout);
        }
        pthread_mutex_unlock(&W->mu);
    }
    return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    srv_server *S = cls;
    watch_list *W = S->watch;
    if (!W) return;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        watch_ent *e = ci ? calloc(1, sizeof *e) : NULL;
        *socket_context = e;
        if (!e) return; /* untracked: only libmicrohttpd's idle timeout applies */
        e->fd = ci->connect_fd;
        e->deadline = srv_now() + S->p.req_timeout;
        peer_name(mc, e->peer, sizeof e->peer);
        pthread_mutex_lock(&W->mu);
        if ((e->next = W->head)) e->next->prev = e;
        W->head = e;
        pthread_mutex_unlock(&W->mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        watch_ent *e = *socket_context;
        pthread_mutex_lock(&W->mu);
        if (e->prev) e->prev->next = e->next;
        else W->head = e->next;
        if (e->next) e->next->prev = e->prev;
        pthread_mutex_unlock(&W->mu);
        free(e);
        *socket_context = NULL;
    }
}

/* Sets mc's deadline for a whole request (0: none); answered says that a
 * response was just sent. */
static void watch_set(srv_server *S, struct MHD_Connection *mc, int answered) {
    watch_list *W = S->watch;
    if (!W) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    watch_ent *e = ci ? ci->socket_context : NULL;
    if (!e) return;
    pthread_mutex_lock(&W->mu);
    e->served += answered;
    e->deadline = answered ? srv_now() + S->p.req_timeout : 0;
    pthread_mutex_unlock(&W->mu);
}

/* libmicrohttpd's own messages, as whole log lines. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    srv_vlog(fmt, ap);
}

static int watch_start(srv_server *S) {
    if (!S->p.req_timeout) return 0;
    watch_list *W = calloc(1, sizeof *W);
    if (!W) return -1;
    pthread_mutex_init(&W->mu, NULL);
    S->watch = W;
    if (pthread_create(&W->thread, NULL, watch_main, S)) {
        pthread_mutex_destroy(&W->mu);
        free(W);
        S->watch = NULL;
        return -1;
    }
    return 0;
}

/* After the daemon has stopped (every connection closed). */
static void watch_stop(srv_server *S) {
    watch_list *W = S->watch;
    if (!W) return;
    atomic_store(&W->stop, 1);
    pthread_join(W->thread, NULL);
    pthread_mutex_destroy(&W->mu);
    free(W);
    S->watch = NULL;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */

static enum MHD_Result respond(conn *c, struct MHD_Connection *mc, int status, const char *ctype, sbuf *body,
                               const char *retry_after) {
    size_t n;
    int oom = body->oom;
    char *p = sbuf_take(body, &n);
    if (oom) {
        free(p);
        return MHD_NO;
    }
    struct MHD_Response *r = p ? MHD_create_response_from_buffer(n, p, MHD_RESPMEM_MUST_FREE)
                               : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(p);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    c->status = status;
    return ret;
}

static enum MHD_Result respond_json(conn *c, struct MHD_Connection *mc, sbuf *body) {
    return respond(c, mc, 200, "application/json", body, NULL);
}

static enum MHD_Result respond_err(conn *c, struct MHD_Connection *mc, const srv_err *e, const char *retry_after) {
    sbuf b = {0};
    if (c->anthropic) srv_err_json_anthropic(e, &b);
    else srv_err_json(e, &b);
    return respond(c, mc, e->status, "application/json", &b, retry_after);
}

static enum MHD_Result fail(conn *c, struct MHD_Connection *mc, int status, const char *type, const char *code,
                            const char *msg) {
    srv_err e;
    srv_fail(&e, status, type, NULL, code, "%s", msg);
    return respond_err(c, mc, &e, NULL);
}

/* ------------------------------------------------------------------------ */
/* Small endpoints                                                           */

static enum MHD_Result get_health(conn *c, struct MHD_Connection *mc) {
    int busy, queued;
    srv_engine_load(c->S->eng, &busy, &queued);
    sbuf b = {0};
    sbuf_printf(&b, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_processing\":%d,\"queue\":%d}",
                c->S->p.n_parallel - busy, busy, queued);
    return respond_json(c, mc, &b);
}

static void model_object(const srv_server *S, sbuf *b) {
    sbuf_puts(b, "{\"id\":");
    sbuf_json_str(b, S->model_name, strlen(S->model_name));
    sbuf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"dsc\",\"context_length\":%d}",
                (long long)time(NULL), S->n_ctx);
}

static enum MHD_Result get_models(conn *c, struct MHD_Connection *mc) {
    sbuf b = {0};
    sbuf_puts(&b, "{\"object\":\"list\",\"data\":[");
    model_object(c->S, &b);
    sbuf_puts(&b, "]}");
    return respond_json(c, mc, &b);
}

/* GET /v1/models/{id}: the one model this server has. */
static enum MHD_Result get_model(conn *c, struct MHD_Connection *mc, const char *id) {
    if (strcmp(id, c->S->model_name)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server has '%.64s'.", id, c->S->model_name);
        return fail(c, mc, 404, "invalid_request_error", "model_not_found", msg);
    }
    sbuf b = {0};
    model_object(c->S, &b);
    return respond_json(c, mc, &b);
}

static void metric(sbuf *b, const char *name, const char *type, const char *help, long long v) {
    sbuf_printf(b, "# HELP dsc_%s %s\n# TYPE dsc_%s %s\ndsc_%s %lld\n", name, help, name, type, name, v);
}

static enum MHD_Result get_metrics(conn *c, struct MHD_Connection *mc) {
    srv_metrics *m = &c->S->m;
    static const char *const codes[SRV_N_CODES] = {"200", "400", "401", "404", "405", "413", "500", "503", "other"};
    sbuf b = {0};
    sbuf_puts(&b, "# HELP dsc_http_responses_total HTTP responses by status code.\n"
                  "# TYPE dsc_http_responses_total counter\n");
    for (int i = 0; i < SRV_N_CODES; i++)
        sbuf_printf(&b, "dsc_http_responses_total{code=\"%s\"} %lld\n", codes[i], (long long)atomic_load(&m->http[i]));
    metric(&b, "requests_total", "counter", "Generation requests admitted to a slot.", atomic_load(&m->requests));
    metric(&b, "requests_cancelled_total", "counter", "Generation requests whose client went away.",
           atomic_load(&m->cancelled));
    metric(&b, "connections_timed_out_total", "counter",
           "Connections closed for sending no whole request within --timeout seconds.", atomic_load(&m->timed_out));
    metric(&b, "prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", atomic_load(&m->prompt_tokens));
    metric(&b, "prompt_cache_hit_tokens_total", "counter", "Prompt tokens found in a cache (slot or block store).",
           atomic_load(&m->hit_tokens));
    metric(&b, "prompt_cache_block_hit_tokens_total", "counter", "Prompt tokens restored from the block store.",
           atomic_load(&m->block_hit_tokens));
    metric(&b, "prefill_tokens_total", "counter", "Prompt tokens evaluated.", atomic_load(&m->prefill_tokens));
    metric(&b, "prefill_joined_tokens_total", "counter", "Prompt tokens evaluated in the pass of a decode step.",
           atomic_load(&m->joined_tokens));
    metric(&b, "completion_tokens_total", "counter", "Tokens generated.", atomic_load(&m->completion_tokens));
    metric(&b, "reasoning_tokens_total", "counter", "Tokens generated inside <think>.", atomic_load(&m->reasoning_tokens));
    metric(&b, "decode_steps_total", "counter", "Batched decode steps (one pass over the weights each).",
           atomic_load(&m->decode_steps));
    metric(&b, "decode_batch_tokens_total", "counter", "Sequences summed over decode steps (mean batch = this / steps).",
           atomic_load(&m->decode_tokens));
    metric(&b, "mtp_drafted_tokens_total", "counter", "Tokens the MTP layer drafted and a decode step verified (--mtp).",
           atomic_load(&m->mtp_drafted));
    metric(&b, "mtp_accepted_tokens_total", "counter", "Drafted tokens that were the sampled ones (a token gained each).",
           atomic_load(&m->mtp_accepted));
    metric(&b, "mtp_withheld_tokens_total", "counter",
           "Guesses of the MTP layer below --mtp-p-min, not verified (no row in the step).",
           atomic_load(&m->mtp_withheld));
    metric(&b, "decode_batch_size", "gauge", "Sequences in the last decode step.", atomic_load(&m->last_batch));
    metric(&b, "queue_depth", "gauge", "Requests waiting for a slot.", atomic_load(&m->queue_depth));
    metric(&b, "slots_busy", "gauge", "Slots prefilling or generating.", atomic_load(&m->slots_busy));
    metric(&b, "slots_total", "gauge", "Slots (--parallel).", c->S->p.n_parallel);
    srv_pcache_stats st;
    pcache_stats(c->S->pc, &st);
    metric(&b, "prompt_cache_entries", "gauge", "Entries of the prompt cache block store.", st.entries);
    metric(&b, "prompt_cache_blocks", "gauge", "64-token blocks the block store indexes.", st.blocks);
    metric(&b, "prompt_cache_ram_bytes", "gauge", "Latent cache bytes the block store holds in RAM.", st.ram_bytes);
    metric(&b, "prompt_cache_disk_bytes", "gauge", "Bytes of the block store's files.", st.disk_bytes);
    metric(&b, "prompt_cache_stores_total", "counter", "Prompts saved to the block store.", st.stores);
    metric(&b, "prompt_cache_restores_total", "counter", "Prompts restored from the block store.", st.restores);
    metric(&b, "prompt_cache_disk_loads_total", "counter", "States read back from files.", st.disk_loads);
    metric(&b, "prompt_cache_bad_files_total", "counter", "Cache files ignored as invalid.", st.bad_files);
    metric(&b, "process_resident_bytes", "gauge", "Resident set size.", (long long)dsc_rss_bytes());
    return respond(c, mc, 200, "text/plain; version=0.0.4", &b, NULL);
}

static enum MHD_Result post_tokenize(conn *c, struct MHD_Connection *mc) {
    srv_err e;
    char *text;
    int add;
    if (srv_parse_tokenize(c->body.p, c->body.n, &text, &add, &e)) return respond_err(c, mc, &e, NULL);
    size_t len = strlen(text), n = 0, cap = len + 2;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    const int bos = add && c->S->bos >= 0;
    sbuf b = {0};
    if (!ids) srv_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    else if (dsc_tokenize(c->S->tok, text, len, 1, ids + bos, cap - 1, &n))
        srv_fail(&e, 400, "invalid_request_error", "content", "invalid_value", "%s", dsc_last_error());
    else {
        if (bos) ids[0] = c->S->bos;
        sbuf_puts(&b, "{\"tokens\":[");
        for (size_t i = 0; i < n + bos; i++) sbuf_printf(&b, "%s%d", i ? "," : "", ids[i]);
        sbuf_puts(&b, "]}");
        e.status = 200;
    }
    free(ids);
    free(text);
    return e.status == 200 ? respond_json(c, mc, &b) : respond_err(c, mc, &e, NULL);
}

/* The text of n ids (malloc'd, need bytes), or NULL with e filled. */
static char *ids_text(const srv_server *S, const int32_t *ids, size_t n, const char *param, size_t *need, srv_err *e) {
    char *text;
    *need = 0;
    dsc_detokenize(S->tok, ids, n, NULL, 0, need);
    if (!(text = malloc(*need + 1))) srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    else if (dsc_detokenize(S->tok, ids, n, text, *need + 1, need)) {
        srv_fail(e, 400, "invalid_request_error", param, "invalid_value", "%s", dsc_last_error());
        free(text);
        text = NULL;
    }
    return text;
}

/* {"key": text} when e->status is 200, else the error; frees text. */
static enum MHD_Result text_reply(conn *c, struct MHD_Connection *mc, const char *key, char *text, size_t n,
                                  srv_err *e) {
    sbuf b = {0};
    if (e->status == 200) {
        sbuf_printf(&b, "{\"%s\":", key);
        sbuf_json_str(&b, text, n);
        sbuf_puts(&b, "}");
    }
    free(text);
    return e->status == 200 ? respond_json(c, mc, &b) : respond_err(c, mc, e, NULL);
}

/* A chat request's prompt: the conversation with the tools offered (the
 * count in *n even when it does not fit in cap). */
static dsc_status chat_prompt(const srv_server *S, const srv_ask *a, int32_t *ids, size_t cap, size_t *n) {
    const int hybrid = (S->chat_flags & DSC_CHAT_HYBRID) != 0;
    const unsigned flags = srv_chat_flags(S, a) | (a->prefix ? DSC_CHAT_PREFIX : DSC_CHAT_GENERATION_PROMPT);
    return dsc_chat_tokenize_tools(S->tok, a->msgs, a->n_msgs,
                                   S->chat_flags & DSC_CHAT_DSML ? a->tools_text_v32
                                   : hybrid                      ? a->tools_text_v31
                                                                 : a->tools_text,
                                   flags, ids,
                                   cap, n);
}

/* POST /apply-template (as llama.cpp's server has it): a chat request's
 * prompt as text, {"prompt": "..."}, the markers written out. */
static enum MHD_Result post_apply_template(conn *c, struct MHD_Connection *mc) {
    srv_err e = {.status = 200};
    srv_ask a;
    size_t n = 0, need = 0;
    int32_t *ids = NULL;
    char *text = NULL;
    if (srv_parse(SRV_CHAT, c->body.p, c->body.n, &a, &e)) {
        srv_ask_free(&a);
        return respond_err(c, mc, &e, NULL);
    }
    (void)chat_prompt(c->S, &a, NULL, 0, &n); /* the count */
    if (!(ids = malloc(sizeof *ids * (n + 1)))) srv_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    else if (chat_prompt(c->S, &a, ids, n + 1, &n))
        srv_fail(&e, 400, "invalid_request_error", "messages", "invalid_value", "%s", dsc_last_error());
    else
        text = ids_text(c->S, ids, n, "messages", &need, &e);
    free(ids);
    srv_ask_free(&a);
    return text_reply(c, mc, "prompt", text, need, &e);
}

static enum MHD_Result post_detokenize(conn *c, struct MHD_Connection *mc) {
    srv_err e = {.status = 200};
    int32_t *ids;
    size_t n, need = 0;
    if (srv_parse_detokenize(c->body.p, c->body.n, &ids, &n, &e)) return respond_err(c, mc, &e, NULL);
    const int32_t V = dsc_tokenizer_n_vocab(c->S->tok);
    for (size_t i = 0; i < n && e.status == 200; i++)
        if (ids[i] >= V)
            srv_fail(&e, 400, "invalid_request_error", "tokens", "invalid_value",
                     "Invalid 'tokens': id %d at position %zu is out of range (the tokenizer has %d)", ids[i], i, V);
    char *text = e.status == 200 ? ids_text(c->S, ids, n, "tokens", &need, &e) : NULL;
    free(ids);
    return text_reply(c, mc, "content", text, need, &e);
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* prompt_param: "messages" (chat) or "prompt" (completions), the field at fault. */
static int context_error(const srv_server *S, const char *prompt_param, int32_t n_prompt, int max_tokens, srv_err *e) {
    if (max_tokens < 0)
        return srv_fail(e, 400, "invalid_request_error", prompt_param, "context_length_exceeded",
                        "This model's maximum context length is %d tokens. However, your prompt is %d tokens, "
                        "leaving no room for the completion. Please reduce the length of the prompt.",
                        S->n_ctx, n_prompt);
    return srv_fail(e, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                    "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in the "
                    "prompt, %d in the completion). Please reduce the length of the prompt or the completion.",
                    S->n_ctx, (long long)n_prompt + max_tokens, n_prompt, max_tokens);
}

/* Appends text's tokens to out[*k..cap); past cap only counts them (*k > cap then). */
static dsc_status tokens_append(const srv_server *S, const char *text, int32_t *out, size_t cap, size_t *k) {
    const size_t at = *k < cap ? *k : cap;
    size_t m = 0;
    const dsc_status st = dsc_tokenize(S->tok, text, strlen(text), 1, out + at, cap - at, &m);
    *k = at + m;
    return st && *k <= cap ? st : DSC_OK;
}

/* A fill-in-the-middle prompt (suffix), as DeepSeek's models were trained
 * on it: BOS, <｜fim▁begin｜>, the prompt, <｜fim▁hole｜>, the suffix,
 * <｜fim▁end｜>; the answer is the middle. */
static dsc_status fim_tokens(const srv_server *S, const srv_ask *a, int32_t *out, size_t cap, size_t *n) {
    size_t k = 0;
    dsc_status st;
    if (S->bos >= 0) out[k++] = S->bos;
    out[k++] = S->fim[0];
    if ((st = tokens_append(S, a->prompt, out, cap, &k))) return st;
    if (k < cap) out[k] = S->fim[1];
    k++;
    if ((st = tokens_append(S, a->suffix, out, cap, &k))) return st;
    if (k < cap) out[k] = S->fim[2];
    *n = k + 1;
    return DSC_OK;
}

/* The grammar of an answer that may call functions: the names offered (or
 * the one tool_choice names), or with tool_choice "none" none at all, so
 * that the calls' markers never come. */
static int tool_grammar(const srv_server *S, srv_req *r, srv_err *e) {
    const srv_ask *a = &r->a;
    if (!a->n_tools) return 0;
    if (S->chat_flags & DSC_CHAT_DSML) { /* V3.2: its calls read from the answer's text, no grammar */
        if (a->tool_choice == SRV_TOOLS_REQUIRED)
            return srv_fail(e, 400, "invalid_request_error", "tool_choice", "unsupported_value",
                            "'tool_choice' 'required' or a named function cannot be held with DeepSeek-V3.2's calls "
                            "(DSML text, not held by a grammar); use 'auto' or 'none'.");
        r->dsml = a->tool_choice == SRV_TOOLS_AUTO;
        return 0;
    }
    const char *const *names = (const char *const *)a->tool_names;
    int n = a->tool_choice == SRV_TOOLS_NONE ? 0 : a->n_tools;
    if (a->tool_forced) names = (const char *const *)&a->tool_forced, n = 1;
    const int format = S->chat_flags & DSC_CHAT_HYBRID ? DSC_TOOL_FORMAT_V31 : DSC_TOOL_FORMAT_V3;
    if (!dsc_tool_grammar_new_format(S->tok, names, n, a->tool_choice == SRV_TOOLS_REQUIRED, a->parallel_tool_calls,
                                     format, &r->tools)) {
        for (int i = 0; i < a->n_tools && n; i++) /* the arguments of those with parameters it compiled */
            if (a->tool_schema[i] && (!a->tool_forced || !strcmp(a->tool_forced, a->tool_names[i])))
                (void)dsc_tool_grammar_set_schema(r->tools, a->tool_names[i], a->tool_schema[i]);
        return 0;
    }
    if (!n) return 0; /* no markers in this tokenizer: none can come */
    return srv_fail(e, 400, "invalid_request_error", "tools", "invalid_value",
                    "'tools' needs a model whose tokenizer has DeepSeek's tool-call tokens: %s", dsc_last_error());
}

/* Tokenizes the prompt, checks it against the context, makes the samplers. */
static int prepare(srv_server *S, srv_req *r, srv_err *e) {
    srv_ask *a = &r->a;
    if (a->n > S->p.n_parallel)
        return srv_fail(e, 400, "invalid_request_error", "n", "invalid_value",
                        "Invalid 'n': at most %d choices per request (the server's --parallel).", S->p.n_parallel);
    for (int i = 0; i < a->n_bias; i++)
        if (a->bias_tok[i] >= S->info.vocab_size)
            return srv_fail(e, 400, "invalid_request_error", "logit_bias", "invalid_value",
                            "Invalid 'logit_bias': token id %d is out of range (vocab_size = %d).", a->bias_tok[i],
                            S->info.vocab_size);
    size_t cap = (size_t)S->n_ctx + 1, n = 0;
    if (a->prompt_ids) cap = a->n_prompt_ids + 1;
    if (!(r->prompt = malloc(sizeof(int32_t) * cap))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    dsc_status st = DSC_OK;
    if (a->kind == SRV_CHAT) {
        if (tool_grammar(S, r, e)) return -1;
        st = chat_prompt(S, a, r->prompt, cap, &n);
    } else if (a->suffix) {
        if (S->fim[0] < 0 || S->fim[1] < 0 || S->fim[2] < 0)
            return srv_fail(e, 400, "invalid_request_error", "suffix", "invalid_value",
                            "'suffix' needs a model whose tokenizer has the fill-in-the-middle tokens "
                            "<｜fim▁begin｜>, <｜fim▁hole｜> and <｜fim▁end｜>; this one lacks them.");
        st = fim_tokens(S, a, r->prompt, cap, &n);
    } else if (a->prompt_ids) {
        for (size_t i = 0; i < a->n_prompt_ids; i++)
            if ((r->prompt[n++] = a->prompt_ids[i]) >= S->info.vocab_size)
                return srv_fail(e, 400, "invalid_request_error", "prompt", "invalid_value",
                                "Invalid 'prompt': token id %d is out of range (vocab_size = %d).", a->prompt_ids[i],
                                S->info.vocab_size);
    } else {
        const int bos = S->bos >= 0;
        if (bos) r->prompt[0] = S->bos;
        st = dsc_tokenize(S->tok, a->prompt, strlen(a->prompt), 1, r->prompt + bos, cap - (size_t)bos, &n);
        n += (size_t)bos;
    }
    if (st && n <= cap) return srv_fail(e, 400, "invalid_request_error", a->kind == SRV_CHAT ? "messages" : "prompt",
                                        "invalid_value", "%s", dsc_last_error());
    if (n == 0) return srv_fail(e, 400, "invalid_request_error", "prompt", "invalid_value", "The prompt is empty.");
    if (n >= (size_t)S->n_ctx) return context_error(S, a->kind == SRV_CHAT ? "messages" : "prompt", n > INT32_MAX ? INT32_MAX : (int32_t)n, -1, e);
    r->n_prompt = (int32_t)n;
    for (size_t i = 0; i < n; i++) /* a tokenizer larger than the model */
        if (r->prompt[i] >= S->info.vocab_size)
            return srv_fail(e, 400, "invalid_request_error", "messages", "invalid_value",
                            "token id %d of the prompt is beyond the model's vocabulary (%d)", r->prompt[i],
                            S->info.vocab_size);
    if (a->max_tokens >= 0 && (long long)r->n_prompt + a->max_tokens > S->n_ctx)
        return context_error(S, a->kind == SRV_CHAT ? "messages" : "prompt", r->n_prompt, a->max_tokens, e);
    if (a->echo) { /* the prompt as the client sent it: its text, its tokens but a BOS added here */
        r->echo_from = a->prompt_ids ? 0 : S->bos >= 0;
        size_t need = 0;
        if (a->prompt) {
            r->echo_text = strdup(a->prompt), r->n_echo_text = strlen(a->prompt);
        } else {
            (void)dsc_detokenize(S->tok, r->prompt, (size_t)r->n_prompt, NULL, 0, &need); /* the length */
            if ((r->echo_text = malloc(need + 1)) &&
                dsc_detokenize(S->tok, r->prompt, (size_t)r->n_prompt, r->echo_text, need + 1, &need))
                return srv_fail(e, 400, "invalid_request_error", "prompt", "invalid_value", "echo: %s", dsc_last_error());
            r->n_echo_text = need;
        }
        if (!r->echo_text || (a->logprobs && !(r->plp = calloc((size_t)r->n_prompt, sizeof *r->plp))))
            return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    r->max_tokens = a->max_tokens >= 0 ? a->max_tokens : S->n_ctx - r->n_prompt;
    if (a->kind == SRV_COMPLETION && a->max_tokens < 0 && r->max_tokens > 16) r->max_tokens = 16;
    r->reasoning = a->kind == SRV_CHAT && (srv_chat_flags(S, a) & DSC_CHAT_REASONING);
    r->budget = a->reasoning_budget >= 0 ? a->reasoning_budget : S->p.reasoning_budget;
    uint64_t seed = a->has_seed ? a->seed : mix((uint64_t)time(NULL) ^ atomic_fetch_add(&S->next_id, 1) << 20);
    if (!(r->ch = calloc((size_t)a->n, sizeof *r->ch))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (int i = 0; i < a->n; i++) {
        dsc_sampler_params sp = {.temp = a->temperature, .top_p = a->top_p, .top_k = a->top_k, .min_p = a->min_p,
                                 .repeat_penalty = 1, .seed = seed + (uint64_t)i};
        if (dsc_sampler_new(&sp, S->info.vocab_size, &r->ch[i].smp))
            return srv_fail(e, 500, "server_error", NULL, NULL, "%s", dsc_last_error());
        /* the prompt ends with "<think>\n" (not after a prefix of the answer, nor after tool results;
         * V3.1's thinking prefix follows "<think>" too) */
        r->ch[i].split.in_think = r->reasoning && strcmp(a->msgs[a->n_msgs - 1].role, "tool") &&
                                  (!a->prefix || (S->chat_flags & DSC_CHAT_HYBRID));
        dsc_json_start(&r->ch[i].json);
        if (a->schema) dsc_schema_start(a->schema, &r->ch[i].schema);
        if (r->tools) dsc_tool_start(r->tools, &r->ch[i].tool);
    }
    snprintf(r->id, sizeof r->id, "%s%016llx", a->kind == SRV_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)mix(atomic_fetch_add(&S->next_id, 1) ^ (uint64_t)time(NULL) << 32));
    r->created = (long long)time(NULL);
    return 0;
}

/* Appends what the engine delivered to request k since the last call
 * (its mu held); its choices are numbered after the earlier requests'. */
static void sse_collect(conn *c, int k) {
    srv_req *r = c->reqs[k], *h = c->reqs[0];
    const int base = k * h->a.n;
    for (int i = 0; i < r->a.n; i++) {
        const srv_choice *ch = &r->ch[i];
        size_t *sent = c->sent + SENT_N * (size_t)(base + i);
        size_t nr = ch->reason.n - sent[0], nc = ch->content.n - sent[1], nl = ch->n_lp - sent[2];
        const srv_lp *lp = ch->lp ? ch->lp + sent[2] : NULL;
        const char *rp = ch->reason.p ? ch->reason.p + sent[0] : "", *cp = ch->content.p ? ch->content.p + sent[1] : "";
        if (r->a.kind == SRV_COMPLETION) {
            if (nc || nl) out_completion_chunk(c->S, h, base + i, cp, nc, lp, nl, &sent[4], NULL, &c->out);
        } else {
            if (nr) out_chat_chunk(c->S, r, i, NULL, rp, nr, NULL, 0, nc ? NULL : lp, nc ? 0 : nl, NULL, &c->out);
            if (nc || (nl && !nr)) out_chat_chunk(c->S, r, i, NULL, NULL, 0, cp, nc, lp, nl, NULL, &c->out);
            for (;;) { /* the calls: each begun (id, name), then its arguments as they come */
                const int k = (int)sent[5];
                const char *args;
                size_t na;
                int whole;
                const srv_call *call = srv_choice_call(ch, k, &args, &na, &whole);
                if (!call) break;
                if (!sent[6] || na > sent[7])
                    out_call_delta(c->S, r, i, k, sent[6] ? NULL : call, args + sent[7], na - sent[7], &c->out);
                sent[6] = 1, sent[7] = na;
                if (!whole) break;
                sent[5]++, sent[6] = sent[7] = 0;
            }
        }
        sent[0] += nr, sent[1] += nc, sent[2] += nl;
        if (ch->finish && !sent[3]) {
            sent[3] = 1;
            if (r->a.kind == SRV_COMPLETION)
                out_completion_chunk(c->S, h, base + i, "", 0, NULL, 0, &sent[4], ch->finish, &c->out);
            else out_chat_chunk(c->S, r, i, NULL, NULL, 0, NULL, 0, NULL, 0, ch->finish, &c->out);
        }
    }
}

/* After every request is done: an error, or the usage, then [DONE]. */
static void sse_end(conn *c) {
    if (c->anthropic || c->responses) {
        if (c->anthropic) anth_stream_end(c->reqs[0], &c->anth, &c->out);
        else resp_stream_end(c->reqs[0], &c->resp, &c->out);
        c->sse_done = 1;
        return;
    }
    const char *error = NULL;
    for (int k = 0; k < c->n_reqs && !error; k++) error = c->reqs[k]->error;
    if (error) {
        srv_err e;
        srv_fail(&e, 500, "server_error", NULL, NULL, "%s", error);
        sbuf_puts(&c->out, "data: ");
        srv_err_json(&e, &c->out);
        sbuf_puts(&c->out, "\n\n");
    } else if (c->reqs[0]->a.include_usage) {
        out_usage_chunk(c->S, c->reqs, c->n_reqs, &c->out);
    }
    sbuf_puts(&c->out, "data: [DONE]\n\n");
    c->sse_done = 1;
}

/* Whether request k has something not yet sent (its mu held). */
static int sse_progress(const conn *c, int k) {
    const srv_req *r = c->reqs[k];
    for (int i = 0; i < r->a.n; i++) {
        const size_t *sent = c->sent + SENT_N * (size_t)(k * c->reqs[0]->a.n + i);
        const srv_choice *ch = &r->ch[i];
        if (ch->reason.n > sent[0] || ch->content.n > sent[1] || ch->n_lp > sent[2] || (ch->finish && !sent[3]) ||
            (size_t)ch->n_calls > sent[5] ||
            (ch->live_open && (size_t)ch->n_calls == sent[5] && (!sent[6] || ch->live_args.n > sent[7])))
            return 1;
    }
    return 0;
}

/* One pass over the requests: what each delivered appended; 1 when every
 * one is done (and all of it sent). */
static int sse_poll(conn *c, int *any) {
    int done = 1;
    *any = 0;
    for (int k = 0; k < c->n_reqs; k++) {
        srv_req *r = c->reqs[k];
        pthread_mutex_lock(&r->mu);
        const size_t before = c->out.n;
        if (c->anthropic) anth_stream_collect(r, &c->anth, &c->out);
        else if (c->responses) resp_stream_collect(c->S, r, &c->resp, &c->out);
        else if (sse_progress(c, k)) sse_collect(c, k);
        *any |= c->out.n > before;
        done &= r->done;
        pthread_mutex_unlock(&r->mu);
    }
    return done;
}

/* Fills c->out with the next events; returns -1 when the client is gone. */
static int sse_fill(conn *c) {
    srv_req *h = c->reqs[0];
    if (!c->started) { /* the role first, before any token, as OpenAI does */
        c->started = 1;
        if (c->anthropic) anth_stream_start(c->S, h, &c->anth, &c->out);
        else if (c->responses) resp_stream_start(c->S, h, &c->resp, &c->out);
        else if (h->a.kind == SRV_CHAT)
            for (int i = 0; i < h->a.n; i++)
                out_chat_chunk(c->S, h, i, "assistant", NULL, 0, "", 0, NULL, 0, NULL, &c->out);
        if (c->out.n) return 0;
    }
    if (peer_gone(c->fd)) return -1;
    for (;;) {
        int any;
        if (sse_poll(c, &any)) {
            sse_end(c);
            return 0;
        }
        if (any) return 0;
        if (atomic_load(&c->S->stopping)) return -1;
        srv_req *w = h; /* wait on a request still going (the others are looked at again after POLL_MS) */
        for (int k = 0; k < c->n_reqs; k++)
            if (!c->reqs[k]->done) {
                w = c->reqs[k];
                break;
            }
        pthread_mutex_lock(&w->mu);
        if (!w->done) wait_a_little(w);
        pthread_mutex_unlock(&w->mu);
        if (peer_gone(c->fd)) return -1;
    }
}

static void cancel_all(conn *c) {
    for (int k = 0; k < c->n_reqs; k++) srv_engine_cancel(c->S->eng, c->reqs[k]);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    conn *c = cls;
    (void)pos;
    while (c->out_off >= c->out.n) {
        if (c->sse_done) return MHD_CONTENT_READER_END_OF_STREAM;
        c->out.n = c->out_off = 0;
        if (sse_fill(c) || c->out.oom) {
            c->gone = 1;
            cancel_all(c);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t k = c->out.n - c->out_off < max ? c->out.n - c->out_off : max;
    memcpy(buf, c->out.p + c->out_off, k);
    c->out_off += k;
    return (ssize_t)k;
}

static enum MHD_Result start_stream(conn *c, struct MHD_Connection *mc) {
    if (!(c->sent = calloc(SENT_N * (size_t)c->n_reqs * (size_t)c->reqs[0]->a.n, sizeof *c->sent))) return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, c, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    c->status = 200;
    return ret;
}

static enum MHD_Result wait_and_respond(conn *c, struct MHD_Connection *mc) {
    for (int k = 0; k < c->n_reqs; k++) {
        srv_req *r = c->reqs[k];
        pthread_mutex_lock(&r->mu);
        while (!r->done) {
            wait_a_little(r);
            if (!r->done && (peer_gone(c->fd) || atomic_load(&c->S->stopping))) {
                pthread_mutex_unlock(&r->mu);
                c->gone = 1;
                cancel_all(c);
                return MHD_NO;
            }
        }
        pthread_mutex_unlock(&r->mu); /* done: the engine no longer writes */
        if (r->error) return fail(c, mc, 500, "server_error", NULL, r->error);
    }
    sbuf b = {0};
    if (c->anthropic) out_anthropic_final(c->S, c->reqs[0], &b);
    else if (c->responses) out_responses_final(c->S, c->reqs[0], &b);
    else out_final(c->S, c->reqs, c->n_reqs, &b);
    return respond_json(c, mc, &b);
}

/* A request per prompt of the body (a completion's may hold several), each
 * parsed and checked before any is submitted; they are then generated as
 * any requests are, together where the slots allow, and answered as one. */
static enum MHD_Result post_generate(conn *c, struct MHD_Connection *mc, srv_kind kind) {
    srv_server *S = c->S;
    srv_err e;
    srv_req *r0 = srv_req_new();
    if (!r0 || !(c->reqs = calloc(1, sizeof *c->reqs))) {
        srv_req_unref(r0);
        return fail(c, mc, 500, "server_error", NULL, "out of memory");
    }
    c->reqs[0] = r0, c->n_reqs = 1;
    if ((c->anthropic   ? srv_parse_anthropic(c->body.p, c->body.n, 0, &r0->a, &e)
         : c->responses ? srv_parse_responses(c->body.p, c->body.n, &r0->a, &e)
                        : srv_parse(kind, c->body.p, c->body.n, &r0->a, &e)) ||
        prepare(S, r0, &e))
        return respond_err(c, mc, &e, NULL);
    const int n = kind == SRV_COMPLETION ? r0->a.n_prompts : 1;
    if (n > 1) {
        srv_req **g = realloc(c->reqs, sizeof *g * (size_t)n);
        if (!g) return fail(c, mc, 500, "server_error", NULL, "out of memory");
        c->reqs = g;
        for (int k = 1; k < n; k++) {
            if (!(c->reqs[k] = srv_req_new())) return fail(c, mc, 500, "server_error", NULL, "out of memory");
            c->n_reqs++;
            if (srv_parse_prompt(kind, c->body.p, c->body.n, k, &c->reqs[k]->a, &e) || prepare(S, c->reqs[k], &e))
                return respond_err(c, mc, &e, NULL);
        }
    }
    for (int k = 0; k < n; k++) {
        const int rc = srv_engine_submit(S->eng, c->reqs[k]);
        if (!rc) continue;
        for (int j = 0; j < k; j++) srv_engine_cancel(S->eng, c->reqs[j]);
        if (rc == -1)
            srv_fail(&e, 503, "server_error", NULL, "server_overloaded",
                     "The server is overloaded: %d requests are waiting for a slot. Please retry later.", S->p.max_queue);
        else srv_fail(&e, 503, "server_error", NULL, "shutting_down", "The server is shutting down.");
        return respond_err(c, mc, &e, "1");
    }
    return r0->a.stream ? start_stream(c, mc) : wait_and_respond(c, mc);
}

/* POST /v1/responses: an OpenAI Responses request (c->responses). */
static enum MHD_Result post_responses(conn *c, struct MHD_Connection *mc) { return post_generate(c, mc, SRV_CHAT); }

/* POST /v1/messages: an Anthropic Messages request (c->anthropic). */
static enum MHD_Result post_messages(conn *c, struct MHD_Connection *mc) { return post_generate(c, mc, SRV_CHAT); }

/* POST /v1/messages/count_tokens: {"input_tokens": the prompt's tokens}. */
static enum MHD_Result post_count_tokens(conn *c, struct MHD_Connection *mc) {
    srv_err e = {.status = 200};
    srv_ask a;
    size_t n = 0;
    if (srv_parse_anthropic(c->body.p, c->body.n, 1, &a, &e)) {
        srv_ask_free(&a);
        return respond_err(c, mc, &e, NULL);
    }
    if (chat_prompt(c->S, &a, NULL, 0, &n) && n == 0)
        srv_fail(&e, 400, "invalid_request_error", "messages", "invalid_value", "%s", dsc_last_error());
    srv_ask_free(&a);
    if (e.status != 200) return respond_err(c, mc, &e, NULL);
    sbuf b = {0};
    sbuf_printf(&b, "{\"input_tokens\":%zu}", n);
    return respond_json(c, mc, &b);
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                   */

static int authorized(const srv_server *S, struct MHD_Connection *mc) {
    const char *key = S->p.api_key;
    if (!key) return 1;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        h += 7;
        while (*h == ' ') h++;
    } else if (!(h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "x-api-key"))) { /* Anthropic's clients */
        return 0;
    }
    size_t a = strlen(h), b = strlen(key);
    unsigned diff = a != b;
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < a ? h[i] : 0);
    return diff == 0;
}

static enum MHD_Result unauthorized(conn *c, struct MHD_Connection *mc) {
    const int none = !MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return fail(c, mc, 401, "invalid_request_error", "invalid_api_key",
                none ? "No API key provided. Pass it as 'Authorization: Bearer KEY'."
                     : "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.");
}

static enum MHD_Result route(conn *c, struct MHD_Connection *mc) {
    const char *u = c->url;
    const int get = !strcmp(c->method, "GET") || !strcmp(c->method, "HEAD"), post = !strcmp(c->method, "POST");
    if (!strncmp(u, "/anthropic/", 11)) u += 10; /* as the DeepSeek API serves the Messages API */
    if (!strncmp(u, "/v1/", 4)) u += 3; /* /v1/models == /models */
    c->anthropic = !strcmp(u, "/messages") || !strcmp(u, "/messages/count_tokens");
    c->responses = !strcmp(u, "/responses");
    struct {
        const char *path;
        int post;
        enum MHD_Result (*fn)(conn *, struct MHD_Connection *);
        int open; /* no API key needed */
    } const routes[] = {
        {"/health", 0, get_health, 1}, {"/metrics", 0, get_metrics, 1}, {"/models", 0, get_models, 0},
        {"/chat/completions", 1, NULL, 0}, {"/completions", 1, NULL, 0}, {"/tokenize", 1, post_tokenize, 0},
        {"/detokenize", 1, post_detokenize, 0}, {"/apply-template", 1, post_apply_template, 0},
        {"/messages", 1, post_messages, 0}, {"/messages/count_tokens", 1, post_count_tokens, 0},
        {"/responses", 1, post_responses, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(u, routes[i].path)) continue;
        if (!routes[i].open && !authorized(c->S, mc)) return unauthorized(c, mc);
        if (routes[i].post ? !post : !get)
            return fail(c, mc, 405, "invalid_request_error", "method_not_allowed",
                        routes[i].post ? "Use POST for this endpoint." : "Use GET for this endpoint.");
        if (c->too_large) {
            char msg[128];
            snprintf(msg, sizeof msg, "The request body is larger than the limit of %zu bytes.", c->S->p.max_body);
            return fail(c, mc, 413, "invalid_request_error", "request_too_large", msg);
        }
        if (routes[i].fn) return routes[i].fn(c, mc);
        return post_generate(c, mc, i == 3 ? SRV_CHAT : SRV_COMPLETION);
    }
    if (!strncmp(u, "/models/", 8) && get) {
        if (!authorized(c->S, mc)) return unauthorized(c, mc);
        return get_model(c, mc, u + 8);
    }
    return fail(c, mc, 404, "invalid_request_error", "unknown_url", "Unknown endpoint.");
}

typedef struct {
    int n_length, lengths_differ;
    const char *length;
} header_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    header_scan *h = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) return MHD_YES;
    if (h->n_length++ && strcmp(h->length, value ? value : "")) h->lengths_differ = 1;
    if (!h->length) h->length = value ? value : "";
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_server *S = cls;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return MHD_NO;
        *con_cls = c;
        c->S = S;
        c->t0 = srv_now();
        c->fd = -1;
        snprintf(c->method, sizeof c->method, "%s", method);
        snprintf(c->url, sizeof c->url, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) c->fd = ci->connect_fd;
        peer_name(mc, c->peer, sizeof c->peer);
        /* RFC 9112: a 400 for HTTP/1.1 without a Host, and for Content-Lengths
         * that disagree (a proxy in front could frame the body otherwise). */
        if (!strcmp(version, MHD_HTTP_VERSION_1_1) && !MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Host"))
            return fail(c, mc, 400, "invalid_request_error", "missing_host", "An HTTP/1.1 request needs a Host header.");
        header_scan hs = {0};
        MHD_get_connection_values(mc, MHD_HEADER_KIND, scan_header, &hs);
        if (hs.n_length > 1 && hs.lengths_differ)
            return fail(c, mc, 400, "invalid_request_error", "conflicting_content_length",
                        "The request has Content-Length headers that disagree.");
        const char *te = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (te && strcasecmp(te, "chunked")) { /* a body of unknown length in a coding not read here: answer now */
            char msg[200];
            snprintf(msg, sizeof msg, "Transfer-Encoding '%.64s' is not supported: send the body as is or chunked.",
                     te);
            return fail(c, mc, 501, "invalid_request_error", "unsupported_transfer_encoding", msg);
        }
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            unsigned long long len = strtoull(cl, NULL, 10);
            if (len > S->p.max_body) c->too_large = 1;
            if (len / 4 > S->p.max_body) { /* far too large to read and drop: answer now, then close */
                char msg[128];
                snprintf(msg, sizeof msg, "The request body is larger than the limit of %zu bytes.", S->p.max_body);
                return fail(c, mc, 413, "invalid_request_error", "request_too_large", msg);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->too_large && c->body.n + *upload_size <= S->p.max_body) sbuf_put(&c->body, upload, *upload_size);
        else c->too_large = 1, sbuf_free(&c->body);
        if (c->body.oom) c->too_large = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->status) return MHD_YES; /* answered early */
    watch_set(S, mc, 0);           /* the whole request is in: no deadline until it is answered */
    return route(c, mc);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv_server *S = cls;
    conn *c = *con_cls;
    watch_set(S, mc, 1);
    if (!c) return;
    *con_cls = NULL;
    const int ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !c->gone;
    char extra[160] = "";
    long long prompt = 0, hit = 0, gen = 0;
    double first = 0;
    for (int k = 0; k < c->n_reqs; k++) {
        srv_req *r = c->reqs[k];
        if (!r->ch) continue; /* not prepared */
        if (!ok) srv_engine_cancel(S->eng, r);
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i < r->a.n; i++) gen += r->ch[i].n_gen;
        prompt += r->n_prompt, hit += r->n_hit;
        if (r->t_first > 0 && (first == 0 || r->t_first < first)) first = r->t_first;
        pthread_mutex_unlock(&r->mu);
    }
    if (c->n_reqs && c->reqs[0]->ch) {
        const srv_req *r = c->reqs[0];
        char prompts[24] = "";
        if (c->n_reqs > 1) snprintf(prompts, sizeof prompts, " prompts=%d", c->n_reqs);
        snprintf(extra, sizeof extra, " prompt=%lld hit=%lld gen=%lld n=%d%s%s ttft=%.3fs", prompt, hit, gen, r->a.n,
                 prompts, r->a.stream ? " stream" : "", first > 0 ? first - c->t0 : 0.0);
    }
    atomic_fetch_add(&S->m.http[srv_code_index(c->status)], 1);
    srv_log("%s \"%s %s\" %d %.3fs%s%s", c->peer[0] ? c->peer : "-", c->method, c->url, c->status, srv_now() - c->t0,
            extra, ok ? "" : " (client gone)");
    for (int k = 0; k < c->n_reqs; k++) srv_req_unref(c->reqs[k]);
    free(c->reqs);
    sbuf_free(&c->body);
    sbuf_free(&c->out);
    free(c->sent);
    free(c);
}

/* ------------------------------------------------------------------------ */
/* Daemon                                                                    */

int http_start(srv_server *S) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", S->p.port);
    int gai = getaddrinfo(S->p.host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "dsc: --host %s: %s\n", S->p.host, gai_strerror(gai));
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES) flags |= MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned limit = (unsigned)(S->p.n_parallel + S->p.max_queue + 64);
    if (watch_start(S)) {
        freeaddrinfo(ai);
        fprintf(stderr, "dsc: serve: cannot start the --timeout watchdog thread\n");
        return -1;
    }
    S->daemon = MHD_start_daemon(
        flags, (uint16_t)S->p.port, NULL, NULL, on_request, S, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, S, MHD_OPTION_NOTIFY_CONNECTION, on_connection, S,
        MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!S->daemon) {
        const int err = errno;
        watch_stop(S);
        fprintf(stderr, "dsc: cannot listen on %s:%d: %s\n", S->p.host, S->p.port,
                err ? strerror(err) : "libmicrohttpd failed to start");
        return -1;
    }
    return 0;
}

int http_port(const srv_server *S) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(S->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : S->p.port;
}

void http_stop(srv_server *S) {
    if (S->daemon) MHD_stop_daemon(S->daemon);
    S->daemon = NULL;
    watch_stop(S);
}
