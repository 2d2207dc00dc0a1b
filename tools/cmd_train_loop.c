/*
 * cmd_train_loop.c — `dsc train` and `dsc train-tokenizer`.
 *
 *   dsc train-tokenizer --data FILES... --vocab N -o tokenizer.json [--min-frequency F]
 *   dsc train CONFIG_OR_DIR --data FILES... --tokenizer FILE -o DIR [knobs, see usage_train]
 *
 * Both take many options of their own, so they parse argv themselves
 * (o->argc / o->argv) instead of the shared parse_opts. Training is
 * dsc_train_run (src/train/train.h); this file turns flags into its params,
 * prints progress, and makes Ctrl-C write a checkpoint before stopping.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../src/train/train.h"
#include "cli.h"
#include "core/dist.h"

static const char usage_tokenizer[] =
    "usage: dsc train-tokenizer --data FILES... --vocab N -o tokenizer.json [--min-frequency F] [--split-digits]\n"
    "  learns a byte-level BPE (DeepSeek-V3 pre-tokenizer) of N ids: 6 added tokens\n"
    "  (<｜begin▁of▁sentence｜> 0, <｜end▁of▁sentence｜> 1, <｜User｜>, <｜Assistant｜>, <think>, </think>),\n"
    "  256 bytes, then merges. Writes tokenizer.json and, beside it, tokenizer_config.json\n"
    "  (R1 chat template). -o DIR writes DIR/tokenizer.json. F: fewest occurrences of a merged pair (2).\n"
    "  --split-digits: every digit a token of its own (for arithmetic) instead of runs of up to 3.\n";

static const char usage_train[] =
    "usage: dsc train CONFIG_OR_DIR --data FILES... --tokenizer FILE -o DIR [options]\n"
    "  CONFIG_OR_DIR    config.json (random F32 start, seed --seed) or a checkpoint directory\n"
    "  --data FILES...  UTF-8 text files, one document each (EOS after each)\n"
    "  --batch B        sequences per micro-batch (8)          --seq T       tokens per sequence (128)\n"
    "  --steps N        optimizer steps, the schedule's length (100)\n"
    "  --accum K        micro-batches per step (1)             --threads N   (all CPUs)\n"
    "  --lr LR          peak learning rate (1e-3)              --min-lr R    final learning rate (1e-4)\n"
    "  --warmup W       linear warmup steps (10), then cosine decay to --min-lr at step N\n"
    "  --wd WD          decoupled weight decay on matrices (0.1)\n"
    "  --clip C         clip the gradient to global norm C (1; 0 = off)\n"
    "  --alpha A        sequence-wise balance-loss weight (0)  --gamma G     bias update speed (1e-3)\n"
    "  --mtp-lambda L   multi-token prediction: weight of MTP module 0's loss (token t + 2)\n"
    "                   (0 = off; the config needs num_nextn_predict_layers >= 1)\n"
    "  --seed S         random init and data order (0)         --init-scale F  x every random matrix (1)\n"
    "  --eval-every E   validation loss every E steps (50)     --val-frac F  held-out share (0.05)\n"
    "  --val-batches N  batches per evaluation, at most (8; 0 = all)\n"
    "  --save-every S   checkpoint every S steps (100; always at the end)\n"
    "  --resume         continue the run in DIR exactly where its checkpoint left off\n"
    "                   (CONFIG_OR_DIR may be left out; the same --data, --seq and --seed are needed)\n"
    "  --stop-at STEP   end this invocation after STEP (a checkpoint; --resume continues)\n"
    "  --isa ref|avx2|avx512\n"
    "data parallel: mpirun -np R dsc train ... runs R ranks (processes, here or on other hosts) that\n"
    "  share each step's accum x R micro-batches and sum their gradients (MPI); rank 0 writes DIR.\n"
    "  --threads then defaults to the CPUs of each rank.\n"
    "stability (loss spikes):\n"
    "  --spike-window W values remembered (32)                 --spike-k K   outlier: > mean + K std (6)\n"
    "  --rollback-after N  bad steps in a row before a rollback (3)\n"
    "  --snapshot-every S  steps between rollback snapshots (20)  --max-rollbacks N (5)\n"
    "  --inject-batch STEP:TOKEN   test: that step's batch is TOKEN repeated (once)\n"
    "  --lr-burst STEP:FACTOR[:LEN] test: lr x FACTOR for LEN (1) steps from STEP (once)\n"
    "output in DIR: config.json, model.safetensors (F32), tokenizer.json, tokenizer_config.json,\n"
    "  optimizer.safetensors, rollback.safetensors, trainer_state.json, log.jsonl (one line per step)\n";

static int parse_i(const char *s, const char *flag, long lo, long hi, int32_t *out) {
    long v;
    if (cli_parse_long(s, flag, lo, hi, &v)) return 1;
    *out = (int32_t)v;
    return 0;
}

static int parse_f(const char *s, const char *flag, double lo, double hi, float *out) {
    double v;
    if (cli_parse_double(s, flag, lo, hi, &v)) return 1;
    *out = (float)v;
    return 0;
}

/* --data FILE FILE ...: the words after the flag up to the next option. */
static int take_files(int argc, char **argv, int *i, const char ***files, int *n) {
    int k = *i + 1;
    while (k < argc && argv[k][0] != '-') k++;
    if (k == *i + 1) return cli_die("--data needs at least one file");
    *files = (const char **)argv + *i + 1;
    *n = k - *i - 1;
    *i = k - 1;
    return 0;
}

