/* Tests of src/follow.c (CELLPOSE_ALGORITHM.md §4.3):
 *   test_follow case <name> [niter200|stitch025]  end points bit-identical to the oracle's
 *       p_final (every plane), then masks_raw from them identical label for label;
 *   test_follow window  windows stop particles whose stencil leaves them, continuing on other
 *       windows or the whole field gives the whole-field bits; 1 vs 2 threads; every kernel the
 *       CPU has (CP_FOLLOW_KERNEL) vs a plain stepper written here (every step done, no
 *       shortcut), on the oracle's field, on random fields and windows with particles at the
 *       borders, and on a field of 2-cycles cut by windows and by the step budget of a call. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp_err.h"
#include "follow.h"
#include "masks.h"
#include "refcase.h"
#include "testutil.h"

/* The field of plane z of a case (dP pages z and Z+z). */
static float *plane_field(const refcase *c, int64_t z)
{
    const int64_t npix = c->Ly * c->Lx;
    float *dP = malloc(sizeof(float) * (size_t)(2 * npix));
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    memcpy(dP, c->dP.f32 + z * npix, sizeof(float) * (size_t)npix);
    memcpy(dP + npix, c->dP.f32 + (c->Z + z) * npix, sizeof(float) * (size_t)npix);
    cp_follow_field(dP, c->cellprob.f32 + z * npix, npix, c->threshold, f);
    free(dP);
    return f;
}

static int test_case(const char *name, const char *variant)
{
    refcase c = refcase_load(name, variant);
    const int64_t npix = c.Ly * c.Lx;
    tu_tiff pf = {0}, mr = tu_read_tiff(c.masks_raw);
    if (c.p_final) pf = tu_read_tiff(c.p_final);
    printf("%s %s: %lld plane(s) %lld x %lld, niter %d, threshold %g, interp %d, max_size_fraction %g\n",
           name, variant, (long long)c.Z, (long long)c.Ly, (long long)c.Lx, c.niter,
           (double)c.threshold, c.interp, c.max_size_fraction);
    for (int64_t z = 0; z < c.Z; z++) {
        float *f = plane_field(&c, z);
        int64_t n = cp_follow_particles(c.cellprob.f32 + z * npix, c.Ly, c.Lx, c.threshold, NULL);
        cp_particle *p = malloc(sizeof *p * (size_t)(n ? n : 1));
        cp_follow_particles(c.cellprob.f32 + z * npix, c.Ly, c.Lx, c.threshold, p);
        cp_field F = {.Ly = c.Ly, .Lx = c.Lx, .y0 = 0, .x0 = 0, .ny = c.Ly, .nx = c.Lx, .f = f};
        double t0 = tu_now();
        int64_t stopped = cp_follow_run(&F, p, n, c.niter, c.interp);
        double dt = tu_now() - t0;
        TU_CHECK(stopped == 0, "plane %lld: %lld particles stopped on the whole field", (long long)z,
                 (long long)stopped);
        printf("  plane %lld: %lld particles, follow %.3f s (%.2f ns per particle-iteration, %d threads)\n",
               (long long)z, (long long)n, dt, n ? 1e9 * dt / ((double)n * c.niter) : 0.0,
               omp_get_max_threads());
        if (c.p_final) {
            /* the oracle holds every pixel: end points for moving ones, (y, x) for the others */
            float *mine = malloc(sizeof(float) * (size_t)(2 * npix));
            for (int64_t i = 0; i < npix; i++) mine[i] = (float)(i / c.Lx), mine[npix + i] = (float)(i % c.Lx);
            for (int64_t i = 0; i < n; i++) mine[p[i].src] = p[i].py, mine[npix + p[i].src] = p[i].px;
            int64_t diff = 0, where;
            double worst = 0;
            for (int ch = 0; ch < 2; ch++) {
                const float *ref = pf.f32 + (ch * c.Z + z) * npix;
                diff += refcase_count_diff_bits(mine + ch * npix, ref, npix);
                double w = tu_maxabs(mine + ch * npix, ref, npix, &where);
                worst = w > worst ? w : worst;
            }
            printf("  plane %lld: p_final differing values %lld of %lld, max |diff| %g\n", (long long)z,
                   (long long)diff, (long long)(2 * npix), worst);
            TU_CHECK(diff == 0, "plane %lld: %lld p_final values differ (max %g)", (long long)z,
                     (long long)diff, worst);
            free(mine);
        }
        uint32_t *lab = malloc(sizeof *lab * (size_t)npix);
        int64_t nseeds = 0;
        char err[CP_ERR_LEN] = "";
        int rc = cp_masks_raw(p, n, c.Ly, c.Lx, c.max_size_fraction, lab, &nseeds, err);
        TU_CHECK(rc == 0, "plane %lld: cp_masks_raw: %s", (long long)z, err);
        uint32_t nlab = 0, nref = 0;
        for (int64_t i = 0; i < npix; i++) {
            nlab = lab[i] > nlab ? lab[i] : nlab;
            nref = mr.u32[z * npix + i] > nref ? mr.u32[z * npix + i] : nref;
        }
        int64_t d = tu_count_diff_u32(lab, mr.u32 + z * npix, npix);
        printf("  plane %lld: %lld seeds, %u labels (oracle %u), masks_raw differing pixels %lld\n",
               (long long)z, (long long)nseeds, nlab, nref, (long long)d);
        TU_CHECK(d == 0 && nlab == nref, "plane %lld: masks_raw: %lld pixels differ", (long long)z,
                 (long long)d);
        free(lab);
        free(p);
        free(f);
    }
    tu_tiff_free(&pf);
    tu_tiff_free(&mr);
    refcase_free(&c);
    return tu_finish();
}

