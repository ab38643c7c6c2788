/* The nearest resize of a label volume over 3-D blocks (see dresize3.h). */
#include "dresize3.h"

#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "resize.h"

/* A voxel of the source volume (raster index idx) sent to the rank resizing a block. */
struct vox {
    int64_t idx;
    uint32_t v, pad;
};

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The box of src's voxels that the voxels of box q of dst read (nearest sources are
 * non-decreasing along each axis). */
static cp_box3 source_box(const cp_grid *src, const cp_grid *dst, cp_box3 q)
{
    const int64_t Ls[3] = {src->Lz, src->Ly, src->Lx}, Ld[3] = {dst->Lz, dst->Ly, dst->Lx};
    cp_box3 s = {{0, 0, 0}, {0, 0, 0}};
    for (int a = 0; a < 3 && cp_box3_voxels(q); a++) {
        s.o[a] = cp_nearest_source(q.o[a], Ls[a], Ld[a]);
        s.n[a] = cp_nearest_source(q.o[a] + q.n[a] - 1, Ls[a], Ld[a]) - s.o[a] + 1;
    }
    return s;
}

/* The block of dst that rank r resizes in round i (-1: none). */
static int64_t round_block(const cp_grid *dst, int r, int64_t i)
{
    int64_t b0, b1;
    cp_grid_range(dst, r, &b0, &b1);
    return b0 + i < b1 ? b0 + i : -1;
}

/* Sends the voxels of own src blocks [s0, s1) (scratch sb) that each rank's round-i block
 * reads. */
static int send_round(MPI_Comm comm, const cp_grid *src, const cp_bstore *ss, const cp_grid *dst,
                      const char *name, int64_t s0, int64_t s1, int64_t i, uint32_t *sb,
                      cp_outbox *o, char *err)
{
    int np;
    MPI_Comm_size(comm, &np);
    int rc = 0;
    for (int64_t b = s0; !rc && b < s1; b++) {
        cp_box3 bb = cp_grid_box(src, b);
        int loaded = 0;
        for (int r = 0; !rc && r < np; r++) {
            int64_t t = round_block(dst, r, i);
            if (t < 0) continue;
            cp_box3 m = cp_box3_meet(source_box(src, dst, cp_grid_box(dst, t)), bb);
            if (!cp_box3_voxels(m)) continue;
            if (!loaded++ && (rc = cp_bstore_get(ss, name, b, sb,
                                                 sizeof *sb * (size_t)cp_box3_voxels(bb), err)))
                break;
            for (int64_t z = m.o[0]; !rc && z < m.o[0] + m.n[0]; z++)
                for (int64_t y = m.o[1]; !rc && y < m.o[1] + m.n[1]; y++)
                    for (int64_t x = m.o[2]; !rc && x < m.o[2] + m.n[2]; x++) {
                        struct vox v;
                        memset(&v, 0, sizeof v);
                        v.idx = (z * src->Ly + y) * src->Lx + x;
                        v.v = sb[((z - bb.o[0]) * bb.n[1] + y - bb.o[1]) * bb.n[2] + x - bb.o[2]];
                        if (cp_outbox_push(o, r, &v, 1))
                            rc = cp_errf(err, CP_ENOMEM, "dresize3.c: out of memory for voxels "
                                         "in transit");
                    }
        }
    }
    return rc;
}

/* Block t of dst from the n voxels in of its source box s (scratch sv), into db, stored. */
static int resize_block(const cp_grid *src, const cp_grid *dst, const cp_bstore *ds,
                        const char *name, int64_t t, const struct vox *in, int64_t n,
                        uint32_t *sv, uint32_t *db, char *err)
{
    const cp_box3 q = cp_grid_box(dst, t), s = source_box(src, dst, q);
    const int64_t Ls[3] = {src->Lz, src->Ly, src->Lx}, Ld[3] = {dst->Lz, dst->Ly, dst->Lx};
    const int64_t npix = src->Ly * src->Lx;
    if (n != cp_box3_voxels(s))
        return cp_errf(err, CP_EDATA, "dresize3.c: block %lld: %lld of %lld source voxels "
                       "received", (long long)t, (long long)n, (long long)cp_box3_voxels(s));
    for (int64_t k = 0; k < n; k++) {
        int64_t z = in[k].idx / npix, y = in[k].idx % npix / src->Lx, x = in[k].idx % src->Lx;
        sv[((z - s.o[0]) * s.n[1] + y - s.o[1]) * s.n[2] + x - s.o[2]] = in[k].v;
    }
    for (int64_t z = 0, p = 0; z < q.n[0]; z++) {
        int64_t sz = cp_nearest_source(q.o[0] + z, Ls[0], Ld[0]) - s.o[0];
        for (int64_t y = 0; y < q.n[1]; y++) {
            int64_t sy = cp_nearest_source(q.o[1] + y, Ls[1], Ld[1]) - s.o[1];
            for (int64_t x = 0; x < q.n[2]; x++, p++)
                db[p] = sv[(sz * s.n[1] + sy) * s.n[2] +
                           cp_nearest_source(q.o[2] + x, Ls[2], Ld[2]) - s.o[2]];
        }
    }
    return cp_bstore_put(ds, name, t, db, sizeof *db * (size_t)cp_box3_voxels(q), err);
}

int cp_dresize3_nearest(MPI_Comm comm, const cp_grid *src, const cp_bstore *ss,
                        const cp_grid *dst, const cp_bstore *ds, const char *name, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    int64_t s0, s1, d0, d1, most, smax = 0, dmax = 0, vmax = 0;
    cp_grid_range(src, rank, &s0, &s1);
    cp_grid_range(dst, rank, &d0, &d1);
    for (int64_t b = s0; b < s1; b++) smax = max64(smax, cp_box3_voxels(cp_grid_box(src, b)));
    for (int64_t b = d0; b < d1; b++) {
        cp_box3 q = cp_grid_box(dst, b);
        dmax = max64(dmax, cp_box3_voxels(q));
        vmax = max64(vmax, cp_box3_voxels(source_box(src, dst, q)));
    }
    most = d1 - d0;
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, comm);
    uint32_t *sb = malloc(sizeof *sb * (size_t)(smax + 1));
    uint32_t *db = malloc(sizeof *db * (size_t)(dmax + 1)), *sv = malloc(sizeof *sv * (size_t)(vmax + 1));
    cp_outbox o = {0};
    int rc = sb && db && sv ? cp_outbox_init(&o, comm, sizeof(struct vox), err)
                            : cp_errf(err, CP_ENOMEM, "dresize3.c: out of memory for a block");
    rc = cp_agree(comm, rc, err);
    for (int64_t i = 0; !rc && i < most; i++) {
        struct vox *in = NULL;
        int64_t n = 0;
        rc = send_round(comm, src, ss, dst, name, s0, s1, i, sb, &o, err);
        if (!(rc = cp_exchange(&o, rc, INT64_MAX, (void **)&in, &n, err)) && d0 + i < d1)
            rc = resize_block(src, dst, ds, name, d0 + i, in, n, sv, db, err);
        free(in);
        rc = cp_agree(comm, rc, err);
    }
    cp_outbox_free(&o);
    free(sb);
    free(db);
    free(sv);
    return rc;
}
