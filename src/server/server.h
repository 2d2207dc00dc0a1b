/*
 * server.h — `dsc serve`: an OpenAI/DeepSeek-compatible HTTP server over
 * include/dsc.h alone (libmicrohttpd for HTTP, cJSON for request bodies).
 *
 * One dsc_ctx with one sequence per slot; a single engine thread admits
 * queued requests into free slots, prefills prompts in chunks, and decodes
 * every generating slot in one dsc_decode_batch per step. See engine.c.
 */
#ifndef DSC_SERVER_H
#define DSC_SERVER_H

#include <stddef.h>

#include "dsc.h"

typedef struct {
    const char *model_dir;  /* checkpoint directory (required)                        */
    const char *tokenizer;  /* tokenizer.json (NULL: MODEL_DIR/tokenizer.json)         */
    const char *host;       /* listen address (NULL: 127.0.0.1)                        */
    int port;               /* 0: any free port (the chosen one is printed)            */
    int n_parallel;         /* slots: sequences decoded together                       */
    int n_ctx;              /* tokens per slot (0: min(4096, max_position_embeddings)) */
    int n_threads;          /* 0: all CPUs                                              */
    int n_chunk;            /* prompt tokens a slot prefills per engine step            */
    int n_batch;            /* ... on an idle engine (>= n_chunk; the context's n_batch) */
    const char *isa;        /* kernel set (NULL: best)                                  */
    dsc_kv_type kv_type;
    int think;              /* -1: from tokenizer_config.json; 0 off; 1 R1 reasoning     */
    int reasoning_budget;   /* a request's reasoning tokens at most, unless it says (-1: no bound) */
    const char *api_key;    /* NULL: no authentication                                  */
    const char *cache_dir;  /* NULL: the prompt cache lives in RAM only                  */
    int cache_mb;           /* RAM bound of the prompt cache block store (MiB)           */
    int cache_disk_mb;      /* bound of the files in cache_dir (MiB)                     */
    int max_queue;          /* requests waiting for a slot; one more gets 503             */
    size_t max_body;        /* request body limit in bytes; larger gets 413               */
    int req_timeout;        /* seconds to send a whole request, from the connection or the
                               previous answer on it; then it is closed (0: no limit)    */
    int verbose;
    int mlock;              /* lock the weights in memory (dsc_model_params.mlock)       */
    int mtp;                /* speculative decoding: the checkpoint's MTP layer drafts    */
    int mtp_max_batch;      /* draft only while at most this many slots generate (0: any) */
    float mtp_p_min;        /* draft only where the module's guess is this likely (0: any) */
    int batch_invariant;    /* answers that do not depend on the load (dsc_ctx_params)   */
} srv_params;

srv_params srv_default_params(void);

/* Loads the model, listens, and serves until SIGINT or SIGTERM. Returns the
 * process exit status; a failure to start is one "dsc: ..." line on stderr. */
int srv_run(const srv_params *p);

#endif
