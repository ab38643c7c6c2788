/* Exact normalization percentiles across ranks (see dnorm.h): float32 values become
 * order-preserving uint32 keys; the wanted order statistics of the sample are found in two radix
 * rounds (high 16 bits, then low 16 bits within the chosen high bins) on histograms summed with
 * MPI_Allreduce; numpy's "linear" rule (§2.2) then interpolates between them. */
#include "dnorm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"

#define BINS 65536             /* 16 key bits per radix round */
#define CHUNK_PIXELS (1 << 16) /* default chunk: whole rows, about this many pixels */
#define NSTAT 4                /* order statistics per channel: i, i+1 for q1 and for q99 */

/* One call's scan: the planes and rows, this rank's chunks, the sample, the histograms. */
typedef struct dscan {
    cp_image *im;
    int64_t z0, nz, ny, nx, rows; /* planes [z0, z0+nz) of ny x nx, rows per chunk */
    int64_t u0, u1;               /* this rank's chunks [u0, u1) of nz * ceil(ny / rows) */
    int64_t sz, sy, sx;           /* sample strides (all 1 unless subsampled) */
    float *buf;                   /* one chunk (rows, nx, 2) */
    float mn[2], mx[2];           /* range of all pixels, per channel */
    int64_t *hist;                /* round 1: (2, BINS) counts of the high 16 key bits */
    int nslot[2], slot0[2];       /* round 2: distinct high bins of channel c: slots */
    uint32_t slot_hi[2][NSTAT];   /*   slot0[c] .. slot0[c]+nslot[c]-1 of `lo` */
    int64_t *lo;                  /* (slots, BINS) counts of the low 16 bits within a slot */
} dscan;

/* Order-preserving key: negative floats have all bits flipped, others the sign bit set, so
 * unsigned key order is float order (-0 just before +0, which compare equal as values). */
