/* Tests of src/flows.c (ideal flows, CELLPOSE_ALGORITHM.md §4.2): bit-exact parity with
 * Cellpose's masks_to_flows on masks_to_flows_small (f64 and f32 files) and on the training-style
 * dP = 5*mu of flows_protrusions_niter2000, edge cases, bad arguments, and a timing of the
 * largest label image of the shared data (synth_1024_labels) and of one large disc.
 * Usage: test_flows parity | protrusions | unit | perf */
#include "flows.h"

#include "cp_err.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <time.h>

/* The f64 oracle file read without conversion (tu_read_tiff gives float32): all pages, row by
 * row, through libtiff's scanline interface. */
static double *read_f64(const char *path, int64_t n)
{
    TIFF *tif = TIFFOpen(path, "r");
    if (!tif) return NULL;
    double *out = malloc(sizeof(double) * (size_t)n);
    int64_t at = 0;
    do {
        uint32_t w = 0, h = 0;
        uint16_t bits = 0;
        TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
        TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
        if (bits != 64 || at + (int64_t)w * h > n) break;
        for (uint32_t r = 0; r < h; r++, at += w)
            if (TIFFReadScanline(tif, out + at, r, 0) < 0) break;
    } while (TIFFReadDirectory(tif));
    TIFFClose(tif);
    if (at != n) {
        free(out);
        return NULL;
    }
    return out;
}

static void test_parity(void)
{
    const char *dir = tu_path("%s/reference/masks_to_flows_small", tu_shared());
    tu_tiff lab = tu_read_tiff(tu_path("%s/labels.tif", dir));
    tu_tiff f32 = tu_read_tiff(tu_path("%s/flows.tif", dir));
    int64_t Ly = lab.ny, Lx = lab.nx, n = Ly * Lx;
    double *ref = read_f64(tu_path("%s/flows_f64.tif", dir), 2 * n);
    TU_CHECK(ref != NULL, "cannot read flows_f64.tif as 2 pages of float64");
    double *mu = malloc(sizeof(double) * (size_t)(2 * n));
    char err[CP_ERR_LEN] = "";
    double t0 = tu_now();
    int rc = cp_masks_to_flows(lab.u32, Ly, Lx, mu, err);
    double t1 = tu_now();
    TU_CHECK(rc == 0, "masks_to_flows: %s", err);
    int64_t nd64 = 0, nd32 = 0;
    double worst64 = 0, worst32 = 0;
    for (int64_t i = 0; ref && i < 2 * n; i++) {
        nd64 += memcmp(&mu[i], &ref[i], sizeof(double)) != 0;
        worst64 = fmax(worst64, fabs(mu[i] - ref[i]));
        float f = (float)mu[i];
        nd32 += memcmp(&f, &f32.f32[i], sizeof(float)) != 0;
        worst32 = fmax(worst32, fabs((double)f - (double)f32.f32[i]));
    }
    printf("masks_to_flows_small (%lldx%lld): f64 %lld values differ (max err %.3g), "
           "f32 %lld differ (max err %.3g), %.2f ms\n",
           (long long)Ly, (long long)Lx, (long long)nd64, worst64, (long long)nd32, worst32,
           1e3 * (t1 - t0));
    TU_CHECK(nd64 == 0, "f64 flows: %lld values not bit-identical", (long long)nd64);
    TU_CHECK(nd32 == 0, "f32 flows: %lld values not bit-identical", (long long)nd32);
    free(mu);
    free(ref);
    tu_tiff_free(&lab);
    tu_tiff_free(&f32);
}

/* flows_protrusions_niter2000: dP.tif is 5 * masks_to_flows(labels_true) in float32; long 1-2 px
 * processes where |mu| underflows exercise the 1e-60 normalization. */
static void test_protrusions(void)
{
    const char *dir = tu_path("%s/reference/flows_protrusions_niter2000", tu_shared());
    tu_tiff lab = tu_read_tiff(tu_path("%s/labels_true.tif", dir));
    tu_tiff dP = tu_read_tiff(tu_path("%s/dP.tif", dir));
    int64_t n = lab.ny * lab.nx;
    double *mu = malloc(sizeof(double) * (size_t)(2 * n));
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_masks_to_flows(lab.u32, lab.ny, lab.nx, mu, err) == 0, "%s", err);
    int64_t nd = 0, zeros = 0;
    double worst = 0;
    for (int64_t i = 0; i < 2 * n; i++) {
        float f = (float)(5.0 * mu[i]);
        nd += memcmp(&f, &dP.f32[i], sizeof f) != 0;
        worst = fmax(worst, fabs((double)f - (double)dP.f32[i]));
        zeros += i < n && lab.u32[i] && mu[i] == 0 && mu[n + i] == 0;
    }
    printf("flows_protrusions_niter2000: float32(5*mu) vs dP.tif: %lld values differ (max err %.3g); "
           "%lld mask pixels with exactly zero flow\n",
           (long long)nd, worst, (long long)zeros);
    TU_CHECK(nd == 0, "5*mu: %lld values not bit-identical", (long long)nd);
    TU_CHECK(zeros > 0, "expected underflowed (zero) flows along thin processes");
    free(mu);
    tu_tiff_free(&lab);
    tu_tiff_free(&dP);
}

