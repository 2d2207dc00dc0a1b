/*
 * cmd_text.c — the text-facing commands: tokenize, detokenize, run, chat.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/core/fileio.h"
#include "../src/core/status.h"
#include "cli.h"

#define die cli_die

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int cli_tokenizer_open(const cli_opts *o, dsc_tokenizer **tok, char *path, size_t cap) {
    if (o->tokenizer) snprintf(path, cap, "%s", o->tokenizer);
    else snprintf(path, cap, "%s/tokenizer.json", o->model);
    if (dsc_tokenizer_load(path, tok)) return cli_die_status();
    return 0;
}

/* Whole file into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len) {
    FILE *fp = cli_fopen_read(NULL, path);
    if (!fp) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, fp);
        if (n < cap) break;
        char *nb = realloc(b, (cap *= 2) + 1);
        if (!nb) free(b);
        b = nb;
    }
    const int err = ferror(fp);
    fclose(fp);
    if (!b) {
        die("%s: out of memory", path);
        return NULL;
    }
    if (err) {
        free(b);
        die("%s: read error", path);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

/* Encodes text into a new array; an error names where (the file, the
 * file and line, or NULL: the -p text). */
static int encode(const dsc_tokenizer *tok, const char *text, size_t len, int special, int32_t **ids, size_t *n,
                  const char *where) {
    size_t cap = len + 16;
    *ids = malloc(sizeof(int32_t) * cap);
    if (!*ids) return die("out of memory");
    if (dsc_tokenize(tok, text, len, special, *ids, cap, n)) {
        free(*ids);
        *ids = NULL;
        return where ? die("%s: %s", where, dsc_last_error()) : cli_die_status();
    }
    return 0;
}

static int tokenize_jsonl(const dsc_tokenizer *tok, const char *path, int special) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) return 1;
    int rc = 0, line_no = 0;
    for (char *line = buf, *end = buf + len, *next; line < end && !rc; line = next) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        const size_t ll = (size_t)((nl ? nl : end) - line);
        next = nl ? nl + 1 : end;
        line[ll] = 0; /* the newline, or the NUL read_file put after the data */
        line_no++;
        if (memchr(line, 0, ll)) {
            rc = die("%s:%d: a NUL byte in the line", path, line_no);
            break;
        }
        if (strspn(line, " \t\r") == strlen(line)) continue;
        if (fio_json_has_nul(line, strlen(line))) {
            rc = die("%s:%d: the text holds \\u0000 (NUL), which would cut it short", path, line_no);
            break;
        }
        cJSON *j = fio_parse_json(line, strlen(line));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        if (!cJSON_IsString(t))
            rc = die("%s:%d: %s", path, line_no, j ? "not a JSON object with a string \"text\"" : fio_json_error());
        int32_t *ids = NULL;
        size_t n = 0;
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line_no);
        if (!rc) rc = encode(tok, t->valuestring, strlen(t->valuestring), special, &ids, &n, where);
        if (!rc) {
            fputs("{\"ids\": [", stdout);
            for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
            fputs("]}\n", stdout);
        }
        free(ids);
        cJSON_Delete(j);
    }
    free(buf);
    return rc;
}

