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

/* One 1-D pass along an axis of n values with stride st, over the nl lines whose first values
 * are at first(l) = (l / inner) * outer_st + (l % inner) (the other two axes). */
static int pass(float *v, int64_t n, int64_t st, int64_t nl, int64_t inner, int64_t outer_st,
                const double *w, int64_t R)
{
    int fail = 0;
#pragma omp parallel reduction(| : fail)
    {
        double *line = malloc(sizeof(double) * (size_t)(n + 2 * R));
        if (!line) fail = 1;
#pragma omp for schedule(static)
        for (int64_t l = 0; l < nl; l++) {
            if (!line) continue;
            float *p = v + (l / inner) * outer_st + (l % inner);
            for (int64_t k = -R; k < n + R; k++) line[k + R] = (double)p[reflect(k, n) * st];
            for (int64_t i = 0; i < n; i++) {
                const double *c = line + i + R;
                double s = w[0] * c[0];
                for (int64_t j = 1; j <= R; j++) s += (c[j] + c[-j]) * w[j];
                p[i * st] = (float)s;
            }
        }
        free(line);
    }
    return fail;
}

int cp_smooth3d_gaussian(float *v, int64_t nz, int64_t ny, int64_t nx, double sigma, char *err)
{
    if (!(sigma > 0.0) || !isfinite(sigma))
        return cp_errf(err, CP_EPARAM, "flow3D_smooth %g: need a positive number", sigma);
    int64_t R = (int64_t)(4.0 * sigma + 0.5);
    double *k = malloc(sizeof(double) * (size_t)(2 * R + 1));
    if (!k) return cp_errf(err, CP_ENOMEM, "flow3D_smooth: out of memory for the kernel");
    double c = -0.5 / (sigma * sigma);
    for (int64_t j = -R; j <= R; j++) k[j + R] = exp(c * (double)(j * j));
    double sum = pairwise_sum(k, 2 * R + 1);
    for (int64_t j = 0; j <= 2 * R; j++) k[j] /= sum;
    const double *w = k + R; /* w[j], j = 0..R (symmetric) */
    int fail = pass(v, nz, ny * nx, ny * nx, ny * nx, 0, w, R) ||
               pass(v, ny, nx, nz * nx, nx, ny * nx, w, R) ||
               pass(v, nx, 1, nz * ny, 1, nx, w, R);
    free(k);
    return fail ? cp_errf(err, CP_ENOMEM, "flow3D_smooth: out of memory for a line") : 0;
}