int cmd_train_tokenizer(const cli_opts *o) {
    const char **files = NULL, *out = NULL;
    int n_files = 0, rc = 0;
    dsc_bpe_params p = dsc_bpe_default_params();
    int vocab_set = 0;
    for (int i = 2; i < o->argc && !rc; i++) {
        const char *a = o->argv[i], *v = i + 1 < o->argc ? o->argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_tokenizer, stdout);
            return 0;
        } else if (!strcmp(a, "--data")) rc = take_files(o->argc, o->argv, &i, &files, &n_files);
        else if (!strcmp(a, "--vocab")) rc = parse_i(v, a, 262, 1 << 22, &p.vocab_size), vocab_set = 1, i++;
        else if (!strcmp(a, "--min-frequency")) rc = parse_i(v, a, 1, 1 << 30, &p.min_frequency), i++;
        else if (!strcmp(a, "--split-digits")) p.split_digits = 1;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (cli_no_value("train-tokenizer", a, v)) return 1;
            out = v, i++;
        } else return cli_die("train-tokenizer: unknown option '%s' (see dsc train-tokenizer --help)", a);
    }
    if (rc) return rc;
    if (!files || !out || !vocab_set)
        return cli_die("train-tokenizer: --data, --vocab and -o are needed (see dsc train-tokenizer --help)");
    char tok_path[4096], cfg_path[4096];
    size_t n = strlen(out);
    if (n >= 5 && !strcmp(out + n - 5, ".json")) snprintf(tok_path, sizeof tok_path, "%s", out);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", out);
    snprintf(cfg_path, sizeof cfg_path, "%s", tok_path);
    char *slash = strrchr(cfg_path, '/');
    snprintf(slash ? slash + 1 : cfg_path, sizeof cfg_path - (size_t)(slash ? slash + 1 - cfg_path : 0),
             "tokenizer_config.json");
    /* the output's directory before the training, not after it */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tok_path);
    slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    struct stat sb;
    if (slash && dir[0] && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return cli_die("train-tokenizer: -o %s: %s is not a directory", out, dir);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dsc_bpe_stats st;
    if (dsc_bpe_train(files, n_files, &p, tok_path, cfg_path, &st)) return cli_die_status();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "dsc: train-tokenizer: %.2f MB, %lld words (%lld distinct) -> %d merges, %d ids%s in %.2f s -> %s\n",
            (double)st.n_bytes / 1e6, (long long)st.n_words, (long long)st.n_types, st.n_merges, st.n_vocab,
            st.n_vocab < p.vocab_size ? " (no pair left occurs --min-frequency times)" : "", secs, tok_path);
    return 0;
}

/* ------------------------------------------------------------------------ */

static volatile int g_interrupt;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupt = 1;
}

typedef struct {
    int32_t steps;
    double last_print, t0;
    int64_t tokens_per_step;
    int32_t applied;
    const char *name;  /* "train" or "sft" */
} progress;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_report(void *user, const dsc_train_report *r) {
    progress *pr = user;
    const double now = mono();
    if (r->event && strcmp(r->event, "loss_high")) {
        if (!strcmp(r->event, "checkpoint")) fprintf(stderr, "dsc: %s: step %d: checkpoint written\n", pr->name, r->step);
        else if (!strcmp(r->event, "nothing_to_do"))
            fprintf(stderr, "dsc: %s: the run is at step %d already, where this invocation ends (--steps %d, or --stop-at): "
                    "nothing to train; a larger --steps goes on\n", pr->name, r->step, pr->steps);
        else fprintf(stderr, "dsc: %s: %s\n", pr->name, r->json);
        return;
    }
    pr->applied++;
    if (r->step > 1 && r->step < pr->steps && isnan(r->val_loss) && now - pr->last_print < 1.0 && !r->event) return;
    pr->last_print = now;
    fprintf(stderr, "dsc: %s: step %d/%d  loss %.4f", pr->name, r->step, pr->steps, (double)r->loss);
    if (!isnan(r->val_loss)) fprintf(stderr, "  val %.4f", (double)r->val_loss);
    fprintf(stderr, "  lr %.2e  gnorm %.3f  %.0f tok/s%s\n", (double)r->lr, (double)r->grad_norm, (double)r->tokens_per_s,
            r->event ? "  (loss high)" : "");
}