int cmd_tokenize(const cli_opts *o) {
    char path[4096];
    dsc_tokenizer *tok;
    if (cli_tokenizer_open(o, &tok, path, sizeof path)) return 1;
    int rc = 0;
    if (!!o->jsonl + !!o->prompt + !!o->file > 1) rc = die("tokenize: give the text one way: -p TEXT, -f FILE or --jsonl FILE");
    else if (o->jsonl) rc = tokenize_jsonl(tok, o->jsonl, o->special);
    else if (!o->prompt && !o->file) rc = die("tokenize: give the text with -p TEXT, -f FILE or --jsonl FILE");
    else {
        size_t len = 0;
        char *text = o->file ? read_file(o->file, &len) : NULL;
        if (!o->file) len = strlen(o->prompt);
        int32_t *ids = NULL;
        size_t n = 0;
        if (o->file && !text) rc = 1;
        else rc = encode(tok, text ? text : o->prompt, len, o->special, &ids, &n, o->file);
        for (size_t i = 0; i < n && !rc; i++) printf("%s%d", i ? " " : "", ids[i]);
        if (!rc) printf("\n");
        free(ids);
        free(text);
    }
    dsc_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(const cli_opts *o) {
    if (!o->ids) return die("detokenize: give the ids with --ids \"IDS\"");
    char path[4096];
    dsc_tokenizer *tok;
    if (cli_tokenizer_open(o, &tok, path, sizeof path)) return 1;
    size_t cap = strlen(o->ids) + 1, n = 0;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    int rc = ids ? 0 : die("out of memory");
    for (const char *p = o->ids; !rc;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < -2147483647L || v > 2147483647L) rc = die("--ids: '%.20s' is not a token id", p);
        else ids[n++] = (int32_t)v, p = end;
    }
    size_t need = 0;
    char *text = NULL;
    if (!rc && dsc_detokenize(tok, ids, n, NULL, 0, &need) && need == 0) rc = cli_die_status();
    if (!rc && !(text = malloc(need + 1))) rc = die("out of memory");
    if (!rc && dsc_detokenize(tok, ids, n, text, need + 1, &need)) rc = cli_die_status();
    if (!rc) { /* the text may hold NUL bytes (id of byte 0) */
        fwrite(text, 1, need, stdout);
        putchar('\n');
    }
    free(text);
    free(ids);
    dsc_tokenizer_free(tok);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Conversation                                                              */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct {
    const cli_opts *o;
    cli_session s;
    dsc_tokenizer *tok;
    dsc_sampler *smp;
    dsc_json_mask *mask;      /* --json-object / --json-schema */
    dsc_json_schema *schema;
    float *row;
    unsigned flags;
    int32_t eos;
    int32_t *cached;          /* the ids now in the context, in order */
    size_t n_cached;
    int32_t *prompt;          /* (n_ctx) scratch for the rendered conversation */
    int tty, announced;
} convo;

static int convo_open(const cli_opts *o, convo *c) {
    memset(c, 0, sizeof *c);
    c->o = o;
    if (o->n_gen < 1) return die("-n %d: a turn generates at least one token", o->n_gen);
    char path[4096];
    if (cli_tokenizer_open(o, &c->tok, path, sizeof path)) return 1;
    if (cli_session_open(o, 0, NULL, 0, &c->s)) return 1;
    if (dsc_tokenizer_n_vocab(c->tok) > c->s.info.vocab_size)
        return die("%s: %d token ids do not fit the vocab_size %d of the model %s", path, dsc_tokenizer_n_vocab(c->tok),
                   c->s.info.vocab_size, o->model);
    c->flags = DSC_CHAT_GENERATION_PROMPT;
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "tokenizer_config.json");
    if (dsc_chat_detect(path, &c->flags)) return cli_die_status(); /* absent: the plain V3 template */
    c->flags = dsc_chat_model_flags(c->flags, &c->s.info);        /* V3.2: its encoding */
    if (o->think >= 0) /* R1's template or V3's; V3.1's (DSC_CHAT_HYBRID) thinking on or off */
        c->flags = (c->flags & ~(unsigned)DSC_CHAT_REASONING) | (o->think ? DSC_CHAT_REASONING : 0);
    c->eos = dsc_tokenizer_find(c->tok, "<｜end▁of▁sentence｜>");
    if (c->eos < 0) c->eos = c->s.info.eos_token_id;
    int32_t n_ctx = dsc_ctx_n_ctx(c->s.ctx);
    c->cached = malloc(sizeof(int32_t) * (size_t)n_ctx);
    c->prompt = malloc(sizeof(int32_t) * (size_t)n_ctx);
    if (!c->cached || !c->prompt) return die("out of memory");
    if (dsc_sampler_new(&o->sp, c->s.info.vocab_size, &c->smp)) return cli_die_status();
    if (o->json_object || o->json_schema) {
        if (o->mtp) return die("--json-object / --json-schema go with plain decoding, not --mtp");
        if (o->raw) return die("--json-object / --json-schema hold a chat answer, not --raw text");
        if (o->json_schema) {
            char *text;
            size_t len;
            if (fio_read_file(o->json_schema, (size_t)16 << 20, &text, &len)) return cli_die_status();
            const dsc_status st = dsc_json_schema_new(text, len, &c->schema);
            free(text);
            if (st) return die("--json-schema %s: %s", o->json_schema, dsc_last_error());
        }
        if (dsc_json_mask_new(c->tok, c->s.info.vocab_size, c->eos, &c->mask)) return cli_die_status();
        if (!(c->row = malloc(sizeof(float) * (size_t)c->s.info.vocab_size))) return die("out of memory");
    }
    c->tty = isatty(STDOUT_FILENO);
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: Ctrl-C interrupts reads */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    return 0;
}

