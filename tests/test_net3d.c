/* Tests of the 3-D network stage (src/net3d.c, src/smooth3d.c, cp_resize_volume) against the 3-D
 * reference cases (CELLPOSE_ALGORITHM.md §8.4-8.6):
 *   xnet <case>                 x_norm.tif -> network scale = x_net.tif, bit-identical
 *   views <case>                the oracle's yf_*.tif summed (cp_view_add) and resized back =
 *                               dP.tif / cellprob.tif, bit-identical (the order of the sums)
 *   smooth <case>               dP.tif smoothed with flow3D_smooth 1 = dP_smooth1.tif,
 *                               bit-identical
 *   net <case> [smooth1|noresample]
 *                               our network from x_norm.tif: each pass against its yf_*.tif (when
 *                               stored) and the final dP / cellprob (dP_smooth1; or, without
 *                               resample, the oracle's summed views at the network scale) within
 *                               1e-3, printing the max errors and the time per voxel
 *   unit                        the 4-channel area order, the views' geometry, bad parameters
 * Tolerances: bit-identical where the oracle's arithmetic is reproduced, 1e-3 for our network
 * (reference/README.md). A missing oracle file skips (exit 77). */
#include "net3d.h"

#include "cp_err.h"
#include "resize.h"
#include "smooth3d.h"
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static json_object *kwarg(json_object *j, const char *key)
{
    return tu_json_get(tu_json_get(j, "call.eval_kwargs"), key);
}

/* The case's run_3D parameters (main run; variant "smooth1" / "noresample" as its second run). */
static cp_net3d_params case_params(json_object *j, const char *variant)
{
    json_object *an = tu_json_get(j, "run_3D.anisotropy");
    cp_net3d_params p = {
        .rescale = json_object_get_double(tu_json_get(j, "rescale")),
        .anisotropy = (an && !json_object_is_type(an, json_type_null))
                          ? json_object_get_double(an) : 1.0,
        .resample = json_object_get_boolean(kwarg(j, "resample")),
        .tile_overlap = json_object_get_double(kwarg(j, "tile_overlap")),
        .augment = json_object_get_boolean(kwarg(j, "augment")),
        .batch_size = json_object_get_int(kwarg(j, "batch_size")),
        .smooth = json_object_get_double(kwarg(j, "flow3D_smooth")),
    };
    if (variant && strcmp(variant, "smooth1") == 0) p.smooth = 1.0;
    if (variant && strcmp(variant, "noresample") == 0) p.resample = 0;
    return p;
}

static const char *ref(const char *name, const char *file)
{
    return tu_path("%s/reference/%s/%s", tu_shared(), name, file);
}

/* x_norm.tif (C, Z, Y, X) as the engine's (Z, Y, X, 2) interleaved; L gets its shape. */
static float *read_xnorm(const char *name, int64_t L[3])
{
    tu_tiff t = tu_read_tiff(ref(name, "x_norm.tif"));
    L[0] = t.pages / 2, L[1] = t.ny, L[2] = t.nx;
    int64_t nv = L[0] * L[1] * L[2];
    float *x = malloc(sizeof(float) * (size_t)(2 * nv));
    for (int c = 0; c < 2; c++)
        for (int64_t i = 0; i < nv; i++) x[2 * i + c] = t.f32[c * nv + i];
    tu_tiff_free(&t);
    return x;
}

