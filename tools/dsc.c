/*
 * dsc.c — the `dsc` command line: subcommands over include/dsc.h only.
 *
 * Contract relied on by outside checks:
 *   dsc logits   -m DIR --tokens "0 5 17" -o OUT.safetensors [--decode-only]
 *   dsc generate -m DIR --tokens "0 5 17" -n N --temp 0 --ids [--decode-only]
 * Exit 0 on success; on error one line on stderr and exit 1.
 * run, chat, serve and eval use the bundled model (models/DSC_DEFAULT_MODEL)
 * when no -m is given.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/dist.h"

static const char *usage_text =
    "usage: dsc COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  run         answer one prompt, streamed (-p TEXT)\n"
    "  chat        interactive multi-turn chat (/reset, /exit, /think, /nothink; Ctrl-C stops an answer)\n"
    "  generate    continue a prompt of token ids (--tokens \"IDS\")\n"
    "  logits      write the logits after every prompt position to a safetensors file\n"
    "  tokenize    print the ids of a text (-p TEXT | -f FILE | --jsonl FILE)\n"
    "  detokenize  print the text of ids (--ids \"IDS\")\n"
    "  info        print a checkpoint's configuration and sizes\n"
    "  init        write a random-weight checkpoint for a config (-c CONFIG.json -o DIR)\n"
    "  bench       prefill and decode speed against this machine's roofline\n"
    "  serve       OpenAI/DeepSeek-compatible HTTP server with continuous batching\n"
    "  grad        write the loss and every trainable tensor's gradient for a batch\n"
    "  train       pretrain a config or checkpoint on text files (dsc train --help)\n"
    "  train-tokenizer  learn a byte-level BPE tokenizer.json from text files (--help)\n"
    "  quantize    write a Q8 or Q4 copy of a checkpoint (-m DIR -o DIR --type q8|q4|copy)\n"
    "  kld         mean KL divergence of next-token distributions of two models (-m A -m B)\n"
    "  perplexity  a model's perplexity on a text, scored as llama-perplexity does (-f FILE)\n"
    "  tasks       generate verifiable problems or worked solutions (dsc tasks --help)\n"
    "  sft         supervised fine-tuning on chat examples, loss on the answers (--help)\n"
    "  grpo        reinforcement learning with verifiable rewards (GRPO; --help)\n"
    "  eval        pass@1 and majority-vote accuracy on a task file (--help)\n"
    "  plot        draw a training log (log.jsonl) as a PNG chart (--help)\n"
    "\n"
    "model and context:\n"
    "  -m, --model DIR        checkpoint directory (config.json + safetensors [+ tokenizer.json]);\n"
    "                         run, chat, serve and eval default to the bundled model (or $DSC_MODEL)\n"
    "  --tokenizer FILE       tokenizer.json (default: DIR/tokenizer.json)\n"
    "  -c, --ctx N            context length (default min(4096, max_position_embeddings))\n"
    "  -b, --batch N          prompt tokens per prefill chunk (default 512)\n"
    "  -t, --threads N        threads (default: all CPUs)\n"
    "  --isa ref|avx2|avx512  kernel set (default: the best this CPU runs)\n"
    "  --kv-type f32|bf16|q8  latent cache type (default f32 for logits/generate, bf16 otherwise)\n"
    "  --mlock                lock the weights in memory (read them all now; the OS cannot page\n"
    "                         them out while the model sits idle; needs ulimit -l)\n"
    "  --mtp                  (run, chat, generate, serve) speculative decoding: the\n"
    "                         checkpoint's MTP layer drafts the token after next, checked in\n"
    "                         the same pass; the same output, fewer passes when drafts are taken\n"
    "  --mtp-p-min P          (with --mtp) guess only where the MTP layer gives its guess a\n"
    "                         probability of at least P, else decode one token (default 0: always)\n"
    "  --batch-invariant      every prompt token computed as a decode step computes it (absorbed\n"
    "                         attention, no gemm): its logits the same bits in any chunking or\n"
    "                         batch, with a cached prefix or not (serve: the answer does not depend\n"
    "                         on the load); prefill slower\n"
    "  -v, --verbose          print what was loaded\n"
    "\n"
    "generate / logits:\n"
    "  --tokens \"IDS\"         prompt as space-separated token ids\n"
    "  --decode-only          feed the prompt one token at a time through the latent cache\n"
    "  -o, --output FILE      (logits) F32 tensor 'logits' [T, vocab]\n"
    "  --ids                  (generate) print the generated ids on one line\n"
    "\n"
    "run / chat:\n"
    "  -p, --prompt TEXT      the question (run)\n"
    "  --system TEXT          system prompt\n"
    "  --hide-think           do not show the reasoning\n"
    "  --reasoning-budget N   (run, chat, serve) at most N tokens of reasoning: then </think> is\n"
    "                         written and the answer follows (0: none; serve: a request's default)\n"
    "  --think / --no-think   force the R1 reasoning template on or off (default: from\n"
    "                         tokenizer_config.json's chat_template); with DeepSeek-V3.1's\n"
    "                         template, thinking on or off (default off; serve: a request's default)\n"
    "  --verbose-prompt       print the prompt token ids sent to the model (stderr)\n"
    "  --raw                  (run) no chat template: BOS + the text, continued (base models)\n"
    "  --samples K --vote     (run) sample K answers together and take the majority of their\n"
    "                         \\boxed{} answers (ties: larger summed log-probability)\n"
    "  --json-object          the answer is one JSON object (after any reasoning; ends as it closes)\n"
    "  --json-schema FILE     the answer is one JSON object that the JSON Schema in FILE accepts\n"
    "                         (the keywords taken: see the README's Serving section)\n"
    "\n"
    "sampling (run, chat, generate):\n"
    "  -n N                   tokens to generate (default 16 for generate, 2048 for run/chat)\n"
    "  --temp T               temperature (default 0.6 for run/chat; 0 = greedy)\n"
    "  --top-p P              nucleus sampling (default 0.95)\n"
    "  --top-k K              keep the K most likely tokens (default 0 = off)\n"
    "  --min-p P              drop tokens below P x p(most likely) (default 0)\n"
    "  --repeat-penalty R     penalise the last 64 tokens (default 1 = off)\n"
    "  --seed S               random seed (default 0); the same seed gives the same output\n"
    "\n"
    "bench:\n"
    "  -p N                   prompt tokens for the prefill test (default 512)\n"
    "  -n N                   generated tokens for the decode test (default 128)\n"
    "  -d N                   context depth before the decode test (default 0)\n"
    "  -r N                   repetitions (default 5); medians and spread are reported\n"
    "  -t A,B,...             thread counts in turn within each repetition, one context each on the\n"
    "                         same weights; each count's rates against the first's (--json: a line each)\n"
    "  -p, -n, -d A,B,...     lists, as llama-bench's: at each -d depth a ppN test per -p value and a\n"
    "                         tgN test per -n value, each its own row (--json: a line each)\n"
    "  --parallel N           also decode N sequences together (continuous batching): aggregate t/s\n"
    "                         and its ratio to one sequence, measured in each repetition\n"
    "  --mtp                  also time speculative steps with the MTP layer: a step's cost in plain\n"
    "                         tokens, so --mtp gains where more than (cost - 1) of guesses are taken\n"
    "  --no-warmup            skip the unmeasured run first (a prefill of -p tokens, one decode step)\n"
    "  --json                 one JSON object instead of the table\n"
    "\n"
    "quantize / kld:\n"
    "  --type q8|q4|copy      q8: every projection and the output head Q8; q4: routed experts Q4, the rest Q8;\n"
    "                         copy: every tensor as it is, the data 64-byte aligned\n"
    "  -n N                   (kld) positions compared (default 2048); (perplexity) at most N tokens of\n"
    "                         the text (default: all of it)\n"
    "  -c N                   (kld) window of positions per evaluation; (perplexity) chunk length, the\n"
    "                         second half of each scored (default 512, at most max_position_embeddings)\n"
    "  -f FILE                (kld) text to evaluate instead of pseudo-random ids; (perplexity) the\n"
    "                         text to score (needs a tokenizer)\n"
    "  --kv-type T            (perplexity) latent cache type (default f32, exact)\n"
    "  --json                 (kld, perplexity) one JSON object\n"
    "\n"
    "init:\n"
    "  -c, --config FILE      config.json to instantiate\n"
    "  -o DIR                 output checkpoint directory\n"
    "  --dtype bf16|f32|fp8   weight type (default bf16; fp8 = e4m3 + 128x128 block scales)\n"
    "  --seed S               random seed (default 0)\n"
    "  --shards N             split into N shards with model.safetensors.index.json\n"
    "\n"
    "grad:\n"
    "  --batch FILE           safetensors with tokens I32 [B, T + 1] (targets: tokens[:, 1:])\n"
    "  --alpha A              sequence-wise balance-loss weight (default 0.01, as the golden files)\n"
    "  --mtp-lambda L         add L x the MTP module's loss (token t + 2; default 0, off); writes loss_mtp\n"
    "  -o FILE                loss_ce, loss_aux and grad.NAME (F32) for every trainable tensor\n"
    "\n"
    "serve:\n"
    "  --host ADDR            listen address (default 127.0.0.1)\n"
    "  --port N               port (default 8080; 0 = any free port, printed)\n"
    "  --parallel N           sequences decoded together, one per request choice (default 4)\n"
    "  --queue N              requests waiting for a slot before 503 (default 256)\n"
    "  --mtp-max-batch N      (with --mtp) draft only while at most N slots are generating\n"
    "                         (a draft's second row costs more in a busy batch; default: always)\n"
    "  --timeout S            seconds a client has to send a whole request, from its\n"
    "                         connection or the previous answer, else it is closed\n"
    "                         (default 60; 0: no limit)\n"
    "  --api-key KEY          require 'Authorization: Bearer KEY' (or set DSC_API_KEY)\n"
    "  --cache-dir DIR        keep the prompt cache blocks in DIR across restarts\n"
    "  --cache-mb N           RAM for the prompt cache (default 1024)\n"
    "  --cache-disk-mb N      disk for --cache-dir (default 8192)\n"
    "  (-c is the context per slot; -b caps the prompt tokens prefilled per slot per step, 256)\n"
    "\n"
    "tokenize / detokenize:\n"
    "  -p TEXT | -f FILE      text to encode (no BOS is added)\n"
    "  --jsonl FILE           read {\"text\": ...} lines, write {\"ids\": [...]} lines\n"
    "  --special              match special tokens written in the text\n"
    "  --ids \"IDS\"            (detokenize) ids to decode\n";

int cli_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("dsc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_die_status(void) { return cli_die("%s", dsc_last_error()); }

int cli_die_ranks(void) {
    if (dist_size() <= 1) return cli_die_status();
    if (dist_hearsay()) return 1; /* the failing rank says why */
    const int rc = cli_die("rank %d of %d: %s", dist_rank(), dist_size(), dsc_last_error());
    if (!dist_agreed()) dist_abort(rc); /* the other ranks would wait for this one in the next sum */
    return rc;
}

