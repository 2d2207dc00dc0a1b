/*
 * pcache.c — the prompt cache block store.
 *
 * An entry is the latent cache of the first n tokens of some prompt
 * (n a multiple of SRV_BLOCK = 64), saved with dsc_seq_save. Every block end
 * b <= n is a key: a hash of all tokens up to b, so a lookup finds the
 * longest block-aligned prefix of a new prompt that any entry holds (the
 * tokens are compared, so a hash collision is never a wrong hit), and a
 * restore loads the entry (dsc_seq_load) and truncates it to that prefix.
 * The public API saves and loads a sequence's first n tokens only, so an
 * entry is a whole prefix rather than one block; an entry whose tokens are
 * a prefix of a newer one is dropped as redundant (a growing conversation
 * keeps one entry).
 *
 * States in RAM are bounded (least recently used go first). With a cache
 * directory every entry is also written to DIR/KEY.dsckv by a writer thread
 * (temporary file, then rename); a state evicted from RAM stays indexed and
 * is read back on a hit. Files are bounded too (oldest unlinked). At start
 * the directory's files are indexed after checking their header: magic,
 * model identity (the hash of config.json, the weights' sizes and sampled
 * bytes, and the cache type), token count and state size against this
 * context, file size, token ids; the checksum of tokens and state is
 * checked when the state is read. A bad file is skipped with a log line.
 *
 * File layout (native byte order):
 *   char magic[8] "DSCPC01\n"; u64 model_id; u32 n_tokens; u32 zero;
 *   u64 state_bytes; u64 fnv1a64(tokens, state); i32 tokens[n]; u8 state[]
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srv.h"

#define PC_MAGIC "DSCPC01\n"
#define PC_EXT ".dsckv"

typedef struct {
    char magic[8];
    uint64_t model_id;
    uint32_t n_tokens, zero;
    uint64_t state_bytes;
    uint64_t checksum;
} pc_header;

typedef struct pc_entry {
    uint64_t key;         /* hash of tokens[0..n)                                */
    int32_t n;
    int32_t *tokens;      /* (n)                                                 */
    void *state;          /* dsc_seq_state_size(n) bytes, NULL when only on disk */
    size_t state_bytes;
    size_t file_bytes;    /* 0 when not (to be) on disk                          */
    int on_disk;          /* the file is complete (writer, under mu)              */
    int dead;             /* removed from the store                              */
    int write_failed;     /* the writer could not write it (under mu)            */
    int refs;             /* the store + pending writer jobs (under mu)          */
    uint64_t used;
    struct pc_entry *next;
} pc_entry;

typedef struct pc_job {
    pc_entry *e;
    struct pc_job *next;
} pc_job;

typedef struct {
    uint64_t key;
    pc_entry *e;
} pc_slot;

struct srv_pcache {
    dsc_ctx *ctx;
    size_t ram_cap, disk_cap, ram, disk;
    char *dir;
    uint64_t model_id;
    int32_t n_ctx, n_vocab;
    pc_entry *list;
    long long n_entries, n_blocks;
    pc_slot *idx;         /* open addressing, key 0 = empty */
    size_t idx_cap;
    uint64_t clock;
    long long stores, restores, disk_loads, bad_files;
    srv_pcache_stats pub; /* the figures above as of the last call (under mu) */

    pthread_mutex_t mu;   /* entries' on_disk/refs/dead, the job queue, stats */
    pthread_cond_t cv;
    pthread_t writer;
    int has_writer, quit;
    pc_job *jobs, *jobs_tail;
};

/* ------------------------------------------------------------------------ */
/* Hashing                                                                   */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* keys[i] = key of the first (i + 1) * SRV_BLOCK tokens, for every whole block. */
static int32_t block_keys(const int32_t *ids, int32_t n, uint64_t *keys) {
    uint64_t h = 0xcbf29ce484222325ULL;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        h = (h ^ (uint32_t)ids[i]) * 0x100000001b3ULL;
        if ((i + 1) % SRV_BLOCK == 0) {
            uint64_t key = mix64(h ^ (uint64_t)(i + 1));
            keys[k++] = key ? key : 1;
        }
    }
    return k;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Index                                                                     */

static void idx_put(srv_pcache *pc, uint64_t key, pc_entry *e) {
    size_t i = key & (pc->idx_cap - 1);
    while (pc->idx[i].key && pc->idx[i].key != key) i = (i + 1) & (pc->idx_cap - 1);
    pc->idx[i] = (pc_slot){key, e};
}

