/* Preprocessing (CELLPOSE_ALGORITHM.md §2.1-2.2): the axis decisions of Cellpose's convert_image
 * replayed on the file's shape, channel selection, normalize99 percentiles (numpy "linear" in
 * f64, found by selection instead of a full sort), normalization and inversion. */
#include "prep.h"

#include "cp_err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- layout (§2.1) ------------------------------------------------------------------------ */

#define MAXDIM 8
#define NEWAXIS (-1) /* an axis added by np.newaxis (size 1) */

/* The array as convert_image transforms it: ax[i] = original axis index (or NEWAXIS). */
typedef struct axes {
    int n;
    int ax[MAXDIM];
    int64_t sz[MAXDIM];
} axes;

static int64_t axes_min(const axes *a)
{
    int64_t m = a->sz[0];
    for (int i = 1; i < a->n; i++)
        if (a->sz[i] < m) m = a->sz[i];
    return m;
}

static int axes_index(const axes *a, int64_t size)
{
    for (int i = 0; i < a->n; i++)
        if (a->sz[i] == size) return i;
    return 0;
}

/* Cellpose's move_axis: axis m (clamped to n-1) moved to the front or to the back. */
static void axes_move(axes *a, int m, int first)
{
    if (m > a->n - 1) m = a->n - 1;
    int ax = a->ax[m];
    int64_t sz = a->sz[m];
    if (first) {
        memmove(a->ax + 1, a->ax, (size_t)m * sizeof a->ax[0]);
        memmove(a->sz + 1, a->sz, (size_t)m * sizeof a->sz[0]);
        a->ax[0] = ax;
        a->sz[0] = sz;
    } else {
        memmove(a->ax + m, a->ax + m + 1, (size_t)(a->n - 1 - m) * sizeof a->ax[0]);
        memmove(a->sz + m, a->sz + m + 1, (size_t)(a->n - 1 - m) * sizeof a->sz[0]);
        a->ax[a->n - 1] = ax;
        a->sz[a->n - 1] = sz;
    }
}

static void axes_append_new(axes *a)
{
    a->ax[a->n] = NEWAXIS;
    a->sz[a->n] = 1;
    a->n++;
}

/* Cellpose's update_axis: the index of axis m after removing the squeezed axes, or -1. */
static int squeezed_index(int m, const int64_t *shape)
{
    if (m < 0 || shape[m] == 1) return -1;
    int k = 0;
    for (int i = 0; i < m; i++)
        if (shape[i] != 1) k++;
    return k;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t at = 0;
    at += (size_t)snprintf(buf + at, len - at, "(");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < len) snprintf(buf + at, len - at, ")");
}

/* Page stride of file axis i (axes before the page rows are page axes, C order). */
static int64_t page_stride(const int64_t *shape, int yax, int i)
{
    int64_t s = 1;
    for (int k = i + 1; k < yax; k++) s *= shape[k];
    return s;
}