int cli_no_value(const char *cmd, const char *opt, const char *v) {
    const char *pre = cmd ? cmd : "", *sep = cmd ? ": " : "";
    if (!v) return cli_die("%s%soption %s needs a value", pre, sep, opt);
    if (!v[0]) return cli_die("%s%soption %s: an empty value", pre, sep, opt);
    const int short_opt = v[0] == '-' && isalpha((unsigned char)v[1]) && (!v[2] || !strcmp(v, "-np"));
    const int long_opt = v[0] == '-' && v[1] == '-' && isalpha((unsigned char)v[2]);
    if (short_opt || long_opt)
        return cli_die("%s%soption %s needs a value, and '%s' after it is an option (a file of that name: ./%s)", pre, sep,
                       opt, v, v);
    return 0;
}

FILE *cli_fopen_read(const char *cmd, const char *path) {
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    const char *pre = cmd ? cmd : "", *sep = cmd ? ": " : "";
    struct stat sb = {0};
    if (fd < 0) cli_die("%s%s%s: cannot open: %s", pre, sep, path, strerror(errno));
    else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        cli_die("%s%s%s: %s", pre, sep, path, S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    else {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        FILE *fp = fdopen(fd, "rb");
        if (fp) return fp;
        cli_die("%s%s%s: cannot open: %s", pre, sep, path, strerror(errno));
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int has_config(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    return access(p, R_OK) == 0;
}

const char *cli_default_model(void) {
    static char path[4096];
    const char *env = getenv("DSC_MODEL");
    if (env && *env) return env;
    char exe[4000];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        static const char *const rel[] = {"/../models/", "/models/", "/../share/dsc/models/"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(path, sizeof path, "%s%s%s", exe, rel[i], DSC_DEFAULT_MODEL);
            if (has_config(path)) return path;
        }
    }
#ifdef DSC_SOURCE_DIR
    snprintf(path, sizeof path, "%s/models/%s", DSC_SOURCE_DIR, DSC_DEFAULT_MODEL);
    if (has_config(path)) return path;
#endif
    return NULL;
}

#define die cli_die
#define die_status cli_die_status

int cli_parse_long(const char *s, const char *flag, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi)
        return die("%s: '%s' is not an integer in [%ld, %ld]", flag, s ? s : "", lo, hi);
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, const char *flag, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo && v <= hi))
        return die("%s: '%s' is not a number in [%g, %g]", flag, s ? s : "", lo, hi);
    *out = v;
    return 0;
}