static pc_entry *idx_get(const srv_pcache *pc, uint64_t key) {
    if (!pc->idx_cap) return NULL;
    size_t i = key & (pc->idx_cap - 1);
    while (pc->idx[i].key && pc->idx[i].key != key) i = (i + 1) & (pc->idx_cap - 1);
    return pc->idx[i].key ? pc->idx[i].e : NULL;
}

static void idx_add_entry(srv_pcache *pc, pc_entry *e) {
    uint64_t *keys = malloc(sizeof *keys * (size_t)(e->n / SRV_BLOCK + 1));
    if (!keys) return;
    int32_t k = block_keys(e->tokens, e->n, keys);
    for (int32_t i = 0; i < k; i++) idx_put(pc, keys[i], e);
    free(keys);
}

/* Rebuilds the index from the entries (after removals, or to grow it). */
static void idx_rebuild(srv_pcache *pc) {
    size_t cap = 64;
    while (cap < (size_t)pc->n_blocks * 2 + 2) cap *= 2;
    pc_slot *idx = calloc(cap, sizeof *idx);
    if (!idx) return; /* keep the old one: lookups compare tokens anyway */
    free(pc->idx);
    pc->idx = idx;
    pc->idx_cap = cap;
    for (pc_entry *e = pc->list; e; e = e->next) idx_add_entry(pc, e);
}

/* ------------------------------------------------------------------------ */
/* Entries and files                                                         */

static void entry_path(const srv_pcache *pc, const pc_entry *e, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%016llx%s", pc->dir, (unsigned long long)e->key, PC_EXT);
}

static void entry_free(pc_entry *e) {
    free(e->tokens);
    free(e->state);
    free(e);
}

/* Drops one reference (under mu). */
static void entry_unref(pc_entry *e) {
    if (--e->refs == 0) entry_free(e);
}

static void job_push(srv_pcache *pc, pc_entry *e) {
    pc_job *j = malloc(sizeof *j);
    if (!j) return;
    *j = (pc_job){e, NULL};
    e->refs++;
    if (pc->jobs_tail) pc->jobs_tail->next = j;
    else pc->jobs = j;
    pc->jobs_tail = j;
    pthread_cond_signal(&pc->cv);
}

/* Takes e out of the store: its blocks leave the index (rebuilt by the
 * caller), its file is unlinked by the writer. */
static void entry_remove(srv_pcache *pc, pc_entry *e) {
    pc_entry **pp = &pc->list;
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (!*pp) return;
    *pp = e->next;
    pc->n_entries--;
    pc->n_blocks -= e->n / SRV_BLOCK;
    if (e->state) pc->ram -= e->state_bytes;
    pc->disk -= e->file_bytes;
    pthread_mutex_lock(&pc->mu);
    e->dead = 1;
    if (e->file_bytes) job_push(pc, e); /* the writer unlinks dead entries' files */
    entry_unref(e);
    pthread_mutex_unlock(&pc->mu);
}

/* Keeps RAM and disk under their bounds, least recently used first;
 * `keep` is not evicted. */
static void enforce_bounds(srv_pcache *pc, const pc_entry *keep) {
    int removed = 0;
    while (pc->disk > pc->disk_cap) {
        pc_entry *old = NULL;
        for (pc_entry *e = pc->list; e; e = e->next)
            if (e != keep && e->file_bytes && (!old || e->used < old->used)) old = e;
        if (!old) break;
        entry_remove(pc, old);
        removed = 1;
    }
    while (pc->ram > pc->ram_cap) {
        pc_entry *old = NULL;
        pthread_mutex_lock(&pc->mu);
        for (pc_entry *e = pc->list; e; e = e->next) /* a state being written must stay */
            if (e != keep && e->state && (e->on_disk || !e->file_bytes || e->write_failed) &&
                (!old || e->used < old->used))
                old = e;
        if (old && old->on_disk) { /* the file has it: drop the RAM copy only */
            free(old->state);
            old->state = NULL;
            pc->ram -= old->state_bytes;
        }
        pthread_mutex_unlock(&pc->mu);
        if (!old) break;
        if (!old->on_disk) entry_remove(pc, old), removed = 1;
    }
    if (removed) idx_rebuild(pc);
}

