/* OpenCV 4.6 cv::resize on float32, re-done to the bit (CELLPOSE_ALGORITHM.md §2.3): INTER_LINEAR
 * with its f32 coefficient rounding and edge rules, its switch to INTER_AREA for an exact 2x
 * downscale, the plain copy for equal sizes, and INTER_NEAREST for labels. Every output pixel is
 * a function of its coordinates only, so a window gives the same bits as the whole image. */
#include "resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

/* OpenCV's source coordinate of output index d: f = (float)((d + 0.5) * scale - 0.5),
 * s = floor(f), f -= s. */
static void src_coord(double scale, int64_t d, int64_t *s, float *f)
{
    float fx = (float)(((double)d + 0.5) * scale - 0.5);
    float fl = floorf(fx);
    *s = (int64_t)fl;
    *f = fx - fl;
}

static double axis_scale(int64_t n, int64_t m)
{
    return 1.0 / ((double)m / (double)n);
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

void cp_resize_src_span(int64_t n, int64_t m, int64_t d0, int64_t d1, int64_t *s0, int64_t *s1)
{
    if (d1 <= d0) {
        *s0 = *s1 = 0;
        return;
    }
    double scale = axis_scale(n, m);
    int64_t a, b;
    float f;
    src_coord(scale, d0, &a, &f);
    src_coord(scale, d1 - 1, &b, &f);
    /* a column pair (s, s+1) is read even where its second weight is 0 (s clamped from < 0) */
    *s0 = clamp64(a, 0, n - 1);
    *s1 = clamp64(b, 0, n - 1) + 2 < n ? clamp64(b, 0, n - 1) + 2 : n;
}

/* OpenCV's column rule: source column s (relative to the window's first source column sx0),
 * weights a0 = 1 - f, a1 = f, and the one-term rule where the unclamped s >= n - 1. */
typedef struct xcoef {
    int64_t s;
    float a0, a1;
    int edge;
} xcoef;

static xcoef x_coef(double scale, int64_t n, int64_t d, int64_t sx0)
{
    xcoef c;
    float f;
    src_coord(scale, d, &c.s, &f);
    if (c.s < 0) c.s = 0, f = 0.0f;
    c.edge = c.s >= n - 1; /* after the clamp, as OpenCV: a 1-column source is all edge */
    if (c.edge) c.s = n - 1, f = 0.0f;
    c.s -= sx0;
    c.a0 = 1.0f - f;
    c.a1 = f;
    return c;
}

/* Horizontal pass value of channel k of a source row at column rule c. */
static float h_val(const float *row, int nc, int k, xcoef c)
{
    const float *p = row + c.s * nc + k;
    return c.edge ? p[0] : p[0] * c.a0 + p[nc] * c.a1;
}

static void bilinear(const float *src, int64_t sy0, int64_t sx0, int64_t src_nx, int64_t sny,
                     int64_t snx, int nc, float *dst, int64_t oy0, int64_t ox0, int64_t ony,
                     int64_t onx, int64_t dny, int64_t dnx)
{
    double yscale = axis_scale(sny, dny), xscale = axis_scale(snx, dnx);
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < ony; y++) {
        int64_t s;
        float f;
        src_coord(yscale, oy0 + y, &s, &f);
        float b0 = 1.0f - f, b1 = f; /* not clamped (§2.3) */
        const float *row0 = src + (clamp64(s, 0, sny - 1) - sy0) * src_nx * nc;
        const float *row1 = src + (clamp64(s + 1, 0, sny - 1) - sy0) * src_nx * nc;
        float *o = dst + y * onx * nc;
        for (int64_t x = 0; x < onx; x++) {
            xcoef c = x_coef(xscale, snx, ox0 + x, sx0);
            for (int k = 0; k < nc; k++)
                o[x * nc + k] = h_val(row0, nc, k, c) * b0 + h_val(row1, nc, k, c) * b1;
        }
    }
}

/* INTER_AREA with scale 2 (OpenCV's resizeAreaFast: sum = 0 + (((a + b) + c) + d), * 0.25f;
 * pairwise: ((a + b) + (c + d)) * 0.25f, its order for 4 channels). */
