/* Plane context and whole-array helpers of the distributed phases (see dplane.h). */
#include "dplane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"

void cp_dplane_init(cp_dplane *d, MPI_Comm comm, int64_t Ly, int64_t Lx, int64_t B,
                    const cp_bstore *store, int64_t z)
{
    d->comm = comm;
    MPI_Comm_rank(comm, &d->rank);
    MPI_Comm_size(comm, &d->nranks);
    cp_grid_init(&d->grid, Ly, Lx, B, d->nranks);
    d->store = store;
    d->z = z;
}

void cp_rect_paste(const void *src, cp_rect sr, size_t elem, int nch, void *dst, cp_rect dr)
{
    const char *s = src;
    char *d = dst;
    int64_t y0 = sr.y0 > dr.y0 ? sr.y0 : dr.y0, x0 = sr.x0 > dr.x0 ? sr.x0 : dr.x0;
    int64_t y1 = sr.y0 + sr.ny < dr.y0 + dr.ny ? sr.y0 + sr.ny : dr.y0 + dr.ny;
    int64_t x1 = sr.x0 + sr.nx < dr.x0 + dr.nx ? sr.x0 + sr.nx : dr.x0 + dr.nx;
    for (int c = 0; c < nch && x1 > x0; c++)
        for (int64_t y = y0; y < y1; y++)
            memcpy(d + elem * (size_t)((c * dr.ny + y - dr.y0) * dr.nx + x0 - dr.x0),
                   s + elem * (size_t)((c * sr.ny + y - sr.y0) * sr.nx + x0 - sr.x0),
                   elem * (size_t)(x1 - x0));
}

int cp_dplane_load_window(const cp_dplane *d, cp_slot what, cp_rect w, void *out, char *err)
{
    const int nch = cp_slots[what].nch;
    const size_t elem = 4; /* uint32 and float32 arrays */
    int64_t nb = cp_grid_blocks_touching(&d->grid, w, NULL);
    int64_t *list = malloc(sizeof *list * (size_t)nb);
    size_t cap = 0;
    char *buf = NULL, name[64];
    int rc = list ? 0
                  : cp_errf(err, CP_ENOMEM, "window of %s: out of memory", cp_slots[what].name);
    if (!rc) cp_grid_blocks_touching(&d->grid, w, list);
    cp_dname(d, what, name);
    for (int64_t k = 0; !rc && k < nb; k++) {
        cp_rect r = cp_grid_block(&d->grid, list[k]);
        r = cp_rect_grow(&d->grid, r, cp_slots[what].grown);
        size_t bytes = elem * (size_t)(nch * r.ny * r.nx);
        if (bytes > cap) {
            free(buf);
            if (!(buf = malloc(cap = bytes)))
                rc = cp_errf(err, CP_ENOMEM, "window of %s: out of memory", cp_slots[what].name);
        }
        if (!rc) rc = cp_bstore_get(d->store, name, list[k], buf, bytes, err);
        if (!rc) cp_rect_paste(buf, r, elem, nch, out, w);
    }
    free(buf);
    free(list);
    return rc;
}

const cp_slot_info cp_slots[CP_NSLOTS] = {
    [CP_SLOT_DP] = {"dp", 3, 1},    [CP_SLOT_FIN] = {"fin", 1, 0}, [CP_SLOT_M0] = {"m0", 1, 0},
    [CP_SLOT_QC] = {"qc", 1, 0},    [CP_SLOT_LAB] = {"lab", 1, 0}, [CP_SLOT_FQ0] = {"fq0", 1, 0},
    [CP_SLOT_FQ1] = {"fq1", 1, 0},  [CP_SLOT_MH] = {"mh", 1, 0},   [CP_SLOT_MHQ] = {"mhq", 1, 0},
    [CP_SLOT_MLQ] = {"mlq", 1, 0},  [CP_SLOT_FH] = {"fh", 1, 0},   [CP_SLOT_PLAB] = {"plab", 1, 0},
};

const char *cp_dname(const cp_dplane *d, cp_slot what, char *buf)
{
    snprintf(buf, 64, "%s.z%lld", cp_slots[what].name, (long long)d->z);
    return buf;
}

int cp_dplane_put_dp(const cp_dplane *d, const float *dP, const float *cellprob, char *err)
{
    int64_t b0, b1, Ly = d->grid.Ly, Lx = d->grid.Lx;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    char name[64];
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect r = cp_rect_grow(&d->grid, cp_grid_block(&d->grid, b), 1);
        int64_t n = r.ny * r.nx;
        float *v = malloc(sizeof(float) * (size_t)(3 * n));
        if (!v) {
            rc = cp_errf(err, CP_ENOMEM, "block %lld: out of memory", (long long)b);
            break;
        }
        for (int64_t y = 0; y < r.ny; y++) {
            int64_t src = (r.y0 + y) * Lx + r.x0;
            memcpy(v + y * r.nx, dP + src, sizeof(float) * (size_t)r.nx);
            memcpy(v + n + y * r.nx, dP + Ly * Lx + src, sizeof(float) * (size_t)r.nx);
            memcpy(v + 2 * n + y * r.nx, cellprob + src, sizeof(float) * (size_t)r.nx);
        }
        rc = cp_bstore_put(d->store, cp_dname(d, CP_SLOT_DP, name), b, v, sizeof(float) * (size_t)(3 * n),
                           err);
        free(v);
    }
    return cp_agree(d->comm, rc, err);
}

int cp_dplane_gather_u32(const cp_dplane *d, cp_slot what, uint32_t *whole, char *err)
{
    char name[64];
    cp_dname(d, what, name);
    int rc = 0;
    for (int64_t b = 0; b < d->grid.nblocks; b++) {
        cp_rect r = cp_grid_block(&d->grid, b);
        int owner = cp_grid_owner(&d->grid, b);
        int64_t n = r.ny * r.nx;
        uint32_t *v = (d->rank == owner || d->rank == 0) ? malloc(sizeof(uint32_t) * (size_t)n) : NULL;
        if (d->rank == owner && v && !rc)
            rc = cp_bstore_get(d->store, name, b, v, sizeof(uint32_t) * (size_t)n, err);
        if (owner != 0) {
            if (d->rank == owner) MPI_Send(v, (int)n, MPI_UINT32_T, 0, 0, d->comm);
            if (d->rank == 0) MPI_Recv(v, (int)n, MPI_UINT32_T, owner, 0, d->comm, MPI_STATUS_IGNORE);
        }
        if (d->rank == 0 && v)
            for (int64_t y = 0; y < r.ny; y++)
                memcpy(whole + (r.y0 + y) * d->grid.Lx + r.x0, v + y * r.nx,
                       sizeof(uint32_t) * (size_t)r.nx);
        free(v);
    }
    return cp_agree(d->comm, rc, err);
}
