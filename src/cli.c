/* Command-line parsing onto the parameter table (see cli.h). */
#include "cli.h"

#include <string.h>

#include "cp_err.h"
#include "jobfile.h"

void cp_cli_usage(FILE *f)
{
    fprintf(f, "usage: cellpose-mpi --pretrained_model MODEL (--image_path FILE | --dir DIR) "
               "[options]\n"
               "       cellpose-mpi --flows FILE.h5 | --flows dP.tif --cellprob_in cellprob.tif "
               "[options]\n\noptions (Cellpose's names and defaults):\n");
    for (const cp_param_def *d = cp_param_defs; d->name; d++) {
        if (!strncmp(d->name, "norm_percentile_", 16)) continue;
        const char *arg = d->type == CP_PT_FLAG ? "" : d->type == CP_PT_STR ? " S" : " N";
        fprintf(f, "  --%s%s%*s%s\n", d->name, arg, (int)(24 - strlen(d->name) - strlen(arg)),
                "", d->help);
    }
    fprintf(f, "  --norm_percentile A B    percentiles for normalization (1 99)\n"
               "  --help, --version\n");
}

/* The value of the last --job of argv (walking flags and their values as the parser does), or
 * NULL. */
static const char *job_argument(int argc, char **argv)
{
    const char *job = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--norm_percentile")) {
            i += 2;
            continue;
        }
        const cp_param_def *d = strncmp(argv[i], "--", 2) ? NULL : cp_param_find(argv[i] + 2);
        if (!d || d->type == CP_PT_FLAG || i + 1 >= argc) continue;
        if (!strcmp(d->name, "job")) job = argv[i + 1];
        i++;
    }
    return job;
}

int cp_cli_parse(int argc, char **argv, cp_params *p, char *err)
{
    cp_params_default(p);
    const char *job = job_argument(argc, argv);
    if (job) { /* the file first, then the flags over it */
        int rc = cp_jobfile_load(job, p, err);
        if (rc) return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cp_cli_usage(stdout);
            return CP_CLI_EXIT;
        }
        if (!strcmp(a, "--version")) return CP_CLI_VERSION;
        if (strncmp(a, "--", 2))
            return cp_errf(err, CP_EPARAM, "unexpected argument '%s' (flags start with --)", a);
        int rc;
        if (!strcmp(a, "--norm_percentile")) {
            if (i + 2 >= argc)
                return cp_errf(err, CP_EPARAM, "--norm_percentile: needs two values A B");
            if ((rc = cp_param_set(p, cp_param_find("norm_percentile_lo"), argv[i + 1], err)) ||
                (rc = cp_param_set(p, cp_param_find("norm_percentile_hi"), argv[i + 2], err)))
                return rc;
            i += 2;
            continue;
        }
        const cp_param_def *d = cp_param_find(a + 2);
        if (!d) return cp_errf(err, CP_EPARAM, "unknown option '%s' (see --help)", a);
        const char *value = NULL;
        if (d->type != CP_PT_FLAG) {
            if (i + 1 >= argc) return cp_errf(err, CP_EPARAM, "%s: needs a value", a);
            value = argv[++i];
        }
        if ((rc = cp_param_set(p, d, value, err))) return rc;
    }
    int rc = cp_params_validate(p, err);
    return rc ? rc : CP_CLI_RUN;
}
