/* Fuzz target: the saved-flows HDF5 reader of --flows FILE.h5 in src/h5store.c
 * (cp_h5_read_flows: sizes, then the data; cp_h5_read_flows_window: a window of one plane, as the
 * distributed driver reads it; cp_h5_read_flows3: the 3-D flows of --do_3D, sizes and data). Serial HDF5 (no MPI_Init needed); every HDF5 object the reader opens must be closed when it
 * returns (checked after each input: a leaked id is a crash). Seeds: small --save_flows files
 * written by cp_h5_create/cp_h5_write_flows (tests/fuzz/make_corpus.py through h5py). Datasets
 * over 4 Mi values are read as windows only. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "cp_err.h"
#include "fuzz_common.h"
#include "h5store.h"

#define WHOLE_MAX ((int64_t)1 << 22)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1); /* a memfd: nobody else opens it */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256], err[CP_ERR_LEN];
    if (cp_fuzz_named_file(data, size, path, sizeof path)) return 0;
    int64_t nz, ny, nx;
    if (cp_fuzz_note("sizes", cp_h5_read_flows(path, &nz, &ny, &nx, NULL, NULL, err), err) == 0) {
        if (nz > 0 && ny > 0 && nx > 0 && nz <= WHOLE_MAX && ny <= WHOLE_MAX && nx <= WHOLE_MAX &&
            nz * ny * nx <= WHOLE_MAX) {
            float *dP = malloc(sizeof(float) * (size_t)(2 * nz * ny * nx));
            float *cp = malloc(sizeof(float) * (size_t)(nz * ny * nx));
            if (dP && cp)
                cp_fuzz_note("data", cp_h5_read_flows(path, &nz, &ny, &nx, dP, cp, err), err);
            free(dP);
            free(cp);
        }
        int64_t h = ny < 16 ? ny : 16, w = nx < 24 ? nx : 24;
        if (h > 0 && w > 0) {
            float *dP = malloc(sizeof(float) * (size_t)(3 * h * w));
            if (dP)
                cp_fuzz_note("window",
                             cp_h5_read_flows_window(path, nz - 1, ny - h, nx - w, h, w, dP,
                                                     dP + 2 * h * w, err),
                             err);
            free(dP);
        }
    }
    int64_t n[3];
    if (cp_fuzz_note("sizes3", cp_h5_read_flows3(path, n, NULL, NULL, err), err) == 0 &&
        n[0] * n[1] * n[2] <= WHOLE_MAX) {
        const int64_t nvox = n[0] * n[1] * n[2];
        float *f = malloc(sizeof(float) * (size_t)(4 * nvox));
        if (f) cp_fuzz_note("data3", cp_h5_read_flows3(path, n, f, f + 3 * nvox, err), err);
        free(f);
    }
    /* every file, dataset and dataspace our reader opened must be closed again */
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "fuzz_flows_h5: %zd HDF5 objects left open by the reader\n", open_ids);
        abort();
    }
    return 0;
}