/* ---- windows, threads, kernels ---- */

static int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* 1 if the stencil of q (as follow.h defines it) lies inside window (y0, x0, ny, nx). */
static int stencil_inside(const cp_particle *q, int64_t Ly, int64_t Lx, int interp, int64_t y0,
                          int64_t x0, int64_t ny, int64_t nx)
{
    int64_t sy = clampi((int64_t)q->py, 0, Ly - 1), sx = clampi((int64_t)q->px, 0, Lx - 1);
    int64_t ey = interp ? clampi(sy + 1, 0, Ly - 1) : sy, ex = interp ? clampi(sx + 1, 0, Lx - 1) : sx;
    return sy >= y0 && ey < y0 + ny && sx >= x0 && ex < x0 + nx;
}

/* The field of window (y0, x0, ny, nx) of a whole-plane field: a copy, as another rank holds it. */
static cp_field window_of(const cp_field *W, int64_t y0, int64_t x0, int64_t ny, int64_t nx)
{
    float *f = malloc(sizeof(float) * (size_t)(2 * ny * nx));
    for (int64_t y = 0; y < ny; y++)
        memcpy(f + 2 * y * nx, W->f + 2 * ((y0 + y) * W->Lx + x0), sizeof(float) * (size_t)(2 * nx));
    return (cp_field){.Ly = W->Ly, .Lx = W->Lx, .y0 = y0, .x0 = x0, .ny = ny, .nx = nx, .f = f};
}

static int same_particles(const cp_particle *a, const cp_particle *b, int64_t n, const char *what)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += memcmp(&a[i].py, &b[i].py, 4) || memcmp(&a[i].px, &b[i].px, 4) || a[i].steps != b[i].steps ||
             a[i].src != b[i].src;
    printf("  %s: %lld of %lld particles differ\n", what, (long long)d, (long long)n);
    TU_CHECK(d == 0, "%s: %lld particles differ", what, (long long)d);
    return d == 0;
}

/* ---- a plain stepper: §4.3 as written, every step done (no cycle or fixed-point shortcut) ---- */

static float ref_bilinear(float f00, float f01, float f10, float f11, float fy, float fx)
{
    const double gy = 1.0 - (double)fy, gx = 1.0 - (double)fx;
    const double t0 = ((double)f00 * gy) * gx, t1 = ((double)f01 * gy) * (double)fx;
    const double t2 = (double)(f10 * fy) * gx, t3 = (double)((f11 * fy) * fx);
    return (float)(((t0 + t1) + t2) + t3);
}

static float ref_clamp(float v, float hi)
{
    v = 0.0f > v ? 0.0f : v;
    return hi < v ? hi : v;
}

/* Channel c of the field at plane pixel (y, x) of window W. */
static float ref_at(const cp_field *W, int64_t y, int64_t x, int c)
{
    return W->f[2 * ((y - W->y0) * W->nx + x - W->x0) + c];
}