static int parse_int(const char *s, const char *flag, int lo, int hi, int *out) {
    long v;
    if (cli_parse_long(s, flag, lo, hi, &v)) return 1;
    *out = (int)v;
    return 0;
}

/* "A,B,...": at most cap whole numbers in [lo, hi], each given once. */
static int parse_int_list(const char *s, const char *flag, int lo, int hi, int *out, int cap, int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return die("%s: '%.32s...' is too long a list", flag, s);
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *p = buf, *end; p; p = end) {
        end = strchr(p, ',');
        if (end) *end++ = 0;
        if (*n == cap) return die("%s: at most %d values in '%s'", flag, cap, s);
        if (parse_int(p, flag, lo, hi, &out[*n])) return 1;
        for (int k = 0; k < *n; k++)
            if (out[k] == out[*n]) return die("%s: %d is given twice in '%s'", flag, out[k], s);
        (*n)++;
    }
    return 0;
}

static int parse_float(const char *s, const char *flag, double lo, double hi, float *out) {
    double v;
    if (cli_parse_double(s, flag, lo, hi, &v)) return 1;
    *out = (float)v;
    return 0;
}

/* Options whose value is text a user writes, which may start with '-'. */
static int free_text(const char *opt) { return !strcmp(opt, "-p") || !strcmp(opt, "--prompt") || !strcmp(opt, "--system"); }

