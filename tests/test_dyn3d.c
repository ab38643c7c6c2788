/* Tests of the 3-D dynamics (src/follow3d.c, src/masks3d.c, src/compute_masks3d.c;
 * CELLPOSE_ALGORITHM.md §8.7-8.9):
 *   test_dyn3d case <name> [nointerp|noresample|smooth1]  from the oracle's dP/cellprob (for
 *       noresample the float32 sum of the yf_* views at the network scale, §8.5): p_final
 *       bit-identical, masks_raw and masks identical label for label (the files a variant has);
 *   test_dyn3d unit  the ±ulp trap of a zero field (§8.11.3), the zero-padding halving at the
 *       border, L = 2 axes, random fields and windows against a plain stepper written here from
 *       §8.7 (every step done, no shortcut), growth against a brute-force 26-neighbour growth,
 *       the tie order, the resize-back rule and the errors. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute_masks3d.h"
#include "cp_err.h"
#include "follow3d.h"
#include "masks3d.h"
#include "post.h"
#include "refcase.h"
#include "resize.h"
#include "testutil.h"

/* ---- a plain stepper, §8.7 as written ---- */

/* grid_sample of channel k of the (interleaved, whole-volume) field f at normalised g. */
static float plain_sample(const float *f, const int64_t L[3], const float g[3], int k)
{
    int64_t a[3];
    float w0[3], w1[3];
    for (int i = 0; i < 3; i++) {
        float u = (((g[i] + 1.0f) * (float)L[i]) - 1.0f) / 2.0f;
        a[i] = (int64_t)floorf(u);
        w0[i] = (float)(a[i] + 1) - u;
        w1[i] = u - (float)a[i];
    }
    float acc = 0.0f;
    for (int dz = 0; dz < 2; dz++)
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++) {
                int64_t z = a[0] + dz, y = a[1] + dy, x = a[2] + dx;
                float w = ((dx ? w1[2] : w0[2]) * (dy ? w1[1] : w0[1])) * (dz ? w1[0] : w0[0]);
                if (z < 0 || z >= L[0] || y < 0 || y >= L[1] || x < 0 || x >= L[2]) continue;
                acc = acc + f[3 * ((z * L[1] + y) * L[2] + x) + k] * w;
            }
    return acc;
}

/* Every particle `steps` steps on the whole field, no shortcut; c ends in the mode's frame. */
static void plain_run(const float *f, const int64_t L[3], int interp, cp_particle3 *p, int64_t n,
                      int32_t steps)
{
    for (int64_t i = 0; i < n; i++)
        for (; p[i].steps < steps; p[i].steps++) {
            float d[3], *c = p[i].c;
            for (int k = 0; k < 3; k++) {
                if (interp) {
                    d[k] = plain_sample(f, L, c, k);
                } else {
                    int64_t z = (int64_t)c[0], y = (int64_t)c[1], x = (int64_t)c[2];
                    d[k] = f[3 * ((z * L[1] + y) * L[2] + x) + k];
                }
            }
            for (int k = 0; k < 3; k++) {
                float v = c[k] + d[k], lo = interp ? -1.0f : 0.0f;
                float hi = interp ? 1.0f : (float)(L[k] - 1);
                c[k] = v < lo ? lo : v > hi ? hi : v;
            }
        }
}

static int64_t diff_particles(const cp_particle3 *a, const cp_particle3 *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += memcmp(a[i].c, b[i].c, sizeof a[i].c) != 0 || a[i].steps != b[i].steps ||
             a[i].src != b[i].src;
    return d;
}

static const char *const kernels[3] = {"scalar", "avx2", "avx512"};

/* Seconds of CPU time of the process (all threads): a loaded machine inflates wall time. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- reference cases ---- */

typedef struct case3 {
    int64_t Ld[3], L[3]; /* dynamics scale, volume */
    int32_t niter;
    int interp;
    float threshold;
    double max_size_fraction;
    int64_t min_size;
    float *dP, *cellprob; /* (3, Ld), (Ld) */
    tu_tiff dPt, cpt;
} case3;

static int64_t jint(json_object *j, const char *key)
{
    json_object *v = tu_json_get(j, key);
    if (!v) {
        fprintf(stderr, "case.json lacks %s\n", key);
        exit(2);
    }
    return json_object_get_int64(v);
}

/* dP/cellprob at the network scale: run_3D's float32 sum of the three views (§8.5), from
 * yf_yx (C,Z,Y,X), yf_zx (C,Y,Z,X), yf_zy (C,X,Z,Y): cellprob = (yx + zx) + zy,
 * dZ = (0 + zx) + zy, dY = (0 + yx) + zy, dX = (0 + yx) + zx. */
