/* The 3-D operations of the particle rounds (prounds.h) for the distributed 3-D flow following
 * (see dfollow3.h): a cp_particle3 moves to the block of cp_follow3_cell, advances with
 * cp_follow3_run on the block's "dp3" window, and is turned into voxel units when it finishes
 * (what "fin3" holds), so that routing it again (after an exchange) finds the same block. */
#include "dfollow3.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "follow3d.h"
#include "prounds.h"

/* The volume and the parameters. */
typedef struct ops_ctx {
    const cp_grid *g;
    const cp_bstore *store;
    int64_t L[3];
    int32_t steps;
    int interp;
    float threshold;
} ops_ctx;

/* The block of voxel cell. */
static int64_t block_of(const cp_grid *g, const int64_t cell[3])
{
    return cp_grid_block_at3(g, cell[0], cell[1], cell[2]);
}

/* Finished (voxel units): the block of the end voxel; else the block of cp_follow3_cell. */
static int64_t dest(const void *ctx, const void *rec, int *fin)
{
    const ops_ctx *o = ctx;
    const cp_particle3 *p = rec;
    int64_t cell[3];
    *fin = p->steps >= o->steps;
    cp_follow3_cell(p, o->L, *fin ? 0 : o->interp, cell);
    return block_of(o->g, cell);
}

/* "dp3" of block b into a malloc'ed *dp (4 channels on the window *w); its block *box. */
static int load(const ops_ctx *o, int64_t b, float **dp, cp_box3 *box, cp_box3 *w, char *err)
{
    *box = cp_grid_box(o->g, b), *w = cp_box3_grow(o->g, *box, 1);
    const size_t bytes = sizeof(float) * (size_t)(4 * cp_box3_voxels(*w));
    *dp = malloc(bytes);
    if (!*dp)
        return cp_errf(err, CP_ENOMEM, "dfollow3.c: block %lld: out of memory for its field",
                       (long long)b);
    int rc = cp_bstore_get(o->store, CP_DFOLLOW3_FIELD, b, *dp, bytes, err);
    if (rc) {
        char why[CP_ERR_LEN];
        memcpy(why, err, sizeof why);
        rc = cp_errf(err, rc, "dfollow3.c: block %lld: %s", (long long)b, why);
    }
    return rc;
}

/* The seeds of block box (cellprob on the window w), written to p unless p is NULL; returns how
 * many, or -1 when out of memory. */
static int64_t seeds(const ops_ctx *o, cp_box3 box, cp_box3 w, const float *cellprob,
                     cp_particle3 *p)
{
    float *cb = malloc(sizeof *cb * (size_t)(cp_box3_voxels(box) ? cp_box3_voxels(box) : 1));
    if (!cb) return -1;
    for (int64_t z = 0, i = 0; z < box.n[0]; z++)
        for (int64_t y = 0; y < box.n[1]; y++, i += box.n[2])
            memcpy(cb + i,
                   cellprob + ((box.o[0] - w.o[0] + z) * w.n[1] + box.o[1] - w.o[1] + y) * w.n[2] +
                       box.o[2] - w.o[2],
                   sizeof *cb * (size_t)box.n[2]);
    const int64_t n = cp_follow3_particles_box(cb, o->L, box.o, box.n, o->threshold, o->interp, p);
    free(cb);
    return n;
}

/* The seeds of block b, for the progress line (one more read of the block). */
static int64_t count_seeds(void *ctx, int64_t b)
{
    const ops_ctx *o = ctx;
    float *dp;
    cp_box3 box, w;
    char err[CP_ERR_LEN];
    int64_t n = 0;
    if (!load(o, b, &dp, &box, &w, err)) n = seeds(o, box, w, dp + 3 * cp_box3_voxels(w), NULL);
    free(dp); /* a failed read fails again, and is reported, in the round */
    return n > 0 ? n : 0;
}

/* Advances the particles of block b on its window (in round 0, first its seeds); those that
 * finish are turned into voxel units. An unfinished particle whose stencil is in this window
 * could not move: NaN flows. */
