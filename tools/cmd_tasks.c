/* cmd_tasks.c — `dsc tasks` (being written). */
#include "cli.h"
int cmd_tasks(const cli_opts *o) { (void)o; return cli_die("tasks: not available yet"); }
