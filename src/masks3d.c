/* From 3-D end points to raw masks (CELLPOSE_ALGORITHM.md §8.8): histogram on the padded grid,
 * 5x5x5 seeds, growth of each seed in its 11x11x11 window (rows of the window as 11-bit masks, so a
 * 3x3x3 dilation is a few shifts and ORs), assignment. The seed order and the final big-mask
 * removal and renumbering are the 2-D ones (masks.c). */
#include "masks3d.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

/* The padded grid of a volume: sizes (z, y, x). */
static void grid_of(const int64_t L[3], int64_t G[3])
{
    for (int k = 0; k < 3; k++) G[k] = L[k] + 2 * CP_RPAD;
}

/* Grid index of a particle's end point (checked by cp_masks3_histogram). */
static inline int64_t cell_of(const cp_particle3 *q, const int64_t G[3])
{
    const int64_t z = (int64_t)q->c[0] + CP_RPAD, y = (int64_t)q->c[1] + CP_RPAD;
    return (z * G[1] + y) * G[2] + (int64_t)q->c[2] + CP_RPAD;
}

int cp_masks3_histogram(const cp_particle3 *p, int64_t n, const int64_t L[3], int32_t *h,
                        char *err)
{
    int64_t G[3];
    grid_of(L, G);
    for (int64_t i = 0; i < n; i++) {
        const float *c = p[i].c;
        for (int k = 0; k < 3; k++) /* written so that NaN fails too */
            if (!(c[k] >= 0.0f && c[k] <= (float)(L[k] - 1)))
                return cp_errf(err, CP_EDATA,
                               "masks3d: particle %lld: end point (%g, %g, %g) outside the "
                               "%lld x %lld x %lld volume",
                               (long long)i, (double)c[0], (double)c[1], (double)c[2],
                               (long long)L[0], (long long)L[1], (long long)L[2]);
        if (p[i].src < 0 || p[i].src >= L[0] * L[1] * L[2])
            return cp_errf(err, CP_EDATA,
                           "masks3d: particle %lld: source voxel %lld outside the %lld x %lld x "
                           "%lld volume",
                           (long long)i, (long long)p[i].src, (long long)L[0], (long long)L[1],
                           (long long)L[2]);
        h[cell_of(&p[i], G)]++;
    }
    return 0;
}

int cp_masks3_seeds(const int32_t *h, const int64_t L[3], cp_seed **seeds, int64_t *nseeds,
                    char *err)
{
    int64_t G[3];
    grid_of(L, G);
    return cp_masks_grid_seeds(h, G, seeds, nseeds, err);
}

enum { R3 = 5, N3 = 2 * R3 + 1, ROW3 = (1 << N3) - 1 };

void cp_masks3_grow(const int32_t *h, const int64_t L[3], cp_seed s, uint32_t label, uint32_t *M)
{
    int64_t G[3];
    grid_of(L, G);
    const int64_t sz = G[1] * G[2];
    const int64_t base = s.idx - R3 * sz - R3 * G[2] - R3; /* corner of the window */
    /* [z][y]: bit x of the window row */
    uint16_t in[N3][N3] = {{0}}, cur[N3][N3] = {{0}}, t[N3][N3];
    for (int z = 0; z < N3; z++)
        for (int y = 0; y < N3; y++)
            for (int x = 0; x < N3; x++)
                in[z][y] |= (uint16_t)((h[base + z * sz + y * G[2] + x] > 2) << x);
    cur[R3][R3] = 1u << R3;
    for (int it = 0; it < R3; it++) {
        /* dilation along x, then y, then z (a 3x3x3 box is separable), clipped to the window */
        for (int z = 0; z < N3; z++)
            for (int y = 0; y < N3; y++) {
                const unsigned r = cur[z][y];
                t[z][y] = (uint16_t)((r | r << 1 | r >> 1) & ROW3);
            }
        for (int z = 0; z < N3; z++)
            for (int y = 0; y < N3; y++)
                cur[z][y] = (uint16_t)(t[z][y] | (y > 0 ? t[z][y - 1] : 0) | (y < N3 - 1 ? t[z][y + 1] : 0));
        memcpy(t, cur, sizeof t);
        for (int z = 0; z < N3; z++)
            for (int y = 0; y < N3; y++)
                cur[z][y] = (uint16_t)((t[z][y] | (z > 0 ? t[z - 1][y] : 0) |
                                        (z < N3 - 1 ? t[z + 1][y] : 0)) & in[z][y]);
    }
    for (int z = 0; z < N3; z++)
        for (int y = 0; y < N3; y++)
            for (int x = 0; x < N3; x++)
                if (cur[z][y] >> x & 1) M[base + z * sz + y * G[2] + x] = label;
}