static int parse_opts(int argc, char **argv, cli_opts *o) {
    int run_like = !strcmp(o->cmd, "run") || !strcmp(o->cmd, "chat");
    o->n_gen = run_like ? 2048 : !strcmp(o->cmd, "bench") ? 128 : !strcmp(o->cmd, "kld") ? 2048 : 16;
    if (!strcmp(o->cmd, "perplexity")) o->n_gen = 1 << 30; /* the whole text */
    o->n_prompt = 512;
    o->reasoning_budget = -1;
    /* The reference tools keep the cache exact; the others halve it. */
    o->kv_type = !strcmp(o->cmd, "logits") || !strcmp(o->cmd, "generate") || !strcmp(o->cmd, "perplexity") ? DSC_KV_F32
                                                                                                         : DSC_KV_BF16;
    o->n_reps = 5;
    o->n_batch = 512;
    o->think = -1;
    o->timeout = -1;
    o->port = 8080;
    o->sp = dsc_sampler_default_params();
    if (!run_like) o->sp.temp = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1, rc = 0, seed = 0;
        if (!strcmp(a, "--decode-only")) o->decode_only = 1, takes = 0;
        else if (!strcmp(a, "--ids") && strcmp(o->cmd, "detokenize")) o->print_ids = 1, takes = 0;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = 1, takes = 0;
        else if (!strcmp(a, "--mlock")) o->mlock = 1, takes = 0;
        else if (!strcmp(a, "--mtp")) o->mtp = 1, takes = 0;
        else if (!strcmp(a, "--batch-invariant")) o->batch_invariant = 1, takes = 0;
        else if (!strcmp(a, "--verbose-prompt")) o->verbose_prompt = 1, takes = 0;
        else if (!strcmp(a, "--hide-think")) o->hide_think = 1, takes = 0;
        else if (!strcmp(a, "--think")) o->think = 1, takes = 0;
        else if (!strcmp(a, "--raw")) o->raw = 1, takes = 0;
        else if (!strcmp(a, "--vote")) o->vote = 1, takes = 0;
        else if (!strcmp(a, "--no-think")) o->think = 0, takes = 0;
        else if (!strcmp(a, "--special")) o->special = 1, takes = 0;
        else if (!strcmp(a, "--json")) o->json = 1, takes = 0;
        else if (!strcmp(a, "--json-object")) o->json_object = 1, takes = 0;
        else if (!strcmp(a, "--no-warmup")) o->no_warmup = 1, takes = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (a[0] != '-' || !a[1])
            return die("unexpected argument '%s' (options start with '-'; see dsc %s --help)", a, o->cmd);
        else if (free_text(a) ? !v && die("option %s needs a value", a) : cli_no_value(NULL, a, v)) return 1;
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && o->model2) return die("kld: give -m twice, not more");
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && o->model && !strcmp(o->cmd, "kld")) o->model2 = v;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && !strcmp(o->cmd, "init")) o->config = v;
        else if (!strcmp(a, "--dtype")) o->dtype = v;
        else if (!strcmp(a, "--type")) o->qtype = v;
        else if (!strcmp(a, "--shards")) rc = parse_int(v, a, 1, 9999, &o->n_shards);
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && strchr(v, ',') && !strcmp(o->cmd, "bench"))
            rc = parse_int_list(v, a, 1, 1024, o->threads_list, CLI_MAX_THREAD_LIST, &o->n_threads_list);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            rc = parse_int(v, a, 1, 1024, &o->n_threads), o->n_threads_list = 0; /* the last -t counts */
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) rc = parse_int(v, a, 1, 1000, &o->n_reps);
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(a, "-p") && !strcmp(o->cmd, "bench") && strchr(v, ','))
            rc = parse_int_list(v, a, 0, 1 << 20, o->prompt_list, CLI_MAX_LIST, &o->n_prompt_list);
        else if (!strcmp(a, "-p") && !strcmp(o->cmd, "bench"))
            rc = parse_int(v, a, 0, 1 << 20, &o->n_prompt), o->n_prompt_list = 0;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if ((!strcmp(a, "-d") || !strcmp(a, "--depth")) && !strcmp(o->cmd, "bench") && strchr(v, ','))
            rc = parse_int_list(v, a, 0, 1 << 24, o->depth_list, CLI_MAX_LIST, &o->n_depth_list);
        else if (!strcmp(a, "-d") || !strcmp(a, "--depth")) rc = parse_int(v, a, 0, 1 << 24, &o->depth), o->n_depth_list = 0;
        else if (!strcmp(a, "--isa")) o->isa = v;
        else if (!strcmp(a, "--kv-type")) {
            if (!strcmp(v, "f32")) o->kv_type = DSC_KV_F32;
            else if (!strcmp(v, "bf16")) o->kv_type = DSC_KV_BF16;
            else if (!strcmp(v, "q8")) o->kv_type = DSC_KV_Q8;
            else return die("--kv-type: '%s' is not f32, bf16 or q8", v);
        }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->file = v;
        else if (!strcmp(a, "--jsonl")) o->jsonl = v;
        else if (!strcmp(a, "--json-schema")) o->json_schema = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) rc = parse_int(v, a, 1, 1 << 30, &o->n_ctx);
        else if (!strcmp(a, "--batch") && !strcmp(o->cmd, "grad")) o->batch = v;
        else if (!strcmp(a, "--alpha")) rc = parse_float(v, a, 0, 1e6, &o->alpha), o->alpha_set = 1;
        else if (!strcmp(a, "--mtp-lambda")) rc = parse_float(v, a, 0, 100, &o->mtp_lambda);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) rc = parse_int(v, a, 1, 1 << 20, &o->n_batch);
        else if (!strcmp(a, "-n") && !strcmp(o->cmd, "bench") && strchr(v, ','))
            rc = parse_int_list(v, a, 0, 1 << 30, o->gen_list, CLI_MAX_LIST, &o->n_gen_list);
        else if (!strcmp(a, "-n")) rc = parse_int(v, a, 0, 1 << 30, &o->n_gen), o->n_gen_list = 0;
        else if (!strcmp(a, "--samples")) rc = parse_int(v, a, 1, 256, &o->samples);
        else if (!strcmp(a, "--temp")) rc = parse_float(v, a, 0, 100, &o->sp.temp), o->temp_set = 1;
        else if (!strcmp(a, "--top-p")) rc = parse_float(v, a, 1e-6, 1, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) rc = parse_float(v, a, 0, 1, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) rc = parse_float(v, a, 1e-3, 100, &o->sp.repeat_penalty);
        else if (!strcmp(a, "--top-k")) rc = parse_int(v, a, 0, 1 << 30, &o->sp.top_k);
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) rc = parse_int(v, a, 0, 65535, &o->port);
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) rc = parse_int(v, a, 1, 4096, &o->parallel);
        else if (!strcmp(a, "--queue")) rc = parse_int(v, a, 1, 1 << 20, &o->queue);
        else if (!strcmp(a, "--mtp-max-batch")) rc = parse_int(v, a, 1, 4096, &o->mtp_max_batch);
        else if (!strcmp(a, "--mtp-p-min")) rc = parse_float(v, a, 0, 1, &o->mtp_p_min);
        else if (!strcmp(a, "--reasoning-budget")) rc = parse_int(v, a, 0, 1 << 30, &o->reasoning_budget);
        else if (!strcmp(a, "--timeout")) rc = parse_int(v, a, 0, 86400, &o->timeout);
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "--cache-dir")) o->cache_dir = v;
        else if (!strcmp(a, "--cache-mb")) rc = parse_int(v, a, 1, 1 << 24, &o->cache_mb);
        else if (!strcmp(a, "--cache-disk-mb")) rc = parse_int(v, a, 1, 1 << 30, &o->cache_disk_mb);
        else if (!strcmp(a, "--seed")) rc = parse_int(v, a, 0, 2147483647, &seed), o->sp.seed = (uint64_t)seed;
        else return die("unknown option '%s' (see dsc --help)", a);
        if (rc) return rc;
        i += takes;
    }
    if (o->mtp && strcmp(o->cmd, "run") && strcmp(o->cmd, "chat") && strcmp(o->cmd, "generate") && strcmp(o->cmd, "serve") &&
        strcmp(o->cmd, "bench"))
        return die("--mtp: only run, chat, generate, serve and bench use the MTP layer");
    if (o->mtp && (o->samples > 1 || o->vote)) return die("--mtp: not with --samples or --vote");
    if (o->mtp_max_batch && (!o->mtp || strcmp(o->cmd, "serve")))
        return die("--mtp-max-batch: only with serve --mtp");
    static const char *const invariant_cmds[] = {"run", "chat", "generate", "logits", "serve", "bench", "kld", "perplexity"};
    int invariant_ok = 0;
    for (size_t k = 0; k < sizeof invariant_cmds / sizeof *invariant_cmds; k++)
        invariant_ok |= !strcmp(o->cmd, invariant_cmds[k]);
    if (o->batch_invariant && !invariant_ok)
        return die("--batch-invariant: only run, chat, generate, logits, serve, bench, kld and perplexity evaluate a model");
    if (o->reasoning_budget >= 0 && !run_like && strcmp(o->cmd, "serve"))
        return die("--reasoning-budget: only run, chat and serve write reasoning");
    if (o->reasoning_budget >= 0 && run_like && (o->mtp || o->raw || o->samples > 1))
        return die("--reasoning-budget: not with %s",
                   o->mtp ? "--mtp (run, chat)" : o->raw ? "--raw (no reasoning)" : "--samples");
    if (o->mtp_p_min > 0 && (!o->mtp || !strcmp(o->cmd, "bench")))
        return die("--mtp-p-min: only with --mtp (run, chat, generate, serve)");
    if (!o->model && (!strcmp(o->cmd, "run") || !strcmp(o->cmd, "chat") || !strcmp(o->cmd, "serve")) &&
        !(o->model = cli_default_model()))
        return die("no model given (-m DIR) and no bundled model found (models/%s beside the build, or $DSC_MODEL)",
                   DSC_DEFAULT_MODEL);
    if (!o->model && !(o->tokenizer && (!strcmp(o->cmd, "tokenize") || !strcmp(o->cmd, "detokenize"))) &&
        strcmp(o->cmd, "init"))
        return die("no model given (-m DIR)");
    return 0;
}

