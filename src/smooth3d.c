/* Gaussian smoothing of a volume as scipy.ndimage.gaussian_filter (see smooth3d.h). */
#include "smooth3d.h"

#include <math.h>
#include <stdlib.h>

#include "cp_err.h"

/* numpy's pairwise sum of a[0..n) (add.reduce on float64: blocks of 8 partial sums below 128
 * values, halves rounded down to a multiple of 8 above). */
static double pairwise_sum(const double *a, int64_t n)
{
    if (n < 8) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        int64_t i;
        for (i = 8; i < n - n % 8; i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* scipy's 'reflect' index of k for an axis of n values: ... c b a | a b c ... (period 2n). */
static int64_t reflect(int64_t k, int64_t n)
{
    int64_t p = 2 * n;
    k %= p;
    if (k < 0) k += p;
    return k < n ? k : p - 1 - k;
}

/* One 1-D pass along an axis of n values over nl lines. The source holds values [b0, b0+bn) of
 * the axis at stride st, line l's first at (l / inner) * outer + (l % inner); the destination
 * receives values [o0, o0+on) (whose reflected reach must lie in the source's span) at stride
 * dst_st, line l's first at (l / inner) * dst_outer + (l % inner). src may be dst (in place, with
 * the same layout): each line is gathered before it is written. */
typedef struct line_pass {
    int64_t n, b0, bn, st, outer;
    int64_t o0, on, dst_st, dst_outer;
    int64_t nl, inner;
} line_pass;

static int pass(const float *src, float *dst, const line_pass *q, const double *w, int64_t R)
{
    int fail = 0;
#pragma omp parallel reduction(| : fail)
    {
        double *line = malloc(sizeof(double) * (size_t)(q->on + 2 * R));
        if (!line) fail = 1;
#pragma omp for schedule(static)
        for (int64_t l = 0; l < q->nl; l++) {
            if (!line) continue;
            const float *p = src + (l / q->inner) * q->outer + (l % q->inner);
            float *d = dst + (l / q->inner) * q->dst_outer + (l % q->inner);
            for (int64_t k = q->o0 - R; k < q->o0 + q->on + R; k++)
                line[k - q->o0 + R] = (double)p[(reflect(k, q->n) - q->b0) * q->st];
            for (int64_t i = 0; i < q->on; i++) {
                const double *c = line + i + R;
                double s = w[0] * c[0];
                for (int64_t j = 1; j <= R; j++) s += (c[j] + c[-j]) * w[j];
                d[i * q->dst_st] = (float)s;
            }
        }
        free(line);
    }
    return fail;
}

/* The kernel radius of sigma. */
static int64_t radius(double sigma)
{
    return (int64_t)(4.0 * sigma + 0.5);
}

/* The normalised weights w[0..R] of sigma (malloc'ed; the caller frees w - R), or NULL. */
static double *kernel(double sigma, int64_t R)
{
    double *k = malloc(sizeof(double) * (size_t)(2 * R + 1));
    if (!k) return NULL;
    double c = -0.5 / (sigma * sigma);
    for (int64_t j = -R; j <= R; j++) k[j + R] = exp(c * (double)(j * j));
    double sum = pairwise_sum(k, 2 * R + 1);
    for (int64_t j = 0; j <= 2 * R; j++) k[j] /= sum;
    return k + R; /* w[j], j = 0..R (symmetric) */
}

static int check_sigma(double sigma, char *err)
{
    if (!(sigma > 0.0) || !isfinite(sigma))
        return cp_errf(err, CP_EPARAM, "flow3D_smooth %g: need a positive number", sigma);
    return 0;
}

int cp_smooth3d_gaussian(float *v, int64_t nz, int64_t ny, int64_t nx, double sigma, char *err)
{
    int rc = check_sigma(sigma, err);
    if (rc) return rc;
    int64_t R = radius(sigma);
    double *w = kernel(sigma, R);
    if (!w) return cp_errf(err, CP_ENOMEM, "flow3D_smooth: out of memory for the kernel");
    int64_t s = ny * nx;
    line_pass qz = {nz, 0, nz, s, 0, 0, nz, s, 0, s, s};
    line_pass qy = {ny, 0, ny, nx, s, 0, ny, nx, s, nz * nx, nx};
    line_pass qx = {nx, 0, nx, 1, nx, 0, nx, 1, nx, nz * ny, 1};
    int fail = pass(v, v, &qz, w, R) || pass(v, v, &qy, w, R) || pass(v, v, &qx, w, R);
    free(w - R);
    return fail ? cp_errf(err, CP_ENOMEM, "flow3D_smooth: out of memory for a line") : 0;
}

void cp_smooth3d_reach(double sigma, int64_t n, int64_t o0, int64_t on, int64_t *b0, int64_t *bn)
{
    int64_t R = radius(sigma), lo = n, hi = 0;
    if (!(sigma > 0.0) || !isfinite(sigma)) R = 0;
    for (int64_t k = o0 - R; k < o0 + on + R; k++) {
        int64_t r = reflect(k, n);
        lo = r < lo ? r : lo;
        hi = r + 1 > hi ? r + 1 : hi;
    }
    *b0 = lo;
    *bn = hi - lo;
}

int cp_smooth3d_window(const float *src, cp_box3 b, const int64_t L[3], double sigma, float *dst,
                       cp_box3 o, char *err)
{
    int rc = check_sigma(sigma, err);
    if (rc) return rc;
    int64_t R = radius(sigma);
    double *w = kernel(sigma, R);
    /* after Z: (o nz, b ny, b nx); after Y: (o nz, o ny, b nx) */
    const int64_t *bo = b.o, *bn = b.n, *oo = o.o, *on = o.n;
    float *t1 = malloc(sizeof(float) * (size_t)(on[0] * bn[1] * bn[2]));
    float *t2 = malloc(sizeof(float) * (size_t)(on[0] * on[1] * bn[2]));
    int fail = !w || !t1 || !t2;
    if (!fail) {
        int64_t s = bn[1] * bn[2];
        line_pass qz = {L[0], bo[0], bn[0], s, 0, oo[0], on[0], s, 0, s, s};
        line_pass qy = {L[1], bo[1], bn[1], bn[2], s, oo[1], on[1], bn[2], on[1] * bn[2],
                        on[0] * bn[2], bn[2]};
        line_pass qx = {L[2], bo[2], bn[2], 1, bn[2], oo[2], on[2], 1, on[2], on[0] * on[1], 1};
        fail = pass(src, t1, &qz, w, R) || pass(t1, t2, &qy, w, R) || pass(t2, dst, &qx, w, R);
    }
    if (w) free(w - R);
    free(t1);
    free(t2);
    return fail ? cp_errf(err, CP_ENOMEM, "flow3D_smooth: out of memory for a window") : 0;
}