/* Advances each particle one step at a time until it has `steps` or its stencil leaves W (as
 * follow.h defines them; positions are in the plane, never NaN here). *ncycles: how many were
 * in a 2-cycle that is not a fixed point (back where they were two steps before, having moved).
 * Returns how many have fewer than `steps`. */
static int64_t ref_run(const cp_field *W, cp_particle *p, int64_t n, int32_t steps, int interp,
                       int64_t *ncycles)
{
    int64_t left = 0;
    *ncycles = 0;
    for (int64_t i = 0; i < n; i++) {
        cp_particle *q = &p[i];
        float before[2] = {NAN, NAN}; /* the position two steps ago */
        int cycled = 0;
        for (; q->steps < steps; q->steps++) {
            if (!stencil_inside(q, W->Ly, W->Lx, interp, W->y0, W->x0, W->ny, W->nx)) break;
            const int64_t iy = (int64_t)q->py, ix = (int64_t)q->px, y0 = clampi(iy, 0, W->Ly - 1);
            const int64_t x0 = clampi(ix, 0, W->Lx - 1);
            const int64_t y1 = interp ? clampi(y0 + 1, 0, W->Ly - 1) : y0;
            const int64_t x1 = interp ? clampi(x0 + 1, 0, W->Lx - 1) : x0;
            const float fy = q->py - (float)iy, fx = q->px - (float)ix;
            float d[2];
            for (int c = 0; c < 2; c++)
                d[c] = interp ? ref_bilinear(ref_at(W, y0, x0, c), ref_at(W, y0, x1, c),
                                             ref_at(W, y1, x0, c), ref_at(W, y1, x1, c), fy, fx)
                              : ref_at(W, y0, x0, c);
            const float ny = ref_clamp(q->py + d[0], (float)(W->Ly - 1));
            const float nx = ref_clamp(q->px + d[1], (float)(W->Lx - 1));
            const int moved = memcmp(&ny, &q->py, 4) != 0 || memcmp(&nx, &q->px, 4) != 0;
            cycled |= moved && memcmp(&ny, &before[0], 4) == 0 && memcmp(&nx, &before[1], 4) == 0;
            before[0] = q->py, before[1] = q->px;
            q->py = ny, q->px = nx;
        }
        left += q->steps < steps;
        *ncycles += cycled;
    }
    return left;
}

/* Runs every kernel the CPU has (CP_FOLLOW_KERNEL) on particles `start` over W: each must give
 * the plain stepper's particles and return count. Returns how many kernels differ; *ncycles as
 * ref_run() counts them. */
static int kernels_vs_plain(const cp_field *W, const cp_particle *start, int64_t n, int32_t steps,
                            int interp, const char *what, int verbose, int64_t *ncycles)
{
    const size_t bytes = sizeof(cp_particle) * (size_t)n;
    cp_particle *sc = malloc(bytes), *q = malloc(bytes);
    const char *kernels[3] = {"scalar", "avx2", "avx512"};
    memcpy(sc, start, bytes);
    const int64_t nsc = ref_run(W, sc, n, steps, interp, ncycles);
    int64_t bad = 0;
    for (int k = 0; k < 3; k++) {
        setenv("CP_FOLLOW_KERNEL", kernels[k], 1);
        const char *used = cp_follow_kernel(W, interp);
        if (strcmp(used, kernels[k]) != 0) {
            if (verbose) printf("  %s: kernel %s not available here (%s)\n", what, kernels[k], used);
            continue;
        }
        memcpy(q, start, bytes);
        int64_t nleft = cp_follow_run(W, q, n, steps, interp), d = 0;
        for (int64_t i = 0; i < n; i++) d += memcmp(&q[i], &sc[i], sizeof q[i]) != 0;
        if (verbose || d || nleft != nsc)
            printf("  %s: %s vs plain stepping: %lld of %lld particles differ, %lld vs %lld left "
                   "(%lld in 2-cycles)\n", what, kernels[k], (long long)d, (long long)n,
                   (long long)nleft, (long long)nsc, (long long)*ncycles);
        TU_CHECK(d == 0 && nleft == nsc, "%s: %s vs plain stepping: %lld particles differ", what,
                 kernels[k], (long long)d);
        bad += d || nleft != nsc;
    }
    unsetenv("CP_FOLLOW_KERNEL");
    free(sc);
    free(q);
    return (int)bad;
}

