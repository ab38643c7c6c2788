/* The 3-D network stage: three orthogonal passes summed (see net3d.h). */
#include "net3d.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "resize.h"
#include "run_net.h"
#include "smooth3d.h"

cp_view cp_view_of(int pass, int64_t Lz, int64_t Ly, int64_t Lx)
{
    int64_t sz = Ly * Lx, sy = Lx;
    switch (pass) {
    case 0: return (cp_view){Lz, Ly, Lx, sz, sy, 1, {CP_V3_DY, CP_V3_DX}};
    case 1: return (cp_view){Ly, Lz, Lx, sy, sz, 1, {CP_V3_DZ, CP_V3_DX}};
    default: return (cp_view){Lx, Lz, Ly, 1, sz, sy, {CP_V3_DZ, CP_V3_DY}};
    }
}

void cp_view_image(const cp_view *v, const float *x, int64_t i, float *x2)
{
    for (int64_t r = 0; r < v->rows; r++)
        for (int64_t c = 0; c < v->cols; c++) {
            const float *s = x + 2 * (i * v->plane_st + r * v->row_st + c * v->col_st);
            float *d = x2 + 2 * (r * v->cols + c);
            d[0] = s[0];
            d[1] = s[1];
        }
}

void cp_view_add(const cp_view *v, int64_t i, const float *y, int64_t cstride, float *acc,
                 int64_t nvox)
{
    float *cp = acc + CP_V3_CELLPROB * nvox, *f0 = acc + v->flow[0] * nvox,
          *f1 = acc + v->flow[1] * nvox;
    for (int64_t r = 0; r < v->rows; r++)
        for (int64_t c = 0; c < v->cols; c++) {
            int64_t o = i * v->plane_st + r * v->row_st + c * v->col_st, k = r * v->cols + c;
            cp[o] += y[2 * cstride + k];
            f0[o] += y[k];
            f1[o] += y[cstride + k];
        }
}

cp_box3 cp_view_box(int pass, int64_t p0, int64_t pn, const int64_t r[4])
{
    switch (pass) {
    case 0: return (cp_box3){{p0, r[0], r[1]}, {pn, r[2], r[3]}};
    case 1: return (cp_box3){{r[0], p0, r[1]}, {r[2], pn, r[3]}};
    default: return (cp_box3){{r[0], r[1], p0}, {r[2], r[3], pn}};
    }
}

void cp_view_rect(int pass, cp_box3 a, int64_t *p0, int64_t *pn, int64_t r[4])
{
    int64_t z[2] = {a.o[0], a.n[0]}, y[2] = {a.o[1], a.n[1]}, x[2] = {a.o[2], a.n[2]};
    const int64_t *pl = pass == 0 ? z : pass == 1 ? y : x, *ro = pass == 0 ? y : z,
                  *co = pass == 2 ? y : x;
    *p0 = pl[0], *pn = pl[1];
    r[0] = ro[0], r[1] = co[0], r[2] = ro[1], r[3] = co[1];
}

/* Image rect win of box a in pass `pass`, its cover, the tiles per image. */
typedef struct pass_geom {
    cp_view v;
    int64_t p0, pn, win[4], cover[4], per;
} pass_geom;

static int pass_geom_of(const int64_t L[3], int pass, cp_box3 a, double tile_overlap,
                        int augment, pass_geom *q, char *err)
{
    q->v = cp_view_of(pass, L[0], L[1], L[2]);
    cp_view_rect(pass, a, &q->p0, &q->pn, q->win);
    return cp_net_window_cover(q->v.rows, q->v.cols, CP_NET3D_BSIZE, tile_overlap, augment, q->win,
                               q->cover, &q->per, err);
}

