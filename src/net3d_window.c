/* The 3-D network stage over a window (see net3d_window.h). */
#include "net3d_window.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "smooth3d.h"

/* cp_net3d_reader of the network input at the network scale Ln: read through rd (same box
 * when Ln is L), else resized from the box of x (volume L) it needs. */
typedef struct scaled_src {
    cp_net3d_reader rd;
    void *arg;
    const int64_t *L, *Ln;
} scaled_src;

static int read_scaled(void *arg, cp_box3 b, float *dst, char *err)
{
    const scaled_src *s = arg;
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

/* The summed field acc (4, a) over box a of the network scale Ln: the three passes in order. */
static int passes(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                  const int64_t Ln[3], const cp_net3d_params *p, cp_box3 a, float *acc, char *err)
{
    scaled_src s = {rd, arg, L, Ln};
    int rc = 0;
    for (int pass = 0; !rc && pass < 3; pass++)
        rc = cp_net3d_pass_box(m, read_scaled, &s, Ln, pass, a, p->tile_overlap, p->augment,
                               p->batch_size, acc, NULL, NULL, err);
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

int cp_net3d_window(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                    const cp_net3d_params *p, cp_box3 w, float *out4, char *err)
{
    int64_t Ln[3];
    int rc = cp_net3d_scale(L, p->rescale, p->anisotropy, Ln, err);
    if (rc) return rc;
    if (p->batch_size < 1)
        return cp_errf(err, CP_EPARAM, "network 3-D window: batch size %lld (at least 1 needed)",
                       (long long)p->batch_size);
    int back = p->resample && (Ln[0] != L[0] || Ln[1] != L[1] || Ln[2] != L[2]);
    const int64_t *G = back ? L : Ln;
    int inside = 1;
    for (int ax = 0; ax < 3; ax++)
        inside &= w.n[ax] >= 1 && w.o[ax] >= 0 && w.o[ax] + w.n[ax] <= G[ax];
    if (!inside)
        return cp_errf(err, CP_EPARAM, "network 3-D window: box %lldx%lldx%lld at (%lld, %lld, "
                       "%lld) outside the %lldx%lldx%lld grid", (long long)w.n[0],
                       (long long)w.n[1], (long long)w.n[2], (long long)w.o[0], (long long)w.o[1],
                       (long long)w.o[2], (long long)G[0], (long long)G[1], (long long)G[2]);
    int smooth = p->smooth > 0; /* as cp_net3d_finish */
    cp_box3 s = w;              /* the field before smoothing */
    if (smooth) {
        for (int ax = 0; ax < 3; ax++)
            cp_smooth3d_reach(p->smooth, G[ax], w.o[ax], w.n[ax], &s.o[ax], &s.n[ax]);
    }
    cp_box3 a = back ? cp_resize_volume_src_box(Ln, L, s) : s; /* at the network scale */
    int64_t na = cp_box3_voxels(a), ns = cp_box3_voxels(s), nw = cp_box3_voxels(w);
    float *acc = calloc((size_t)(4 * na), sizeof *acc);
    rc = acc ? passes(m, rd, arg, L, Ln, p, a, acc, err)
             : cp_errf(err, CP_ENOMEM, "network 3-D window: out of memory for the flows");
    float *f = acc; /* the field over s */
    if (!rc && back) {
        f = malloc(sizeof(float) * (size_t)(4 * ns));
        rc = f ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D window: out of memory to resize back");
        for (int c = 0; !rc && c < 4; c++)
            rc = cp_resize_volume_window(acc + c * na, a, Ln, 1, f + c * ns, s, L, 1, err);
    }
    for (int c = 0; !rc && c < 4; c++) {
        if (smooth && c < 3)
            rc = cp_smooth3d_window(f + c * ns, s, G, p->smooth, out4 + c * nw, w, err);
        else
            crop(f + c * ns, s, w, out4 + c * nw);
    }
    if (f != acc) free(f);
    free(acc);
    return rc;
}