static void window_checks(const cp_field *W, const cp_particle *start, int64_t n, int32_t steps,
                          int interp)
{
    const size_t bytes = sizeof(cp_particle) * (size_t)n;
    cp_particle *ref = malloc(bytes), *q = malloc(bytes);
    printf("interp %d, %lld particles, %d steps\n", interp, (long long)n, steps);

    /* whole field, 2 threads (the reference), then 1 thread and every kernel vs plain stepping */
    memcpy(ref, start, bytes);
    omp_set_num_threads(2);
    TU_CHECK(cp_follow_run(W, ref, n, steps, interp) == 0, "whole field: particles stopped");
    memcpy(q, start, bytes);
    omp_set_num_threads(1);
    cp_follow_run(W, q, n, steps, interp);
    same_particles(ref, q, n, "1 thread vs 2 threads");
    omp_set_num_threads(2);
    int64_t ncycles;
    kernels_vs_plain(W, start, n, steps, interp, "whole field", 1, &ncycles);
    /* single windows (a 4 x 4 grid of 128 x 128): stopped particles have their stencil outside
     * the window; the whole field finishes them with the whole-field bits */
    int64_t nstop = 0, partial = 0, bad = 0, miscount = 0, ndiff = 0;
    for (int64_t wy = 0; wy < W->Ly; wy += 128)
        for (int64_t wx = 0; wx < W->Lx; wx += 128) {
            const int64_t wny = wy + 128 < W->Ly ? 128 : W->Ly - wy, wnx = wx + 128 < W->Lx ? 128 : W->Lx - wx;
            cp_field win = window_of(W, wy, wx, wny, wnx);
            memcpy(q, start, bytes);
            int64_t stopped = cp_follow_run(&win, q, n, steps, interp), here = 0;
            for (int64_t i = 0; i < n; i++) {
                if (q[i].steps == steps) continue;
                here++;
                partial += q[i].steps > 0;
                bad += stencil_inside(&q[i], W->Ly, W->Lx, interp, wy, wx, wny, wnx);
            }
            nstop += here;
            miscount += stopped != here;
            cp_follow_run(W, q, n, steps, interp);
            for (int64_t i = 0; i < n; i++)
                ndiff += memcmp(&q[i].py, &ref[i].py, 4) || memcmp(&q[i].px, &ref[i].px, 4) || q[i].steps != steps;
            free((void *)win.f);
        }
    printf("  16 windows of 128^2: %lld stops (%lld after moving, %lld with the stencil inside), "
           "%lld wrong counts; then whole field: %lld particles differ\n", (long long)nstop,
           (long long)partial, (long long)bad, (long long)miscount, (long long)ndiff);
    TU_CHECK(bad == 0 && miscount == 0 && partial > 100 && ndiff == 0,
             "windows: %lld stopped inside, %lld wrong counts, %lld after moving, %lld differ",
             (long long)bad, (long long)miscount, (long long)partial, (long long)ndiff);

    /* a 3 x 3 grid of uneven blocks, each with a 1-pixel halo below and right (a stencil whose
     * top-left is in a block fits in it), run in rounds until every particle is done */
    const int64_t ys[4] = {0, 170, 300, W->Ly}, xs[4] = {0, 200, 333, W->Lx};
    cp_field grid[9];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int64_t y1 = ys[a + 1] + 1 < W->Ly ? ys[a + 1] + 1 : W->Ly;
            int64_t x1 = xs[b + 1] + 1 < W->Lx ? xs[b + 1] + 1 : W->Lx;
            grid[3 * a + b] = window_of(W, ys[a], xs[b], y1 - ys[a], x1 - xs[b]);
        }
    memcpy(q, start, bytes);
    int64_t left = n;
    int rounds = 0;
    while (left > 0 && rounds < 1000) {
        for (int k = 0; k < 9; k++) left = cp_follow_run(&grid[k], q, n, steps, interp);
        rounds++;
    }
    printf("  3x3 windows: %d rounds\n", rounds);
    TU_CHECK(left == 0, "3x3 windows: %lld particles never finished", (long long)left);
    same_particles(ref, q, n, "3x3 windows vs whole field");
    for (int k = 0; k < 9; k++) free((void *)grid[k].f);
    free(ref);
    free(q);
}

/* Uniform in [lo, hi) from a 64-bit LCG. */
static float rnd(uint64_t *s, float lo, float hi)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)(*s >> 40) / 16777216.0f;
}

