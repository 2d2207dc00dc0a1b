/*
 * cmd_train.c — training subcommands of the `dsc` CLI.
 *
 *   dsc grad -m DIR --batch BATCH.safetensors [--alpha A] -o OUT.safetensors
 *
 * reads `tokens` I32 [B, T + 1] (inputs tokens[:, :-1], targets tokens[:, 1:])
 * and writes loss_ce F32 [1], loss_aux F32 [1] and grad.NAME F32 (checkpoint
 * shape) for every trainable tensor: the layout of the golden train files
 * (shared/golden/models/NAME/train.safetensors), so that the backward pass
 * can be checked from outside. --alpha defaults to 0.01, the value those
 * files were made with (their metadata and README); --alpha 0 drops the
 * balance loss. The MTP layer is not part of the objective unless
 * --mtp-lambda L > 0 (then loss_mtp F32 [1] is written too and the
 * objective is loss_ce + loss_aux + L x loss_mtp); e_score_correction_bias
 * is not trainable, so it gets no gradient.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../src/train/train.h"
#include "cli.h"

int cmd_grad(const cli_opts *o) {
    if (!o->batch) return cli_die("grad: no batch given (--batch BATCH.safetensors with tokens I32 [B, T + 1])");
    if (!o->output) return cli_die("grad: no output file given (-o OUT.safetensors)");
    if (cli_check_output(o->output, o->model)) return 1;
    int32_t *tokens = NULL, B = 0, T = 0;
    if (dsc_train_read_batch(o->batch, &tokens, &B, &T)) return cli_die_status();
    dsc_train_params p = dsc_train_default_params();
    p.n_batch = B;
    p.n_seq = T;
    p.n_threads = o->n_threads;
    p.isa = o->isa;
    if (o->alpha_set) p.alpha = o->alpha;
    p.mtp_lambda = o->mtp_lambda;
    dsc_trainer *t = NULL;
    float ce = 0, aux = 0;
    int rc = 0;
    if (dsc_trainer_new(o->model, &p, &t) || dsc_train_grad(t, tokens, B, T, &ce, &aux)) rc = cli_die_status();
    else if (!isfinite(ce) || !isfinite(aux) || !isfinite(dsc_train_grad_norm(t)))
        rc = cli_die("grad: the loss or the gradient is not finite (loss_ce %g, loss_aux %g): are %s's weights finite?",
                     (double)ce, (double)aux, o->model);
    else if (dsc_train_write_grads(t, o->output, ce, aux))
        rc = cli_die_status();
    else
        fprintf(stderr, "dsc: grad: %d x %d targets, loss_ce %.6f, loss_aux %.6f (alpha %g), %d tensors -> %s\n", B, T,
                ce, aux, (double)p.alpha, dsc_train_n_tensors(t), o->output);
    if (!rc && p.mtp_lambda > 0)
        fprintf(stderr, "dsc: grad: loss_mtp %.6f (lambda %g)\n", (double)dsc_train_loss_mtp(t), (double)p.mtp_lambda);
    dsc_trainer_free(t);
    free(tokens);
    return rc;
}
