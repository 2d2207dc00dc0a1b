/*
 * cmd_init.c — `dsc init -c CONFIG.json -o DIR [--seed S] [--dtype bf16|f32|fp8] [--shards N]`:
 * a random-weight checkpoint for benchmarks and training from scratch.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

/* Tensors listed in a safetensors header (0 if it cannot be read). */
static int count_tensors(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    uint8_t len8[8];
    uint64_t hl = 0;
    int n = 0;
    if (fread(len8, 1, 8, fp) == 8) {
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | len8[i];
        char *h = hl <= 100000000 ? malloc(hl ? hl : 1) : NULL;
        if (h && fread(h, 1, hl, fp) == hl) {
            cJSON *root = cJSON_ParseWithLength(h, hl);
            for (const cJSON *e = root ? root->child : NULL; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
            cJSON_Delete(root);
        }
        free(h);
    }
    fclose(fp);
    return n;
}

int cmd_init(const cli_opts *o) {
    if (!o->config) return cli_die("init: no config given (-c CONFIG.json)");
    if (!o->output) return cli_die("init: no output directory given (-o DIR)");
    dsc_init_params ip = dsc_init_default_params();
    ip.seed = o->sp.seed;
    if (o->dtype) ip.dtype = o->dtype;
    ip.n_shards = o->n_shards;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (dsc_init_checkpoint(o->config, o->output, &ip)) return cli_die_status();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    int n_files = o->n_shards > 1 ? o->n_shards : 1, n_tensors = 0;
    double bytes = 0;
    for (int k = 0; k < n_files; k++) {
        char path[4096];
        if (n_files == 1) snprintf(path, sizeof path, "%s/model.safetensors", o->output);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", o->output, k + 1, n_files);
        struct stat sb;
        if (stat(path, &sb) == 0) bytes += (double)sb.st_size;
        n_tensors += count_tensors(path);
    }
    fprintf(stderr, "dsc: init: %s: %d tensors, %.1f MiB (%s) in %d file%s, %.2f s (%.0f MB/s)\n", o->output,
            n_tensors, bytes / 1048576.0, ip.dtype, n_files, n_files > 1 ? "s" : "", secs,
            secs > 0 ? bytes / secs / 1e6 : 0.0);
    return 0;
}