/* Random fields (odd sizes, flows large enough to hit the clamps, some huge) and windows
 * (including 1-pixel-wide ones), with particles on every pixel plus particles at and near the
 * borders, some with steps already done: every kernel gives the plain stepper's bits. */
static void random_checks(void)
{
    uint64_t s = 12345;
    int64_t cases = 0, bad = 0, cycles = 0, nc;
    for (int t = 0; t < 24; t++) {
        const int32_t steps = 30 + t % 2; /* the parity decides where a 2-cycle ends */
        const int64_t Ly = 1 + (int64_t)rnd(&s, 0, 70), Lx = 1 + (int64_t)rnd(&s, 0, 70), npix = Ly * Lx;
        float *f = malloc(sizeof(float) * (size_t)(2 * npix));
        for (int64_t i = 0; i < 2 * npix; i++)
            f[i] = rnd(&s, 0, 1) < 0.02f ? rnd(&s, -1e4f, 1e4f) : rnd(&s, -3, 3);
        const int64_t n = npix + 64;
        cp_particle *p = malloc(sizeof *p * (size_t)n);
        for (int64_t i = 0; i < npix; i++)
            p[i] = (cp_particle){.src = i, .py = (float)(i / Lx) + rnd(&s, 0, 1), .px = (float)(i % Lx)};
        const float edge[6] = {0.0f, 1e-30f, 0.999999f, 1.0f, 1.5f, 2.0f};
        for (int64_t i = npix; i < n; i++) {
            float ey = edge[(i * 7) % 6], ex = edge[(i * 5) % 6];
            p[i] = (cp_particle){.src = i, .py = i % 2 ? (float)(Ly - 1) - ey : ey,
                                 .px = (i / 2) % 2 ? (float)(Lx - 1) - ex : ex};
            if (p[i].py < 0) p[i].py = 0;
            if (p[i].px < 0) p[i].px = 0;
            if (i % 3 == 0) p[i].steps = (int32_t)rnd(&s, 0, 40);
        }
        cp_field W = {.Ly = Ly, .Lx = Lx, .y0 = 0, .x0 = 0, .ny = Ly, .nx = Lx, .f = f};
        for (int interp = 0; interp <= 1; interp++) {
            bad += kernels_vs_plain(&W, p, n, steps, interp, "random field", 0, &nc) != 0;
            cases++, cycles += nc;
        }
        for (int w = 0; w < 6; w++) {
            int64_t wy = (int64_t)rnd(&s, 0, (float)Ly), wx = (int64_t)rnd(&s, 0, (float)Lx);
            int64_t wny = 1 + (int64_t)rnd(&s, 0, (float)(Ly - wy));
            int64_t wnx = w == 0 ? 1 : 1 + (int64_t)rnd(&s, 0, (float)(Lx - wx));
            cp_field win = window_of(&W, wy, wx, wny, wnx);
            bad += kernels_vs_plain(&win, p, n, steps, 1, "random window", 0, &nc) != 0;
            cases++, cycles += nc;
            free((void *)win.f);
        }
        free(p);
        free(f);
    }
    printf("random fields and windows: %lld runs (%lld particles in 2-cycles), %lld with a kernel "
           "differing from plain stepping\n", (long long)cases, (long long)cycles, (long long)bad);
    TU_CHECK(bad == 0, "random fields: %lld runs differ", (long long)bad);
}

/* A field of 2-cycles: dy = +1 on even rows and -1 on odd ones (a particle on a row goes down one
 * row and back, forever), dx = +-0.75 alike on columns (interpolated, a particle between columns
 * oscillates toward their middle). Particles on every pixel and between pixels are advanced by
 * a chain of calls on the whole field and on windows that cut cycles (the second position's
 * stencil is outside), with odd and even budgets, so that calls start mid-cycle; at each call
 * every kernel gives the plain stepper's bits. */