static int write_entry(const srv_pcache *pc, const pc_entry *e) {
    char path[4200], tmp[4300];
    entry_path(pc, e, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    pc_header h = {.model_id = pc->model_id, .n_tokens = (uint32_t)e->n, .state_bytes = e->state_bytes};
    memcpy(h.magic, PC_MAGIC, 8);
    h.checksum = fnv1a(fnv1a(0xcbf29ce484222325ULL, e->tokens, sizeof(int32_t) * (size_t)e->n), e->state, e->state_bytes);
    FILE *fp = fopen(tmp, "wb");
    int ok = fp && fwrite(&h, sizeof h, 1, fp) == 1 &&
             fwrite(e->tokens, sizeof(int32_t), (size_t)e->n, fp) == (size_t)e->n &&
             fwrite(e->state, 1, e->state_bytes, fp) == e->state_bytes;
    if (fp && fclose(fp)) ok = 0;
    if (ok && rename(tmp, path)) ok = 0;
    if (!ok) {
        srv_log("prompt cache: %s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}

static void *writer_main(void *arg) {
    srv_pcache *pc = arg;
    pthread_mutex_lock(&pc->mu);
    for (;;) {
        while (!pc->jobs && !pc->quit) pthread_cond_wait(&pc->cv, &pc->mu);
        pc_job *j = pc->jobs;
        if (!j) break;
        pc->jobs = j->next;
        if (!pc->jobs) pc->jobs_tail = NULL;
        pc_entry *e = j->e;
        free(j);
        int dead = e->dead, on_disk = e->on_disk;
        pthread_mutex_unlock(&pc->mu);
        /* The state of a live entry not yet on disk is never freed by the
         * engine (enforce_bounds skips it), so it is read here unlocked. */
        if (dead) {
            char path[4200];
            entry_path(pc, e, path, sizeof path);
            unlink(path);
        } else if (!on_disk) {
            on_disk = write_entry(pc, e);
        }
        pthread_mutex_lock(&pc->mu);
        if (!dead && on_disk) e->on_disk = 1;
        if (!dead && !on_disk) e->write_failed = 1; /* stays in RAM only, until evicted */
        entry_unref(e);
    }
    pthread_mutex_unlock(&pc->mu);
    return NULL;
}

/* Reads an entry's state back from its file, checking everything again. */
static int read_state(srv_pcache *pc, pc_entry *e) {
    char path[4200];
    entry_path(pc, e, path, sizeof path);
    FILE *fp = fopen(path, "rb");
    pc_header h;
    void *state = malloc(e->state_bytes ? e->state_bytes : 1);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)e->n);
    const char *why = !fp ? "cannot open" : NULL;
    if (!why && (!state || !tok)) why = "out of memory";
    if (!why && (fread(&h, sizeof h, 1, fp) != 1 || fread(tok, sizeof(int32_t), (size_t)e->n, fp) != (size_t)e->n ||
                 fread(state, 1, e->state_bytes, fp) != e->state_bytes))
        why = "truncated";
    if (!why && (memcmp(h.magic, PC_MAGIC, 8) || h.model_id != pc->model_id || h.n_tokens != (uint32_t)e->n ||
                 h.state_bytes != e->state_bytes || memcmp(tok, e->tokens, sizeof(int32_t) * (size_t)e->n)))
        why = "header changed";
    if (!why && h.checksum != fnv1a(fnv1a(0xcbf29ce484222325ULL, tok, sizeof(int32_t) * (size_t)e->n), state,
                                    e->state_bytes))
        why = "checksum mismatch";
    if (fp) fclose(fp);
    free(tok);
    if (why) {
        srv_log("prompt cache: %s: ignored (%s)", path, why);
        free(state);
        pc->bad_files++;
        return -1;
    }
    e->state = state;
    pc->ram += e->state_bytes;
    pc->disk_loads++;
    return 0;
}

/* Indexes one file of the cache directory; returns 0 if it was taken. */
static int scan_file(srv_pcache *pc, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", pc->dir, name);
    FILE *fp = fopen(path, "rb");
    struct stat sb;
    pc_header h;
    pc_entry *e = NULL;
    const char *why = NULL;
    if (!fp || fstat(fileno(fp), &sb)) why = "cannot open";
    else if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, PC_MAGIC, 8)) why = "not a prompt cache file";
    else if (h.model_id != pc->model_id) why = "written for another model or cache type";
    else if (h.n_tokens == 0 || h.n_tokens % SRV_BLOCK || h.n_tokens > (uint32_t)pc->n_ctx)
        why = "token count does not fit this context";
    else if (h.state_bytes != dsc_seq_state_size(pc->ctx, (int32_t)h.n_tokens)) why = "state size mismatch";
    else if ((uint64_t)sb.st_size != sizeof h + 4ull * h.n_tokens + h.state_bytes) why = "file size mismatch";
    else if (!(e = calloc(1, sizeof *e)) || !(e->tokens = malloc(4ull * h.n_tokens))) why = "out of memory";
    else if (fread(e->tokens, 4, h.n_tokens, fp) != h.n_tokens) why = "truncated";
    for (uint32_t i = 0; !why && i < h.n_tokens; i++)
        if (e->tokens[i] < 0 || e->tokens[i] >= pc->n_vocab) why = "token id out of range";
    if (fp) fclose(fp);
    if (!why) {
        uint64_t *keys = malloc(sizeof *keys * (h.n_tokens / SRV_BLOCK + 1));
        if (!keys) why = "out of memory";
        else {
            e->key = keys[block_keys(e->tokens, (int32_t)h.n_tokens, keys) - 1];
            free(keys);
            char want[4200];
            e->n = (int32_t)h.n_tokens;
            entry_path(pc, e, want, sizeof want);
            if (strcmp(want, path)) why = "file name does not match its tokens";
        }
    }
    if (why) {
        srv_log("prompt cache: %s: ignored (%s)", path, why);
        if (e) entry_free(e);
        pc->bad_files++;
        return -1;
    }
    e->state_bytes = h.state_bytes;
    e->file_bytes = (size_t)sb.st_size;
    e->on_disk = 1;
    e->refs = 1;
    e->used = (uint64_t)sb.st_mtime; /* older files go first; the clock starts above */
    if ((uint64_t)sb.st_mtime >= pc->clock) pc->clock = (uint64_t)sb.st_mtime + 1;
    e->next = pc->list;
    pc->list = e;
    pc->n_entries++;
    pc->n_blocks += e->n / SRV_BLOCK;
    pc->disk += e->file_bytes;
    return 0;
}

