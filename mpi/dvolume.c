/* --do_3D over 3-D owner blocks (see dvolume.h). */
#include "dvolume.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "commtime.h"
#include "cp_err.h"
#include "dcells.h"
#include "dfollow.h"
#include "dfollow3.h"
#include "dmasks3.h"
#include "dnorm.h"
#include "dpost3.h"
#include "dresize3.h"
#include "flows3d_input.h"
#include "h5par.h"
#include "dnet3.h"
#include "prep.h"
#include "progress.h"
#include "segment.h"

/* The run's state: the call, the grids, the normalization, the phase clock. */
typedef struct vol {
    cp_dvolume *v;
    int rank, nranks;
    int64_t L[3];            /* the input volume (or the saved flows) */
    cp_grid g;               /* the dynamics: L, or the network scale with --no_resample */
    cp_grid gm;              /* the labels: g, or their grid after --no_resample's resize */
    cp_bstore image_scale;   /* gm's blocks when gm is not g (a folder of the work folder) */
    const cp_bstore *ms;     /* the store of gm's blocks */
    cp_norm norm[2];
    int inv[2];
    double t0, c0;
} vol;

#define say(k, ...) cp_say((k)->rank || (k)->v->p->quiet, __VA_ARGS__)

static void lap(vol *k, cp_phase ph) { cp_comm_lap(k->v->tm, ph, &k->t0, &k->c0); }

/* cp_net3d_reader: box b of the normalized volume (b.n, 2), read plane by plane, normalized and
 * inverted voxel by voxel as the whole-volume engine does. */
static int read_normalized(void *arg, cp_box3 b, float *dst, char *err)
{
    const vol *k = arg;
    const int64_t plane = b.n[1] * b.n[2], n = b.n[0] * plane;
    int rc = 0;
    for (int64_t z = 0; !rc && z < b.n[0]; z++)
        rc = cp_image_read(k->v->im, b.o[0] + z, b.o[1], b.o[2], b.n[1], b.n[2],
                           dst + z * plane * 2, err);
    if (!rc && !k->v->p->no_norm) cp_norm_apply(dst, n, k->norm, 0);
    if (!rc) cp_norm_invert(dst, n, k->inv);
    return rc;
}

/* cp_dnet3_emit: window j of the network's list is own block todo[j]; stored as its "dp3". */
typedef struct net_blocks {
    const vol *k;
    const int64_t *todo;
} net_blocks;

static int store_block(void *arg, int64_t j, const float *out4, char *err)
{
    const net_blocks *nb = arg;
    const cp_grid *g = &nb->k->g;
    const cp_box3 w = cp_box3_grow(g, cp_grid_box(g, nb->todo[j]), 1);
    return cp_bstore_put(nb->k->v->store, CP_DFOLLOW3_FIELD, nb->todo[j], out4,
                         sizeof(float) * (size_t)(4 * cp_box3_voxels(w)), err);
}

/* CP_EINTR on every rank when a stop was requested on any (SIGTERM, SIGUSR1): the phases after
 * the network keep nothing, so a stop between them ends the run at once; --resume reuses the
 * network blocks. */
static int stopped(const vol *k, const char *after, char *err)
{
    int mine = *k->v->stop != 0, any;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, k->v->comm);
    return any ? cp_errf(err, CP_EINTR, "stopped by a signal after %s", after) : 0;
}

/* Blocks of side B per rank in a wave of the network (plan.h NET3_WAVE_VOXELS), at least 1. */
static int64_t wave_blocks(int64_t B)
{
    int64_t n = NET3_WAVE_VOXELS / (B * B * B);
    return n > 0 ? n : 1;
}

/* The network phase: "dp3" of every own block (its box grown by 1 voxel, 4 channels) from the
 * network (cp_dnet3_windows: each tile once per wave), or read from the saved flows with --flows;
 * a block kept from a checkpoint when it verifies. */
