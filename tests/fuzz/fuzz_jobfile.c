/* Fuzz target: job files through src/jobfile.c (libconfig syntax, then every key through
 * cp_param_set's range checks) and the cross-parameter checks of cp_params_validate. Seeds: the
 * .cfg files of jobs/ and hand-made variants (tests/fuzz/make_corpus.py). */
#include <unistd.h>

#include "cp_err.h"
#include "fuzz_common.h"
#include "jobfile.h"
#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[CP_ERR_LEN];
    int fd = cp_fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cp_params p;
    cp_params_default(&p);
    if (cp_fuzz_note("load", cp_jobfile_load(path, &p, err), err) == 0)
        cp_fuzz_note("validate", cp_params_validate(&p, err), err);
    close(fd);
    return 0;
}
