/*
 * server.c — `dsc serve` start to finish: load the tokenizer, the model and
 * one context with a sequence per slot, open the prompt cache, start the
 * engine and the HTTP daemon, then wait for SIGINT/SIGTERM and take it all
 * down in reverse (pending cache writes are finished first).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

srv_params srv_default_params(void) {
    return (srv_params){.host = "127.0.0.1", .port = 8080, .n_parallel = 4, .n_chunk = 256, .n_batch = 512, .kv_type = DSC_KV_BF16,
                        .think = -1, .cache_mb = 1024, .cache_disk_mb = 8192, .max_queue = 256,
                        .max_body = 8u << 20, .req_timeout = 60, .reasoning_budget = -1};
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Adds a file's size and 16 sampled 4 KiB pieces (header and weights) to h. */
static uint64_t hash_file_sample(uint64_t h, const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        if (fd >= 0) close(fd);
        return fnv(h, path, strlen(path));
    }
    h = fnv(h, &sb.st_size, sizeof sb.st_size);
    char buf[4096];
    for (int i = 0; i < 16; i++) {
        off_t at = (off_t)((sb.st_size / 16) * i);
        ssize_t k = pread(fd, buf, sizeof buf, at);
        if (k > 0) h = fnv(h, buf, (size_t)k);
    }
    close(fd);
    return h;
}

static int is_weights(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 12 && !strcmp(d->d_name + n - 12, ".safetensors");
}

/* The identity a cached state is only valid for: config.json, the weight
 * files (names, sizes, sampled bytes), the model's figures and the cache type. */
static uint64_t model_identity(const srv_params *p, const dsc_model_info *info) {
    uint64_t h = 0xcbf29ce484222325ULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", p->model_dir);
    h = hash_file_sample(h, path);
    struct dirent **names = NULL;
    int n = scandir(p->model_dir, &names, is_weights, alphasort);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", p->model_dir, names[i]->d_name);
        h = fnv(h, names[i]->d_name, strlen(names[i]->d_name));
        h = hash_file_sample(h, path);
        free(names[i]);
    }
    free(names);
    int64_t figures[] = {info->vocab_size, info->hidden_size, info->n_layers, info->kv_lora_rank,
                         info->qk_rope_head_dim, info->n_params, info->weight_bytes, (int64_t)p->kv_type};
    return fnv(h, figures, sizeof figures);
}

