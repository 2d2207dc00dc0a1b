/*
 * data.h — training data for the loop (data.c): text files tokenized into
 * one stream (EOS after every document), packed into sequences of T + 1
 * tokens, a held-out tail for validation, and the training sequences in a
 * seeded random order per epoch.
 */
#ifndef DSC_TRAIN_DATA_H
#define DSC_TRAIN_DATA_H

#include <stdint.h>

#include "dsc.h"

typedef struct {
    int32_t *tokens;     /* [n_tokens] the stream                                   */
    uint8_t *mask;       /* [n_tokens] 1 when token i is a target of the loss (chat  */
                         /* data: the answers); NULL: every token                   */
    int64_t n_tokens;
    int32_t T;           /* sequence i is tokens[i T .. i T + T] (T + 1 tokens: each  */
                         /* token is a target once)                                 */
    int64_t n_seq;       /* (n_tokens - 1) / T                                      */
    int64_t n_train;     /* sequences [0, n_train) train, [n_train, n_seq) validate  */
    int64_t n_val;
    uint64_t hash;       /* FNV-1a of the stream: a resume must see the same data    */
    uint64_t seed;
    int32_t *perm;       /* [n_train] order of the epoch in perm_epoch                */
    int64_t perm_epoch;
} trn_data;

/* Tokenizes files (no BOS; eos after each file; added tokens spelled in the
 * text, such as <think>, become those tokens) and packs them. val_frac of
 * the sequences (at least one when there are two or more and val_frac > 0)
 * are held out from the end. On failure d is empty (safe to free). */
dsc_status trn_data_load(trn_data *d, const dsc_tokenizer *tok, const char *const *files, int n_files, int32_t eos,
                         int32_t T, float val_frac, uint64_t seed);
void trn_data_free(trn_data *d);

/* Copies the next B training sequences (B, T + 1) into out (and, if mask is
 * non-NULL, their (B, T) target flags), from position
 * (*epoch, *cursor) of the shuffled order, and advances it (crossing into
 * the next epoch's order when one ends). */
dsc_status trn_data_next(trn_data *d, int64_t *epoch, int64_t *cursor, int32_t B, int32_t *out, uint8_t *mask);

/* Validation sequences first .. first + n - 1 (n <= n_val - first) into out. */
void trn_data_val(const trn_data *d, int64_t first, int32_t n, int32_t *out, uint8_t *mask);

/* Chat examples for supervised fine-tuning: JSON lines {"messages": [...]}
 * ending with a user message and the assistant's answer. Each example is
 * the R1 chat template of its prompt (ending "<think>\n"; an answer's own
 * leading "<think>\n" is dropped) + the answer + EOS; only the answer and
 * EOS are targets (mask). Examples are packed whole into blocks of T tokens
 * padded with EOS (no loss); one longer than T is an error. mask_out of
 * trn_data_next / trn_data_val receives (B, T) target flags. */
dsc_status trn_data_load_chat(trn_data *d, const dsc_tokenizer *tok, const char *const *files, int n_files, int32_t eos,
                              int32_t T, float val_frac, uint64_t seed);

#endif
