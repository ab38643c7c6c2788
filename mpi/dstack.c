/* A stack over the ranks (see dstack.h): normalization, the planes segmented one at a time into
 * the block store, stitching and 3-D hole filling where the planes are, then the output written
 * plane by plane in collective rounds. */
#include "dstack.h"

#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cells.h"
#include "commtime.h"
#include "cp_err.h"
#include "dnorm.h"
#include "dstitch.h"
#include "h5par.h"
#include "progress.h"
#include "segment.h"

#define LABELS "stack_lab"
#define FLOWS "stack_flows"

/* What the phases share: the call, this rank's planes, the phase clock. */
struct stk {
    cp_dstack *s;
    cp_dvol v;
    int rank;
    double t0, c0;
};

#define say(k, ...) cp_say((k)->rank || (k)->s->p->quiet, __VA_ARGS__)

static void lap(struct stk *k, cp_phase ph) { cp_comm_lap(k->s->tm, ph, &k->t0, &k->c0); }

/* Normalization constants of every plane (2 per plane, only the own planes filled without
 * stitching) and the channels to invert (a channel good in any plane). */
static int norms_of(struct stk *k, cp_norm *norms, int inv[2], char *err)
{
    const cp_params *p = k->s->p;
    const cp_dvol *v = &k->v;
    int rc = 0;
    if (!p->no_norm && k->s->plan->stitch) { /* norm3D over the whole stack, by all ranks */
        rc = cp_dnorm_compute(v->comm, k->s->im, 0, v->nz, p->norm_percentile_lo,
                              p->norm_percentile_hi, norms, err);
        for (int64_t z = 1; !rc && z < v->nz; z++) memcpy(norms + 2 * z, norms, 2 * sizeof *norms);
    } else if (!p->no_norm) {
        for (int64_t z = v->z0; !rc && z < v->z1; z++)
            rc = cp_dnorm_compute(MPI_COMM_SELF, k->s->im, z, 1, p->norm_percentile_lo,
                                  p->norm_percentile_hi, norms + 2 * z, err);
        rc = cp_agree(v->comm, rc, err);
    }
    inv[0] = inv[1] = 0;
    for (int64_t z = 0; z < v->nz; z++)
        for (int c = 0; c < 2; c++) inv[c] |= p->invert && norms[2 * z + c].good;
    MPI_Allreduce(MPI_IN_PLACE, inv, 2, MPI_INT, MPI_MAX, v->comm);
    return rc;
}

/* The own planes one at a time (s->plane), labels into the store as LABELS z, flows (with
 * --save_flows) as FLOWS z: (3, Ly, Lx), dY, dX then cellprob. */
static int segment_planes(struct stk *k, char *err)
{
    const cp_dstack *s = k->s;
    const cp_params *p = s->p;
    const cp_dvol *v = &k->v;
    const int64_t nflows = p->save_flows ? 3 * s->plan->Ly * s->plan->Lx : 0;
    cp_norm *norms = calloc((size_t)(2 * v->nz), sizeof *norms);
    uint32_t *lab = malloc(sizeof *lab * (size_t)(v->ny * v->nx));
    float *f = nflows ? malloc(sizeof *f * (size_t)nflows) : NULL;
    int inv[2] = {0, 0};
    int rc = norms && lab && (f || !nflows) ? 0 : cp_errf(err, CP_ENOMEM, "%s: out of memory",
                                                          s->input);
    if (!(rc = cp_agree(v->comm, rc, err)) && s->im) rc = norms_of(k, norms, inv, err);
    lap(k, CP_PH_PREP);
    cp_progress pr;
    cp_progress_begin(&pr, "planes", v->nranks > 1 ? "planes of rank 0" : "planes",
                      v->z1 - v->z0);
    for (int64_t z = v->z0; !rc && z < v->z1; z++) {
        rc = s->plane(s->ctx, z, s->im && !p->no_norm ? norms + 2 * z : NULL, inv, lab, f, err);
        if (!rc) rc = cp_dvol_put(v, z, lab, err);
        if (!rc && f) rc = cp_bstore_put(v->store, FLOWS, z, f, sizeof *f * (size_t)nflows, err);
        if (!rc) say(k, "%s: plane %lld done (rank 0's share)", s->input, (long long)z + 1);
        cp_progress_add(&pr, !rc);
    }
    cp_progress_end(&pr);
    free(norms);
    free(lab);
    free(f);
    k->t0 = MPI_Wtime(), k->c0 = cp_comm_seconds(); /* the planes timed their own phases */
    return cp_agree(v->comm, rc, err);
}