/* Number of values whose bits differ. */
static int64_t nbits_differ(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

/* Compares n values: bit-identical when tol < 0, else within tol; prints the result. */
static void compare(const char *name, const char *what, const float *mine, const float *oracle,
                    int64_t n, double tol)
{
    int64_t where = 0;
    double e = tu_maxabs(mine, oracle, n, &where);
    int64_t nb = nbits_differ(mine, oracle, n);
    printf("%s: %s: max abs error %.3g (at %lld), %lld of %lld values not bit-identical\n", name,
           what, e, (long long)where, (long long)nb, (long long)n);
    if (tol < 0)
        TU_CHECK(nb == 0, "%s: %s: %lld values differ (max %.3g)", name, what, (long long)nb, e);
    else
        TU_CHECK(e <= tol, "%s: %s: max abs error %.3g > %g", name, what, e, tol);
}

static int test_xnet(const char *name)
{
    json_object *j = tu_case_json(name);
    cp_net3d_params p = case_params(j, NULL);
    int64_t L[3], Ln[3];
    float *x = read_xnorm(name, L);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_net3d_scale(L, p.rescale, p.anisotropy, Ln, err) == 0, "%s: %s", name, err);
    tu_tiff t = tu_read_tiff(ref(name, "x_net.tif"));
    TU_CHECK(t.pages == 2 * Ln[0] && t.ny == Ln[1] && t.nx == Ln[2],
             "%s: network scale %lldx%lldx%lld vs x_net %lldx%lldx%lld", name, (long long)Ln[0],
             (long long)Ln[1], (long long)Ln[2], (long long)t.pages / 2, (long long)t.ny,
             (long long)t.nx);
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    if (t.pages == 2 * Ln[0] && t.ny == Ln[1] && t.nx == Ln[2]) {
        float *xn = malloc(sizeof(float) * (size_t)(2 * nv));
        float *planar = malloc(sizeof(float) * (size_t)(2 * nv));
        TU_CHECK(cp_resize_volume(x, L[0], L[1], L[2], 2, xn, Ln[0], Ln[1], Ln[2], 0, err) == 0,
                 "%s: %s", name, err);
        for (int c = 0; c < 2; c++)
            for (int64_t i = 0; i < nv; i++) planar[c * nv + i] = xn[2 * i + c];
        compare(name, "x_net", planar, t.f32, 2 * nv, -1);
        free(xn);
        free(planar);
    }
    tu_tiff_free(&t);
    free(x);
    json_object_put(j);
    return tu_finish();
}

static const char *const VIEW_FILES[3] = {"yf_yx.tif", "yf_zx.tif", "yf_zy.tif"};

/* The oracle's three views summed into a (4, Ln) field, or NULL when the case has no yf_* files
 * (multitile: not stored, size). */
static float *oracle_sum(const char *name, const int64_t Ln[3])
{
    if (!tu_have(ref(name, VIEW_FILES[0]))) return NULL;
    FILE *f = fopen(ref(name, VIEW_FILES[0]), "rb");
    if (!f) return NULL;
    fclose(f);
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    float *acc = calloc((size_t)(4 * nv), sizeof *acc);
    for (int pass = 0; pass < 3; pass++) {
        cp_view v = cp_view_of(pass, Ln[0], Ln[1], Ln[2]);
        tu_tiff t = tu_read_tiff(ref(name, VIEW_FILES[pass]));
        TU_CHECK(t.pages == 3 * v.planes && t.ny == v.rows && t.nx == v.cols,
                 "%s: %s shape %lld pages %lldx%lld, expected 3x%lld of %lldx%lld", name,
                 VIEW_FILES[pass], (long long)t.pages, (long long)t.ny, (long long)t.nx,
                 (long long)v.planes, (long long)v.rows, (long long)v.cols);
        if (t.pages == 3 * v.planes && t.ny == v.rows && t.nx == v.cols)
            for (int64_t i = 0; i < v.planes; i++)
                cp_view_add(&v, i, t.f32 + i * v.rows * v.cols, nv, acc, nv);
        tu_tiff_free(&t);
    }
    return acc;
}

/* dP (3, L) and cellprob of out against the case's files (dP_file: dP.tif or dP_smooth1.tif). */
static void compare_final(const char *name, const cp_net3d_out *o, const char *dP_file,
                          double tol)
{
    tu_tiff d = tu_read_tiff(ref(name, dP_file)), c = tu_read_tiff(ref(name, "cellprob.tif"));
    int64_t nv = o->nz * o->ny * o->nx;
    TU_CHECK(d.n == 3 * nv && c.n == nv, "%s: %s has %lld values, ours %lld", name, dP_file,
             (long long)d.n, (long long)(3 * nv));
    if (d.n == 3 * nv && c.n == nv) {
        compare(name, dP_file, o->dP, d.f32, 3 * nv, tol);
        compare(name, "cellprob", o->cellprob, c.f32, nv, tol);
    }
    tu_tiff_free(&d);
    tu_tiff_free(&c);
}