static void convo_close(convo *c) {
    dsc_sampler_free(c->smp);
    dsc_json_mask_free(c->mask);
    dsc_json_schema_free(c->schema);
    free(c->row);
    free(c->cached);
    free(c->prompt);
    cli_session_close(&c->s);
    dsc_tokenizer_free(c->tok);
}

/* Streams text to stdout: reasoning dimmed on a terminal (or hidden), answer
 * plain; the answer is also appended to `answer` for the history. */
typedef struct {
    dsc_think_split split;
    dsc_utf8_stream utf8;
    int shown_reason;
    char *answer;
    size_t n_answer, cap_answer;
} streamer;

static void stream_text(convo *c, streamer *st, const char *text, size_t n, int flush) {
    char reason[512], ans[512];
    size_t nr, na;
    for (size_t off = 0; off < n || flush; off += 256) {
        size_t k = n - off < 256 ? n - off : 256;
        if (off >= n) {
            dsc_think_flush(&st->split, reason, &nr, ans, &na);
            flush = 0;
        } else {
            dsc_think_feed(&st->split, text + off, k, reason, &nr, ans, &na);
        }
        if (nr && !c->o->hide_think) {
            if (c->tty) fputs("\x1b[2m", stdout);
            fwrite(reason, 1, nr, stdout);
            if (c->tty) fputs("\x1b[0m", stdout);
            st->shown_reason = 1;
        }
        if (na) {
            if (st->n_answer + na + 1 > st->cap_answer) {
                size_t cap = (st->cap_answer + na + 1) * 2;
                char *p = realloc(st->answer, cap);
                if (!p) continue;
                st->answer = p;
                st->cap_answer = cap;
            }
            memcpy(st->answer + st->n_answer, ans, na);
            st->n_answer += na;
            st->answer[st->n_answer] = 0;
            fwrite(ans, 1, na, stdout);
        }
        fflush(stdout);
        if (off >= n) break;
    }
}

void cli_gen_start(cli_gen *g, dsc_ctx *ctx, dsc_sampler *smp, int mtp) {
    *g = (cli_gen){.ctx = ctx, .smp = smp, .mtp = mtp, .held = -1, .budget = -1};
}

int cli_gen_next(cli_gen *g, int remaining, int32_t *tok) {
    int32_t t;
    if (g->held >= 0) { /* already sampled, from the draft's row */
        t = g->held;
        g->held = -1;
    } else if (g->started && dsc_ctx_pos(g->ctx) >= dsc_ctx_n_ctx(g->ctx)) {
        return CLI_GEN_FULL;
    } else if (g->started && g->mtp) {
        int32_t out[2], n_out = 0;
        if (dsc_spec_step(g->ctx, 0, g->smp, g->last, remaining, out, &n_out)) return CLI_GEN_ERROR;
        t = out[0];
        if (n_out == 2) g->held = out[1];
    } else {
        if (g->started && dsc_eval(g->ctx, &g->last, 1, NULL)) return CLI_GEN_ERROR;
        const int thinking = g->split && g->split->in_think;
        if (thinking && g->budget >= 0 && g->force_at < g->n_think_end && (g->force_at > 0 || g->n_think >= g->budget)) {
            t = g->think_end[g->force_at++]; /* the reasoning's budget spent: "</think>", then the answer */
            dsc_sampler_accept(g->smp, t);
            g->started = 1, g->n_think++;
            g->last = *tok = t;
            return CLI_GEN_OK;
        }
        g->n_think += thinking;
        const float *row = dsc_ctx_logits(g->ctx);
        cli_json *j = g->json && g->json->mask && !(g->json->split && g->json->split->in_think) ? g->json : NULL;
        if (j) { /* the tokens that cannot continue the object (or the schema's document) masked */
            memcpy(j->row, row, sizeof(float) * (size_t)j->n_vocab);
            if (j->schema) dsc_schema_mask_apply(j->schema, j->mask, &j->st, j->row);
            else dsc_json_mask_apply(j->mask, &j->json, j->row);
            row = j->row;
        }
        if ((t = dsc_sampler_sample(g->smp, row)) < 0) return CLI_GEN_ERROR;
        if (j && (j->schema ? dsc_schema_mask_accept(j->schema, j->mask, &j->st, t)
                            : dsc_json_mask_accept(j->mask, &j->json, t))) {
            dsc_fail(DSC_ERR_ARG, "a token outside the JSON mask was sampled");
            return CLI_GEN_ERROR;
        }
        dsc_sampler_accept(g->smp, t);
    }
    g->started = 1;
    g->last = *tok = t;
    return CLI_GEN_OK;
}

