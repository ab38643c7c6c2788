/* Per-mask steps at the label's owner (see dpost.h): the order of the steps over the plane's
 * blocks. Per-label facts (area, bounding box, first raster index) are reduced into tables over
 * all labels (dpost_labels.c). A label whose box lies in one block is decided there; any other
 * one by the owner of its first pixel, which gathers its pixels (with dP for the flow QC,
 * dpost_qc.c; with the other labels inside its box to find what its holes hold, dpost_holes.c)
 * and decides. The records move between ranks through cp_exchange (exchange.h). */
#include "dpost.h"

#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "dpost_impl.h"

/* Everything after the flow QC: (a) min_size, (b) holes, (c) min_size, final ids into "lab". */
static int post_stage(struct run *r, const struct stats *s0, const unsigned char *bad,
                      int64_t min_size, int64_t *nlabels)
{
    int64_t M = s0->n, n1 = M;
    uint32_t *map = malloc(sizeof(uint32_t) * ((size_t)M + 1));
    struct stats s1 = {0}, s2 = {0};
    int rc = map ? 0 : oom(r->err, "label maps");
    if (!rc && min_size > 0) {
        rc = cp_dpost_renumber_map(s0, min_size, bad, map, &n1, r->err);
    } else if (!rc) {
        for (int64_t v = 0; v <= M; v++) map[v] = bad[v] ? 0 : (uint32_t)v;
    }
    /* tables of the labels after (a): the same pixels under new ids */
    if (!rc) rc = cp_dpost_stats_init(&s1, n1, r->err);
    for (int64_t v = 1; !rc && v <= M; v++)
        if (map[v]) {
            s1.area[map[v]] = s0->area[v];
            memcpy(s1.mn + 5 * (int64_t)map[v], s0->mn + 5 * v, 5 * sizeof(int64_t));
        }
    if ((rc = cp_agree(r->d->comm, rc, r->err)) != 0) goto out;
    if ((rc = cp_dpost_write_qc(r, bad)) != 0) goto out;
    if ((rc = cp_dpost_fill_holes(r, &s1, map, &s2)) != 0) goto out;
    /* (c), or the compacted labels as they are */
    if (min_size > 0) {
        rc = cp_dpost_renumber_map(&s2, min_size, NULL, map, nlabels, r->err);
    } else {
        *nlabels = 0;
        for (int64_t v = 0; v <= n1; v++) {
            map[v] = (uint32_t)v;
            if (s2.area[v]) *nlabels = v;
        }
    }
    for (int64_t b = r->b0; !rc && b < r->b1; b++) {
        cp_rect br;
        if ((rc = load(r, CP_SLOT_FH, b, r->out, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++) r->out[p] = map[r->out[p]];
        if ((rc = store(r, CP_SLOT_LAB, b, r->out, br)) == 0) {
            char name[64];
            cp_bstore_remove(r->d->store, cp_dname(r->d, CP_SLOT_FH, name), b);
        }
    }
    rc = cp_agree(r->d->comm, rc, r->err);
out:
    free(map);
    cp_dpost_stats_free(&s1);
    cp_dpost_stats_free(&s2);
    return rc;
}

/* cp_dpost_run, or with qc_only the flow QC alone ("qc"), as cp_dpost_qc. */
static int dpost(const cp_dplane *d, double flow_threshold, int qc_only, int64_t min_size,
                 int64_t *nlabels, char *err)
{
    struct run r = {.d = d, .g = &d->grid, .err = err};
    cp_grid_range(r.g, d->rank, &r.b0, &r.b1);
    r.bmax = r.g->B * r.g->B;
    int64_t gb = (r.g->B + 2) * (r.g->B + 2);
    r.blk = malloc(sizeof(uint32_t) * (size_t)r.bmax);
    r.out = malloc(sizeof(uint32_t) * (size_t)r.bmax);
    r.dp = malloc(sizeof(float) * 3 * (size_t)gb);
    struct stats s0 = {0};
    unsigned char *bad = NULL;
    int rc = r.blk && r.out && r.dp ? 0 : oom(err, "block buffers");
    *nlabels = 0;
    /* the largest label, then the per-label tables of "m0" */
    uint32_t M = 0;
    for (int64_t b = r.b0; !rc && b < r.b1; b++) {
        cp_rect br;
        if ((rc = load(&r, CP_SLOT_M0, b, r.blk, &br)) != 0) break;
        for (int64_t p = 0; p < br.ny * br.nx; p++) M = r.blk[p] > M ? r.blk[p] : M;
    }
    if ((rc = cp_agree(d->comm, rc, err)) != 0) goto out;
    MPI_Allreduce(MPI_IN_PLACE, &M, 1, MPI_UINT32_T, MPI_MAX, d->comm);
    rc = cp_dpost_stats_init(&s0, M, err);
    if (!rc && !(bad = calloc((size_t)M + 1, 1))) rc = oom(err, "QC flags");
    for (int64_t b = r.b0; !rc && b < r.b1; b++) {
        cp_rect br;
        if ((rc = load(&r, CP_SLOT_M0, b, r.blk, &br)) == 0) cp_dpost_stats_add(&s0, r.blk, br, r.g->Lx);
    }
    if ((rc = cp_agree(d->comm, rc, err)) != 0) goto out;
    cp_dpost_stats_reduce(d->comm, &s0);
    if (flow_threshold > 0 && M > 0 && (rc = cp_dpost_flow_qc(&r, &s0, flow_threshold, bad)) != 0)
        goto out;
    rc = qc_only ? cp_dpost_write_qc(&r, bad) : post_stage(&r, &s0, bad, min_size, nlabels);
out:
    cp_dpost_stats_free(&s0);
    free(bad);
    cp_outbox_free(&r.qpx);
    cp_outbox_free(&r.kpx);
    cp_outbox_free(&r.ed);
    free(r.blk);
    free(r.out);
    free(r.dp);
    return rc;
}

int cp_dpost_run(const cp_dplane *d, double flow_threshold, int64_t min_size, int64_t *nlabels,
                 char *err)
{
    return dpost(d, flow_threshold, 0, min_size, nlabels, err);
}

int cp_dpost_qc(const cp_dplane *d, double flow_threshold, char *err)
{
    int64_t n;
    return dpost(d, flow_threshold, 1, 0, &n, err);
}