static void sum_views(json_object *j, const char *name, case3 *c)
{
    tu_tiff yx = tu_read_tiff(refcase_file(j, name, "yf_yx.tif"));
    tu_tiff zx = tu_read_tiff(refcase_file(j, name, "yf_zx.tif"));
    tu_tiff zy = tu_read_tiff(refcase_file(j, name, "yf_zy.tif"));
    const int64_t Z = c->Ld[0], Y = c->Ld[1], X = c->Ld[2], n = Z * Y * X;
    c->dP = calloc((size_t)(3 * n), sizeof(float));
    c->cellprob = calloc((size_t)n, sizeof(float));
    for (int64_t z = 0; z < Z; z++)
        for (int64_t y = 0; y < Y; y++)
            for (int64_t x = 0; x < X; x++) {
                const int64_t i = (z * Y + y) * X + x;
                const int64_t iyx = i, izx = (y * Z + z) * X + x, izy = (x * Z + z) * Y + y;
                float cp = 0.0f, dz = 0.0f, dy = 0.0f, dx = 0.0f;
                cp = cp + yx.f32[2 * n + iyx], dy = dy + yx.f32[iyx], dx = dx + yx.f32[n + iyx];
                cp = cp + zx.f32[2 * n + izx], dz = dz + zx.f32[izx], dx = dx + zx.f32[n + izx];
                cp = cp + zy.f32[2 * n + izy], dz = dz + zy.f32[izy], dy = dy + zy.f32[n + izy];
                c->cellprob[i] = cp, c->dP[i] = dz, c->dP[n + i] = dy, c->dP[2 * n + i] = dx;
            }
    tu_tiff_free(&yx);
    tu_tiff_free(&zx);
    tu_tiff_free(&zy);
}

static case3 case_load(json_object *j, const char *name, const char *variant)
{
    case3 c = {.interp = strcmp(variant, "nointerp") != 0};
    const char *run = strcmp(variant, "noresample") == 0 ? "noresample_run."
                      : strcmp(variant, "smooth1") == 0  ? "smooth_run."
                                                         : "";
    c.niter = (int32_t)jint(j, tu_path("%sniter.used_by_follow_flows", run));
    json_object *th = refcase_param(j, run, "cellprob_threshold");
    json_object *ms = refcase_param(j, run, "max_size_fraction");
    json_object *mn = refcase_param(j, run, "min_size");
    json_object *ip = refcase_param(j, run, "interp");
    if (!th || !ms || !mn) {
        fprintf(stderr, "%s: case.json lacks cellprob_threshold/max_size_fraction/min_size\n", name);
        exit(2);
    }
    if (ip && !json_object_get_boolean(ip)) c.interp = 0;
    c.threshold = (float)json_object_get_double(th);
    c.max_size_fraction = json_object_get_double(ms);
    c.min_size = json_object_get_int64(mn);
    if (strcmp(variant, "noresample") == 0) {
        json_object *s = tu_json_get(j, "run_3D.network_scale_shape_ZYX");
        json_object *v = tu_json_get(j, "run_3D.input_shape_ZYXC");
        for (int k = 0; k < 3; k++) {
            c.Ld[k] = json_object_get_int64(json_object_array_get_idx(s, (size_t)k));
            c.L[k] = json_object_get_int64(json_object_array_get_idx(v, (size_t)k));
        }
        sum_views(j, name, &c);
        return c;
    }
    c.dPt = tu_read_tiff(refcase_file(j, name, strcmp(variant, "smooth1") == 0 ? "dP_smooth1.tif" : "dP.tif"));
    c.cpt = tu_read_tiff(refcase_file(j, name, "cellprob.tif"));
    c.Ld[0] = c.L[0] = c.cpt.pages, c.Ld[1] = c.L[1] = c.cpt.ny, c.Ld[2] = c.L[2] = c.cpt.nx;
    c.dP = c.dPt.f32, c.cellprob = c.cpt.f32;
    return c;
}

/* The oracle's file `base``sfx`.tif of the case, or NULL if the case has none. */
static const char *case_file(json_object *j, const char *name, const char *base, const char *sfx)
{
    json_object *files = tu_json_get(j, "files"), *e;
    const char *f = tu_path("%s%s.tif", base, sfx);
    return json_object_object_get_ex(files, f, &e) ? refcase_file(j, name, f) : NULL;
}