/* "A:B" or "A:B:C" with integer A, C and number B. */
static int parse_pair(const char *s, const char *flag, int32_t *a, float *b, int32_t *c, int int_second) {
    char buf[128], *p1, *p2;
    if (!s || snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf || !(p1 = strchr(buf, ':')))
        return cli_die("%s: expected STEP:%s", flag, int_second ? "TOKEN" : "FACTOR[:LEN]");
    *p1++ = 0;
    if ((p2 = strchr(p1, ':'))) *p2++ = 0;
    if (parse_i(buf, flag, 1, 1 << 30, a)) return 1;
    if (int_second) {
        int32_t v;
        if (p2 || parse_i(p1, flag, 0, 1 << 24, &v)) return p2 ? cli_die("%s: expected STEP:TOKEN", flag) : 1;
        *c = v;
        return 0;
    }
    if (parse_f(p1, flag, 1e-6, 1e9, b)) return 1;
    return p2 ? parse_i(p2, flag, 1, 1 << 30, c) : 0;
}

static const char usage_sft[] =
    "usage: dsc sft DIR --data FILES.jsonl... -o OUT [options of dsc train]\n"
    "  supervised fine-tuning of the checkpoint in DIR on chat examples, one JSON object per line:\n"
    "    {\"messages\": [{\"role\": \"user\", \"content\": Q}, {\"role\": \"assistant\", \"content\": A}]}\n"
    "  (a system message and earlier turns are allowed; the last message is the answer). Each\n"
    "  example is the R1 chat template of its prompt, ending \"<｜Assistant｜><think>\\n\", then the\n"
    "  answer (its own leading \"<think>\\n\" dropped) and EOS; the loss is on the answer and EOS only.\n"
    "  Examples are packed whole into sequences of --seq tokens. --tokenizer defaults to DIR's.\n"
    "  Same knobs, schedule, stability handling, checkpoints and log as dsc train (dsc train --help).\n";

static int train_main(const cli_opts *o, int chat);

int cmd_train(const cli_opts *o) { return train_main(o, 0); }
int cmd_sft(const cli_opts *o) { return train_main(o, 1); }

