/* Command line: Cellpose's flag names (--pretrained_model, --diameter, --chan, ...) mapped onto the
 * parameter table of params.h, plus --norm_percentile A B, --help and --version. */
#ifndef CP_CLI_H
#define CP_CLI_H

#include <stdio.h>

#include "params.h"

/* CP_CLI_EXIT: --help answered; CP_CLI_VERSION: --version asked, which the driver answers with
 * cp_version_print (it knows the MPI library). */
enum { CP_CLI_RUN = 0, CP_CLI_EXIT = 1, CP_CLI_VERSION = 2 };

/* Fills p (defaults first) from argv and validates it. Returns CP_CLI_RUN, CP_CLI_EXIT,
 * CP_CLI_VERSION, or a negative cp_err with a message naming the flag. */
int cp_cli_parse(int argc, char **argv, cp_params *p, char *err);
void cp_cli_usage(FILE *f);

#endif