static void cycle_checks(void)
{
    const int64_t Ly = 37, Lx = 41, npix = Ly * Lx, n = 2 * npix;
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    for (int64_t i = 0; i < npix; i++) {
        f[2 * i] = (i / Lx) % 2 ? -1.0f : 1.0f;
        f[2 * i + 1] = (i % Lx) % 2 ? -0.75f : 0.75f;
    }
    const cp_field W = {.Ly = Ly, .Lx = Lx, .y0 = 0, .x0 = 0, .ny = Ly, .nx = Lx, .f = f};
    const cp_field top = window_of(&W, 0, 0, 10, Lx), mid = window_of(&W, 9, 5, 20, 15);
    const struct { const cp_field *win; int32_t steps; } chain[] = {
        {&W, 1}, {&W, 2}, {&top, 30}, {&mid, 30}, {&W, 7}, {&W, 30}, {&mid, 31}, {&W, 31}, {&W, 1000}};
    const int nchain = (int)(sizeof chain / sizeof chain[0]);
    cp_particle *start = malloc(sizeof *start * (size_t)n), *q = malloc(sizeof *q * (size_t)n);
    uint64_t s = 777;
    for (int64_t i = 0; i < n; i++) {
        const int64_t pix = i % npix;
        start[i] = (cp_particle){.src = i, .py = (float)(pix / Lx), .px = (float)(pix % Lx)};
        if (i >= npix) start[i].py += rnd(&s, 0, 1), start[i].px += rnd(&s, 0, 1);
        if (start[i].py > (float)(Ly - 1)) start[i].py = (float)(Ly - 1);
        if (start[i].px > (float)(Lx - 1)) start[i].px = (float)(Lx - 1);
    }
    int64_t runs = 0, bad = 0, cycles = 0, cut = 0, nc;
    for (int interp = 0; interp <= 1; interp++) {
        memcpy(q, start, sizeof *q * (size_t)n);
        for (int k = 0; k < nchain; k++) {
            const cp_field *win = chain[k].win;
            const int32_t steps = chain[k].steps;
            bad += kernels_vs_plain(win, q, n, steps, interp, "cycle field", 0, &nc) != 0;
            runs++, cycles += nc;
            ref_run(win, q, n, steps, interp, &nc); /* the start of the next call */
            for (int64_t i = 0; win == &top && i < n; i++) cut += q[i].steps > 0 && q[i].steps < steps;
        }
    }
    printf("cycle field: %lld runs (%lld particles in 2-cycles, %lld stopped mid-way by a "
           "window), %lld with a kernel differing from plain stepping\n", (long long)runs,
           (long long)cycles, (long long)cut, (long long)bad);
    TU_CHECK(bad == 0 && cycles > n && cut > 100, "cycle field: %lld runs differ, %lld cycles, %lld cut",
             (long long)bad, (long long)cycles, (long long)cut);
    free((void *)top.f);
    free((void *)mid.f);
    free(start);
    free(q);
    free(f);
}

static int test_window(void)
{
    refcase c = refcase_load("flows_protrusions_niter2000", "");
    float *f = plane_field(&c, 0);
    int64_t n = cp_follow_particles(c.cellprob.f32, c.Ly, c.Lx, c.threshold, NULL);
    cp_particle *p = malloc(sizeof *p * (size_t)n);
    cp_follow_particles(c.cellprob.f32, c.Ly, c.Lx, c.threshold, p);
    cp_field W = {.Ly = c.Ly, .Lx = c.Lx, .y0 = 0, .x0 = 0, .ny = c.Ly, .nx = c.Lx, .f = f};
    window_checks(&W, p, n, c.niter, 1);
    window_checks(&W, p, n, c.niter, 0);
    random_checks();
    cycle_checks();

    /* particles already done are left alone; an empty window stops everyone without reading */
    cp_particle q = p[0];
    q.steps = c.niter + 5;
    cp_particle q0 = q;
    TU_CHECK(cp_follow_run(&W, &q, 1, c.niter, 1) == 0 && memcmp(&q, &q0, sizeof q) == 0,
             "a particle with steps >= niter was modified");
    cp_field empty = {.Ly = c.Ly, .Lx = c.Lx, .y0 = 0, .x0 = 0, .ny = 0, .nx = 0, .f = NULL};
    q = p[0];
    TU_CHECK(cp_follow_run(&empty, &q, 1, c.niter, 1) == 1 && q.steps == 0, "empty window: particle moved");
    free(p);
    free(f);
    refcase_free(&c);
    return tu_finish();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "case") == 0) return test_case(argv[2], argc > 3 ? argv[3] : "");
    if (argc == 2 && strcmp(argv[1], "window") == 0) return test_window();
    fprintf(stderr, "usage: test_follow case <name> [niter200|stitch025] | window\n");
    return 2;
}