static int network(vol *k, int64_t *reused, cp_dnet3_stats *st, char *err)
{
    const cp_dvolume *v = k->v;
    const cp_params *p = v->p;
    const cp_net3d_params np = {
        .rescale = v->plan->rescale, .anisotropy = p->anisotropy, .resample = !p->no_resample,
        .tile_overlap = p->tile_overlap, .augment = p->augment, .batch_size = p->batch_size,
        .smooth = p->flow3D_smooth,
    };
    int64_t b0, b1, n = 0;
    cp_grid_range(&k->g, k->rank, &b0, &b1);
    int64_t *todo = malloc(sizeof *todo * (size_t)(b1 - b0 + 1));
    cp_box3 *ws = malloc(sizeof *ws * (size_t)(b1 - b0 + 1));
    int rc = todo && ws ? 0 : cp_errf(err, CP_ENOMEM, "network: out of memory for the blocks");
    for (int64_t b = b0; !rc && b < b1; b++) {
        const cp_box3 w = cp_box3_grow(&k->g, cp_grid_box(&k->g, b), 1);
        char ignored[CP_ERR_LEN];
        if (!v->resume || cp_bstore_verify(v->store, CP_DFOLLOW3_FIELD, b,
                                           sizeof(float) * (size_t)(4 * cp_box3_voxels(w)),
                                           ignored))
            todo[n] = b, ws[n++] = w;
    }
    *reused = b1 - b0 - n;
    memset(st, 0, sizeof *st);
    net_blocks nb = {k, todo};
    if (v->im) {
        rc = cp_agree(v->comm, rc, err);
        if (!rc)
            rc = cp_dnet3_windows(v->comm, v->m, read_normalized, k, k->L, &np, ws, n,
                                  wave_blocks(k->g.B), v->store->dir, v->stop, store_block, &nb,
                                  st, err);
    } else { /* --flows: the saved field, block by block */
        cp_progress pr;
        cp_progress_begin(&pr, "saved flows", k->nranks > 1 ? "blocks of rank 0" : "blocks", n);
        float *out = NULL;
        for (int64_t j = 0; !rc && j < n; j++) {
            free(out);
            out = malloc(sizeof(float) * (size_t)(4 * cp_box3_voxels(ws[j])));
            rc = out ? cp_flows3_window(p, k->L, ws[j], out, err)
                     : cp_errf(err, CP_ENOMEM, "network: out of memory for a block");
            if (!rc) rc = store_block(&nb, j, out, err);
            cp_progress_add(&pr, !rc);
            if (!rc && *v->stop)
                rc = cp_errf(err, CP_EINTR, "stopped by a signal in the network phase");
        }
        free(out);
        if (rc) cp_progress_cancel(&pr);
        cp_progress_end(&pr);
        rc = cp_agree(v->comm, rc, err);
    }
    free(todo), free(ws);
    MPI_Allreduce(MPI_IN_PLACE, reused, 1, MPI_INT64_T, MPI_SUM, v->comm);
    return rc;
}

/* The centre (block q) of a grown block's 4-channel field f (box w) into dP (3, q) and
 * cellprob (q). */
static void field_centre(const float *f, cp_box3 w, cp_box3 q, float *dP, float *cellprob)
{
    const int64_t nq = cp_box3_voxels(q), nw = cp_box3_voxels(w);
    for (int c = 0; c < 4; c++) {
        float *dst = c < 3 ? dP + c * nq : cellprob;
        for (int64_t z = 0; z < q.n[0]; z++)
            for (int64_t y = 0; y < q.n[1]; y++)
                memcpy(dst + (z * q.n[1] + y) * q.n[2],
                       f + c * nw + ((q.o[0] - w.o[0] + z) * w.n[1] + q.o[1] - w.o[1] + y) *
                                        w.n[2] + q.o[2] - w.o[2],
                       sizeof *dst * (size_t)q.n[2]);
    }
}

/* Collective writes in rounds, round i writing every rank's i-th own block (a rank past its last
 * block writes an empty box): the final labels (grid gm), and with flows the field's centre
 * (grid g). */