static int train_main(const cli_opts *o, int chat) {
    const char *name = chat ? "sft" : "train";
    dsc_train_run_params p = dsc_train_run_default_params();
    p.chat = chat;
    char tok_default[4096];
    const char **files = NULL;
    int n_files = 0, rc = 0, min_lr_set = 0;
    int32_t seed = 0;
    for (int i = 2; i < o->argc && !rc; i++) {
        const char *a = o->argv[i], *v = i + 1 < o->argc ? o->argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(chat ? usage_sft : usage_train, stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (p.init) return cli_die("%s: two checkpoints given ('%s' and '%s')", name, p.init, a);
            p.init = a, takes = 0;
        } else if (!strcmp(a, "--data")) rc = take_files(o->argc, o->argv, &i, &files, &n_files), takes = 0;
        else if (!strcmp(a, "--resume")) p.resume = 1, takes = 0;
        else if (cli_no_value(name, a, v)) return 1;
        else if (!strcmp(a, "--tokenizer")) p.tokenizer = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) p.out_dir = v;
        else if (!strcmp(a, "--isa")) p.isa = v;
        else if (!strcmp(a, "--batch")) rc = parse_i(v, a, 1, 1 << 16, &p.batch);
        else if (!strcmp(a, "--seq")) rc = parse_i(v, a, 1, 1 << 16, &p.seq);
        else if (!strcmp(a, "--steps")) rc = parse_i(v, a, 1, 1 << 30, &p.steps);
        else if (!strcmp(a, "--accum")) rc = parse_i(v, a, 1, 1 << 16, &p.accum);
        else if (!strcmp(a, "--warmup")) rc = parse_i(v, a, 0, 1 << 30, &p.warmup);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) rc = parse_i(v, a, 1, 1024, &p.threads);
        else if (!strcmp(a, "--seed")) rc = parse_i(v, a, 0, 2147483647, &seed);
        else if (!strcmp(a, "--eval-every")) rc = parse_i(v, a, 0, 1 << 30, &p.eval_every);
        else if (!strcmp(a, "--save-every")) rc = parse_i(v, a, 0, 1 << 30, &p.save_every);
        else if (!strcmp(a, "--val-batches")) rc = parse_i(v, a, 0, 1 << 30, &p.val_batches);
        else if (!strcmp(a, "--stop-at")) rc = parse_i(v, a, 1, 1 << 30, &p.stop_at);
        else if (!strcmp(a, "--spike-window")) rc = parse_i(v, a, 2, 1 << 16, &p.spike_window);
        else if (!strcmp(a, "--rollback-after")) rc = parse_i(v, a, 1, 1 << 20, &p.rollback_after);
        else if (!strcmp(a, "--snapshot-every")) rc = parse_i(v, a, 1, 1 << 30, &p.snapshot_every);
        else if (!strcmp(a, "--max-rollbacks")) rc = parse_i(v, a, 0, 1 << 20, &p.max_rollbacks);
        else if (!strcmp(a, "--lr")) rc = parse_f(v, a, 0, 100, &p.lr);
        else if (!strcmp(a, "--min-lr")) rc = parse_f(v, a, 0, 100, &p.min_lr), min_lr_set = 1;
        else if (!strcmp(a, "--wd")) rc = parse_f(v, a, 0, 100, &p.weight_decay);
        else if (!strcmp(a, "--clip")) rc = parse_f(v, a, 0, 1e9, &p.clip);
        else if (!strcmp(a, "--alpha")) rc = parse_f(v, a, 0, 1e6, &p.alpha);
        else if (!strcmp(a, "--gamma")) rc = parse_f(v, a, 0, 1e3, &p.gamma);
        else if (!strcmp(a, "--mtp-lambda")) rc = parse_f(v, a, 0, 100, &p.mtp_lambda);
        else if (!strcmp(a, "--val-frac")) rc = parse_f(v, a, 0, 0.9, &p.val_frac);
        else if (!strcmp(a, "--init-scale")) rc = parse_f(v, a, 0, 1e3, &p.init_scale);
        else if (!strcmp(a, "--spike-k")) rc = parse_f(v, a, 1e-3, 1e6, &p.spike_k);
        else if (!strcmp(a, "--inject-batch")) rc = parse_pair(v, a, &p.inject_step, NULL, &p.inject_token, 1);
        else if (!strcmp(a, "--lr-burst")) rc = parse_pair(v, a, &p.burst_step, &p.burst_factor, &p.burst_len, 0);
        else return cli_die("%s: unknown option '%s' (see dsc %s --help)", name, a, name);
        i += takes;
    }
    if (rc) return rc;
    if (chat && !p.tokenizer && p.init) {
        snprintf(tok_default, sizeof tok_default, "%s/tokenizer.json", p.init);
        p.tokenizer = tok_default;
    }
    if ((!p.init && !p.resume) || !files || !p.tokenizer || !p.out_dir)
        return cli_die(chat ? "sft: DIR, --data and -o are needed (see dsc sft --help)"
                            : "train: CONFIG_OR_DIR, --data, --tokenizer and -o are needed (see dsc train --help)");
    if (!min_lr_set) p.min_lr = p.lr / 10;
    p.data = files;
    p.n_data = n_files;
    p.seed = (uint64_t)seed;
    if (dist_init(NULL, NULL)) return cli_die_status();
    if (!p.threads && dist_size() > 1) p.threads = dist_default_threads();
    progress pr = {.name = name, .steps = p.steps, .t0 = mono(),
                   .tokens_per_step = (int64_t)p.batch * p.seq * p.accum * dist_size()};
    p.on_report = on_report;
    p.user = &pr;
    p.interrupt = &g_interrupt;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (dist_rank() == 0 && dist_size() > 1)
        fprintf(stderr, "dsc: %s: %d MPI ranks of %d threads; a step is %d micro-batches of %d sequences\n", name,
                dist_size(), p.threads, p.accum * dist_size(), p.batch);
    if (dsc_train_run(&p)) return cli_die_ranks();
    if (dist_rank() != 0) return 0;
    const double secs = mono() - pr.t0;
    fprintf(stderr, "dsc: %s: %d steps of %lld tokens in %.1f s (%.0f tokens/s overall, evaluation and checkpoints included)%s -> %s\n",
            name, pr.applied, (long long)pr.tokens_per_step, secs, secs > 0 ? (double)pr.applied * pr.tokens_per_step / secs : 0.0,
            g_interrupt ? " (interrupted)" : "", p.out_dir);
    return 0;
}