static void area2(const float *src, int64_t sy0, int64_t sx0, int64_t src_nx, int nc, float *dst,
                  int64_t oy0, int64_t ox0, int64_t ony, int64_t onx, int pairwise)
{
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < ony; y++) {
        const float *r0 = src + (2 * (oy0 + y) - sy0) * src_nx * nc;
        const float *r1 = r0 + src_nx * nc;
        float *o = dst + y * onx * nc;
        for (int64_t x = 0; x < onx; x++) {
            int64_t c0 = (2 * (ox0 + x) - sx0) * nc;
            for (int k = 0; k < nc; k++) {
                float a = r0[c0 + k], b = r0[c0 + nc + k], c = r1[c0 + k], d = r1[c0 + nc + k];
                float sum = 0.0f;
                sum += pairwise ? (a + b) + (c + d) : ((a + b) + c) + d;
                o[x * nc + k] = sum * 0.25f;
            }
        }
    }
}

static void resize_window(const float *src, int64_t sy0, int64_t sx0, int64_t src_nx,
                          int64_t sny, int64_t snx, int nc, float *dst, int64_t oy0, int64_t ox0,
                          int64_t ony, int64_t onx, int64_t dny, int64_t dnx, int pairwise)
{
    if (ony <= 0 || onx <= 0) return;
    if (sny == dny && snx == dnx) {
        for (int64_t y = 0; y < ony; y++)
            memcpy(dst + y * onx * nc, src + ((oy0 + y - sy0) * src_nx + (ox0 - sx0)) * nc,
                   (size_t)(onx * nc) * sizeof *dst);
    } else if (sny == 2 * dny && snx == 2 * dnx) {
        area2(src, sy0, sx0, src_nx, nc, dst, oy0, ox0, ony, onx, pairwise);
    } else {
        bilinear(src, sy0, sx0, src_nx, sny, snx, nc, dst, oy0, ox0, ony, onx, dny, dnx);
    }
}

void cp_resize_bilinear_window(const float *src, int64_t sy0, int64_t sx0, int64_t src_nx,
                               int64_t sny, int64_t snx, int nc, float *dst, int64_t oy0,
                               int64_t ox0, int64_t ony, int64_t onx, int64_t dny, int64_t dnx)
{
    resize_window(src, sy0, sx0, src_nx, sny, snx, nc, dst, oy0, ox0, ony, onx, dny, dnx, 0);
}

void cp_resize_bilinear(const float *src, int64_t sny, int64_t snx, int nc, float *dst,
                        int64_t dny, int64_t dnx)
{
    cp_resize_bilinear_window(src, 0, 0, snx, sny, snx, nc, dst, 0, 0, dny, dnx, dny, dnx);
}

/* The source span of output span [d0, d0+dn) of an axis resized from n to m within a 2-D resize
 * that changes some axis (resize2 = 1; the column pair rule reads one more source value on an
 * axis of equal size), or the span itself when the 2-D resize is a copy. */
static void span_of(int resize2, int64_t n, int64_t m, int64_t d0, int64_t dn, int64_t *s0,
                    int64_t *sn)
{
    if (!resize2) {
        *s0 = d0, *sn = dn;
        return;
    }
    int64_t a, b;
    cp_resize_src_span(n, m, d0, d0 + dn, &a, &b);
    *s0 = a, *sn = b - a;
}

/* The Y, X pass's output box (the Z pass's input) for destination box out. */
static cp_box3 mid_box(const int64_t n[3], const int64_t m[3], cp_box3 out)
{
    int z = n[0] != m[0];
    cp_box3 b = out;
    span_of(z, n[0], m[0], out.o[0], out.n[0], &b.o[0], &b.n[0]);
    span_of(z, m[2], m[2], out.o[2], out.n[2], &b.o[2], &b.n[2]);
    return b;
}

cp_box3 cp_resize_volume_src_box(const int64_t n[3], const int64_t m[3], cp_box3 out)
{
    int yx = n[1] != m[1] || n[2] != m[2];
    cp_box3 b = mid_box(n, m, out);
    span_of(yx, n[1], m[1], b.o[1], b.n[1], &b.o[1], &b.n[1]);
    span_of(yx, n[2], m[2], b.o[2], b.n[2], &b.o[2], &b.n[2]);
    return b;
}