static int load(srv_server *S) {
    const srv_params *p = &S->p;
    char path[4200];
    if (p->tokenizer) snprintf(path, sizeof path, "%s", p->tokenizer);
    else snprintf(path, sizeof path, "%s/tokenizer.json", p->model_dir);
    if (dsc_tokenizer_load(path, &S->tok)) return fprintf(stderr, "dsc: %s\n", dsc_last_error()), -1;
    S->chat_flags = 0;
    char *slash = strrchr(path, '/');
    size_t at = slash ? (size_t)(slash + 1 - path) : 0;
    snprintf(path + at, sizeof path - at, "tokenizer_config.json");
    if (dsc_chat_detect(path, &S->chat_flags)) /* absent: the plain V3 template */
        return fprintf(stderr, "dsc: %s\n", dsc_last_error()), -1;
    if (p->think >= 0) /* --think / --no-think: R1's template or V3's; V3.1's thinking on or off by default */
        S->chat_flags = (S->chat_flags & DSC_CHAT_HYBRID) | (p->think ? DSC_CHAT_REASONING : 0);
    dsc_model_params mp = dsc_model_default_params();
    mp.verbose = p->verbose;
    mp.mlock = p->mlock;
    if (dsc_model_load(p->model_dir, &mp, &S->model)) return fprintf(stderr, "dsc: %s\n", dsc_last_error()), -1;
    dsc_model_get_info(S->model, &S->info);
    S->chat_flags = dsc_chat_model_flags(S->chat_flags, &S->info); /* V3.2: its encoding */
    S->eos = dsc_tokenizer_find(S->tok, "<｜end▁of▁sentence｜>");
    if (S->eos < 0) S->eos = S->info.eos_token_id;
    S->bos = dsc_tokenizer_find(S->tok, "<｜begin▁of▁sentence｜>");
    if (S->bos < 0) S->bos = S->info.bos_token_id;
    static const char *const fim[3] = {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"};
    for (int i = 0; i < 3; i++) S->fim[i] = dsc_tokenizer_find(S->tok, fim[i]);
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = p->n_ctx;
    cp.n_batch = p->n_batch > p->n_chunk ? p->n_batch : p->n_chunk;
    cp.n_threads = p->n_threads;
    cp.isa = p->isa;
    cp.kv_type = p->kv_type;
    cp.n_seq = p->n_parallel;
    cp.mtp = p->mtp;
    cp.mtp_p_min = p->mtp_p_min;
    cp.batch_invariant = p->batch_invariant;
    cp.n_mixed = p->n_parallel * (p->mtp ? 2 : 1) + (p->n_chunk < SRV_MIX_PROMPT ? p->n_chunk : SRV_MIX_PROMPT);
    if (dsc_ctx_new(S->model, &cp, &S->ctx)) return fprintf(stderr, "dsc: %s\n", dsc_last_error()), -1;
    S->n_ctx = dsc_ctx_n_ctx(S->ctx);
    const char *base = p->model_dir + strlen(p->model_dir);
    while (base > p->model_dir && base[-1] == '/') base--;
    const char *end = base;
    while (base > p->model_dir && base[-1] != '/') base--;
    snprintf(S->model_name, sizeof S->model_name, "%.*s", (int)(end - base), base);
    if (!S->model_name[0]) snprintf(S->model_name, sizeof S->model_name, "dsc");
    uint64_t id = model_identity(p, &S->info);
    snprintf(S->fingerprint, sizeof S->fingerprint, "fp_%012llx", (unsigned long long)(id >> 16));
    S->pc = pcache_new(S->ctx, (size_t)p->cache_mb << 20, p->cache_dir, (size_t)p->cache_disk_mb << 20, id,
                       S->info.vocab_size);
    if (!S->pc) return fprintf(stderr, "dsc: cannot open the prompt cache%s%s\n", p->cache_dir ? " in " : "",
                               p->cache_dir ? p->cache_dir : ""), -1;
    if (dsc_json_mask_new(S->tok, S->info.vocab_size, S->eos, &S->jmask))
        return fprintf(stderr, "dsc: %s\n", dsc_last_error()), -1;
    srv_engine_params ep = {.ctx = S->ctx, .tok = S->tok, .pc = S->pc, .m = &S->m, .eos = S->eos,
                            .n_vocab = S->info.vocab_size, .n_chunk = p->n_chunk, .n_prefill = cp.n_batch, .n_mix = cp.n_mixed,
                            .max_queue = p->max_queue, .mtp = p->mtp,
                            .mtp_max_batch = p->mtp_max_batch, .jmask = S->jmask};
    size_t n_end = 0; /* what a reasoning budget writes when spent */
    if (!dsc_tokenize(S->tok, "</think>", 8, 1, ep.think_end, 8, &n_end)) ep.n_think_end = (int)n_end;
    if (srv_engine_start(&ep, &S->eng)) return fprintf(stderr, "dsc: cannot start the engine (out of memory)\n"), -1;
    return 0;
}

static void teardown(srv_server *S) {
    atomic_store(&S->stopping, 1);
    http_stop(S);           /* connection threads see `stopping` within 50 ms */
    srv_engine_stop(S->eng);
    pcache_free(S->pc);     /* waits for pending writes */
    dsc_ctx_free(S->ctx);
    dsc_model_free(S->model);
    dsc_json_mask_free(S->jmask);
    dsc_tokenizer_free(S->tok);
}

int srv_run(const srv_params *params) {
    srv_server *S = calloc(1, sizeof *S);
    if (!S) return fprintf(stderr, "dsc: out of memory\n"), 1;
    S->p = *params;
    srv_params *p = &S->p;
    if (!p->host) p->host = "127.0.0.1";
    if (!p->model_dir) return free(S), fprintf(stderr, "dsc: no model given (-m DIR)\n"), 1;
    if (p->n_parallel < 1 || p->n_parallel > 4096 || p->max_queue < 1 || p->n_chunk < 1 || p->cache_mb < 0 ||
        p->cache_disk_mb < 0 || p->port < 0 || p->port > 65535 || p->req_timeout < 0 || p->mtp_max_batch < 0)
        return free(S),
               fprintf(stderr, "dsc: serve: --parallel, --queue, --port, --timeout, --mtp-max-batch or a cache size is "
                               "out of range\n"),
               1;
    /* Every thread started from here on inherits this mask; only sigwait below takes the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    S->t_start = srv_now();
    int rc = load(S) || http_start(S);
    if (!rc) {
        char mtp[160] = "", upto[48] = "", pmin[48] = "";
        if (p->mtp_max_batch > 0) snprintf(upto, sizeof upto, " while at most %d slots generate", p->mtp_max_batch);
        if (p->mtp_p_min > 0) snprintf(pmin, sizeof pmin, " where at least %g likely", (double)p->mtp_p_min);
        if (p->mtp)
            snprintf(mtp, sizeof mtp, ", MTP drafts%s%s (%.1f MiB of inputs)", upto, pmin,
                     dsc_ctx_mtp_bytes(S->ctx) / 1048576.0);
        srv_log("listening on http://%s%s%s:%d (model %s, %d slots x %d tokens, %s latent cache %.1f MiB, %d threads, "
                "%s kernels%s%s%s%s%s)",
                strchr(p->host, ':') ? "[" : "", p->host, strchr(p->host, ':') ? "]" : "", http_port(S), S->model_name,
                p->n_parallel, S->n_ctx, dsc_kv_type_name(p->kv_type), dsc_ctx_kv_bytes(S->ctx) / 1048576.0,
                dsc_ctx_n_threads(S->ctx), dsc_ctx_isa(S->ctx),
                S->chat_flags & DSC_CHAT_HYBRID
                    ? (S->chat_flags & DSC_CHAT_DSML
                           ? (S->chat_flags & DSC_CHAT_REASONING ? ", V3.2 encoding (thinking unless asked not to)"
                                                                 : ", V3.2 encoding (thinking when asked)")
                       : S->chat_flags & DSC_CHAT_REASONING ? ", V3.1 template (thinking unless asked not to)"
                                                            : ", V3.1 template (thinking when asked)")
                    : S->chat_flags & DSC_CHAT_REASONING ? ", reasoning template" : "",
                p->api_key ? ", API key required" : "",
                p->cache_dir ? ", persistent prompt cache" : "", p->batch_invariant ? ", batch-invariant" : "", mtp);
        int sig = 0;
        while (sigwait(&set, &sig) == 0 && sig != SIGINT && sig != SIGTERM) continue;
        srv_log("shutting down (%s)", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    teardown(S);
    free(S);
    return rc ? 1 : 0;
}