int cp_net3d_pass_box(const cp_model *m, cp_net3d_reader rd, void *arg, const int64_t L[3],
                      int pass, cp_box3 a, double tile_overlap, int augment, int64_t batch,
                      float *acc, float *view, cp_progress *pr, char *err)
{
    pass_geom q;
    int rc = pass_geom_of(L, pass, a, tile_overlap, augment, &q, err);
    if (rc) return rc;
    cp_view va = cp_view_of(pass, a.n[0], a.n[1], a.n[2]);
    int64_t cpix = q.cover[2] * q.cover[3], wpix = q.win[2] * q.win[3];
    int64_t nvox = cp_box3_voxels(a);
    /* images per network call: enough to fill a batch of tiles */
    int64_t group = q.per > 0 && q.per < batch ? batch / q.per : 1;
    if (group > q.pn) group = q.pn;
    /* the input of one call's images (the slab of their planes), then the images themselves */
    float *xs = malloc(sizeof(float) * (size_t)(group * 2 * cpix));
    float *x2 = malloc(sizeof(float) * (size_t)(group * 2 * cpix));
    float *y = malloc(sizeof(float) * (size_t)(group * 3 * wpix));
    rc = (xs && x2 && y) ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for %lld "
                                       "images of %lldx%lld", (long long)group,
                                       (long long)q.cover[2], (long long)q.cover[3]);
    for (int64_t i0 = 0; !rc && i0 < q.pn; i0 += group) {
        int64_t n = q.pn - i0 < group ? q.pn - i0 : group;
        cp_box3 part = cp_view_box(pass, q.p0 + i0, n, q.cover);
        rc = rd(arg, part, xs, err);
        cp_view vs = cp_view_of(pass, part.n[0], part.n[1], part.n[2]);
        for (int64_t i = 0; !rc && i < n; i++) cp_view_image(&vs, xs, i, x2 + i * 2 * cpix);
        if (!rc)
            rc = cp_net_images_window(m, x2, n, q.v.rows, q.v.cols, CP_NET3D_BSIZE, tile_overlap,
                                      augment, batch, q.win, y, pr, err);
        for (int64_t i = 0; !rc && i < n; i++) {
            const float *yi = y + i * 3 * wpix;
            cp_view_add(&va, i0 + i, yi, wpix, acc, nvox);
            for (int k = 0; view && k < 3; k++)
                memcpy(view + (k * q.pn + i0 + i) * wpix, yi + k * wpix,
                       sizeof(float) * (size_t)wpix);
        }
    }
    free(xs);
    free(x2);
    free(y);
    return rc;
}

/* cp_net3d_reader over a whole volume in memory. */
typedef struct volume_src {
    const float *x;
    const int64_t *L;
} volume_src;

static int read_volume(void *arg, cp_box3 b, float *dst, char *err)
{
    (void)err;
    const volume_src *s = arg;
    for (int64_t z = 0; z < b.n[0]; z++)
        for (int64_t y = 0; y < b.n[1]; y++)
            memcpy(dst + 2 * (z * b.n[1] + y) * b.n[2],
                   s->x + 2 * (((b.o[0] + z) * s->L[1] + b.o[1] + y) * s->L[2] + b.o[2]),
                   sizeof(float) * (size_t)(2 * b.n[2]));
    return 0;
}

int cp_net3d_pass(const cp_model *m, const float *x, const int64_t L[3], int pass,
                  double tile_overlap, int augment, int64_t batch, float *acc, float *view,
                  cp_progress *pr, char *err)
{
    volume_src s = {x, L};
    cp_box3 a = {{0, 0, 0}, {L[0], L[1], L[2]}};
    return cp_net3d_pass_box(m, read_volume, &s, L, pass, a, tile_overlap, augment, batch, acc,
                             view, pr, err);
}