const char *cli_gen_stats(const cli_gen *g, char *buf, size_t cap) {
    int64_t drafted = 0, taken = 0;
    dsc_spec_stats(g->ctx, &drafted, &taken);
    const int64_t withheld = dsc_spec_withheld(g->ctx);
    char held[64] = "";
    if (withheld) snprintf(held, sizeof held, "; %lld withheld (below --mtp-p-min)", (long long)withheld);
    if (!g->mtp) snprintf(buf, cap, "%s", "");
    else snprintf(buf, cap, "; MTP drafts: %lld of %lld taken (%.1f%%)%s", (long long)taken, (long long)drafted,
                  drafted ? 100.0 * (double)taken / (double)drafted : 0.0, held);
    return buf;
}

/* One assistant turn for the conversation msgs[0..n). Returns the answer
 * (malloc'd, without the reasoning) or NULL on error. */
static char *convo_turn(convo *c, const dsc_chat_message *msgs, size_t n) {
    const int32_t n_ctx = dsc_ctx_n_ctx(c->s.ctx);
    size_t np = 0;
    dsc_status st;
    if (c->o->raw) { /* a base model: BOS + the text, continued as it is */
        const char *text = msgs[n - 1].content;
        c->prompt[0] = c->s.info.bos_token_id >= 0 ? c->s.info.bos_token_id : 0;
        st = dsc_tokenize(c->tok, text, strlen(text), 0, c->prompt + 1, (size_t)n_ctx - 1, &np);
        np++;
    } else {
        st = dsc_chat_tokenize(c->tok, msgs, n, c->flags, c->prompt, (size_t)n_ctx, &np);
    }
    if (st && np <= (size_t)n_ctx) {
        die("the conversation: %s", dsc_last_error());
        return NULL;
    }
    if (np >= (size_t)n_ctx) {
        die("the conversation (%zu tokens) does not fit the context of %d (use -c, or /reset)", np, n_ctx);
        return NULL;
    }
    if (c->o->verbose_prompt) {
        fprintf(stderr, "prompt ids:");
        for (size_t i = 0; i < np; i++) fprintf(stderr, " %d", c->prompt[i]);
        fprintf(stderr, "\n");
    }
    if (!c->announced) cli_session_announce(c->o, &c->s), c->announced = 1;
    /* Reuse the cached prefix; evaluate the rest. */
    size_t keep = 0;
    while (keep < c->n_cached && keep < np - 1 && c->cached[keep] == c->prompt[keep]) keep++;
    dsc_ctx_truncate(c->s.ctx, (int32_t)keep);
    double t0 = now_s();
    if (dsc_eval(c->s.ctx, c->prompt + keep, (int32_t)(np - keep), NULL)) {
        cli_die_status();
        c->n_cached = 0;
        dsc_ctx_truncate(c->s.ctx, 0);
        return NULL;
    }
    memcpy(c->cached, c->prompt, sizeof(int32_t) * np);
    c->n_cached = np;
    double t1 = now_s();

    streamer sm = {.split.in_think = !c->o->raw && (c->flags & DSC_CHAT_REASONING) != 0};
    dsc_sampler_reset(c->smp);
    for (size_t i = 0; i < np; i++) dsc_sampler_accept(c->smp, c->prompt[i]);
    int n_gen = 0;
    const char *why = "";
    interrupted = 0;
    cli_gen g;
    cli_gen_start(&g, c->s.ctx, c->smp, c->o->mtp);
    g.split = &sm.split;
    g.budget = c->o->reasoning_budget;
    size_t n_end = 0;
    if (g.budget >= 0 && !dsc_tokenize(c->tok, "</think>", 8, 1, g.think_end, 8, &n_end)) g.n_think_end = (int)n_end;
    cli_json json = {.mask = c->mask, .schema = c->schema, .split = &sm.split, .row = c->row,
                     .n_vocab = c->s.info.vocab_size};
    dsc_json_start(&json.json);
    if (c->schema) dsc_schema_start(c->schema, &json.st);
    g.json = &json;
    for (;;) {
        int32_t next;
        const int r = cli_gen_next(&g, c->o->n_gen - n_gen, &next);
        /* The context holds the prompt and a prefix of the tokens returned. */
        c->n_cached = (size_t)dsc_ctx_pos(c->s.ctx);
        if (r == CLI_GEN_FULL) { why = " [context full]"; break; }
        if (r) { /* the model's output is not finite */
            printf("\n");
            fflush(stdout);
            cli_die_status();
            free(sm.answer);
            c->n_cached = 0;
            dsc_ctx_truncate(c->s.ctx, 0);
            return NULL;
        }
        if (np + (size_t)n_gen < (size_t)n_ctx) c->cached[np + (size_t)n_gen] = next;
        n_gen++;
        if (next == c->eos) break;
        char piece[256];
        size_t pn = 0;
        if (next < dsc_tokenizer_n_vocab(c->tok) && !dsc_utf8_stream_push(&sm.utf8, c->tok, next, piece, sizeof piece, &pn))
            stream_text(c, &sm, piece, pn, 0);
        if (interrupted) { why = " [interrupted]"; break; }
        if (n_gen >= c->o->n_gen) { why = " [length limit]"; break; }
        if (dsc_ctx_pos(c->s.ctx) >= n_ctx && g.held < 0) { why = " [context full]"; break; }
    }
    stream_text(c, &sm, "", 0, 1);
    double t2 = now_s();
    printf("%s\n", why);
    fflush(stdout);
    char stats[96];
    fprintf(stderr, "dsc: prompt %zu tokens (%zu new) at %.1f tok/s, generation %d tokens at %.1f tok/s%s\n", np,
            np - keep, (np - keep) / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9), n_gen, n_gen / (t2 - t1 > 1e-9 ? t2 - t1 : 1e-9),
            cli_gen_stats(&g, stats, sizeof stats));
    if (!sm.answer) sm.answer = calloc(1, 1);
    return sm.answer;
}