/* Parses "0 5 17" into a new array; *n gets the count. */
static int parse_tokens(const char *s, int32_t **out, int *n) {
    if (!s) return die("no prompt given (--tokens \"IDS\")");
    size_t cap = strlen(s) / 2 + 1;
    int32_t *ids = malloc(sizeof *ids * cap);
    if (!ids) return die("out of memory");
    int k = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return die("--tokens: '%.20s' is not a token id", p);
        }
        ids[k++] = (int32_t)v;
        p = end;
    }
    if (k == 0) {
        free(ids);
        return die("--tokens: the prompt is empty");
    }
    *out = ids;
    *n = k;
    return 0;
}

/* Token ids are checked before any work starts, so an error is the only output. */
static int check_ids(const int32_t *ids, int n, const dsc_model_info *info) {
    for (int i = 0; i < n; i++)
        if (ids[i] >= info->vocab_size)
            return die("token id %d at position %d is out of range (vocab_size = %d)", ids[i], i, info->vocab_size);
    return 0;
}

dsc_ctx_params cli_ctx_params(const cli_opts *o, int n_ctx) {
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = o->n_batch;
    cp.n_threads = o->n_threads;
    cp.isa = o->isa;
    cp.kv_type = (dsc_kv_type)o->kv_type;
    cp.mtp = o->mtp;
    cp.mtp_p_min = o->mtp_p_min;
    cp.batch_invariant = o->batch_invariant;
    return cp;
}

