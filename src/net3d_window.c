/* The 3-D network stage over a window (see net3d_window.h). */
#include "net3d_window.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "smooth3d.h"

int cp_net3d_read_scaled(void *arg, cp_box3 b, float *dst, char *err)
{
    const cp_net3d_scaled *s = arg;
    const int64_t *L = s->L, *Ln = s->Ln;
    if (Ln[0] == L[0] && Ln[1] == L[1] && Ln[2] == L[2]) return s->rd(s->arg, b, dst, err);
    cp_box3 src = cp_resize_volume_src_box(L, Ln, b);
    float *xsrc = malloc(sizeof(float) * (size_t)(2 * cp_box3_voxels(src)));
    int rc = xsrc ? s->rd(s->arg, src, xsrc, err)
                  : cp_errf(err, CP_ENOMEM, "network 3-D window: out of memory for the input");
    if (!rc) rc = cp_resize_volume_window(xsrc, src, L, 2, dst, b, Ln, 0, err);
    free(xsrc);
    return rc;
}

/* Box o of the box b (both in one volume's coordinates) of v, one channel, into dst. */
static void crop(const float *v, cp_box3 b, cp_box3 o, float *dst)
{
    for (int64_t z = 0; z < o.n[0]; z++)
        for (int64_t y = 0; y < o.n[1]; y++)
            memcpy(dst + (z * o.n[1] + y) * o.n[2],
                   v + ((o.o[0] - b.o[0] + z) * b.n[1] + o.o[1] - b.o[1] + y) * b.n[2] + o.o[2] -
                       b.o[2],
                   sizeof(float) * (size_t)o.n[2]);
}

int cp_net3d_window_boxes(const int64_t L[3], const cp_net3d_params *p, cp_box3 w,
                          cp_net3d_boxes *bx, char *err)
{
    int rc = cp_net3d_scale(L, p->rescale, p->anisotropy, bx->Ln, err);
    if (rc) return rc;
    if (p->batch_size < 1)
        return cp_errf(err, CP_EPARAM, "network 3-D window: batch size %lld (at least 1 needed)",
                       (long long)p->batch_size);
    const int64_t *Ln = bx->Ln;
    bx->back = p->resample && (Ln[0] != L[0] || Ln[1] != L[1] || Ln[2] != L[2]);
    const int64_t *G = bx->back ? L : Ln;
    int inside = 1;
    for (int ax = 0; ax < 3; ax++)
        inside &= w.n[ax] >= 1 && w.o[ax] >= 0 && w.o[ax] + w.n[ax] <= G[ax];
    if (!inside)
        return cp_errf(err, CP_EPARAM, "network 3-D window: box %lldx%lldx%lld at (%lld, %lld, "
                       "%lld) outside the %lldx%lldx%lld grid", (long long)w.n[0],
                       (long long)w.n[1], (long long)w.n[2], (long long)w.o[0], (long long)w.o[1],
                       (long long)w.o[2], (long long)G[0], (long long)G[1], (long long)G[2]);
    bx->s = w;
    if (p->smooth > 0) /* as cp_net3d_finish */
        for (int ax = 0; ax < 3; ax++)
            cp_smooth3d_reach(p->smooth, G[ax], w.o[ax], w.n[ax], &bx->s.o[ax], &bx->s.n[ax]);
    bx->a = bx->back ? cp_resize_volume_src_box(Ln, L, bx->s) : bx->s;
    return 0;
}

int cp_net3d_window_finish(const float *acc, const int64_t L[3], const cp_net3d_params *p,
                           cp_box3 w, const cp_net3d_boxes *bx, float *out4, char *err)
{
    const cp_box3 a = bx->a, s = bx->s;
    const int64_t *G = bx->back ? L : bx->Ln;
    int64_t na = cp_box3_voxels(a), ns = cp_box3_voxels(s), nw = cp_box3_voxels(w);
    const float *f = acc; /* the field over s */
    float *back = NULL;
    int rc = 0;
    if (bx->back) {
        f = back = malloc(sizeof(float) * (size_t)(4 * ns));
        rc = back ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D window: out of memory to resize "
                                "back");
        for (int c = 0; !rc && c < 4; c++)
            rc = cp_resize_volume_window(acc + c * na, a, bx->Ln, 1, back + c * ns, s, L, 1, err);
    }
    for (int c = 0; !rc && c < 4; c++) {
        if (p->smooth > 0 && c < 3)
            rc = cp_smooth3d_window(f + c * ns, s, G, p->smooth, out4 + c * nw, w, err);
        else
            crop(f + c * ns, s, w, out4 + c * nw);
    }
    free(back);
    return rc;
}

int cp_net3d_window(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                    const cp_net3d_params *p, cp_box3 w, float *out4, char *err)
{
    cp_net3d_boxes bx;
    int rc = cp_net3d_window_boxes(L, p, w, &bx, err);
    if (rc) return rc;
    cp_net3d_scaled src = {rd, arg, L, bx.Ln};
    float *acc = calloc((size_t)(4 * cp_box3_voxels(bx.a)), sizeof *acc);
    rc = acc ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D window: out of memory for the flows");
    for (int pass = 0; !rc && pass < 3; pass++) /* the summed field over a, in Cellpose's order */
        rc = cp_net3d_pass_box(m, cp_net3d_read_scaled, &src, bx.Ln, pass, bx.a, p->tile_overlap,
                               p->augment, p->batch_size, acc, NULL, NULL, err);
    if (!rc) rc = cp_net3d_window_finish(acc, L, p, w, &bx, out4, err);
    free(acc);
    return rc;
}
