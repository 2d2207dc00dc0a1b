/*
 * cmd_serve.c — `dsc serve`: the command line of the OpenAI/DeepSeek
 * compatible server in src/server/ (built when libmicrohttpd is found).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#ifdef DSC_HAVE_SERVER
#include "server.h"

int cmd_serve(const cli_opts *o) {
    srv_params p = srv_default_params();
    p.model_dir = o->model;
    p.tokenizer = o->tokenizer;
    if (o->host) p.host = o->host;
    p.port = o->port;
    if (o->parallel) p.n_parallel = o->parallel;
    p.n_ctx = o->n_ctx;
    p.n_threads = o->n_threads;
    if (o->n_batch > 0) p.n_batch = o->n_batch;
    if (p.n_batch < p.n_chunk) p.n_chunk = p.n_batch;
    p.isa = o->isa;
    p.kv_type = (dsc_kv_type)o->kv_type;
    p.think = o->think;
    p.api_key = o->api_key ? o->api_key : getenv("DSC_API_KEY");
    if (p.api_key && !p.api_key[0]) p.api_key = NULL;
    p.cache_dir = o->cache_dir;
    if (o->cache_mb) p.cache_mb = o->cache_mb;
    if (o->cache_disk_mb) p.cache_disk_mb = o->cache_disk_mb;
    if (o->queue) p.max_queue = o->queue;
    if (o->timeout >= 0) p.req_timeout = o->timeout;
    p.verbose = o->verbose;
    p.mlock = o->mlock;
    p.mtp = o->mtp;
    p.mtp_max_batch = o->mtp_max_batch;
    p.mtp_p_min = o->mtp_p_min;
    p.reasoning_budget = o->reasoning_budget;
    p.batch_invariant = o->batch_invariant;
    return srv_run(&p);
}
#else
int cmd_serve(const cli_opts *o) {
    (void)o;
    return cli_die("serve: this dsc was built without libmicrohttpd (apt-get install libmicrohttpd-dev, then rebuild)");
}
#endif