int cp_masks3_assign(const cp_particle3 *p, int64_t n, const int64_t L[3], const uint32_t *M,
                     uint32_t nlabels, double max_size_fraction, uint32_t *labels, char *err)
{
    int64_t G[3];
    grid_of(L, G);
    const int64_t nvox = L[0] * L[1] * L[2];
    memset(labels, 0, (size_t)nvox * sizeof *labels);
    for (int64_t i = 0; i < n; i++) labels[p[i].src] = M[cell_of(&p[i], G)];
    return cp_masks_finish(labels, nvox, nlabels, max_size_fraction, err);
}

/* Labels M of the seeds: grown in Cellpose's order (ascending count, its tie order) as 1..K. */
static int grow_all(const int32_t *h, const int64_t L[3], const cp_seed *seeds, int64_t K,
                    uint32_t *M, char *err)
{
    int32_t *counts = malloc((size_t)(K ? K : 1) * sizeof *counts);
    int64_t *order = malloc((size_t)(K ? K : 1) * sizeof *order);
    if (!counts || !order) {
        free(counts);
        free(order);
        return cp_errf(err, CP_ENOMEM, "masks3d: cannot allocate the order of %lld seeds",
                       (long long)K);
    }
    for (int64_t k = 0; k < K; k++) counts[k] = seeds[k].count;
    cp_seed_argsort(counts, K, order);
    for (int64_t k = 0; k < K; k++) cp_masks3_grow(h, L, seeds[order[k]], (uint32_t)(k + 1), M);
    free(counts);
    free(order);
    return 0;
}

int cp_masks3_raw(const cp_particle3 *p, int64_t n, const int64_t L[3], double max_size_fraction,
                  uint32_t *labels, int64_t *nseeds, char *err)
{
    *nseeds = 0;
    if (L[0] <= 0 || L[1] <= 0 || L[2] <= 0)
        return cp_errf(err, CP_EPARAM, "masks3d: volume %lld x %lld x %lld is empty",
                       (long long)L[0], (long long)L[1], (long long)L[2]);
    int64_t G[3];
    grid_of(L, G);
    const size_t cells = (size_t)(G[0] * G[1] * G[2]);
    int32_t *h = calloc(cells, sizeof *h);
    uint32_t *M = calloc(cells, sizeof *M);
    cp_seed *seeds = NULL;
    int64_t K = 0;
    int rc = 0;
    if (!h || !M)
        rc = cp_err_nomem(err, "masks3d", G, 3, "int32", 4, "for the histogram and its labels");
    if (!rc) rc = cp_masks3_histogram(p, n, L, h, err);
    if (!rc) rc = cp_masks3_seeds(h, L, &seeds, &K, err);
    if (!rc && K > UINT32_MAX - 1)
        rc = cp_errf(err, CP_EDATA, "masks3d: %lld seeds exceed the uint32 label range", (long long)K);
    if (!rc) rc = grow_all(h, L, seeds, K, M, err);
    if (!rc) {
        *nseeds = K;
        rc = cp_masks3_assign(p, n, L, M, (uint32_t)K, max_size_fraction, labels, err);
    }
    free(h);
    free(M);
    free(seeds);
    return rc;
}
