/* tasks.c — see tasks.h (being written). */
#include "tasks/tasks.h"