static int write_blocks(vol *k, cp_h5out *h, int flows, char *err)
{
    const cp_grid *g = flows ? &k->g : &k->gm;
    const cp_bstore *s = flows ? k->v->store : k->ms;
    int64_t b0, b1, mine, most;
    cp_grid_range(g, k->rank, &b0, &b1);
    mine = b1 - b0;
    MPI_Allreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, k->v->comm);
    int rc = 0;
    for (int64_t i = 0; !rc && i < most; i++) {
        const cp_box3 q = i < mine ? cp_grid_box(g, b0 + i) : (cp_box3){{0}, {0, 0, 0}};
        const cp_box3 w = i < mine ? cp_box3_grow(g, q, 1) : q;
        const int64_t nq = cp_box3_voxels(q), nw = cp_box3_voxels(w);
        void *a = malloc(sizeof(float) * (size_t)(flows ? 4 * (nq + nw) + 1 : nq + 1));
        int lrc = a ? 0 : cp_errf(err, CP_ENOMEM, "write: out of memory");
        if (!lrc && nq)
            lrc = flows ? cp_bstore_get(s, CP_DFOLLOW3_FIELD, b0 + i, a,
                                        sizeof(float) * (size_t)(4 * nw), err)
                        : cp_bstore_get(s, CP_DPOST3_OUT, b0 + i, a,
                                        sizeof(uint32_t) * (size_t)nq, err);
        float *c = (float *)a + 4 * nw;
        if (!lrc && nq && flows) field_centre(a, w, q, c, c + 3 * nq);
        rc = cp_agree(k->v->comm, lrc, err);
        if (!rc && flows) rc = cp_h5_write_flows3(h, q.o, q.n, c, c + 3 * nq, err);
        else if (!rc) rc = cp_h5_write_labels3(h, q.o, q.n, a, err);
        free(a);
    }
    return rc;
}

/* The output file: /labels, the flows with --save_flows, and rank 0's rows of /cells. */
static int output(vol *k, int64_t nlabels, cp_h5out **h, cp_cell **cells, int64_t *ncells,
                  char *err)
{
    cp_dvolume *v = k->v;
    const int64_t Lm[3] = {k->gm.Lz, k->gm.Ly, k->gm.Lx}, Ld[3] = {k->g.Lz, k->g.Ly, k->g.Lx};
    cp_h5_backend be = cp_h5par_backend(&v->comm); /* v outlives the file */
    int rc = cp_h5_create(v->out_path, &be, Lm[0], Lm[1], Lm[2], CP_H5_VOLUME, 0, 0, h, err);
    if (!rc && v->p->save_flows) rc = cp_h5_create_flows3(*h, Ld, err);
    if (!rc) rc = write_blocks(k, *h, 0, err);
    if (!rc && v->p->save_flows) rc = write_blocks(k, *h, 1, err);
    if (!rc) rc = cp_dcells_blocks(v->comm, &k->gm, k->ms, CP_DPOST3_OUT, -1, nlabels, cells,
                                   ncells, err);
    if (rc && *h) {
        cp_h5_abort(*h);
        *h = NULL;
    }
    return rc;
}

/* The grids of the run (cp_volume_grids; with --flows both are the flows' grid) and, when the
 * masks are resized (--no_resample with a rescale or anisotropy), the folder of gm's blocks. */
static int grids(vol *k, char *err)
{
    const cp_dvolume *v = k->v;
    const cp_plan *pl = v->plan;
    int64_t Ld[3], Lm[3];
    int rc = 0;
    memcpy(Ld, k->L, sizeof Ld), memcpy(Lm, k->L, sizeof Lm);
    if (v->im && (rc = cp_volume_grids(v->p, k->L, pl->rescale, Ld, Lm, err))) return rc;
    cp_grid_init3(&k->g, Ld[0], Ld[1], Ld[2], pl->B, k->nranks);
    cp_grid_init3(&k->gm, Lm[0], Lm[1], Lm[2], pl->B, k->nranks);
    k->ms = v->store;
    if (!memcmp(Ld, Lm, sizeof Ld)) return 0;
    say(k, "%s: dynamics at the network scale %lldx%lldx%lld (--no_resample), masks resized to "
        "%lldx%lldx%lld", v->out_path, (long long)Ld[0], (long long)Ld[1], (long long)Ld[2],
        (long long)Lm[0], (long long)Lm[1], (long long)Lm[2]);
    char dir[sizeof k->image_scale.dir + 16];
    snprintf(dir, sizeof dir, "%s/image_scale", v->store->dir);
    k->ms = &k->image_scale;
    return cp_agree(v->comm, cp_bstore_open(&k->image_scale, dir, err), err);
}