static int test_views(const char *name)
{
    json_object *j = tu_case_json(name);
    cp_net3d_params p = case_params(j, NULL);
    int64_t L[3], Ln[3];
    free(read_xnorm(name, L));
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_net3d_scale(L, p.rescale, p.anisotropy, Ln, err) == 0, "%s: %s", name, err);
    float *acc = oracle_sum(name, Ln);
    if (!acc) tu_skip(ref(name, VIEW_FILES[0]));
    cp_net3d_out o;
    int rc = cp_net3d_finish(acc, Ln, L, &p, &o, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (!rc) compare_final(name, &o, "dP.tif", -1);
    cp_net3d_out_free(&o);
    json_object_put(j);
    return tu_finish();
}

static int test_smooth(const char *name)
{
    tu_tiff d = tu_read_tiff(ref(name, "dP.tif")), s = tu_read_tiff(ref(name, "dP_smooth1.tif"));
    int64_t nz = d.pages / 3, nv = nz * d.ny * d.nx;
    char err[CP_ERR_LEN] = "";
    for (int c = 0; c < 3; c++)
        TU_CHECK(cp_smooth3d_gaussian(d.f32 + c * nv, nz, d.ny, d.nx, 1.0, err) == 0, "%s: %s",
                 name, err);
    compare(name, "dP smoothed (sigma 1) vs dP_smooth1", d.f32, s.f32, 3 * nv, -1);
    tu_tiff_free(&d);
    tu_tiff_free(&s);
    return tu_finish();
}

static int test_net(const char *name, const char *variant)
{
    json_object *j = tu_case_json(name);
    cp_net3d_params p = case_params(j, variant);
    const char *mpath = json_object_get_string(tu_json_get(j, "model.path"));
    cp_model *m = NULL;
    char err[CP_ERR_LEN] = "";
    int rc = cp_model_load(tu_need(tu_path("%s/%s", tu_shared(), mpath + 7)), &m, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (rc) return tu_finish();
    int64_t L[3], Ln[3];
    float *x = read_xnorm(name, L);
    TU_CHECK(cp_net3d_scale(L, p.rescale, p.anisotropy, Ln, err) == 0, "%s: %s", name, err);
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    float *xn = malloc(sizeof(float) * (size_t)(2 * nv));
    TU_CHECK(cp_resize_volume(x, L[0], L[1], L[2], 2, xn, Ln[0], Ln[1], Ln[2], 0, err) == 0,
             "%s: %s", name, err);
    float *acc = calloc((size_t)(4 * nv), sizeof *acc);
    float *view = malloc(sizeof(float) * (size_t)(3 * nv));
    double tnet = 0;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = tu_now();
        rc = cp_net3d_pass(m, xn, Ln, pass, p.tile_overlap, p.augment, p.batch_size, acc, view,
                           NULL, err);
        tnet += tu_now() - t0;
        TU_CHECK(rc == 0, "%s: pass %d: %s", name, pass, err);
        const char *vf = ref(name, VIEW_FILES[pass]);
        FILE *f = tu_have(vf) ? fopen(vf, "rb") : NULL;
        if (!f) {
            printf("%s: pass %d: no %s in the oracle (not stored)\n", name, pass, VIEW_FILES[pass]);
            continue;
        }
        fclose(f);
        tu_tiff t = tu_read_tiff(vf);
        TU_CHECK(t.n == 3 * nv, "%s: %s size", name, VIEW_FILES[pass]);
        if (t.n == 3 * nv) compare(name, VIEW_FILES[pass], view, t.f32, 3 * nv, 1e-3);
        tu_tiff_free(&t);
    }
    printf("%s: network, 3 passes over %lldx%lldx%lld voxels: %.2f s, %.3g us per voxel "
           "(%d OpenMP threads)\n", name, (long long)Ln[0], (long long)Ln[1], (long long)Ln[2],
           tnet, 1e6 * tnet / (double)nv, omp_get_max_threads());
    free(view);
    free(xn);
    free(x);
    if (!p.resample) {
        float *oracle = oracle_sum(name, Ln);
        if (!oracle) tu_skip(ref(name, VIEW_FILES[0]));
        compare(name, "summed views at the network scale (dZ, dY, dX, cellprob)", acc, oracle,
                4 * nv, 1e-3);
        free(oracle);
        free(acc);
    } else {
        cp_net3d_out o;
        rc = cp_net3d_finish(acc, Ln, L, &p, &o, err);
        TU_CHECK(rc == 0, "%s: %s", name, err);
        if (!rc) compare_final(name, &o, p.smooth > 0 ? "dP_smooth1.tif" : "dP.tif", 1e-3);
        cp_net3d_out_free(&o);
    }
    cp_model_free(m);
    json_object_put(j);
    return tu_finish();
}

