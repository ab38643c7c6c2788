/* Fuzz target: the dynamics and mask phase (src/compute_masks.c: follow, masks, flow-error QC,
 * resize, holes, min_size, protrusions) driven by untrusted flows: what a corrupt --flows FILE.h5
 * / dP.tif or a damaged checkpoint "dp" block hands to it after its reader accepted the bytes
 * (any float, NaN and Inf included). Input layout (8-byte header, then values):
 *   byte 0, 1: Ly, Lx (1..32, the dynamics scale); byte 2, 3: the image size Ly, Lx (1..48: a
 *   different size exercises the nearest resize); byte 4: iterations (0..255); byte 5: bits
 *   0 interp, 1 flow-error QC, 2 protrusions, 3 values as raw float32 (else int8 / 8);
 *   byte 6: cellprob threshold (int8 / 16); byte 7: min_size (int8);
 *   then dP (2, Ly, Lx) and cellprob (Ly, Lx), missing values 0.
 * Built without OpenMP (one thread, the same arithmetic). Seeds: round cells written by
 * tests/fuzz/make_corpus.py in this layout. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compute_masks.h"
#include "cp_err.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    int64_t Ldy = 1 + data[0] % 32, Ldx = 1 + data[1] % 32;
    int64_t Ly = 1 + data[2] % 48, Lx = 1 + data[3] % 48;
    int flags = data[5], raw = flags & 8;
    cp_mask_params mp = {
        .steps = data[4],
        .interp = flags & 1,
        .cellprob_threshold = (float)(int8_t)data[6] / 16.0f,
        .flow_threshold = flags & 2 ? 0.4 : 0.0,
        .max_size_fraction = 0.4,
        .min_size = (int8_t)data[7],
        .protrusions = (flags & 4) != 0,
        .protrusion_max_len = 6,
    };
    int64_t n = Ldy * Ldx;
    float *v = calloc((size_t)(3 * n), sizeof *v); /* dP then cellprob */
    uint32_t *labels = malloc(sizeof *labels * (size_t)(Ly * Lx));
    if (!v || !labels) {
        free(v);
        free(labels);
        return 0;
    }
    const uint8_t *p = data + 8, *end = data + size;
    for (int64_t i = 0; i < 3 * n && p < end; i++) {
        if (raw && end - p >= 4) {
            memcpy(&v[i], p, 4);
            p += 4;
        } else {
            v[i] = (float)(int8_t)*p++ / 8.0f;
        }
    }
    char err[CP_ERR_LEN];
    int rc = cp_compute_masks(v, v + 2 * n, Ldy, Ldx, &mp, Ly, Lx, labels, NULL, err);
    cp_fuzz_note("masks", rc, err);
    free(v);
    free(labels);
    return 0;
}