int cp_net3d_scale(const int64_t L[3], double rescale, double anisotropy, int64_t Ln[3],
                   char *err)
{
    Ln[0] = (int64_t)(((double)L[0] * anisotropy) * rescale);
    Ln[1] = (int64_t)((double)L[1] * rescale);
    Ln[2] = (int64_t)((double)L[2] * rescale);
    if (Ln[0] < 1 || Ln[1] < 1 || Ln[2] < 1)
        return cp_errf(err, CP_EPARAM, "volume %lldx%lldx%lld is empty at the network scale "
                       "(rescale %g, anisotropy %g): %lldx%lldx%lld", (long long)L[0],
                       (long long)L[1], (long long)L[2], rescale, anisotropy, (long long)Ln[0],
                       (long long)Ln[1], (long long)Ln[2]);
    return 0;
}

int cp_net3d_finish(float *acc, const int64_t Ln[3], const int64_t L[3],
                    const cp_net3d_params *p, cp_net3d_out *out, char *err)
{
    memset(out, 0, sizeof *out);
    const int64_t *G = Ln;
    int rc = 0;
    if (p->resample && (Ln[0] != L[0] || Ln[1] != L[1] || Ln[2] != L[2])) {
        int64_t nv = Ln[0] * Ln[1] * Ln[2], mv = L[0] * L[1] * L[2];
        float *back = malloc(sizeof(float) * (size_t)(4 * mv));
        rc = back ? 0 : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory to resize back");
        for (int c = 0; !rc && c < 4; c++)
            rc = cp_resize_volume(acc + c * nv, Ln[0], Ln[1], Ln[2], 1, back + c * mv, L[0],
                                  L[1], L[2], 1, err);
        free(acc);
        acc = back;
        G = L;
    }
    int64_t nv = G[0] * G[1] * G[2];
    for (int c = 0; !rc && p->smooth > 0 && c < 3; c++)
        rc = cp_smooth3d_gaussian(acc + c * nv, G[0], G[1], G[2], p->smooth, err);
    if (rc) {
        free(acc);
        return rc;
    }
    *out = (cp_net3d_out){G[0], G[1], G[2], acc, acc + CP_V3_CELLPROB * nv};
    return 0;
}

int cp_run_net3d(const cp_model *m, const float *x, const int64_t L[3], const cp_net3d_params *p,
                 cp_net3d_out *out, char *err)
{
    memset(out, 0, sizeof *out);
    int64_t Ln[3];
    int rc = cp_net3d_scale(L, p->rescale, p->anisotropy, Ln, err);
    if (rc) return rc;
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    float *xn = NULL;
    if (Ln[0] != L[0] || Ln[1] != L[1] || Ln[2] != L[2]) {
        xn = malloc(sizeof(float) * (size_t)(2 * nv));
        rc = xn ? cp_resize_volume(x, L[0], L[1], L[2], 2, xn, Ln[0], Ln[1], Ln[2], 0, err)
                : cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for the network input");
    }
    float *acc = rc ? NULL : calloc((size_t)(4 * nv), sizeof *acc);
    if (!rc && !acc) rc = cp_errf(err, CP_ENOMEM, "network 3-D: out of memory for the flows");
    if (!rc) {
        int64_t ntiles = 0;
        for (int pass = 0; pass < 3; pass++) {
            cp_view v = cp_view_of(pass, Ln[0], Ln[1], Ln[2]);
            ntiles += v.planes * cp_net_image_tiles(v.rows, v.cols, CP_NET3D_BSIZE, p->tile_overlap,
                                                    p->augment);
        }
        cp_progress pr;
        cp_progress_begin(&pr, "network", "tiles", ntiles);
        for (int pass = 0; !rc && pass < 3; pass++)
            rc = cp_net3d_pass(m, xn ? xn : x, Ln, pass, p->tile_overlap, p->augment,
                               p->batch_size, acc, NULL, &pr, err);
        cp_progress_end(&pr);
    }
    free(xn);
    if (rc) {
        free(acc);
        return rc;
    }
    return cp_net3d_finish(acc, Ln, L, p, out, err);
}

void cp_net3d_out_free(cp_net3d_out *o)
{
    free(o->dP);
    memset(o, 0, sizeof *o);
}