int cli_session_open(const cli_opts *o, int need_ctx, const int32_t *ids, int n_ids, cli_session *s) {
    *s = (cli_session){0};
    dsc_model_params mp = dsc_model_default_params();
    mp.verbose = o->verbose;
    mp.mlock = o->mlock;
    if (dsc_model_load(o->model, &mp, &s->model)) return die_status();
    dsc_model_get_info(s->model, &s->info);
    if (check_ids(ids, n_ids, &s->info)) return 1;
    int n_ctx = o->n_ctx ? o->n_ctx : (need_ctx > 4096 ? need_ctx : 0);
    if (n_ctx == 0) n_ctx = s->info.max_position_embeddings < 4096 ? s->info.max_position_embeddings : 4096;
    if (need_ctx > n_ctx)
        return die("prompt and generation need %d tokens, more than the context of %d (use -c)", need_ctx, n_ctx);
    dsc_ctx_params cp = cli_ctx_params(o, n_ctx);
    if (!strcmp(o->cmd, "bench")) cp.n_seq = o->parallel; /* batched decode test */
    if (dsc_ctx_new(s->model, &cp, &s->ctx)) return die_status();
    return 0;
}

void cli_session_announce(const cli_opts *o, const cli_session *s) {
    const dsc_model_info *i = &s->info;
    char mtp[64] = "";
    char idx[64] = "";
    if (o->mtp) snprintf(mtp, sizeof mtp, " (+ %.2f MiB of MTP inputs)", dsc_ctx_mtp_bytes(s->ctx) / 1048576.0);
    if (i->index_topk > 0) /* V3.2: each position's index key, FP8 codes and F32 scales */
        snprintf(idx, sizeof idx, ", and %d B of index key a token a layer", i->index_head_dim + i->index_head_dim / 128 * 4);
    fprintf(stderr, "dsc: latent kv cache: %d layers%s x %d tokens x (%d + %d) x %s%s = %.2f MiB%s; %d threads, %s kernels\n",
            i->n_layers, o->mtp ? " + 1 MTP" : "", dsc_ctx_n_ctx(s->ctx), i->kv_lora_rank, i->qk_rope_head_dim,
            dsc_kv_type_name((dsc_kv_type)o->kv_type), idx, dsc_ctx_kv_bytes(s->ctx) / 1048576.0, mtp,
            dsc_ctx_n_threads(s->ctx), dsc_ctx_isa(s->ctx));
}

