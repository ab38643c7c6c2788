/* The 2-D operations of the particle rounds (prounds.h) for the distributed flow following (see
 * dfollow.h): a cp_particle moves to the block of its stencil's top-left cell, ends in the block
 * of its end cell, and advances with src/follow.c on the block's "dp" window. */
#include "dfollow.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "follow.h"
#include "prounds.h"

/* The plane and the parameters. */
typedef struct ops_ctx {
    const cp_dplane *d;
    int32_t steps;
    int interp;
    float threshold;
} ops_ctx;

/* The cell coordinate of a position: follow.c's clamped truncation (NaN -> 0). Positions are
 * kept in [0, L-1] by follow.c, or are NaN. */
static int64_t cell_of(float v, int64_t L)
{
    return !(v > 0.0f) ? 0 : v >= (float)(L - 1) ? L - 1 : (int64_t)v;
}

/* Finished: the block of the end cell; else the block of the stencil's top-left cell (the same
 * cell), whose window (grown by 1) then holds the whole stencil. */
static int64_t dest(const void *ctx, const void *rec, int *fin)
{
    const ops_ctx *o = ctx;
    const cp_particle *p = rec;
    const cp_grid *g = &o->d->grid;
    *fin = p->steps >= o->steps;
    return cp_grid_block_at(g, cell_of(p->py, g->Ly), cell_of(p->px, g->Lx));
}

/* The seeds of block blk (its pixels with cellprob > threshold; cellprob on the window w),
 * written to q unless q is NULL; returns how many. */
static int64_t seeds(const cp_dplane *d, cp_rect blk, cp_rect w, const float *cellprob,
                     float threshold, cp_particle *q)
{
    int64_t n = 0;
    for (int64_t y = blk.y0; y < blk.y0 + blk.ny; y++)
        for (int64_t x = blk.x0; x < blk.x0 + blk.nx; x++)
            if (cellprob[(y - w.y0) * w.nx + x - w.x0] > threshold) {
                if (q) q[n] = (cp_particle){.src = y * d->grid.Lx + x, .py = (float)y, .px = (float)x};
                n++;
            }
    return n;
}

/* The seeds of block b, for the progress line (one more read of the block). */
static int64_t count_seeds(void *ctx, int64_t b)
{
    const ops_ctx *o = ctx;
    const cp_dplane *d = o->d;
    char name[64], err[CP_ERR_LEN];
    const cp_rect blk = cp_grid_block(&d->grid, b), w = cp_rect_grow(&d->grid, blk, 1);
    const int64_t npix = w.ny * w.nx;
    int64_t n = 0;
    float *dp = malloc(sizeof(float) * (size_t)(3 * npix));
    if (dp && !cp_bstore_get(d->store, cp_dname(d, CP_SLOT_DP, name), b, dp,
                             sizeof(float) * (size_t)(3 * npix), err))
        n = seeds(d, blk, w, dp + 2 * npix, o->threshold, NULL);
    free(dp); /* a failed read fails again, and is reported, in the round */
    return n;
}

/* Advances the particles of block b on its window (in round 0, first its seeds: the block's
 * pixels with cellprob > threshold). */
static int advance(void *ctx, int64_t b, int64_t r, void **qp, int64_t *nq, cp_progress *pr,
                   int64_t *travelling, char *err)
{
    const ops_ctx *o = ctx;
    const cp_dplane *d = o->d;
    const cp_rect blk = cp_grid_block(&d->grid, b), w = cp_rect_grow(&d->grid, blk, 1);
    const int64_t npix = w.ny * w.nx;
    float *dp = malloc(sizeof(float) * (size_t)(3 * npix));
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    char name[64];
    int rc = 0;
    if (!dp || !f) {
        rc = cp_errf(err, CP_ENOMEM, "dfollow.c: block %lld: out of memory for its field",
                     (long long)b);
        goto done;
    }
    rc = cp_bstore_get(d->store, cp_dname(d, CP_SLOT_DP, name), b, dp, sizeof(float) * (size_t)(3 * npix),
                       err);
    if (rc) {
        char why[CP_ERR_LEN];
        memcpy(why, err, sizeof why);
        rc = cp_errf(err, rc, "dfollow.c: block %lld: %s", (long long)b, why);
        goto done;
    }
    const float *cellprob = dp + 2 * npix;
    if (r == 0) {
        int64_t nseed = seeds(d, blk, w, cellprob, o->threshold, NULL);
        cp_particle *all = realloc(*qp, sizeof *all * (size_t)(*nq + nseed ? *nq + nseed : 1));
        if (!all) {
            rc = cp_errf(err, CP_ENOMEM, "dfollow.c: block %lld: out of memory for %lld particles",
                         (long long)b, (long long)(*nq + nseed));
            goto done;
        }
        *qp = all;
        *nq += seeds(d, blk, w, cellprob, o->threshold, all + *nq);
    }
    cp_follow_field(dp, cellprob, npix, o->threshold, f);
    const cp_field F = {.Ly = d->grid.Ly, .Lx = d->grid.Lx, .y0 = w.y0, .x0 = w.x0, .ny = w.ny,
                        .nx = w.nx, .f = f};
    *travelling += cp_follow_run_progress(&F, *qp, *nq, o->steps, o->interp, pr);
done:
    free(dp);
    free(f);
    return rc;
}

static const cp_prounds_ops ops2 = {.size = sizeof(cp_particle), .dest = dest, .advance = advance,
                                    .count_seeds = count_seeds};

int cp_dfollow_run_opts(const cp_dplane *d, int32_t steps, int interp, float threshold,
                        int64_t max_msg, int64_t max_held, int64_t *rounds, char *err)
{
    ops_ctx o = {.d = d, .steps = steps, .interp = interp, .threshold = threshold};
    char names[3][64];
    const cp_prounds pr = {.comm = d->comm, .rank = d->rank, .grid = &d->grid, .store = d->store,
                           .fin = cp_dname(d, CP_SLOT_FIN, names[0]),
                           .queue = {cp_dname(d, CP_SLOT_FQ0, names[1]),
                                     cp_dname(d, CP_SLOT_FQ1, names[2])},
                           .what = "dfollow.c", .progress_label = "flow following", .ops = &ops2,
                           .ctx = &o};
    return cp_prounds_run(&pr, max_msg, max_held, rounds, err);
}

int cp_dfollow_run(const cp_dplane *d, int32_t steps, int interp, float threshold, int64_t *rounds,
                   char *err)
{
    return cp_dfollow_run_opts(d, steps, interp, threshold, INT_MAX / d->nranks,
                               CP_DFOLLOW_MAX_HELD, rounds, err);
}