static uint32_t max_u32(const uint32_t *a, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* Labels against an oracle file: differing voxels, label counts. */
static void check_labels(const char *what, const uint32_t *mine, const char *path, const int64_t L[3])
{
    tu_tiff t = tu_read_tiff(path);
    const int64_t n = L[0] * L[1] * L[2];
    TU_CHECK(t.pages == L[0] && t.ny == L[1] && t.nx == L[2], "%s: oracle shape %lld x %lld x %lld",
             what, (long long)t.pages, (long long)t.ny, (long long)t.nx);
    if (t.n == n) {
        int64_t d = tu_count_diff_u32(mine, t.u32, n);
        printf("  %s: %u labels (oracle %u), differing voxels %lld of %lld\n", what, max_u32(mine, n),
               max_u32(t.u32, n), (long long)d, (long long)n);
        TU_CHECK(d == 0, "%s: %lld voxels differ", what, (long long)d);
    }
    tu_tiff_free(&t);
}

static int test_case(const char *name, const char *variant)
{
    json_object *j = tu_case_json(name);
    const char *sfx = *variant ? tu_path("_%s", variant) : "";
    char sfxb[32];
    snprintf(sfxb, sizeof sfxb, "%s", sfx);
    const char *pf_path = case_file(j, name, "p_final", sfxb);
    const char *mr_path = case_file(j, name, "masks_raw", sfxb);
    const char *m_path = case_file(j, name, "masks", sfxb);
    char pf[4096] = "", mr[4096] = "", mk[4096] = "";
    if (pf_path) snprintf(pf, sizeof pf, "%s", tu_need(pf_path));
    if (mr_path) snprintf(mr, sizeof mr, "%s", tu_need(mr_path));
    if (m_path) snprintf(mk, sizeof mk, "%s", tu_need(m_path));
    case3 c = case_load(j, name, variant);
    const int64_t *Ld = c.Ld, nvox = Ld[0] * Ld[1] * Ld[2];
    printf("%s %s: dynamics %lld x %lld x %lld, volume %lld x %lld x %lld, niter %d, interp %d, "
           "threshold %g, max_size_fraction %g, min_size %lld, %d threads\n",
           name, variant, (long long)Ld[0], (long long)Ld[1], (long long)Ld[2], (long long)c.L[0],
           (long long)c.L[1], (long long)c.L[2], c.niter, c.interp, (double)c.threshold,
           c.max_size_fraction, (long long)c.min_size, omp_get_max_threads());
    char err[CP_ERR_LEN] = "";

    /* flow following */
    const int64_t n = cp_follow3_particles(c.cellprob, Ld, c.threshold, c.interp, NULL);
    cp_particle3 *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    float *f = malloc(sizeof *f * (size_t)(3 * nvox));
    cp_follow3_particles(c.cellprob, Ld, c.threshold, c.interp, p);
    cp_follow3_field(c.dP, c.cellprob, nvox, Ld, c.threshold, c.interp, f);
    const cp_field3 F = {.L = {Ld[0], Ld[1], Ld[2]}, .n = {Ld[0], Ld[1], Ld[2]}, .interp = c.interp, .f = f};
    cp_particle3 *p0 = malloc(sizeof *p0 * (size_t)(n ? n : 1));
    memcpy(p0, p, sizeof *p * (size_t)n);
    double t0 = tu_now(), c0 = cpu_now();
    int64_t stopped = cp_follow3_run(&F, p, n, c.niter);
    double dt = tu_now() - t0, dc = cpu_now() - c0;
    TU_CHECK(stopped == 0, "%lld particles stopped on the whole field", (long long)stopped);
    const char *default_kernel = cp_follow3_kernel(&F);
    printf("  follow (%s kernel): %lld particles, %.3f s, %.2f ns per particle-iteration "
           "(process CPU time %.2f ns)\n", cp_follow3_kernel(&F), (long long)n, dt,
           n ? 1e9 * dt / ((double)n * c.niter) : 0.0, n ? 1e9 * dc / ((double)n * c.niter) : 0.0);
    cp_particle3 *p1 = malloc(sizeof *p1 * (size_t)(n ? n : 1));
    for (int k = 0; k < 3; k++) { /* the other kernels this CPU has give the same bits */
        setenv("CP_FOLLOW_KERNEL", kernels[k], 1);
        if (strcmp(cp_follow3_kernel(&F), kernels[k]) != 0 ||
            strcmp(kernels[k], default_kernel) == 0)
            continue;
        memcpy(p1, p0, sizeof *p * (size_t)n);
        t0 = tu_now(), c0 = cpu_now();
        cp_follow3_run(&F, p1, n, c.niter);
        dt = tu_now() - t0, dc = cpu_now() - c0;
        int64_t d = diff_particles(p, p1, n);
        printf("  follow (%s kernel): %.3f s, %.2f ns per particle-iteration (CPU %.2f ns); "
               "%lld particles differ\n", kernels[k], dt, n ? 1e9 * dt / ((double)n * c.niter) : 0.0,
               n ? 1e9 * dc / ((double)n * c.niter) : 0.0, (long long)d);
        TU_CHECK(d == 0, "%s kernel: %lld particles differ", kernels[k], (long long)d);
    }
    unsetenv("CP_FOLLOW_KERNEL");
    free(p0);
    free(p1);
    cp_follow3_to_voxels(p, n, Ld, c.interp);
    if (*pf) {
        tu_tiff ref = tu_read_tiff(pf);
        float *mine = malloc(sizeof *mine * (size_t)(3 * nvox));
        for (int64_t i = 0; i < nvox; i++) /* non-moving voxels hold their own (z, y, x) */
            mine[i] = (float)(i / (Ld[1] * Ld[2])), mine[nvox + i] = (float)(i / Ld[2] % Ld[1]),
            mine[2 * nvox + i] = (float)(i % Ld[2]);
        for (int64_t i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) mine[k * nvox + p[i].src] = p[i].c[k];
        int64_t d = ref.n == 3 * nvox ? refcase_count_diff_bits(mine, ref.f32, 3 * nvox) : -1;
        double worst = ref.n == 3 * nvox ? tu_maxabs(mine, ref.f32, 3 * nvox, NULL) : INFINITY;
        printf("  p_final: differing values %lld of %lld, max |diff| %g\n", (long long)d,
               (long long)(3 * nvox), worst);
        TU_CHECK(d == 0, "p_final: %lld values differ (max %g)", (long long)d, worst);
        free(mine);
        tu_tiff_free(&ref);
    }
    /* raw masks from these end points */
    uint32_t *raw = malloc(sizeof *raw * (size_t)nvox);
    int64_t nseeds = 0;
    t0 = tu_now();
    int rc = cp_masks3_raw(p, n, Ld, c.max_size_fraction, raw, &nseeds, err);
    TU_CHECK(rc == 0, "cp_masks3_raw: %s", err);
    printf("  masks_raw: %lld seeds, %.3f s\n", (long long)nseeds, tu_now() - t0);
    if (*mr) check_labels("masks_raw", raw, mr, Ld);
    /* the whole phase from dP/cellprob */
    if (*mk) {
        int64_t out[3];
        cp_masks3_out_shape(Ld, c.L, out);
        uint32_t *lab = malloc(sizeof *lab * (size_t)(out[0] * out[1] * out[2]));
        cp_mask_params mp = {.steps = c.niter, .interp = c.interp, .cellprob_threshold = c.threshold,
                             .flow_threshold = 0.4, .max_size_fraction = c.max_size_fraction,
                             .min_size = c.min_size};
        t0 = tu_now();
        rc = cp_compute_masks3(c.dP, c.cellprob, Ld, &mp, c.L, lab, NULL, err);
        TU_CHECK(rc == 0, "cp_compute_masks3: %s", err);
        printf("  cp_compute_masks3: %.3f s\n", tu_now() - t0);
        check_labels("masks", lab, mk, out);
        free(lab);
    }
    free(raw);
    free(p);
    free(f);
    if (c.dPt.f32) {
        tu_tiff_free(&c.dPt);
        tu_tiff_free(&c.cpt);
    } else {
        free(c.dP);
        free(c.cellprob);
    }
    json_object_put(j);
    return tu_finish();
}

/* ---- unit tests ---- */

/* §8.11.3: with a zero field the start/end round trip gives i - ulp for some (i, L), which
 * get_masks truncates to i - 1; the spec counts 15 020 of the 131 327 pairs for L = 2..512, and
 * names i = 1, 7, 14 for L = 24 (others end at i + ulp, harmless). */
static void unit_zero_field(void)
{
    int64_t off = 0, above = 0, pairs = 0;
    char l24[64] = "";
    static float cp[2 * 2 * 512], f[3 * 2 * 2 * 512];
    static cp_particle3 q[512];
    for (int64_t Ln = 2; Ln <= 512; Ln++) {
        const int64_t L[3] = {2, 2, Ln};
        for (int64_t i = 0; i < Ln; i++) cp[i] = 1.0f; /* particles at (0, 0, i), i < Ln */
        const int64_t n = cp_follow3_particles(cp, L, 0.0f, 1, q);
        const cp_field3 F = {.L = {2, 2, Ln}, .n = {2, 2, Ln}, .interp = 1, .f = f};
        cp_follow3_run(&F, q, n, 3);
        cp_follow3_to_voxels(q, n, L, 1);
        for (int64_t i = 0; i < n; i++, pairs++) {
            above += q[i].c[2] > (float)i;
            if (q[i].c[2] < (float)i) {
                off++;
                TU_CHECK((int64_t)q[i].c[2] == i - 1 && q[i].c[2] > (float)i - 1e-4f,
                         "zero field L %lld i %lld: end %.9g", (long long)Ln, (long long)i,
                         (double)q[i].c[2]);
                if (Ln == 24) snprintf(l24 + strlen(l24), sizeof l24 - strlen(l24), " %lld", (long long)i);
            }
            TU_CHECK(q[i].c[0] == 0.0f && q[i].c[1] == 0.0f, "zero field: z/y moved");
        }
    }
    printf("zero field: %lld of %lld (i, L) pairs end at i - ulp (%lld at i + ulp); L = 24:%s\n",
           (long long)off, (long long)pairs, (long long)above, l24);
    TU_CHECK(off == 15020 && pairs == 131327, "zero field: %lld of %lld", (long long)off, (long long)pairs);
    TU_CHECK(strcmp(l24, " 1 7 14") == 0, "zero field L = 24: i =%s", l24);
}

/* The border voxel reads half of its own flow per axis (zero padding): a constant field c on a
 * 3 x 4 x 5 volume moves a particle at (0, 0, 0) by c * (0.5 * 0.5 * 0.5) in the normalised frame
 * in one step. */
static void unit_border(void)
{
    const int64_t L[3] = {3, 4, 5}, nvox = 60;
    float dP[3 * 60], cp[60], f[3 * 60];
    for (int64_t i = 0; i < nvox; i++) dP[i] = 5.0f, dP[nvox + i] = 10.0f, dP[2 * nvox + i] = 2.5f, cp[i] = 1.0f;
    cp_follow3_field(dP, cp, nvox, L, 0.0f, 1, f);
    cp_particle3 q;
    float c0[60] = {1.0f};
    cp_follow3_particles(c0, L, 0.0f, 1, &q);
    const float g0[3] = {q.c[0], q.c[1], q.c[2]};
    const cp_field3 F = {.L = {3, 4, 5}, .n = {3, 4, 5}, .interp = 1, .f = f};
    cp_follow3_run(&F, &q, 1, 1);
    const float want[3] = {g0[0] + (1.0f * (2.0f / 2.0f)) * 0.125f, g0[1] + (2.0f * (float)(2.0 / 3.0)) * 0.125f,
                           g0[2] + (0.5f * (2.0f / 4.0f)) * 0.125f};
    for (int k = 0; k < 3; k++)
        TU_CHECK(q.c[k] == want[k], "border: axis %d: %.9g, want %.9g", k, (double)q.c[k], (double)want[k]);
    printf("border: the corner particle reads 1/8 of the constant field\n");
}

static uint32_t rng_state = 12345;
static float frand(void) /* [0, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}

/* Random field on volume L (sd scales dP), threshold 0 on cellprob in [-0.5, 1.5): the kernel vs
 * the plain stepper, then windows: a run on every window in turn (repeated until no particle
 * moves) must give the whole-field bits. */
static void unit_random(const int64_t L[3], float sd, int32_t steps, int interp)
{
    const int64_t nvox = L[0] * L[1] * L[2];
    float *dP = malloc(sizeof(float) * (size_t)(3 * nvox)), *cp = malloc(sizeof(float) * (size_t)nvox);
    float *f = malloc(sizeof(float) * (size_t)(3 * nvox));
    for (int64_t i = 0; i < 3 * nvox; i++) dP[i] = sd * (frand() * 2.0f - 1.0f);
    for (int64_t i = 0; i < nvox; i++) cp[i] = frand() * 2.0f - 0.5f;
    cp_follow3_field(dP, cp, nvox, L, 0.0f, interp, f);
    const int64_t n = cp_follow3_particles(cp, L, 0.0f, interp, NULL);
    cp_particle3 *a = malloc(sizeof *a * (size_t)(n ? n : 1)), *b = malloc(sizeof *b * (size_t)(n ? n : 1));
    cp_follow3_particles(cp, L, 0.0f, interp, a);
    memcpy(b, a, sizeof *a * (size_t)n);
    cp_field3 F = {.L = {L[0], L[1], L[2]}, .n = {L[0], L[1], L[2]}, .interp = interp, .f = f};
    plain_run(f, L, interp, b, n, steps);
    int64_t d = 0;
    for (int kk = 0; kk < 3; kk++) {
        setenv("CP_FOLLOW_KERNEL", kernels[kk], 1);
        if (strcmp(cp_follow3_kernel(&F), kernels[kk]) != 0) continue; /* not on this CPU */
        cp_follow3_particles(cp, L, 0.0f, interp, a);
        int64_t left = cp_follow3_run(&F, a, n, steps);
        d = diff_particles(a, b, n);
        printf("random %lld x %lld x %lld, sd %g, %d steps, interp %d, %s kernel: %lld particles, "
               "%lld differ from the plain stepper\n", (long long)L[0], (long long)L[1],
               (long long)L[2], (double)sd, steps, interp, cp_follow3_kernel(&F), (long long)n,
               (long long)d);
        TU_CHECK(left == 0 && d == 0, "random: %lld left, %lld differ", (long long)left, (long long)d);
    }
    /* windows: halves along each axis (+1 overlap so that a 2-voxel stencil fits somewhere) */
    for (int kk = 0; kk < 3; kk++) {
        setenv("CP_FOLLOW_KERNEL", kernels[kk], 1);
        if (strcmp(cp_follow3_kernel(&F), kernels[kk]) != 0) continue;
        cp_follow3_particles(cp, L, 0.0f, interp, a);
        for (int round = 0, moved = 1; moved && round < 1000; round++) {
            moved = 0;
            for (int w = 0; w < 8; w++) {
                cp_field3 W = {.L = {L[0], L[1], L[2]}, .interp = interp};
                for (int k = 0; k < 3; k++) {
                    const int64_t h = L[k] / 2;
                    W.w0[k] = (w >> k & 1) ? h : 0;
                    W.n[k] = (w >> k & 1) ? L[k] - h : (h + 1 < L[k] ? h + 1 : L[k]);
                }
                float *wf = malloc(sizeof(float) * (size_t)(3 * W.n[0] * W.n[1] * W.n[2]));
                for (int64_t z = 0; z < W.n[0]; z++)
                    for (int64_t y = 0; y < W.n[1]; y++)
                        memcpy(wf + 3 * ((z * W.n[1] + y) * W.n[2]),
                               f + 3 * (((W.w0[0] + z) * L[1] + W.w0[1] + y) * L[2] + W.w0[2]),
                               sizeof(float) * (size_t)(3 * W.n[2]));
                W.f = wf;
                int64_t before = 0, after = 0;
                for (int64_t i = 0; i < n; i++) before += a[i].steps;
                cp_follow3_run(&W, a, n, steps);
                for (int64_t i = 0; i < n; i++) after += a[i].steps;
                moved |= after != before;
                free(wf);
            }
        }
        d = diff_particles(a, b, n);
        printf("  8 windows, %s kernel: %lld differ from the whole field\n", kernels[kk], (long long)d);
        TU_CHECK(d == 0, "windows: %lld particles differ", (long long)d);
    }
    unsetenv("CP_FOLLOW_KERNEL");
    free(dP);
    free(cp);
    free(f);
    free(a);
    free(b);
}

/* Brute-force growth of seed s (26-neighbour dilations, clipped to the 11^3 window) into M. */
static void plain_grow(const int32_t *h, const int64_t G[3], int64_t idx, uint32_t label, uint32_t *M)
{
    unsigned char cur[11][11][11] = {{{0}}}, nxt[11][11][11];
    const int64_t sz = G[1] * G[2], base = idx - 5 * sz - 5 * G[2] - 5;
    cur[5][5][5] = 1;
    for (int it = 0; it < 5; it++) {
        for (int z = 0; z < 11; z++)
            for (int y = 0; y < 11; y++)
                for (int x = 0; x < 11; x++) {
                    int any = 0;
                    for (int dz = -1; dz <= 1; dz++)
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++) {
                                int zz = z + dz, yy = y + dy, xx = x + dx;
                                if (zz >= 0 && zz < 11 && yy >= 0 && yy < 11 && xx >= 0 && xx < 11)
                                    any |= cur[zz][yy][xx];
                            }
                    nxt[z][y][x] = any && h[base + z * sz + y * G[2] + x] > 2;
                }
        memcpy(cur, nxt, sizeof cur);
    }
    for (int z = 0; z < 11; z++)
        for (int y = 0; y < 11; y++)
            for (int x = 0; x < 11; x++)
                if (cur[z][y][x]) M[base + z * sz + y * G[2] + x] = label;
}