/* The output file's directory must exist and be writable before the run. */
int cli_check_output(const char *path, const char *model_dir) {
    struct stat out, sb;
    if (!path[0]) return die("-o: an empty path");
    const int exists = stat(path, &out) == 0;
    if (exists && S_ISDIR(out.st_mode)) return die("%s: is a directory (-o wants a file)", path);
    DIR *d = exists && S_ISREG(out.st_mode) && model_dir ? opendir(model_dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        char f[4096];
        if (snprintf(f, sizeof f, "%s/%s", model_dir, e->d_name) < (int)sizeof f && stat(f, &sb) == 0 &&
            S_ISREG(sb.st_mode) && sb.st_dev == out.st_dev && sb.st_ino == out.st_ino) {
            closedir(d);
            return die("%s: a file of the model it would be computed from (%s)", path, model_dir);
        }
    }
    if (d) closedir(d);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (access(slash ? (dir[0] ? dir : "/") : ".", W_OK) != 0)
        return die("%s: cannot create: %s", path, strerror(errno));
    return 0;
}

void cli_session_close(cli_session *s) {
    dsc_ctx_free(s->ctx);
    dsc_model_free(s->model);
}

/* Evaluates the prompt at once or one token at a time; logits may be NULL. */
static dsc_status eval_prompt(dsc_ctx *ctx, const int32_t *ids, int n, int decode_only, float *logits, int vocab) {
    if (!decode_only) return dsc_eval(ctx, ids, n, logits);
    for (int i = 0; i < n; i++) {
        dsc_status st = dsc_eval(ctx, ids + i, 1, logits ? logits + (size_t)i * vocab : NULL);
        if (st) return st;
    }
    return DSC_OK;
}

static int cmd_logits(const cli_opts *o) {
    if (!o->output) return die("logits: no output file given (-o FILE)");
    int32_t *ids;
    int n, rc;
    if ((rc = cli_check_output(o->output, o->model)) || (rc = parse_tokens(o->tokens, &ids, &n))) return rc;
    cli_session s;
    if ((rc = cli_session_open(o, n, ids, n, &s))) {
        free(ids);
        cli_session_close(&s);
        return rc;
    }
    cli_session_announce(o, &s);
    const int V = s.info.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)n * (size_t)V);
    if (!logits) rc = die("out of memory for %d x %d logits", n, V);
    else if (eval_prompt(s.ctx, ids, n, o->decode_only, logits, V)) rc = die_status();
    for (int64_t i = 0; !rc && i < (int64_t)n * V; i++)
        if (!isfinite(logits[i]))
            rc = die("logits: the logit of token %d at position %d is %s: the model's output is not finite",
                     (int)(i % V), (int)(i / V), isnan(logits[i]) ? "NaN" : logits[i] > 0 ? "+Inf" : "-Inf");
    if (!rc) {
        dsc_tensor_view t = {.name = "logits", .dtype = "F32", .ndim = 2, .shape = {n, V}, .data = logits};
        if (dsc_safetensors_write(o->output, &t, 1, NULL, NULL)) rc = die_status();
    }
    free(logits);
    free(ids);
    cli_session_close(&s);
    return rc;
}