/* ---- unit tests ---------------------------------------------------------------------------- */

/* The exact-2x area path: (a + b) + (c + d) with pairwise (OpenCV's 4-channel order, §8.6), else
 * ((a + b) + c) + d; values chosen so that the two orders differ. */
static void unit_area_order(void)
{
    enum { NY = 6, NX = 8 };
    float src[NY * NX], pw[NY * NX / 4], seq[NY * NX / 4];
    unsigned s = 12345;
    for (int i = 0; i < NY * NX; i++) {
        s = s * 1103515245u + 12345u;
        src[i] = (float)((s >> 8) % 100000) * ((i % 3) ? 1e-3f : 7.1e3f);
    }
    char err[CP_ERR_LEN];
    TU_CHECK(cp_resize_volume(src, 1, NY, NX, 1, pw, 1, NY / 2, NX / 2, 1, err) == 0, "%s", err);
    TU_CHECK(cp_resize_volume(src, 1, NY, NX, 1, seq, 1, NY / 2, NX / 2, 0, err) == 0, "%s", err);
    int bad = 0, differ = 0;
    for (int y = 0; y < NY / 2; y++)
        for (int x = 0; x < NX / 2; x++) {
            float a = src[2 * y * NX + 2 * x], b = src[2 * y * NX + 2 * x + 1];
            float c = src[(2 * y + 1) * NX + 2 * x], d = src[(2 * y + 1) * NX + 2 * x + 1];
            float ep = ((a + b) + (c + d)) * 0.25f, es = (((a + b) + c) + d) * 0.25f;
            int k = y * (NX / 2) + x;
            bad += memcmp(&pw[k], &ep, 4) != 0 || memcmp(&seq[k], &es, 4) != 0;
            differ += ep != es;
        }
    printf("area 2x: %d values off the two orders; the orders differ on %d of %d\n", bad, differ,
           NY * NX / 4);
    TU_CHECK(bad == 0, "area 2x order: %d values", bad);
    TU_CHECK(differ > 0, "area 2x: the test values do not separate the orders");
}

/* Each view reads the voxel its (plane, row, column) names (§8.5: Z as image rows in passes 1
 * and 2), and the sums follow Cellpose's order. */
