/* Protrusion recovery over blocks (see dprot.h). */
#include "dprot.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "protrusions.h"

static uint32_t max_u32(const uint32_t *a, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* Step (1)'s flags of the raw masks, scanned in own blocks (grown by 3 pixels: the 7x7 core
 * test) and OR-reduced over the ranks. */
static int gather_flags(const cp_dplane *d, unsigned char *flags, uint32_t raw_max, char *err)
{
    int64_t b0, b1;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect in = cp_grid_block(&d->grid, b), w = cp_rect_grow(&d->grid, in, 3);
        uint32_t *lab = malloc(sizeof *lab * (size_t)(w.ny * w.nx));
        uint32_t *raw = malloc(sizeof *raw * (size_t)(w.ny * w.nx));
        rc = lab && raw ? cp_dplane_load_window(d, CP_SLOT_LAB, w, lab, err)
                        : cp_errf(err, CP_ENOMEM, "protrusions: out of memory");
        if (!rc) rc = cp_dplane_load_window(d, CP_SLOT_M0, w, raw, err);
        if (!rc)
            rc = cp_protrusions_scan(lab, raw, w.ny, w.nx, in.y0 - w.y0, in.x0 - w.x0, in.ny,
                                     in.nx, flags, err);
        free(lab);
        free(raw);
    }
    rc = cp_agree(d->comm, rc, err);
    for (int64_t i = 0, n = (int64_t)raw_max + 1; !rc && i < n; i += 1 << 30) /* int counts */
        MPI_Allreduce(MPI_IN_PLACE, flags + i, (int)(n - i < (1 << 30) ? n - i : 1 << 30),
                      MPI_UNSIGNED_CHAR, MPI_BOR, d->comm);
    return rc;
}

/* The rule on block b grown by the halo; the block's centre is stored as "plab". */
static int block_attach(const cp_dplane *d, int64_t b, const uint32_t *map, float threshold,
                        int64_t max_len, char *err)
{
    cp_rect in = cp_grid_block(&d->grid, b);
    cp_rect w = cp_rect_grow(&d->grid, in, cp_protrusions_halo(max_len));
    int64_t n = w.ny * w.nx;
    uint32_t *lab = malloc(sizeof *lab * (size_t)n), *raw = malloc(sizeof *raw * (size_t)n);
    float *f = malloc(sizeof *f * (size_t)(3 * n));
    char name[64];
    int rc = lab && raw && f ? cp_dplane_load_window(d, CP_SLOT_LAB, w, lab, err)
                             : cp_errf(err, CP_ENOMEM, "protrusions: block %lld: out of memory "
                                       "(%lldx%lld window)", (long long)b, (long long)w.ny,
                                       (long long)w.nx);
    if (!rc) rc = cp_dplane_load_window(d, CP_SLOT_M0, w, raw, err);
    if (!rc) rc = cp_dplane_load_window(d, CP_SLOT_DP, w, f, err);
    if (!rc) rc = cp_protrusions_apply(lab, raw, map, f, f + 2 * n, w.ny, w.nx, threshold, max_len, err);
    if (!rc) {
        cp_rect_paste(lab, w, sizeof *lab, 1, raw, in); /* the centre, into raw */
        rc = cp_bstore_put(d->store, cp_dname(d, CP_SLOT_PLAB, name), b, raw,
                           sizeof *raw * (size_t)(in.ny * in.nx), err);
    }
    free(lab);
    free(raw);
    free(f);
    return rc;
}

/* "plab" of own blocks becomes "lab" (once every rank has read the old "lab"). */
static int commit_blocks(const cp_dplane *d, uint32_t *mx, char *err)
{
    int64_t b0, b1;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char pname[64], lname[64];
    cp_dname(d, CP_SLOT_PLAB, pname);
    cp_dname(d, CP_SLOT_LAB, lname);
    int rc = 0;
    *mx = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect r = cp_grid_block(&d->grid, b);
        size_t bytes = sizeof(uint32_t) * (size_t)(r.ny * r.nx);
        uint32_t *a = malloc(bytes);
        rc = a ? cp_bstore_get(d->store, pname, b, a, bytes, err)
               : cp_errf(err, CP_ENOMEM, "protrusions: out of memory");
        if (!rc) rc = cp_bstore_put(d->store, lname, b, a, bytes, err);
        if (!rc) {
            uint32_t m = max_u32(a, r.ny * r.nx);
            *mx = m > *mx ? m : *mx;
            cp_bstore_remove(d->store, pname, b);
        }
        free(a);
    }
    rc = cp_agree(d->comm, rc, err);
    if (!rc) MPI_Allreduce(MPI_IN_PLACE, mx, 1, MPI_UINT32_T, MPI_MAX, d->comm);
    return rc;
}

int cp_dprot_run(const cp_dplane *d, float cellprob_threshold, int64_t max_len, uint32_t raw_max,
                 int64_t *nlabels, char *err)
{
    int rc = max_len >= 1 && *nlabels >= 0 && *nlabels <= UINT32_MAX
                 ? 0
                 : cp_errf(err, CP_EPARAM, "protrusions: max_len %lld < 1 or %lld labels",
                           (long long)max_len, (long long)*nlabels);
    if ((rc = cp_agree(d->comm, rc, err))) return rc;
    unsigned char *flags = calloc((size_t)raw_max + 1, 1);
    uint32_t *map = malloc(sizeof *map * ((size_t)raw_max + 1));
    rc = cp_agree(d->comm, flags && map ? 0 : cp_errf(err, CP_ENOMEM, "protrusions: out of memory "
                                                      "(%u raw masks)", raw_max), err);
    if (!rc) rc = gather_flags(d, flags, raw_max, err);
    if (!rc) cp_protrusions_ids(flags, raw_max, (uint32_t)*nlabels, map);
    int64_t b0, b1;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    int lrc = rc;
    for (int64_t b = b0; !lrc && b < b1; b++)
        lrc = block_attach(d, b, map, cellprob_threshold, max_len, err);
    if (!rc) rc = cp_agree(d->comm, lrc, err);
    uint32_t last = 0;
    if (!rc) rc = commit_blocks(d, &last, err);
    *nlabels = last;
    free(flags);
    free(map);
    return rc;
}
