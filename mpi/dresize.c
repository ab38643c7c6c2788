/* Nearest resize between block grids (see dresize.h). */
#include "dresize.h"

#include <stdlib.h>

#include "agree.h"
#include "cp_err.h"
#include "resize.h"

int cp_dresize_nearest(const cp_dplane *src, cp_slot what, const cp_dplane *dst, cp_slot to,
                       char *err)
{
    const cp_grid *sg = &src->grid, *dg = &dst->grid;
    const int nch = cp_slots[what].nch; /* 32-bit values either way */
    int64_t b0, b1;
    cp_grid_range(dg, dst->rank, &b0, &b1);
    char name[64];
    cp_dname(dst, to, name);
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        cp_rect o = cp_grid_block(dg, b);
        o = cp_rect_grow(dg, o, cp_slots[to].grown);
        /* the source rectangle: the source indices are monotone in the destination's */
        int64_t sy0 = cp_nearest_source(o.y0, sg->Ly, dg->Ly);
        int64_t sx0 = cp_nearest_source(o.x0, sg->Lx, dg->Lx);
        cp_rect s = {sy0, sx0, cp_nearest_source(o.y0 + o.ny - 1, sg->Ly, dg->Ly) - sy0 + 1,
                     cp_nearest_source(o.x0 + o.nx - 1, sg->Lx, dg->Lx) - sx0 + 1};
        uint32_t *in = malloc(sizeof *in * (size_t)(nch * s.ny * s.nx));
        uint32_t *out = malloc(sizeof *out * (size_t)(nch * o.ny * o.nx));
        rc = in && out ? cp_dplane_load_window(src, what, s, in, err)
                       : cp_errf(err, CP_ENOMEM, "resize of %s: out of memory for block %lld",
                                 cp_slots[what].name, (long long)b);
        for (int c = 0; !rc && c < nch; c++)
            for (int64_t y = 0; y < o.ny; y++) {
                const uint32_t *row =
                    in + (c * s.ny + cp_nearest_source(o.y0 + y, sg->Ly, dg->Ly) - s.y0) * s.nx;
                uint32_t *dst_row = out + (c * o.ny + y) * o.nx;
                for (int64_t x = 0; x < o.nx; x++)
                    dst_row[x] = row[cp_nearest_source(o.x0 + x, sg->Lx, dg->Lx) - s.x0];
            }
        if (!rc)
            rc = cp_bstore_put(dst->store, name, b, out, sizeof *out * (size_t)(nch * o.ny * o.nx),
                               err);
        free(in);
        free(out);
    }
    return cp_agree(dst->comm, rc, err);
}