/* Growth and tie order: a row of 24 seeds with equal counts 4 voxels apart along x (their
 * windows overlap, joined by cells with count 3), plus random clutter. cp_masks3_raw must equal
 * the brute-force growth in cp_seed_argsort's order, and that order is not the stable one. */
static void unit_masks(void)
{
    const int64_t L[3] = {9, 12, 110}, G[3] = {49, 52, 150};
    const int64_t nvox = L[0] * L[1] * L[2];
    /* particles: end points in voxel units, one per count */
    int64_t cap = 20000, n = 0;
    cp_particle3 *p = malloc(sizeof *p * (size_t)cap);
#define ADD(z, y, x, k)                                                                           \
    for (int r_ = 0; r_ < (k) && n < cap; r_++, n++)                                              \
        p[n] = (cp_particle3){.src = n % nvox, .c = {(float)(z) + 0.25f, (float)(y) + 0.5f, (float)(x)}};
    for (int s = 0; s < 24; s++) ADD(4, 6, 4 + 4 * s, 12 + (s % 3 == 0)) /* ties: 12 and 13 */
    for (int x = 2; x < 100; x++) ADD(4, 6, x, 3)
    for (int i = 0; i < 400; i++) ADD((int)(frand() * 8), (int)(frand() * 11), (int)(frand() * 110), 1 + (int)(frand() * 4))
#undef ADD
    /* src must be distinct for the assignment to be a function: give every particle its own voxel */
    for (int64_t i = 0; i < n; i++) p[i].src = i;
    TU_CHECK(n <= nvox, "masks unit: %lld particles for %lld voxels", (long long)n, (long long)nvox);
    int32_t *h = calloc((size_t)(G[0] * G[1] * G[2]), sizeof *h);
    uint32_t *M = calloc((size_t)(G[0] * G[1] * G[2]), sizeof *M);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_masks3_histogram(p, n, L, h, err) == 0, "histogram: %s", err);
    cp_seed *seeds = NULL;
    int64_t K = 0;
    TU_CHECK(cp_masks3_seeds(h, L, &seeds, &K, err) == 0, "seeds: %s", err);
    int32_t *counts = malloc(sizeof *counts * (size_t)K);
    int64_t *order = malloc(sizeof *order * (size_t)K);
    for (int64_t k = 0; k < K; k++) counts[k] = seeds[k].count;
    cp_seed_argsort(counts, K, order);
    int stable = 1;
    for (int64_t k = 1; k < K; k++)
        if (counts[order[k]] == counts[order[k - 1]] && order[k] < order[k - 1]) stable = 0;
    TU_CHECK(K > 16 && !stable, "masks unit: %lld seeds, tie order %s", (long long)K,
             stable ? "stable (test not sensitive)" : "unstable");
    for (int64_t k = 0; k < K; k++) plain_grow(h, G, seeds[order[k]].idx, (uint32_t)(k + 1), M);
    uint32_t *want = malloc(sizeof *want * (size_t)nvox), *got = malloc(sizeof *got * (size_t)nvox);
    TU_CHECK(cp_masks3_assign(p, n, L, M, (uint32_t)K, 0.4, want, err) == 0, "assign: %s", err);
    int64_t ns = 0;
    TU_CHECK(cp_masks3_raw(p, n, L, 0.4, got, &ns, err) == 0, "raw: %s", err);
    int64_t d = tu_count_diff_u32(want, got, nvox);
    printf("masks: %lld seeds (tie order unstable: %d), %u labels, %lld voxels differ from the "
           "brute-force growth\n", (long long)K, !stable, max_u32(got, nvox), (long long)d);
    TU_CHECK(d == 0 && ns == K, "masks unit: %lld voxels differ", (long long)d);
    /* big masks: with max_size_fraction 0 every label goes */
    TU_CHECK(cp_masks3_raw(p, n, L, 0.0, got, &ns, err) == 0 && max_u32(got, nvox) == 0,
             "max_size_fraction 0 keeps labels");
    free(counts), free(order), free(seeds), free(h), free(M), free(want), free(got), free(p);
}