int cp_layout_decide(const int64_t *shape, int ndim, int z_axis, int channel_axis, int stitch,
                     int chan, int chan2, cp_layout *out, char *err)
{
    char sh[160];
    if (ndim < 2 || ndim > 6)
        return cp_errf(err, CP_EUNSUPPORTED, "prep: image with %d dimensions (2 to 6 supported)",
                       ndim);
    shape_str(shape, ndim, sh, sizeof sh);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            return cp_errf(err, CP_EFORMAT, "prep: image shape %s has an empty axis", sh);
    if (z_axis < -1 || z_axis >= ndim)
        return cp_errf(err, CP_EPARAM, "prep: --z_axis %d out of range for image shape %s",
                       z_axis, sh);
    if (channel_axis < -1 || channel_axis >= ndim)
        return cp_errf(err, CP_EPARAM, "prep: --channel_axis %d out of range for image shape %s",
                       channel_axis, sh);
    if (stitch && ndim == 2)
        return cp_errf(err, CP_EPARAM,
                       "prep: image shape %s is 2-D: --do_3D and stitching (--stitch_threshold > 0) "
                       "need a stack (Cellpose: cannot process 2D images in 3D mode)", sh);
    int channels_given = chan >= 0;
    int sax = (ndim >= 3 && shape[ndim - 1] >= 2 && shape[ndim - 1] <= 4) ? ndim - 1 : -1;
    int yax = sax >= 0 ? ndim - 3 : ndim - 2, xax = yax + 1;

    /* replay convert_image on the axis list */
    axes a = {.n = 0};
    int zi = z_axis, ci = channel_axis; /* current positions, -1 = None */
    for (int i = 0; i < ndim; i++) {
        if (ndim > 3 && shape[i] == 1) continue; /* squeeze */
        a.ax[a.n] = i;
        a.sz[a.n++] = shape[i];
    }
    if (ndim > 3 && a.n < ndim) {
        zi = squeezed_index(zi, shape);
        ci = squeezed_index(ci, shape);
    }
    if (zi >= 0 && a.n > 2 && zi != 0) {
        axes_move(&a, zi, 1);
        if (ci >= 0) ci += 1;
        zi = 0;
    } else if (zi < 0 && a.n > 2 && channels_given && axes_min(&a) > 5) {
        int64_t min_dim = axes_min(&a);
        if (min_dim != ci) { /* sic: Cellpose compares a size with an axis index */
            int z = axes_index(&a, min_dim);
            if (z != 0) {
                axes_move(&a, z, 1);
                if (ci >= 0) ci += 1;
            }
            zi = 0;
        }
    }
    if (zi >= 0 && a.n == 3) axes_append_new(&a);
    if (ci >= 0 && a.n > 2)
        axes_move(&a, ci, 0);
    else if (a.n == 2)
        axes_append_new(&a);
    if (stitch && a.n < 4) axes_append_new(&a);
    if (ci < 0 && a.n > 2) {
        int64_t min_dim = axes_min(&a);
        if (min_dim < 10 && a.sz[a.n - 1] != min_dim) axes_move(&a, axes_index(&a, min_dim), 0);
    }
    if (a.n > 4)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "prep: image shape %s gives a %d-D array after Cellpose's axis handling "
                       "(at most Z, Y, X, C)", sh, a.n);

    int zax = a.n == 4 ? a.ax[0] : NEWAXIS;
    int ya = a.ax[a.n - 3], xa = a.ax[a.n - 2], cax = a.ax[a.n - 1];
    if (ya != yax || xa != xax)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "prep: image shape %s: Cellpose would take axis %d as rows and axis %d as "
                       "columns, not the TIFF page rows/columns (axes %d, %d); give --z_axis "
                       "and/or --channel_axis", sh, ya, xa, yax, xax);
    if (zax != NEWAXIS && zax == sax)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "prep: image shape %s: the Z axis would be the TIFF samples axis %d",
                       sh, sax);

    cp_layout l = {.nz = 1, .ny = shape[yax], .nx = shape[xax], .nc = 1};
    if (zax != NEWAXIS) {
        l.nz = shape[zax];
        l.z_page = page_stride(shape, yax, zax);
    }
    if (cax != NEWAXIS) {
        l.nc = (int)shape[cax];
        if (cax == sax)
            l.c_sample = 1;
        else
            l.c_page = page_stride(shape, yax, cax);
    }
    if (l.ny < 8)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "prep: image shape %s: %lld rows; images fewer than 8 rows high are "
                       "refused (Cellpose would transpose them)", sh, (long long)l.ny);
    if (channels_given && l.nc > 1) {
        if (chan > l.nc || chan2 > l.nc)
            return cp_errf(err, CP_EPARAM,
                           "prep: --chan %d / --chan2 %d: the image has only %d channels",
                           chan, chan2, l.nc);
    }
    if (channels_given && chan2 < 0)
        return cp_errf(err, CP_EPARAM, "prep: --chan2 %d is negative", chan2);
    *out = l;
    return 0;
}

/* ---- channels ----------------------------------------------------------------------------- */

void cp_prep_channels(const float *raw, int64_t npix, int nc, int chan, int chan2, float *x2)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < npix; i++) {
        const float *p = raw + i * nc;
        float a, b = 0.0f;
        if (nc == 1) {
            a = p[0];
        } else if (chan < 0) {
            a = p[0];
            b = p[1];
        } else if (chan == 0) {
            float s = p[0];
            for (int k = 1; k < nc; k++) s += p[k];
            a = s / (float)nc;
        } else {
            a = p[chan - 1];
            if (chan2 > 0) b = p[chan2 - 1];
        }
        x2[2 * i] = a;
        x2[2 * i + 1] = b;
    }
}

/* ---- percentiles (§2.2) ------------------------------------------------------------------- */

double cp_percentile_lerp(double lo, double hi, double t)
{
    double d = hi - lo;
    return t >= 0.5 ? hi - d * (1.0 - t) : lo + d * t;
}

void cp_percentile_index(int64_t n, double q, int64_t *i, double *t)
{
    double pos = (double)(n - 1) * (q / 100.0);
    double f = floor(pos);
    *i = (int64_t)f;
    *t = pos - f;
}