int cmd_run(const cli_opts *o) {
    if (!o->prompt) return die("run: give the question with -p TEXT");
    if ((o->samples > 1 || o->vote) && (o->json_object || o->json_schema))
        return die("run: --samples / --vote and --json-object / --json-schema do not go together");
    if (o->samples > 1 || o->vote) return cmd_run_vote(o);
    convo c;
    int rc = convo_open(o, &c);
    if (!rc) {
        dsc_chat_message msgs[2];
        size_t n = 0;
        if (o->system) msgs[n++] = (dsc_chat_message){.role = "system", .content = o->system};
        msgs[n++] = (dsc_chat_message){.role = "user", .content = o->prompt};
        if (o->raw) fputs(o->prompt, stdout); /* the continuation follows the prompt */
        char *answer = convo_turn(&c, msgs, n);
        rc = answer == NULL;
        free(answer);
    }
    convo_close(&c);
    return rc;
}

/* Reads one line from stdin into a new string; NULL at end of input. */
/* How read_line ended. */
enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED, LINE_NUL, LINE_LONG, LINE_ERROR };

/* One line of stdin without its newline (NULL unless LINE_OK or
 * LINE_INTERRUPTED). A line holding a NUL byte is read to its end and
 * dropped (LINE_NUL); one longer than max bytes ends the reading
 * (LINE_LONG), so that endless input without newlines cannot fill memory. */
static char *read_line(size_t max, int *how) {
    size_t cap = 256, n = 0;
    int nul = 0;
    char *b = malloc(cap);
    *how = LINE_OK;
    while (b) {
        errno = 0;
        int ch = getchar();
        if (ch == EOF) {
            if (ferror(stdin) && errno == EINTR && interrupted) {
                clearerr(stdin);
                *how = LINE_INTERRUPTED;
                b[n] = 0;
                return b;
            }
            if (ferror(stdin)) {
                die("stdin: %s", errno ? strerror(errno) : "read error");
                *how = LINE_ERROR;
            } else if (n == 0) *how = LINE_EOF;
            break;
        }
        if (ch == '\n') break;
        if (ch == 0) nul = 1;
        if (n >= max) {
            *how = LINE_LONG;
            break;
        }
        if (n + 2 > cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
            if (!b) break;
        }
        b[n++] = (char)ch;
    }
    if (!b) {
        die("out of memory for a line of stdin");
        *how = LINE_ERROR;
        return NULL;
    }
    if (*how == LINE_OK && nul) *how = LINE_NUL;
    if (*how != LINE_OK) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    return b;
}