static void unit_resize_and_errors(void)
{
    int64_t out[3];
    cp_masks3_out_shape((const int64_t[]){4, 5, 7}, (const int64_t[]){4, 5, 6}, out);
    TU_CHECK(out[0] == 4 && out[1] == 5 && out[2] == 7, "X alone must not be resized");
    cp_masks3_out_shape((const int64_t[]){3, 5, 7}, (const int64_t[]){4, 5, 6}, out);
    TU_CHECK(out[0] == 4 && out[1] == 5 && out[2] == 6, "Z differs: resized to the volume");
    cp_masks3_out_shape((const int64_t[]){4, 6, 7}, (const int64_t[]){4, 5, 6}, out);
    TU_CHECK(out[0] == 4 && out[1] == 5 && out[2] == 6, "Y differs: resized to the volume");
    /* (2, 2, 3) -> (3, 4, 6): every axis by OpenCV's nearest rule */
    const uint32_t src[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t dst[72];
    cp_masks3_resize_back(src, (const int64_t[]){2, 2, 3}, (const int64_t[]){3, 4, 6}, dst);
    int bad = 0;
    for (int z = 0; z < 3; z++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 6; x++) {
                int64_t sz = cp_nearest_source(z, 2, 3), sy = cp_nearest_source(y, 2, 4);
                bad += dst[(z * 4 + y) * 6 + x] != src[(sz * 2 + sy) * 3 + x / 2];
            }
    TU_CHECK(bad == 0 && cp_nearest_source(1, 2, 3) == 0 && cp_nearest_source(2, 2, 3) == 1,
             "resize back: %d voxels wrong", bad);

    char err[CP_ERR_LEN] = "";
    int rc = cp_follow3_check((const int64_t[]){1, 5, 5}, 1, err);
    printf("L = 1 with interp: %s\n", err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "axis Z must have 2 to 2^31-1 voxels"), "L = 1: %d %s", rc, err);
    TU_CHECK(cp_follow3_check((const int64_t[]){1, 5, 5}, 0, err) == 0, "L = 1 without interp refused");
    /* NaN flows: the particle cannot be followed */
    float dP[3 * 8] = {0}, cp[8];
    for (int i = 0; i < 8; i++) cp[i] = 1.0f;
    dP[3] = NAN;
    uint32_t lab[8];
    cp_mask_params mp = {.steps = 10, .interp = 1, .max_size_fraction = 0.4, .min_size = 15};
    rc = cp_compute_masks3(dP, cp, (const int64_t[]){2, 2, 2}, &mp, (const int64_t[]){2, 2, 2}, lab, NULL, err);
    printf("NaN flow: %s\n", err);
    TU_CHECK(rc == CP_EDATA && strstr(err, "particles met NaN flows"), "NaN flow: %d %s", rc, err);
    /* no voxel above the threshold: all zero */
    for (int i = 0; i < 8; i++) cp[i] = -1.0f;
    rc = cp_compute_masks3(dP, cp, (const int64_t[]){2, 2, 2}, &mp, (const int64_t[]){2, 2, 2}, lab, NULL, err);
    TU_CHECK(rc == 0 && max_u32(lab, 8) == 0, "empty: %d %s", rc, err);
}

