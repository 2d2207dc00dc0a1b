/* cmd_rl.c — `dsc sft`, `dsc grpo`, `dsc eval` (being written). */
#include "cli.h"
int cmd_sft(const cli_opts *o) { (void)o; return cli_die("sft: not available yet"); }
int cmd_grpo(const cli_opts *o) { (void)o; return cli_die("grpo: not available yet"); }
int cmd_eval(const cli_opts *o) { (void)o; return cli_die("eval: not available yet"); }