static void unit_views(void)
{
    enum { LZ = 3, LY = 4, LX = 5, NV = LZ * LY * LX };
    float x[2 * NV];
    for (int i = 0; i < NV; i++) x[2 * i] = (float)i, x[2 * i + 1] = (float)-i;
    int bad = 0;
    for (int pass = 0; pass < 3; pass++) {
        cp_view v = cp_view_of(pass, LZ, LY, LX);
        float img[2 * NV];
        for (int64_t i = 0; i < v.planes; i++) {
            cp_view_image(&v, x, i, img);
            for (int64_t r = 0; r < v.rows; r++)
                for (int64_t c = 0; c < v.cols; c++) {
                    int64_t zyx[3][3] = {{i, r, c}, {r, i, c}, {r, c, i}};
                    int64_t *p = zyx[pass];
                    float want = (float)((p[0] * LY + p[1]) * LX + p[2]);
                    const float *g = img + 2 * (r * v.cols + c);
                    bad += g[0] != want || g[1] != -want;
                }
        }
    }
    TU_CHECK(bad == 0, "views: %d image values from the wrong voxel", bad);
    cp_view v0 = cp_view_of(0, LZ, LY, LX), v1 = cp_view_of(1, LZ, LY, LX),
            v2 = cp_view_of(2, LZ, LY, LX);
    TU_CHECK(v0.planes == LZ && v0.rows == LY && v0.cols == LX && v1.planes == LY &&
                 v1.rows == LZ && v1.cols == LX && v2.planes == LX && v2.rows == LZ &&
                 v2.cols == LY, "views: sizes");

    /* one voxel, three passes: cellprob (1e8 + -1e8) + 1 = 1, not 1e8 + (-1e8 + 1) = 0 */
    float acc[4 * NV] = {0}, y[3 * NV];
    float vals[3][3] = {{2e8f, 1e8f, 1e8f}, {-2e8f, -1e8f, -1e8f}, {1.0f, 1.0f, 1.0f}};
    const cp_view *vs[3] = {&v0, &v1, &v2};
    for (int pass = 0; pass < 3; pass++) {
        int64_t npix = vs[pass]->rows * vs[pass]->cols;
        for (int k = 0; k < 3; k++)
            for (int64_t i = 0; i < npix; i++) y[k * npix + i] = vals[pass][k];
        for (int64_t i = 0; i < vs[pass]->planes; i++) cp_view_add(vs[pass], i, y, npix, acc, NV);
    }
    /* dZ = zx + zy = -2e8 + 1, dY = yx + zy = 2e8 + 1, dX = yx + zx = 1e8 - 1e8 */
    printf("views: summed field at voxel 0: dZ %.9g dY %.9g dX %.9g cellprob %.9g\n", acc[0],
           acc[NV], acc[2 * NV], acc[3 * NV]);
    TU_CHECK(acc[0] == -2e8f + 1.0f && acc[NV] == 2e8f + 1.0f && acc[2 * NV] == 0.0f &&
                 acc[3 * NV] == 1.0f, "views: sum order");
}

static void unit_errors(void)
{
    char err[CP_ERR_LEN] = "";
    int64_t L[3] = {12, 80, 88}, Ln[3];
    TU_CHECK(cp_net3d_scale(L, 0.75, 2.0, Ln, err) == 0 && Ln[0] == 18 && Ln[1] == 60 &&
                 Ln[2] == 66, "scale (12,80,88) r 0.75 a 2: %lld %lld %lld", (long long)Ln[0],
             (long long)Ln[1], (long long)Ln[2]);
    int rc = cp_net3d_scale(L, 0.01, 1.0, Ln, err);
    printf("empty network scale: %s\n", err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "volume 12x80x88 is empty at the network scale"),
             "empty scale: %d %s", rc, err);
    float v[8] = {0};
    rc = cp_smooth3d_gaussian(v, 2, 2, 2, 0.0, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "flow3D_smooth 0: need a positive number"),
             "smooth 0: %d %s", rc, err);
    rc = cp_smooth3d_gaussian(v, 2, 2, 2, NAN, err);
    TU_CHECK(rc == CP_EPARAM, "smooth NaN: %d %s", rc, err);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "unit") == 0) {
        unit_area_order();
        unit_views();
        unit_errors();
        return tu_finish();
    }
    if (argc >= 3 && strcmp(argv[1], "xnet") == 0) return test_xnet(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "views") == 0) return test_views(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "smooth") == 0) return test_smooth(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "net") == 0)
        return test_net(argv[2], argc > 3 ? argv[3] : NULL);
    fprintf(stderr, "usage: test_net3d unit | xnet|views|smooth <case> | net <case> "
                    "[smooth1|noresample]\n");
    return 2;
}