double cp_percentile_sorted(const double *v, int64_t n, double q)
{
    int64_t i;
    double t;
    cp_percentile_index(n, q, &i, &t);
    return cp_percentile_lerp(v[i], v[i + 1 < n ? i + 1 : n - 1], t);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void swap_d(double *v, int64_t a, int64_t b)
{
    double t = v[a];
    v[a] = v[b];
    v[b] = t;
}

/* Rearranges v[0..n) so that v[k] holds the k-th smallest value, smaller-or-equal values before
 * it and greater-or-equal after (nth_element). Three-way partitions (images have many equal
 * values) around a median-of-three pivot; after a depth limit the rest is sorted. NaN-free. */
static void select_kth(double *v, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n; /* the k-th lies in [lo, hi) */
    int depth = 0;
    while (hi - lo > 16) {
        if (++depth > 64) break;
        int64_t m = lo + (hi - lo) / 2;
        double a = v[lo], b = v[m], c = v[hi - 1];
        double p = (a < b) ? ((b < c) ? b : (a < c ? c : a)) : ((a < c) ? a : (b < c ? c : b));
        /* [lo, lt) < p, [lt, i) == p, [gt, hi) > p */
        int64_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < p)
                swap_d(v, lt++, i++);
            else if (v[i] > p)
                swap_d(v, i, --gt);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
    qsort(v + lo, (size_t)(hi - lo), sizeof *v, cmp_double);
}

static double min_of(const double *v, int64_t a, int64_t b)
{
    double m = v[a];
    for (int64_t i = a + 1; i < b; i++)
        if (v[i] < m) m = v[i];
    return m;
}

/* Percentiles q1 <= q99 of v[0..n) (reordered), bit-identical to sorting then
 * cp_percentile_sorted. */
static void percentile_pair(double *v, int64_t n, double q1, double q99, double *p1,
                            double *p99)
{
    int64_t i1, i9;
    double t1, t9;
    cp_percentile_index(n, q1, &i1, &t1);
    cp_percentile_index(n, q99, &i9, &t9);
    select_kth(v, n, i9);
    double hi9 = v[i9], nb9 = i9 + 1 < n ? min_of(v, i9 + 1, n) : hi9;
    /* [0, i9] now holds the i9+1 smallest values */
    select_kth(v, i9 + 1, i1);
    double lo1 = v[i1], nb1 = i1 + 1 <= i9 ? min_of(v, i1 + 1, i9 + 1) : nb9;
    *p1 = cp_percentile_lerp(lo1, nb1, t1);
    *p99 = cp_percentile_lerp(hi9, nb9, t9);
}

int cp_norm_compute_stack(const float *x2, int64_t nz, int64_t ny, int64_t nx, int c, double q1,
                          double q99, cp_norm *out, char *err)
{
    int64_t npix = nz * ny * nx;
    memset(out, 0, sizeof *out);
    if (!(q1 >= 0.0 && q1 < q99 && q99 <= 100.0))
        return cp_errf(err, CP_EPARAM, "prep: percentiles %g %g: need 0 <= low < high <= 100",
                       q1, q99);
    /* range test in f32: ptp > 0, false with NaN */
    float mn = x2[c], mx = x2[c];
    int nan = 0;
    for (int64_t i = 0; i < npix; i++) {
        float v = x2[2 * i + c];
        if (v != v) nan = 1;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    if (nan || !(mx - mn > 0.0f)) return 0;

    int64_t sz = 1, sy = 1, sx = 1;
    if (npix > (int64_t)224 * 224 * 224) {
        sz = nz / 50 > 1 ? nz / 50 : 1;
        sy = ny / 224 > 1 ? ny / 224 : 1;
        sx = nx / 224 > 1 ? nx / 224 : 1;
    }
    int64_t nzs = (nz + sz - 1) / sz, nys = (ny + sy - 1) / sy, nxs = (nx + sx - 1) / sx;
    int64_t n = nzs * nys * nxs;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return cp_errf(err, CP_ENOMEM, "prep: percentiles: cannot allocate %lld values",
                       (long long)n);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t z = 0; z < nzs; z++)
        for (int64_t y = 0; y < nys; y++) {
            const float *row = x2 + 2 * ((z * sz * ny + y * sy) * nx);
            double *dst = v + (z * nys + y) * nxs;
            for (int64_t x = 0; x < nxs; x++) dst[x] = (double)row[2 * x * sx + c];
        }
    percentile_pair(v, n, q1, q99, &out->p1, &out->p99);
    free(v);
    out->good = 1;
    out->zero = !(out->p99 - out->p1 > 1e-3);
    return 0;
}

int cp_norm_compute(const float *x2, int64_t ny, int64_t nx, int c, double q1, double q99,
                    cp_norm *out, char *err)
{
    return cp_norm_compute_stack(x2, 1, ny, nx, c, q1, q99, out, err);
}

/* ---- normalization ------------------------------------------------------------------------ */

void cp_norm_invert(float *x2, int64_t npix, const int inv[2])
{
    for (int c = 0; c < 2; c++) {
        if (!inv[c]) continue;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < npix; i++) x2[2 * i + c] = 1.0f - x2[2 * i + c];
    }
}

void cp_norm_apply(float *x2, int64_t npix, const cp_norm norm[2], int invert)
{
    for (int c = 0; c < 2; c++) {
        if (!norm[c].good) continue;
        float lo = (float)norm[c].p1, range = (float)(norm[c].p99 - norm[c].p1);
        int zero = norm[c].zero;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < npix; i++) {
            float *p = x2 + 2 * i + c;
            *p = zero ? 0.0f : (*p - lo) / range;
        }
    }
    if (invert) {
        int inv[2] = {norm[0].good, norm[1].good};
        cp_norm_invert(x2, npix, inv);
    }
}