static int scan_dir(srv_pcache *pc) {
    if (mkdir(pc->dir, 0755) && errno != EEXIST) {
        srv_log("prompt cache: %s: cannot create: %s", pc->dir, strerror(errno));
        return -1;
    }
    DIR *d = opendir(pc->dir);
    if (!d) {
        srv_log("prompt cache: %s: cannot open: %s", pc->dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > strlen(PC_EXT) && !strcmp(de->d_name + len - strlen(PC_EXT), PC_EXT)) scan_file(pc, de->d_name);
    }
    closedir(d);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                 */

/* Copies the figures for pcache_stats, which other threads call. */
static void publish(srv_pcache *pc) {
    pthread_mutex_lock(&pc->mu);
    pc->pub = (srv_pcache_stats){pc->n_entries, pc->n_blocks, (long long)pc->ram, (long long)pc->disk,
                                 pc->stores, pc->restores, pc->disk_loads, pc->bad_files};
    pthread_mutex_unlock(&pc->mu);
}

srv_pcache *pcache_new(dsc_ctx *ctx, size_t ram_bytes, const char *dir, size_t disk_bytes, uint64_t model_id,
                       int32_t n_vocab) {
    srv_pcache *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->ctx = ctx;
    pc->ram_cap = ram_bytes;
    pc->disk_cap = dir ? disk_bytes : 0;
    pc->model_id = model_id;
    pc->n_ctx = dsc_ctx_n_ctx(ctx);
    pc->n_vocab = n_vocab;
    pc->clock = 1;
    pthread_mutex_init(&pc->mu, NULL);
    pthread_cond_init(&pc->cv, NULL);
    if (dir && (!(pc->dir = strdup(dir)) || scan_dir(pc))) {
        pcache_free(pc);
        return NULL;
    }
    idx_rebuild(pc);
    if (dir) {
        enforce_bounds(pc, NULL);
        srv_log("prompt cache: %lld entries (%lld blocks, %.1f MiB) indexed from %s; %lld files ignored", pc->n_entries,
                pc->n_blocks, pc->disk / 1048576.0, dir, pc->bad_files);
        if (pthread_create(&pc->writer, NULL, writer_main, pc) == 0) pc->has_writer = 1;
    }
    publish(pc);
    return pc;
}

void pcache_free(srv_pcache *pc) {
    if (!pc) return;
    if (pc->has_writer) { /* finish the pending writes first: they are the persistence */
        pthread_mutex_lock(&pc->mu);
        pc->quit = 1;
        pthread_cond_signal(&pc->cv);
        pthread_mutex_unlock(&pc->mu);
        pthread_join(pc->writer, NULL);
    }
    for (pc_job *j = pc->jobs, *n; j; j = n) n = j->next, entry_unref(j->e), free(j);
    for (pc_entry *e = pc->list, *n; e; e = n) n = e->next, entry_unref(e);
    free(pc->idx);
    free(pc->dir);
    pthread_mutex_destroy(&pc->mu);
    pthread_cond_destroy(&pc->cv);
    free(pc);
}

/* The entry holding the longest block-aligned prefix of ids, and its length. */
static pc_entry *lookup(srv_pcache *pc, const int32_t *ids, int32_t n, int32_t *len) {
    *len = 0;
    if (n < SRV_BLOCK || !pc->n_entries) return NULL;
    uint64_t *keys = malloc(sizeof *keys * (size_t)(n / SRV_BLOCK + 1));
    if (!keys) return NULL;
    pc_entry *hit = NULL;
    for (int32_t k = block_keys(ids, n, keys); k > 0 && !hit; k--) {
        pc_entry *e = idx_get(pc, keys[k - 1]);
        int32_t b = k * SRV_BLOCK;
        if (e && e->n >= b && !memcmp(e->tokens, ids, sizeof(int32_t) * (size_t)b)) hit = e, *len = b;
    }
    free(keys);
    return hit;
}

int32_t pcache_peek(srv_pcache *pc, const int32_t *ids, int32_t n) {
    int32_t len;
    lookup(pc, ids, n, &len);
    return len;
}

int32_t pcache_restore(srv_pcache *pc, int32_t seq, const int32_t *ids, int32_t n) {
    int32_t len;
    pc_entry *e = lookup(pc, ids, n, &len);
    if (!e) return 0;
    if (!e->state && read_state(pc, e)) { /* the file went bad: forget the entry */
        entry_remove(pc, e);
        idx_rebuild(pc);
        publish(pc);
        return 0;
    }
    e->used = pc->clock++;
    if (dsc_seq_load(pc->ctx, seq, e->n, e->state) || dsc_seq_truncate(pc->ctx, seq, len)) {
        srv_log("prompt cache: cannot load %d tokens: %s", e->n, dsc_last_error());
        dsc_seq_truncate(pc->ctx, seq, 0);
        return 0;
    }
    pc->restores++;
    enforce_bounds(pc, e);
    publish(pc);
    return len;
}

void pcache_store(srv_pcache *pc, int32_t seq, const int32_t *ids, int32_t n) {
    size_t bytes = dsc_seq_state_size(pc->ctx, n);
    if (n <= 0 || n % SRV_BLOCK || bytes > pc->ram_cap) return;
    pc_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->tokens = malloc(sizeof(int32_t) * (size_t)n)) || !(e->state = malloc(bytes)) ||
        dsc_seq_save(pc->ctx, seq, n, e->state)) {
        if (e) entry_free(e);
        return;
    }
    memcpy(e->tokens, ids, sizeof(int32_t) * (size_t)n);
    e->n = n;
    e->state_bytes = bytes;
    e->refs = 1;
    e->used = pc->clock++;
    uint64_t *keys = malloc(sizeof *keys * (size_t)(n / SRV_BLOCK + 1));
    if (!keys) {
        entry_free(e);
        return;
    }
    e->key = keys[block_keys(ids, n, keys) - 1];
    free(keys);
    int removed = 0;
    for (pc_entry *o = pc->list, *next; o; o = next) { /* entries this one contains */
        next = o->next;
        if (o->n <= n && !memcmp(o->tokens, ids, sizeof(int32_t) * (size_t)o->n)) entry_remove(pc, o), removed = 1;
    }
    e->next = pc->list;
    pc->list = e;
    pc->n_entries++;
    pc->n_blocks += n / SRV_BLOCK;
    pc->ram += bytes;
    pc->stores++;
    if (pc->dir) {
        e->file_bytes = sizeof(pc_header) + sizeof(int32_t) * (size_t)n + bytes;
        pc->disk += e->file_bytes;
        pthread_mutex_lock(&pc->mu);
        job_push(pc, e);
        pthread_mutex_unlock(&pc->mu);
    }
    if (removed || (size_t)pc->n_blocks * 2 + 2 > pc->idx_cap) idx_rebuild(pc);
    else idx_add_entry(pc, e);
    enforce_bounds(pc, e);
    publish(pc);
}

void pcache_stats(srv_pcache *pc, srv_pcache_stats *st) {
    pthread_mutex_lock(&pc->mu);
    *st = pc->pub;
    pthread_mutex_unlock(&pc->mu);
}