int cmd_chat(const cli_opts *o) {
    convo c;
    int rc = convo_open(o, &c);
    size_t n = 0, cap = 16;
    dsc_chat_message *msgs = rc ? NULL : malloc(sizeof *msgs * cap);
    if (!rc && !msgs) rc = die("out of memory");
    if (!rc && o->system) msgs[n++] = (dsc_chat_message){.role = "system", .content = strdup(o->system)};
    size_t n_sys = n;
    if (!rc && isatty(STDIN_FILENO))
        fprintf(stderr, "dsc chat: type a message; /reset forgets the conversation, /exit quits, Ctrl-C stops an "
                        "answer%s\n", c.flags & DSC_CHAT_HYBRID ? "; /think and /nothink switch thinking" : "");
    /* A message is tokens of at least a byte each: one of more bytes than
     * 64 per position of the context could never fit. */
    const size_t max_line = rc ? 0 : (size_t)64 * (size_t)dsc_ctx_n_ctx(c.s.ctx) + 4096;
    int failed = 0; /* turns that failed: with stdin not a terminal, the exit status is 1 */
    while (!rc) {
        if (isatty(STDIN_FILENO)) fputs("> ", stdout), fflush(stdout);
        interrupted = 0;
        int how;
        char *line = read_line(max_line, &how);
        if (how == LINE_EOF) break;
        if (how == LINE_ERROR) {
            rc = 1;
            break;
        }
        if (how == LINE_LONG) {
            rc = die("stdin: a message of more than %zu bytes, more than the context of %d could hold", max_line,
                     dsc_ctx_n_ctx(c.s.ctx));
            break;
        }
        if (how == LINE_NUL) {
            die("stdin: the message holds a NUL byte; it is dropped");
            failed++;
            continue;
        }
        if (how == LINE_INTERRUPTED) {
            free(line);
            fputs("\n(use /exit to quit)\n", stdout);
            continue;
        }
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        if (len == 0) { free(line); continue; }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
        if (!strcmp(line, "/think") || !strcmp(line, "/nothink")) { /* V3.1's template: thinking on or off */
            const int on = !strcmp(line, "/think");
            free(line);
            if (!(c.flags & DSC_CHAT_HYBRID)) {
                fprintf(stdout, "(thinking is switched only with DeepSeek-V3.1's template; this model's is %s)\n",
                        c.flags & DSC_CHAT_REASONING ? "R1's: it always thinks" : "V3's: it never thinks");
                continue;
            }
            c.flags = (c.flags & ~(unsigned)DSC_CHAT_REASONING) | (on ? DSC_CHAT_REASONING : 0);
            fprintf(stdout, "(thinking %s)\n", on ? "on" : "off");
            continue;
        }
        if (!strcmp(line, "/reset")) {
            free(line);
            for (size_t i = n_sys; i < n; i++) free((char *)msgs[i].content);
            n = n_sys;
            fputs("(conversation reset)\n", stdout);
            continue;
        }
        if (n + 2 > cap) {
            dsc_chat_message *nm = realloc(msgs, sizeof *msgs * (cap *= 2));
            if (!nm) { free(line); rc = die("out of memory"); break; }
            msgs = nm;
        }
        msgs[n++] = (dsc_chat_message){.role = "user", .content = line};
        char *answer = convo_turn(&c, msgs, n);
        if (!answer) { /* the turn failed (e.g. too long): drop it, keep chatting */
            free((char *)msgs[--n].content);
            failed++;
            continue;
        }
        msgs[n++] = (dsc_chat_message){.role = "assistant", .content = answer};
    }
    for (size_t i = 0; i < n; i++) free((char *)msgs[i].content);
    free(msgs);
    convo_close(&c);
    return rc ? rc : failed && !isatty(STDIN_FILENO);
}