int cp_dvolume_run(cp_dvolume *v, cp_h5out **h, cp_cell **cells, int64_t *ncells,
                   int64_t *nmasks, char *err)
{
    const cp_params *p = v->p;
    const cp_plan *pl = v->plan;
    vol k = {.v = v, .t0 = MPI_Wtime(), .c0 = cp_comm_seconds()};
    MPI_Comm_rank(v->comm, &k.rank);
    MPI_Comm_size(v->comm, &k.nranks);
    *h = NULL, *cells = NULL, *ncells = 0, *nmasks = 0;
    int64_t reused = 0;
    cp_dnet3_stats nst;
    k.L[0] = pl->nz, k.L[1] = pl->Ly0, k.L[2] = pl->Lx0;
    int rc = grids(&k, err);
    if (rc) return rc;
    say(&k, "%s: %lldx%lldx%lld in 3-D on %d rank(s), blocks of %lld (%lld blocks); rescale "
        "%.6g, %d steps", v->out_path, (long long)pl->nz, (long long)pl->Ly0, (long long)pl->Lx0,
        k.nranks, (long long)pl->B, (long long)k.g.nblocks, pl->rescale, pl->steps);
    if (v->im && !p->no_norm) /* over every voxel of the volume, Cellpose's sample (§8.3) */
        rc = cp_dnorm_compute(v->comm, v->im, 0, pl->nz, p->norm_percentile_lo,
                              p->norm_percentile_hi, k.norm, err);
    for (int c = 0; c < 2; c++) k.inv[c] = p->invert && !p->no_norm && k.norm[c].good;
    lap(&k, CP_PH_PREP);
    if (!rc) rc = network(&k, &reused, &nst, err);
    lap(&k, CP_PH_NET);
    if (rc) return rc;
    if (v->im)
        say(&k, "network: %lld blocks done, %lld reused from the checkpoint; %lld tile evaluations "
            "for %lld tiles of the volume", (long long)(k.g.nblocks - reused), (long long)reused,
            (long long)nst.tiles_run, (long long)nst.tiles_volume);
    else
        say(&k, "saved flows: %lld blocks done, %lld reused from the checkpoint",
            (long long)(k.g.nblocks - reused), (long long)reused);
    if ((rc = stopped(&k, "the network phase", err))) return rc;
    int64_t rounds, nlabels;
    /* particles held in memory per rank: those of two full blocks at most, so that the memory of
     * the flow following follows the block (the rest wait in the store) */
    const int64_t block_vox = k.g.B * k.g.B * k.g.B,
                  max_held = 2 * block_vox < CP_DFOLLOW_MAX_HELD ? 2 * block_vox
                                                                  : CP_DFOLLOW_MAX_HELD;
    rc = cp_dfollow3_run(v->comm, &k.g, v->store, v->plan->steps, !p->no_interp,
                         (float)p->cellprob_threshold, INT_MAX / k.nranks, max_held, &rounds, err);
    lap(&k, CP_PH_FOLLOW);
    if (!rc) say(&k, "flow following: %d steps, %lld rounds of particle exchange",
                 v->plan->steps, (long long)rounds);
    if (!rc) rc = stopped(&k, "the flow following", err);
    if (!rc) rc = cp_dmasks3_run(v->comm, &k.g, v->store, p->max_size_fraction, &nlabels, err);
    if (!rc && k.ms != v->store) /* --no_resample: the raw masks to the labels' grid */
        rc = cp_dresize3_nearest(v->comm, &k.g, v->store, &k.gm, k.ms, CP_DPOST3_IN, err);
    lap(&k, CP_PH_MASKS);
    if (!rc) rc = stopped(&k, "the masks", err);
    if (!rc) rc = cp_dpost3_run(v->comm, &k.gm, k.ms, p->min_size, &nlabels, err);
    lap(&k, CP_PH_POST);
    if (!rc) rc = output(&k, nlabels, h, cells, ncells, err);
    *nmasks = *ncells;
    if (!rc) MPI_Bcast(nmasks, 1, MPI_INT64_T, 0, v->comm);
    lap(&k, CP_PH_WRITE);
    return rc;
}