static uint32_t key_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static float float_of(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? k & 0x7fffffffu : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Counts row y of plane zr (relative to z0): in pass 1 its range, and the high bits of its sampled
 * pixels; in pass 2 the low bits of the sampled pixels whose high bits are a slot's. */
static void visit_row(dscan *s, int pass, int64_t zr, int64_t y, const float *row)
{
    if (pass == 1)
        for (int64_t x = 0; x < s->nx; x++)
            for (int c = 0; c < 2; c++) {
                float v = row[2 * x + c];
                if (v < s->mn[c]) s->mn[c] = v;
                if (v > s->mx[c]) s->mx[c] = v;
            }
    if (zr % s->sz || y % s->sy) return;
    for (int c = 0; c < 2; c++) {
        if (pass == 2 && !s->nslot[c]) continue;
        for (int64_t x = 0; x < s->nx; x += s->sx) {
            uint32_t k = key_of(row[2 * x + c]), hi = k >> 16;
            if (pass == 1) {
                s->hist[c * BINS + hi]++;
                continue;
            }
            for (int j = 0; j < s->nslot[c]; j++)
                if (hi == s->slot_hi[c][j]) {
                    s->lo[(int64_t)(s->slot0[c] + j) * BINS + (k & 0xffffu)]++;
                    break;
                }
        }
    }
}

/* Reads this rank's chunks and visits their rows. Pass 2 needs only the sampled planes and rows:
 * it skips the other planes and, when rows are strided, reads the sampled rows one by one. */
static int scan_pass(dscan *s, int pass, char *err)
{
    int64_t nchunk = (s->ny + s->rows - 1) / s->rows;
    int one = pass == 2 && s->sy > 1;
    for (int64_t u = s->u0; u < s->u1; u++) {
        int64_t zr = u / nchunk, y0 = u % nchunk * s->rows;
        int64_t y1 = y0 + s->rows < s->ny ? y0 + s->rows : s->ny;
        if (pass == 2 && zr % s->sz) continue;
        int64_t y = one ? (y0 + s->sy - 1) / s->sy * s->sy : y0;
        while (y < y1) {
            int64_t n = one ? 1 : y1 - y;
            int rc = cp_image_read(s->im, s->z0 + zr, y, 0, n, s->nx, s->buf, err);
            if (rc) return rc;
            for (int64_t r = 0; r < n; r++)
                visit_row(s, pass, zr, y + r, s->buf + 2 * r * s->nx);
            y += one ? s->sy : n;
        }
    }
    return 0;
}

/* The bin of counts[0..BINS) holding the value of rank k (0-based, k < sum of counts) and the
 * number of values in the bins before it. */
static uint32_t bin_of_rank(const int64_t *counts, int64_t k, int64_t *before)
{
    int64_t cum = 0;
    uint32_t b = 0;
    while (b < BINS - 1 && cum + counts[b] <= k) cum += counts[b++];
    *before = cum;
    return b;
}


/* Ranks wanted of channel c (n sampled values): i, i+1 (clipped) of q1 and of q99. */
static void wanted_ranks(int64_t n, double q1, double q99, int64_t k[NSTAT], double t[2])
{
    cp_percentile_index(n, q1, &k[0], &t[0]);
    cp_percentile_index(n, q99, &k[2], &t[1]);
    k[1] = k[0] + 1 < n ? k[0] + 1 : n - 1;
    k[3] = k[2] + 1 < n ? k[2] + 1 : n - 1;
}

/* Sets up the scan of planes [z0, z0+nz) for this rank; allocates the chunk and round 1. */
static int scan_init(dscan *s, MPI_Comm comm, cp_image *im, int64_t z0, int64_t nz,
                     int64_t chunk_rows, char *err)
{
    int rank, nranks;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    const cp_layout *L = &im->layout;
    *s = (dscan){.im = im, .z0 = z0, .nz = nz, .ny = L->ny, .nx = L->nx, .rows = chunk_rows,
                 .sz = 1, .sy = 1, .sx = 1, .mn = {INFINITY, INFINITY},
                 .mx = {-INFINITY, -INFINITY}};
    if (s->rows > s->ny) s->rows = s->ny;
    int64_t units = nz * ((s->ny + s->rows - 1) / s->rows);
    s->u0 = units * rank / nranks;
    s->u1 = units * (rank + 1) / nranks;
    if (nz * s->ny * s->nx > (int64_t)224 * 224 * 224) {
        s->sz = nz / 50 > 1 ? nz / 50 : 1;
        s->sy = s->ny / 224 > 1 ? s->ny / 224 : 1;
        s->sx = s->nx / 224 > 1 ? s->nx / 224 : 1;
    }
    s->buf = malloc(sizeof(float) * (size_t)(2 * s->rows * s->nx));
    s->hist = calloc(2 * BINS, sizeof *s->hist);
    if (!s->buf || !s->hist)
        return cp_errf(err, CP_ENOMEM, "dnorm: %s: cannot allocate a %lldx%lld chunk and "
                       "histograms", im->path, (long long)s->rows, (long long)s->nx);
    return 0;
}

int cp_dnorm_compute_rows(MPI_Comm comm, cp_image *im, int64_t z0, int64_t nz, int64_t chunk_rows,
                          double q1, double q99, cp_norm out[2], char *err)
{
    memset(out, 0, 2 * sizeof *out);
    dscan s = {0};
    int rc = 0;
    if (!(q1 >= 0.0 && q1 < q99 && q99 <= 100.0))
        rc = cp_errf(err, CP_EPARAM, "dnorm: percentiles %g %g: need 0 <= low < high <= 100",
                     q1, q99);
    else if (z0 < 0 || nz < 1 || z0 + nz > im->layout.nz || chunk_rows < 1)
        rc = cp_errf(err, CP_EPARAM, "dnorm: %s: planes %lld..%lld in chunks of %lld rows: "
                     "the image has planes 0..%lld", im->path, (long long)z0,
                     (long long)(z0 + nz - 1), (long long)chunk_rows,
                     (long long)(im->layout.nz - 1));
    if (!rc) rc = scan_init(&s, comm, im, z0, nz, chunk_rows, err);
    if (!rc) rc = scan_pass(&s, 1, err);
    rc = cp_agree(comm, rc, err);
    if (rc) goto done;

    /* round 1: the range, the sample size and the high bins of the wanted ranks */
    MPI_Allreduce(MPI_IN_PLACE, s.mn, 2, MPI_FLOAT, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, s.mx, 2, MPI_FLOAT, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, s.hist, 2 * BINS, MPI_INT64_T, MPI_SUM, comm);
    int64_t k[2][NSTAT], before[2][NSTAT];
    double t[2][2];
    uint32_t hi[2][NSTAT];
    int slots = 0;
    for (int c = 0; c < 2; c++) {
        float range = s.mx[c] - s.mn[c]; /* in f32, as Cellpose's ptp */
        if (!(range > 0.0f)) continue;
        const int64_t *h = s.hist + c * BINS;
        int64_t n = 0;
        for (int b = 0; b < BINS; b++) n += h[b];
        wanted_ranks(n, q1, q99, k[c], t[c]);
        s.slot0[c] = slots;
        for (int j = 0; j < NSTAT; j++) {
            hi[c][j] = bin_of_rank(h, k[c][j], &before[c][j]);
            int m = 0;
            while (m < s.nslot[c] && s.slot_hi[c][m] != hi[c][j]) m++;
            if (m == s.nslot[c]) s.slot_hi[c][s.nslot[c]++] = hi[c][j];
        }
        slots += s.nslot[c];
    }
    if (!slots) goto done; /* no channel has a range: not normalized */

    /* round 2: the low bits within those high bins */
    s.lo = calloc((size_t)slots * BINS, sizeof *s.lo);
    rc = s.lo ? scan_pass(&s, 2, err)
              : cp_errf(err, CP_ENOMEM, "dnorm: %s: cannot allocate %d histograms", im->path,
                        slots);
    rc = cp_agree(comm, rc, err);
    if (rc) goto done;
    MPI_Allreduce(MPI_IN_PLACE, s.lo, slots * BINS, MPI_INT64_T, MPI_SUM, comm);
    for (int c = 0; c < 2; c++) {
        if (!s.nslot[c]) continue;
        double v[NSTAT];
        for (int j = 0; j < NSTAT; j++) {
            int m = 0;
            while (s.slot_hi[c][m] != hi[c][j]) m++;
            int64_t ignored;
            uint32_t low = bin_of_rank(s.lo + (int64_t)(s.slot0[c] + m) * BINS,
                                       k[c][j] - before[c][j], &ignored);
            v[j] = (double)float_of(hi[c][j] << 16 | low);
        }
        out[c].good = 1;
        out[c].p1 = cp_percentile_lerp(v[0], v[1], t[c][0]);
        out[c].p99 = cp_percentile_lerp(v[2], v[3], t[c][1]);
        out[c].zero = !(out[c].p99 - out[c].p1 > 1e-3);
    }
done:
    free(s.buf);
    free(s.hist);
    free(s.lo);
    return rc;
}

int cp_dnorm_compute(MPI_Comm comm, cp_image *im, int64_t z0, int64_t nz, double q1, double q99,
                     cp_norm out[2], char *err)
{
    int64_t nx = im->layout.nx, rows = nx > 0 && nx < CHUNK_PIXELS ? CHUNK_PIXELS / nx : 1;
    return cp_dnorm_compute_rows(comm, im, z0, nz, rows, q1, q99, out, err);
}