static int cmd_generate(const cli_opts *o) {
    int32_t *ids;
    int n, rc;
    if ((rc = parse_tokens(o->tokens, &ids, &n))) return rc;
    cli_session s;
    if ((rc = cli_session_open(o, n + (o->n_gen > 0 ? o->n_gen - 1 : 0), ids, n, &s))) {
        free(ids);
        cli_session_close(&s);
        return rc;
    }
    cli_session_announce(o, &s);
    dsc_sampler *smp = NULL;
    if (dsc_sampler_new(&o->sp, s.info.vocab_size, &smp)) rc = die_status();
    for (int i = 0; i < n && !rc; i++) dsc_sampler_accept(smp, ids[i]);
    if (!rc && eval_prompt(s.ctx, ids, n, o->decode_only, NULL, s.info.vocab_size)) rc = die_status();
    cli_gen g;
    cli_gen_start(&g, s.ctx, smp, o->mtp);
    for (int i = 0; i < o->n_gen && !rc; i++) {
        int32_t next;
        if (cli_gen_next(&g, o->n_gen - i, &next)) rc = cli_die_status();
        else printf("%s%d", i ? " " : "", next);
    }
    if (!rc) printf("\n");
    char stats[96];
    if (!rc && o->mtp) fprintf(stderr, "dsc: %s\n", cli_gen_stats(&g, stats, sizeof stats) + 2);
    dsc_sampler_free(smp);
    free(ids);
    cli_session_close(&s);
    return rc;
}

static int cmd_info(const cli_opts *o) {
    cli_session s = {0};
    dsc_model_params mp = dsc_model_default_params();
    if (dsc_model_load(o->model, &mp, &s.model)) return die_status();
    dsc_model_info i;
    dsc_model_get_info(s.model, &i);
    printf("model_type        %s\nvocab_size        %d\nhidden_size       %d\nlayers            %d\nheads             %d\n"
           "kv_lora_rank      %d\nqk_rope_head_dim  %d\nrouted experts    %d (top %d)\nparameters        %lld\n"
           "weights           %.2f MiB\nkv cache / token  %d B (fp32)\n",
           i.model_type, i.vocab_size, i.hidden_size, i.n_layers, i.n_heads, i.kv_lora_rank, i.qk_rope_head_dim,
           i.n_routed_experts, i.n_experts_per_tok, (long long)i.n_params, i.weight_bytes / 1048576.0,
           i.n_layers * (i.kv_lora_rank + i.qk_rope_head_dim) * 4);
    if (i.index_topk > 0) /* V3.2: and each position's index key, FP8 + F32 scales per 128 */
        printf("sparse attention  indexer %d heads x %d, top %d positions; index keys / token %d B\n", i.index_n_heads,
               i.index_head_dim, i.index_topk, i.n_layers * (i.index_head_dim + i.index_head_dim / 128 * 4));
    dsc_model_free(s.model);
    return 0;
}

/* A command's exit status, made 1 when some of what it printed was lost
 * (a full disk, /dev/full): output a user cannot see is not a success. */
static int stdout_status(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    return rc ? rc : die("stdout: %s", errno ? strerror(errno) : "write error");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    const char *cmd = argv[1];
    static const struct {
        const char *name;
        int (*fn)(const cli_opts *);
    } cmds[] = {{"logits", cmd_logits}, {"generate", cmd_generate}, {"info", cmd_info},
                {"init", cmd_init}, {"bench", cmd_bench}, {"quantize", cmd_quantize}, {"kld", cmd_kld}, {"perplexity", cmd_perplexity}, {"tokenize", cmd_tokenize}, {"detokenize", cmd_detokenize}, {"run", cmd_run}, {"chat", cmd_chat}, {"serve", cmd_serve},
                {"grad", cmd_grad}, {"train", cmd_train}, {"train-tokenizer", cmd_train_tokenizer},
                {"tasks", cmd_tasks}, {"plot", cmd_plot}, {"sft", cmd_sft}, {"grpo", cmd_grpo}, {"eval", cmd_eval}};
    static const char *const own_options[] = {"train", "train-tokenizer", "tasks", "plot", "sft", "grpo", "eval"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        cli_opts o = {.cmd = cmd, .argc = argc, .argv = argv};
        int own = 0;
        for (size_t j = 0; j < sizeof own_options / sizeof own_options[0]; j++) own |= !strcmp(cmd, own_options[j]);
        int rc = own ? 0 : parse_opts(argc, argv, &o);
        rc = stdout_status(rc ? rc : cmds[i].fn(&o));
        dist_finalize(); /* train, sft and grpo started as MPI ranks */
        return rc;
    }
    return die("unknown command '%s' (see dsc --help)", cmd);
}
