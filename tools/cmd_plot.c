/* cmd_plot.c — `dsc plot` (being written). */
#include "cli.h"
int cmd_plot(const cli_opts *o) { (void)o; return cli_die("plot: not available yet"); }