static int advance(void *ctx, int64_t b, int64_t r, void **qp, int64_t *nq, cp_progress *pr,
                   int64_t *travelling, char *err)
{
    const ops_ctx *o = ctx;
    float *dp, *f = NULL;
    cp_box3 box, w;
    int rc = load(o, b, &dp, &box, &w, err);
    const int64_t nvox = cp_box3_voxels(w);
    if (!rc && r == 0) {
        const float *cellprob = dp + 3 * nvox;
        const int64_t ns = seeds(o, box, w, cellprob, NULL);
        cp_particle3 *all = ns < 0 ? NULL : realloc(*qp, sizeof *all * (size_t)(*nq + ns ? *nq + ns : 1));
        if (all) *qp = all;
        if (!all || seeds(o, box, w, cellprob, all + *nq) < 0)
            rc = cp_errf(err, CP_ENOMEM, "dfollow3.c: block %lld: out of memory for its seeds",
                         (long long)b);
        else
            *nq += ns;
    }
    if (!rc && !(f = malloc(sizeof *f * (size_t)(3 * nvox))))
        rc = cp_errf(err, CP_ENOMEM, "dfollow3.c: block %lld: out of memory for its field",
                     (long long)b);
    if (rc) {
        free(dp);
        return rc;
    }
    cp_follow3_field(dp, dp + 3 * nvox, nvox, o->L, o->threshold, o->interp, f);
    free(dp);
    const cp_field3 F = {.L = {o->L[0], o->L[1], o->L[2]}, .w0 = {w.o[0], w.o[1], w.o[2]},
                         .n = {w.n[0], w.n[1], w.n[2]}, .interp = o->interp, .f = f};
    cp_particle3 *q = *qp;
    *travelling += cp_follow3_run(&F, q, *nq, o->steps);
    free(f);
    if (pr) cp_progress_add(pr, *nq);
    int64_t stuck = 0;
    for (int64_t i = 0; i < *nq; i++) {
        int fin;
        if (dest(o, &q[i], &fin) == b && !fin) stuck++;
        if (fin) cp_follow3_to_voxels(&q[i], 1, o->L, o->interp);
    }
    return stuck ? cp_errf(err, CP_EDATA, "dfollow3.c: block %lld: %lld particles met NaN flows",
                           (long long)b, (long long)stuck)
                 : 0;
}

static const cp_prounds_ops ops3 = {.size = sizeof(cp_particle3), .dest = dest,
                                    .advance = advance, .count_seeds = count_seeds};

int cp_dfollow3_put(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, const float *dP,
                    const float *cellprob, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    int64_t b0, b1;
    cp_grid_range(g, rank, &b0, &b1);
    const int64_t L[3] = {g->Lz, g->Ly, g->Lx}, nv = L[0] * L[1] * L[2];
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        const cp_box3 w = cp_box3_grow(g, cp_grid_box(g, b), 1);
        const int64_t n = cp_box3_voxels(w);
        float *a = malloc(sizeof *a * (size_t)(4 * n));
        if (!a) {
            rc = cp_errf(err, CP_ENOMEM, "dfollow3.c: block %lld: out of memory", (long long)b);
            break;
        }
        for (int c = 0; c < 4; c++) /* dZ, dY, dX, cellprob */
            for (int64_t z = 0; z < w.n[0]; z++)
                for (int64_t y = 0; y < w.n[1]; y++)
                    memcpy(a + c * n + (z * w.n[1] + y) * w.n[2],
                           (c < 3 ? dP + c * nv : cellprob) +
                               ((w.o[0] + z) * L[1] + w.o[1] + y) * L[2] + w.o[2],
                           sizeof *a * (size_t)w.n[2]);
        rc = cp_bstore_put(store, CP_DFOLLOW3_FIELD, b, a, sizeof *a * (size_t)(4 * n), err);
        free(a);
    }
    return cp_agree(comm, rc, err);
}

int cp_dfollow3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store, int32_t steps,
                    int interp, float threshold, int64_t max_msg, int64_t max_held,
                    int64_t *rounds, char *err)
{
    ops_ctx o = {.g = g, .store = store, .L = {g->Lz, g->Ly, g->Lx}, .steps = steps,
                 .interp = interp, .threshold = threshold};
    int rank;
    MPI_Comm_rank(comm, &rank);
    *rounds = 0;
    int rc = cp_follow3_check(o.L, interp, err);
    if (!rc && steps < 0)
        rc = cp_errf(err, CP_EPARAM, "dfollow3.c: %d steps: need 0 or more", (int)steps);
    rc = cp_agree(comm, rc, err);
    if (rc) return rc;
    const cp_prounds pr = {.comm = comm, .rank = rank, .grid = g, .store = store,
                           .fin = CP_DFOLLOW3_FIN, .queue = {"fq3a", "fq3b"},
                           .what = "dfollow3.c", .progress_label = "flow following 3-D",
                           .ops = &ops3, .ctx = &o};
    return cp_prounds_run(&pr, max_msg, max_held, rounds, err);
}