static void test_unit(void)
{
    char err[CP_ERR_LEN] = "";
    double mu[2 * 12];
    uint32_t empty[12] = {0};
    TU_CHECK(cp_masks_to_flows(empty, 3, 4, mu, err) == 0, "%s", err);
    int nz = 0;
    for (int i = 0; i < 24; i++) nz += mu[i] != 0;
    TU_CHECK(nz == 0, "empty labels: %d non-zero flows", nz);

    /* A single pixel: dy = dx = 0 -> 0 / 1e-60 = 0. A 1x3 bar: symmetric, centre pixel 0 flow,
     * ends point inwards with unit length. */
    uint32_t bar[12] = {0, 0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 1};
    TU_CHECK(cp_masks_to_flows(bar, 3, 4, mu, err) == 0, "%s", err);
    TU_CHECK(mu[11] == 0 && mu[12 + 11] == 0, "single pixel: flow (%g, %g)", mu[11], mu[23]);
    TU_CHECK(mu[5] == 0 && mu[12 + 5] == 0, "bar centre: flow (%g, %g)", mu[5], mu[17]);
    TU_CHECK(mu[4] == 0 && mu[12 + 4] == 1 && mu[12 + 6] == -1,
             "bar ends: dx %g %g (want 1, -1)", mu[16], mu[18]);

    /* Labels touching every image border (the box border lies outside the image). */
    uint32_t full[12] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    TU_CHECK(cp_masks_to_flows(full, 3, 4, mu, err) == 0, "%s", err);
    TU_CHECK(fabs(hypot(mu[0], mu[12]) - 1) < 1e-15, "corner flow not unit: (%g, %g)", mu[0], mu[12]);

    int rc = cp_masks_to_flows(bar, 0, 4, mu, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "flows.c: masks_to_flows: bad arguments (0 x 4)"),
             "bad size: rc %d, message '%s'", rc, err);
    rc = cp_masks_to_flows(NULL, 3, 4, mu, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "bad arguments"), "NULL labels: rc %d '%s'", rc, err);
}

/* The spec's recipe for an image holding one label, written plainly (whole box grid, Jacobi with
 * a copy): an independent check of the parallel path taken by large labels. */
static void naive_one_label(const uint32_t *lab, int64_t L, double *mu)
{
    int64_t r0 = L, r1 = 0, c0 = L, c1 = 0, n = 0, sy = 0, sx = 0;
    for (int64_t y = 0; y < L; y++)
        for (int64_t x = 0; x < L; x++)
            if (lab[y * L + x]) {
                r0 = y < r0 ? y : r0, r1 = y + 1 > r1 ? y + 1 : r1;
                c0 = x < c0 ? x : c0, c1 = x + 1 > c1 ? x + 1 : c1;
                n++;
            }
    int64_t ly = r1 - r0 + 2, lx = c1 - c0 + 2;
    for (int64_t y = r0; y < r1; y++)
        for (int64_t x = c0; x < c1; x++)
            if (lab[y * L + x]) sy += y - r0 + 1, sx += x - c0 + 1;
    double ym = (double)sy / (double)n, xm = (double)sx / (double)n, best = INFINITY;
    int64_t cy = 0, cx = 0;
    for (int64_t y = r0; y < r1; y++)
        for (int64_t x = c0; x < c1; x++) {
            double d = ((double)(x - c0 + 1) - xm) * ((double)(x - c0 + 1) - xm) +
                       ((double)(y - r0 + 1) - ym) * ((double)(y - r0 + 1) - ym);
            if (lab[y * L + x] && d < best) best = d, cy = y - r0 + 1, cx = x - c0 + 1;
        }
    double *T = calloc((size_t)(ly * lx), sizeof *T), *U = calloc((size_t)(ly * lx), sizeof *U);
    for (int64_t t = 0; t < 2 * (ly + lx); t++) {
        T[cy * lx + cx] += 1;
        memcpy(U, T, sizeof *T * (size_t)(ly * lx));
        for (int64_t y = 1; y < ly - 1; y++)
            for (int64_t x = 1; x < lx - 1; x++) {
                if (!lab[(y - 1 + r0) * L + x - 1 + c0]) continue;
                const double *p = U + y * lx + x;
                T[y * lx + x] = (1 / 9.) * (p[0] + p[-lx] + p[lx] + p[-1] + p[1] + p[-lx - 1] +
                                            p[-lx + 1] + p[lx - 1] + p[lx + 1]);
            }
    }
    memset(mu, 0, sizeof *mu * (size_t)(2 * L * L));
    for (int64_t y = 1; y < ly - 1; y++)
        for (int64_t x = 1; x < lx - 1; x++) {
            int64_t i = (y - 1 + r0) * L + x - 1 + c0;
            if (!lab[i]) continue;
            double dy = T[(y + 1) * lx + x] - T[(y - 1) * lx + x];
            double dx = T[y * lx + x + 1] - T[y * lx + x - 1];
            double s = 1e-60 + sqrt(dy * dy + dx * dx);
            mu[i] = dy / s, mu[L * L + i] = dx / s;
        }
    free(T);
    free(U);
}