/* §8.9 on a volume of one plane: every voxel of a box is on a z face, so a ring's hole stays
 * background (the plane rule of 2-D would fill it). */
static void unit_one_plane_holes(void)
{
    uint32_t v[49] = {0}, w[49];
    for (int y = 1; y < 6; y++)
        for (int x = 1; x < 6; x++) v[y * 7 + x] = (y == 1 || y == 5 || x == 1 || x == 5);
    memcpy(w, v, sizeof w);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_post_fill_and_min_size_3d(v, 1, 7, 7, 0, err) == 0, "3d: %s", err);
    TU_CHECK(cp_post_fill_and_min_size(w, 1, 7, 7, 0, err) == 0, "2d: %s", err);
    printf("one-plane volume: ring hole %s (volume rule), %s (plane rule)\n",
           v[3 * 7 + 3] ? "filled" : "kept", w[3 * 7 + 3] ? "filled" : "kept");
    TU_CHECK(v[3 * 7 + 3] == 0 && w[3 * 7 + 3] == 1, "one-plane holes: %u %u", v[24], w[24]);
}

static int test_unit(void)
{
    unit_one_plane_holes();
    unit_zero_field();
    unit_border();
    unit_random((const int64_t[]){2, 2, 2}, 20.0f, 50, 1);
    unit_random((const int64_t[]){2, 3, 5}, 8.0f, 31, 1);
    unit_random((const int64_t[]){7, 20, 23}, 15.0f, 50, 1);
    unit_random((const int64_t[]){12, 17, 31}, 40.0f, 100, 1);
    unit_random((const int64_t[]){2, 3, 5}, 8.0f, 31, 0);
    unit_random((const int64_t[]){7, 20, 23}, 15.0f, 50, 0);
    unit_masks();
    unit_resize_and_errors();
    return tu_finish();
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "case") == 0) return test_case(argv[2], argc > 3 ? argv[3] : "");
    if (argc == 2 && strcmp(argv[1], "unit") == 0) return test_unit();
    fprintf(stderr, "usage: test_dyn3d case <name> [nointerp|noresample|smooth1] | unit\n");
    return 2;
}