/* Collective writes in rounds, round i writing every rank's i-th own plane (a rank past its last
 * plane writes nothing), from the store: /labels (and the rows of /cells) and the flows. */
static int write_planes(struct stk *k, cp_h5out *h, cp_cell **cells,
                        int64_t *ncells, char *err)
{
    const cp_dvol *v = &k->v;
    const int64_t fny = k->s->plan->Ly, fnx = k->s->plan->Lx;
    int64_t mine = v->z1 - v->z0, most, npix = v->ny * v->nx;
    MPI_Allreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, v->comm);
    uint32_t *lab = malloc(sizeof *lab * (size_t)npix);
    float *f = k->s->p->save_flows ? malloc(sizeof *f * (size_t)(3 * fny * fnx)) : NULL;
    int rc = lab && (f || !k->s->p->save_flows)
                 ? 0 : cp_errf(err, CP_ENOMEM, "%s: out of memory for a plane", k->s->input);
    if ((rc = cp_agree(v->comm, rc, err))) most = 0;
    for (int64_t i = 0; !rc && i < most; i++) {
        int64_t z = v->z0 + i, here = i < mine;
        int lrc = here ? cp_dvol_get(v, z, lab, err) : 0;
        if (!lrc && here)
            lrc = cp_cells_collect(lab, v->ny, v->nx, (uint32_t)z, cells, ncells, err);
        if ((rc = cp_agree(v->comm, lrc, err))) break;
        rc = cp_h5_write_labels(h, here ? z : 0, 0, 0, here ? v->ny : 0, here ? v->nx : 0, lab,
                                err);
        if (rc || !f) continue;
        lrc = here ? cp_bstore_get(v->store, FLOWS, z, f, sizeof *f * (size_t)(3 * fny * fnx),
                                   err) : 0;
        if ((rc = cp_agree(v->comm, lrc, err))) break;
        rc = cp_h5_write_flows(h, here ? z : 0, 0, 0, here ? fny : 0, here ? fnx : 0, f,
                               f + 2 * fny * fnx, err);
    }
    free(lab);
    free(f);
    return rc;
}

int cp_dstack_run(cp_dstack *s, cp_h5out **h, cp_cell **cells, int64_t *ncells,
                  int64_t *nmasks, char *err)
{
    const cp_params *p = s->p;
    const cp_plan *pl = s->plan;
    struct stk k = {.s = s, .t0 = MPI_Wtime(), .c0 = cp_comm_seconds()};
    cp_dvol_init(&k.v, s->comm, s->store, LABELS, pl->nz, pl->Ly0, pl->Lx0);
    k.rank = k.v.rank;
    *h = NULL, *cells = NULL, *ncells = 0, *nmasks = 0;
    say(&k, "%s: stack of %lld planes of %lldx%lld over %d rank(s), %lld-%lld planes each",
        s->input, (long long)pl->nz, (long long)pl->Ly0, (long long)pl->Lx0, k.v.nranks,
        (long long)(pl->nz / k.v.nranks), (long long)((pl->nz + k.v.nranks - 1) / k.v.nranks));
    int64_t nl = 0;
    int rc = segment_planes(&k, err);
    if (!rc && pl->stitch) {
        rc = cp_dstitch_planes(&k.v, p->stitch_threshold, &nl, err);
        if (!rc) rc = cp_dfill3_run(&k.v, nl, p->min_size, nmasks, err);
        lap(&k, CP_PH_POST);
    }
    cp_h5_backend be = cp_h5par_backend(&s->comm); /* s outlives the file */
    if (!rc)
        rc = cp_h5_create(s->out_path, &be, pl->nz, pl->Ly0, pl->Lx0, 1,
                          p->save_flows ? pl->Ly : 0, p->save_flows ? pl->Lx : 0, h, err);
    if (!rc) rc = write_planes(&k, *h, cells, ncells, err);
    if (rc) {
        cp_h5_abort(*h);
        *h = NULL;
    }
    if (!rc && !pl->stitch) MPI_Allreduce(ncells, nmasks, 1, MPI_INT64_T, MPI_SUM, s->comm);
    lap(&k, CP_PH_WRITE);
    return rc;
}
