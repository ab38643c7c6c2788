/* Fuzz target: PyTorch .pth model files through src/pth.c (cp_pth_read: libzip's container,
 * our pickle interpreter, tensor storages with offsets and strides, dtype conversion). Seeds: the
 * tiny model of the shared data, truncated and re-zipped variants (tests/fuzz/make_corpus.py). */
#include <unistd.h>

#include "cp_err.h"
#include "fuzz_common.h"
#include "pth.h"

static volatile float sink; /* keeps the reads of every value */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[CP_ERR_LEN];
    int fd = cp_fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cp_pth p;
    if (cp_fuzz_note("read", cp_pth_read(path, &p, err), err) == 0) {
        for (int k = 0; k < p.n; k++) /* touch every value: the sizes must be what they say */
            for (int64_t i = 0; i < p.t[k].numel; i++) sink += p.t[k].data[i];
        (void)cp_pth_find(&p, "output.2.weight");
        cp_pth_free(&p);
    }
    close(fd);
    return 0;
}