/* Timings: the largest label image of the shared data, and one disc of radius 200 (a 402x402
 * box, 1608 diffusion steps over ~126k pixels). Correctness of these runs is covered above; here
 * only the flows' sanity (unit length on mask pixels not underflowed). */
static void test_perf(void)
{
    const char *labels = tu_path("%s/data/synthetic/synth_1024_labels.tif", tu_shared());
    char err[CP_ERR_LEN] = "";
    double *mu, t0, t1;
    if (tu_have(labels)) {
        tu_tiff lab = tu_read_tiff(labels);
        int64_t n = lab.ny * lab.nx;
        uint32_t nl = 0;
        for (int64_t i = 0; i < n; i++) nl = lab.u32[i] > nl ? lab.u32[i] : nl;
        mu = malloc(sizeof(double) * (size_t)(2 * n));
        t0 = tu_now();
        TU_CHECK(cp_masks_to_flows(lab.u32, lab.ny, lab.nx, mu, err) == 0, "%s", err);
        t1 = tu_now();
        printf("perf: synth_1024_labels (%lldx%lld, max label %u): %.3f s\n", (long long)lab.ny,
               (long long)lab.nx, nl, t1 - t0);
        free(mu);
        tu_tiff_free(&lab);
    } else {
        printf("perf: synth_1024_labels is in the extended parity suite only, not timed\n");
    }

    int64_t L = 512, R = 200;
    uint32_t *disc = calloc((size_t)(L * L), sizeof *disc);
    for (int64_t y = 0; y < L; y++)
        for (int64_t x = 0; x < L; x++)
            disc[y * L + x] = (y - 256) * (y - 256) + (x - 256) * (x - 256) <= R * R;
    mu = malloc(sizeof(double) * (size_t)(2 * L * L));
    t0 = tu_now();
    TU_CHECK(cp_masks_to_flows(disc, L, L, mu, err) == 0, "%s", err);
    t1 = tu_now();
    double off = 0;
    for (int64_t i = 0; i < L * L; i++)
        if (disc[i] && (mu[i] != 0 || mu[L * L + i] != 0))
            off = fmax(off, fabs(hypot(mu[i], mu[L * L + i]) - 1));
    printf("perf: disc radius %lld (box %lldx%lld): %.3f s; max | |mu| - 1 | = %.3g\n",
           (long long)R, (long long)(2 * R + 3), (long long)(2 * R + 3), t1 - t0, off);
    TU_CHECK(off < 1e-12, "disc flows not unit length: %g", off);
    double *ref = malloc(sizeof(double) * (size_t)(2 * L * L));
    t0 = tu_now();
    naive_one_label(disc, L, ref);
    t1 = tu_now();
    int64_t nd = 0;
    for (int64_t i = 0; i < 2 * L * L; i++) nd += memcmp(&mu[i], &ref[i], sizeof(double)) != 0;
    printf("perf: plain spec recipe on the disc: %.3f s; %lld values differ\n", t1 - t0,
           (long long)nd);
    TU_CHECK(nd == 0, "disc: %lld values differ from the plain recipe", (long long)nd);
    free(ref);
    free(mu);
    free(disc);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "unit";
    if (!strcmp(mode, "parity")) test_parity();
    else if (!strcmp(mode, "protrusions")) test_protrusions();
    else if (!strcmp(mode, "perf")) test_perf();
    else test_unit();
    return tu_finish();
}