int cp_resize_volume_window(const float *src, cp_box3 in, const int64_t n[3], int nc, float *dst,
                            cp_box3 out, const int64_t m[3], int pairwise, char *err)
{
    int yx = n[1] != m[1] || n[2] != m[2], z = n[0] != m[0];
    cp_box3 mb = mid_box(n, m, out);
    int64_t plane = mb.n[1] * mb.n[2] * nc, oplane = out.n[1] * out.n[2] * nc;
    /* the Y, X pass writes to dst directly unless the Z pass follows (then mb = out) */
    float *mid = z && yx ? malloc(sizeof(float) * (size_t)(mb.n[0] * plane)) : NULL;
    float *zp = z ? malloc(sizeof(float) * (size_t)(out.n[0] * out.n[2] * nc)) : NULL;
    if ((z && yx && !mid) || (z && !zp)) {
        free(mid);
        free(zp);
        return cp_errf(err, CP_ENOMEM, "resize: out of memory for a %lldx%lldx%lld volume of %d "
                       "channels", (long long)mb.n[0], (long long)mb.n[1], (long long)mb.n[2], nc);
    }
    const float *yxout = src; /* holds box yb: mb after a Y, X pass, else in (covering mb) */
    cp_box3 yb = yx ? mb : in;
    if (yx) {
        float *to = z ? mid : dst;
        for (int64_t k = 0; k < mb.n[0]; k++)
            resize_window(src + (mb.o[0] - in.o[0] + k) * in.n[1] * in.n[2] * nc, in.o[1],
                          in.o[2], in.n[2], n[1], n[2], nc, to + k * plane, mb.o[1], mb.o[2],
                          mb.n[1], mb.n[2], m[1], m[2], pairwise);
        yxout = to;
    } else if (!z) {
        for (int64_t k = 0; k < out.n[0]; k++)
            for (int64_t y = 0; y < out.n[1]; y++)
                memcpy(dst + (k * out.n[1] + y) * out.n[2] * nc,
                       src + (((out.o[0] - in.o[0] + k) * in.n[1] + out.o[1] - in.o[1] + y) *
                                  in.n[2] + out.o[2] - in.o[2]) * nc,
                       sizeof(float) * (size_t)(out.n[2] * nc));
    }
    /* Y plane y of the (Z, Y, X, nc) box yb: rows z at a stride of yb.n[1] * yb.n[2] pixels */
    for (int64_t y = 0; z && y < out.n[1]; y++) {
        resize_window(yxout + (out.o[1] - yb.o[1] + y) * yb.n[2] * nc, yb.o[0], yb.o[2],
                      yb.n[1] * yb.n[2], n[0], m[2], nc, zp, out.o[0], out.o[2], out.n[0],
                      out.n[2], m[0], m[2], pairwise);
        for (int64_t k = 0; k < out.n[0]; k++)
            memcpy(dst + k * oplane + y * out.n[2] * nc, zp + k * out.n[2] * nc,
                   sizeof(float) * (size_t)(out.n[2] * nc));
    }
    free(mid);
    free(zp);
    return 0;
}

int cp_resize_volume(const float *src, int64_t nz, int64_t ny, int64_t nx, int nc, float *dst,
                     int64_t mz, int64_t my, int64_t mx, int pairwise, char *err)
{
    const int64_t n[3] = {nz, ny, nx}, m[3] = {mz, my, mx};
    cp_box3 in = {{0, 0, 0}, {nz, ny, nx}}, out = {{0, 0, 0}, {mz, my, mx}};
    return cp_resize_volume_window(src, in, n, nc, dst, out, m, pairwise, err);
}

void cp_resize_nearest_u32(const uint32_t *src, int64_t sny, int64_t snx, uint32_t *dst,
                           int64_t dny, int64_t dnx)
{
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < dny; y++) {
        const uint32_t *row = src + cp_nearest_source(y, sny, dny) * snx;
        for (int64_t x = 0; x < dnx; x++) dst[y * dnx + x] = row[cp_nearest_source(x, snx, dnx)];
    }
}
