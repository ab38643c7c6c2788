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
 *   tiling <case>               each pass's padding, tile size and tile starts at bsize 224 =
 *                               case.json run_3D.views[].tiling (Z as image rows, §8.11.5)
 *   dnet3 <case> <variant> <B>  (under mpirun) cp_dnet3_windows over the blocks of B: bit-identical
 *                               to the whole volume, each tile once in a wave, errors reach
 *                               every rank
 *   unit                        the 4-channel area order, the views' geometry, bad parameters,
 *                               tile batches that span images (cp_net_images)
 * Tolerances: bit-identical where the oracle's arithmetic is reproduced, 1e-3 for our network
 * (reference/README.md). A missing oracle file skips (exit 77). */
#include "net3d.h"
#include "net3d_window.h"

#include "cp_err.h"
#include "dnet3.h"
#include "grid.h"
#include "run_net.h"
#include "resize.h"
#include "smooth3d.h"
#include "testutil.h"
#include "tiles.h"

#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* CPU seconds of the process (all threads): the machine is shared, wall time is not the cost. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

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

/* A 3-D case: its case.json, run parameters, x_norm (Z, Y, X, 2) of shape L, network scale Ln. */
typedef struct tcase {
    json_object *j;
    cp_net3d_params p;
    int64_t L[3], Ln[3];
    float *x;
} tcase;

static tcase open_case(const char *name, const char *variant)
{
    tcase c;
    c.j = tu_case_json(name);
    c.p = case_params(c.j, variant);
    c.x = read_xnorm(name, c.L);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_net3d_scale(c.L, c.p.rescale, c.p.anisotropy, c.Ln, err) == 0, "%s: %s", name,
             err);
    return c;
}

static void close_case(tcase *c)
{
    free(c->x);
    json_object_put(c->j);
}

static int test_xnet(const char *name)
{
    tcase tc = open_case(name, NULL);
    const int64_t *L = tc.L, *Ln = tc.Ln;
    char err[CP_ERR_LEN] = "";
    tu_tiff t = tu_read_tiff(ref(name, "x_net.tif"));
    TU_CHECK(t.pages == 2 * Ln[0] && t.ny == Ln[1] && t.nx == Ln[2],
             "%s: network scale %lldx%lldx%lld vs x_net %lldx%lldx%lld", name, (long long)Ln[0],
             (long long)Ln[1], (long long)Ln[2], (long long)t.pages / 2, (long long)t.ny,
             (long long)t.nx);
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    if (t.pages == 2 * Ln[0] && t.ny == Ln[1] && t.nx == Ln[2]) {
        float *xn = malloc(sizeof(float) * (size_t)(2 * nv));
        float *planar = malloc(sizeof(float) * (size_t)(2 * nv));
        TU_CHECK(cp_resize_volume(tc.x, L[0], L[1], L[2], 2, xn, Ln[0], Ln[1], Ln[2], 0, err) ==
                     0, "%s: %s", name, err);
        for (int c = 0; c < 2; c++)
            for (int64_t i = 0; i < nv; i++) planar[c * nv + i] = xn[2 * i + c];
        compare(name, "x_net", planar, t.f32, 2 * nv, -1);
        free(xn);
        free(planar);
    }
    tu_tiff_free(&t);
    close_case(&tc);
    return tu_finish();
}

/* JSON array of integers as int64 values; returns the count (at most max). */
static int json_ints(json_object *a, int64_t *v, int max)
{
    int n = a ? (int)json_object_array_length(a) : 0;
    for (int i = 0; i < n && i < max; i++)
        v[i] = json_object_get_int64(json_object_array_get_idx(a, (size_t)i));
    return n;
}

/* One pass's tiling record `what` against n values of ours. */
static void check_ints(const char *name, int pass, const char *what, json_object *t,
                       const int64_t *mine, int n)
{
    int64_t o[64];
    int no = json_ints(tu_json_get(t, what), o, 64);
    int same = no == n;
    for (int i = 0; same && i < n; i++) same = o[i] == mine[i];
    printf("%s: pass %d %s:", name, pass, what);
    for (int i = 0; i < n; i++) printf(" %lld", (long long)mine[i]);
    printf("%s\n", same ? " (= oracle)" : " (oracle differs)");
    TU_CHECK(same, "%s: pass %d: %s differs from case.json", name, pass, what);
}

static int test_tiling(const char *name)
{
    tcase tc = open_case(name, NULL);
    const int64_t *Ln = tc.Ln;
    char err[CP_ERR_LEN] = "";
    json_object *views = tu_json_get(tc.j, "run_3D.views");
    TU_CHECK(views && json_object_array_length(views) == 3, "%s: run_3D.views", name);
    for (int pass = 0; views && pass < 3; pass++) {
        json_object *t = tu_json_get(json_object_array_get_idx(views, (size_t)pass), "tiling");
        cp_view v = cp_view_of(pass, Ln[0], Ln[1], Ln[2]);
        int64_t py[2], px[2];
        cp_pad_amounts(v.rows, &py[0], &py[1]);
        cp_pad_amounts(v.cols, &px[0], &px[1]);
        cp_tile_grid g;
        int rc = cp_tiles_plan(py[0] + v.rows + py[1], px[0] + v.cols + px[1], 224,
                               tc.p.tile_overlap, tc.p.augment, &g, err);
        TU_CHECK(rc == 0, "%s: pass %d: %s", name, pass, err);
        if (rc) continue;
        check_ints(name, pass, "network_scale_shape_YX", t, (int64_t[]){v.rows, v.cols}, 2);
        check_ints(name, pass, "pad_y", t, py, 2);
        check_ints(name, pass, "pad_x", t, px, 2);
        check_ints(name, pass, "padded_shape_YX", t, (int64_t[]){g.Ly, g.Lx}, 2);
        check_ints(name, pass, "tile_size_YX", t, (int64_t[]){g.ty, g.tx}, 2);
        check_ints(name, pass, "tile_ystart", t, g.ystart, (int)g.ny);
        check_ints(name, pass, "tile_xstart", t, g.xstart, (int)g.nx);
        cp_tiles_free(&g);
    }
    close_case(&tc);
    return tu_finish();
}

/* 1 when the oracle has the file (the multitile case stores no yf_* views). */
static int have_file(const char *path)
{
    return tu_have(path) && access(path, R_OK) == 0;
}

static const char *const VIEW_FILES[3] = {"yf_yx.tif", "yf_zx.tif", "yf_zy.tif"};

/* The oracle's three views summed into a (4, Ln) field, or NULL when the case has no yf_* files
 * (multitile: not stored, size). */
static float *oracle_sum(const char *name, const int64_t Ln[3])
{
    if (!have_file(ref(name, VIEW_FILES[0]))) return NULL;
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
    tcase tc = open_case(name, NULL);
    char err[CP_ERR_LEN] = "";
    float *acc = oracle_sum(name, tc.Ln);
    if (!acc) tu_skip(ref(name, VIEW_FILES[0]));
    cp_net3d_out o;
    int rc = cp_net3d_finish(acc, tc.Ln, tc.L, &tc.p, &o, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (!rc) compare_final(name, &o, "dP.tif", -1);
    cp_net3d_out_free(&o);
    close_case(&tc);
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

/* Our network's three passes over x_norm, each against its yf_*.tif within 1e-3, summed into a
 * (4, Ln) field (returned); *cpu gets the network's CPU seconds. */
static float *net_views(const char *name, const cp_model *m, const tcase *tc, double *cpu)
{
    const int64_t *L = tc->L, *Ln = tc->Ln;
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    char err[CP_ERR_LEN] = "";
    float *xn = malloc(sizeof(float) * (size_t)(2 * nv));
    TU_CHECK(cp_resize_volume(tc->x, L[0], L[1], L[2], 2, xn, Ln[0], Ln[1], Ln[2], 0, err) == 0,
             "%s: %s", name, err);
    float *acc = calloc((size_t)(4 * nv), sizeof *acc);
    float *view = malloc(sizeof(float) * (size_t)(3 * nv));
    *cpu = 0;
    for (int pass = 0; pass < 3; pass++) {
        double c0 = cpu_now();
        int rc = cp_net3d_pass(m, xn, Ln, pass, tc->p.tile_overlap, tc->p.augment,
                               tc->p.batch_size, acc, view, NULL, err);
        *cpu += cpu_now() - c0;
        TU_CHECK(rc == 0, "%s: pass %d: %s", name, pass, err);
        tu_tiff t = tu_read_tiff(ref(name, VIEW_FILES[pass]));
        TU_CHECK(t.n == 3 * nv, "%s: %s size", name, VIEW_FILES[pass]);
        if (t.n == 3 * nv) compare(name, VIEW_FILES[pass], view, t.f32, 3 * nv, 1e-3);
        tu_tiff_free(&t);
    }
    free(view);
    free(xn);
    return acc;
}

/* Main run with stored views: the passes one by one (net_views), then cp_net3d_finish. Otherwise
 * (multitile: no views; the smooth1 / noresample runs) the engine's entry cp_run_net3d, whose
 * result is compared with dP / dP_smooth1 / the oracle's summed views at the network scale. */
static int test_net(const char *name, const char *variant)
{
    tcase tc = open_case(name, variant);
    const int64_t *Ln = tc.Ln;
    const char *mpath = json_object_get_string(tu_json_get(tc.j, "model.path"));
    cp_model *m = NULL;
    char err[CP_ERR_LEN] = "";
    int rc = cp_model_load(tu_need(tu_path("%s/%s", tu_shared(), mpath + 7)), &m, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (rc) return tu_finish();
    int64_t nv = Ln[0] * Ln[1] * Ln[2];
    double t0 = tu_now(), cpu = cpu_now();
    cp_net3d_out o;
    if (!variant && have_file(ref(name, VIEW_FILES[0]))) {
        float *acc = net_views(name, m, &tc, &cpu);
        rc = cp_net3d_finish(acc, Ln, tc.L, &tc.p, &o, err);
    } else {
        printf("%s: %s: the whole stage (cp_run_net3d)\n", name, variant ? variant : "main");
        rc = cp_run_net3d(m, tc.x, tc.L, &tc.p, &o, err);
        cpu = cpu_now() - cpu;
    }
    printf("%s: network, 3 passes over %lldx%lldx%lld voxels: %.2f s wall, %.2f CPU s "
           "(%d OpenMP threads): %.3g CPU us per voxel\n", name, (long long)Ln[0],
           (long long)Ln[1], (long long)Ln[2], tu_now() - t0, cpu, omp_get_max_threads(),
           1e6 * cpu / (double)nv);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (!rc && !tc.p.resample) {
        float *oracle = oracle_sum(name, Ln);
        if (!oracle) tu_skip(ref(name, VIEW_FILES[0]));
        TU_CHECK(o.nz == Ln[0] && o.ny == Ln[1] && o.nx == Ln[2], "%s: not at the network scale",
                 name);
        compare(name, "summed views at the network scale (dZ, dY, dX, cellprob)", o.dP, oracle,
                4 * nv, 1e-3);
        free(oracle);
    } else if (!rc) {
        compare_final(name, &o, tc.p.smooth > 0 ? "dP_smooth1.tif" : "dP.tif", 1e-3);
    }
    if (!rc) cp_net3d_out_free(&o);
    cp_model_free(m);
    close_case(&tc);
    return tu_finish();
}

/* ---- windows (cp_net3d_window) -------------------------------------------------------------- */

/* The volume x (L, 2) read by boxes; counts the voxels read by the current window. */
typedef struct box_reader {
    const float *x;
    int64_t L[3];
    int64_t voxels;
} box_reader;

static int read_box(void *arg, cp_box3 b, float *dst, char *err)
{
    box_reader *r = arg;
    const int64_t *L = r->L;
    int inside = 1;
    for (int a = 0; a < 3; a++) inside &= b.o[a] >= 0 && b.n[a] >= 1 && b.o[a] + b.n[a] <= L[a];
    if (!inside)
        return cp_errf(err, CP_EPARAM, "reader: box %lldx%lldx%lld at (%lld, %lld, %lld) outside "
                       "the volume", (long long)b.n[0], (long long)b.n[1], (long long)b.n[2],
                       (long long)b.o[0], (long long)b.o[1], (long long)b.o[2]);
    for (int64_t z = 0; z < b.n[0]; z++)
        for (int64_t y = 0; y < b.n[1]; y++)
            memcpy(dst + 2 * (z * b.n[1] + y) * b.n[2],
                   r->x + 2 * (((b.o[0] + z) * L[1] + b.o[1] + y) * L[2] + b.o[2]),
                   sizeof(float) * (size_t)(2 * b.n[2]));
    r->voxels += b.n[0] * b.n[1] * b.n[2];
    return 0;
}

/* A reader that fails. */
static int read_fails(void *arg, cp_box3 b, float *dst, char *err)
{
    (void)arg, (void)b, (void)dst;
    return cp_errf(err, CP_EIO, "reader: no volume");
}

/* Box w of the 4-channel field f over grid G, into dst (4, w). */
static void field_box(const float *f, const int64_t G[3], cp_box3 w, float *dst)
{
    int64_t nv = G[0] * G[1] * G[2], nw = w.n[0] * w.n[1] * w.n[2];
    for (int c = 0; c < 4; c++)
        for (int64_t z = 0; z < w.n[0]; z++)
            for (int64_t y = 0; y < w.n[1]; y++)
                memcpy(dst + c * nw + (z * w.n[1] + y) * w.n[2],
                       f + c * nv + ((w.o[0] + z) * G[1] + w.o[1] + y) * G[2] + w.o[2],
                       sizeof(float) * (size_t)w.n[2]);
}

/* Differences of one window against the whole volume's field. */
typedef struct wstats {
    int64_t windows, values, differ, max_read;
    double maxabs, cpu;
} wstats;

static void window_vs_whole(const cp_model *m, box_reader *rd, const cp_net3d_params *p,
                            const cp_net3d_out *o, cp_box3 w, wstats *st)
{
    const int64_t G[3] = {o->nz, o->ny, o->nx};
    int64_t nw = w.n[0] * w.n[1] * w.n[2];
    float *mine = malloc(sizeof(float) * (size_t)(4 * nw));
    float *ref4 = malloc(sizeof(float) * (size_t)(4 * nw));
    char err[CP_ERR_LEN] = "";
    rd->voxels = 0;
    double c0 = cpu_now();
    int rc = cp_net3d_window(m, read_box, rd, rd->L, p, w, mine, err);
    st->cpu += cpu_now() - c0;
    TU_CHECK(rc == 0, "window %lldx%lldx%lld at (%lld, %lld, %lld): %s", (long long)w.n[0],
             (long long)w.n[1], (long long)w.n[2], (long long)w.o[0], (long long)w.o[1],
             (long long)w.o[2], err);
    if (!rc) {
        field_box(o->dP, G, w, ref4);
        int64_t where;
        double e = tu_maxabs(mine, ref4, 4 * nw, &where);
        int64_t d = nbits_differ(mine, ref4, 4 * nw);
        st->maxabs = e > st->maxabs ? e : st->maxabs;
        st->differ += d;
        st->values += 4 * nw;
        st->windows++;
        st->max_read = rd->voxels > st->max_read ? rd->voxels : st->max_read;
    }
    free(mine);
    free(ref4);
}

static void report(const char *name, const char *what, const wstats *st, const int64_t L[3])
{
    printf("%s: %s: %lld windows, %lld values: %lld not bit-identical, max abs difference %.3g; "
           "%.2f CPU s; most input read by a window %lld voxels (%.2f volumes)\n", name, what,
           (long long)st->windows, (long long)st->values, (long long)st->differ, st->maxabs,
           st->cpu, (long long)st->max_read, (double)st->max_read / (double)(L[0] * L[1] * L[2]));
    TU_CHECK(st->differ == 0 && st->windows > 0, "%s: %s: %lld values differ (max %.3g)", name,
             what, (long long)st->differ, st->maxabs);
}

/* The oracle's (4, G) field of the case's run: dP (or dP_smooth1) and cellprob with resample,
 * the summed views at the network scale without; NULL when not stored. */
static float *oracle_field(const char *name, const cp_net3d_params *p, const int64_t G[3])
{
    int64_t nv = G[0] * G[1] * G[2];
    if (!p->resample) return oracle_sum(name, G);
    tu_tiff d = tu_read_tiff(ref(name, p->smooth > 0 ? "dP_smooth1.tif" : "dP.tif")),
            c = tu_read_tiff(ref(name, "cellprob.tif"));
    float *f = NULL;
    if (d.n == 3 * nv && c.n == nv) {
        f = malloc(sizeof(float) * (size_t)(4 * nv));
        memcpy(f, d.f32, sizeof(float) * (size_t)(3 * nv));
        memcpy(f + 3 * nv, c.f32, sizeof(float) * (size_t)nv);
    }
    tu_tiff_free(&d);
    tu_tiff_free(&c);
    return f;
}

/* Windows of cp_net3d_window against cp_run_net3d on the whole volume, bit for bit: for blocks
 * of 4, 7 and 16 voxels per side, `sample` blocks of the grid spread over it (first and last
 * included; all with sample <= 0), then one window off the grid and (below 100000 voxels, or
 * with all blocks) the whole grid as one window; the window off the grid also against the oracle
 * within 1e-3. Variants on x cropped (no oracle), anisotropy 1.5, flow3D_smooth 1: "r2", at most
 * 5x14x17 at rescale 2 (resizing back takes the exact-2x area path in Y, X; 3x in Z); "aug", at
 * most 4x8x9 with augment (its tiles are 224 wide even on small images: slow). */
/* The case of the window tests: its x_norm and parameters, or the variants' crops (r2, aug). */
static tcase window_case(const char *name, const char *variant)
{
    int r2 = variant && strcmp(variant, "r2") == 0, aug = variant && strcmp(variant, "aug") == 0;
    tcase tc = open_case(name, r2 || aug || (variant && strcmp(variant, "main") == 0) ? NULL
                                                                                     : variant);
    char err[CP_ERR_LEN] = "";
    if (r2 || aug) {
        const int64_t *M = r2 ? (const int64_t[]){5, 14, 17} : (const int64_t[]){4, 8, 9};
        int64_t C[3];
        for (int a = 0; a < 3; a++) C[a] = tc.L[a] < M[a] ? tc.L[a] : M[a];
        float *xc = malloc(sizeof(float) * (size_t)(2 * C[0] * C[1] * C[2]));
        box_reader whole = {tc.x, {tc.L[0], tc.L[1], tc.L[2]}, 0};
        read_box(&whole, (cp_box3){{0, 0, 0}, {C[0], C[1], C[2]}}, xc, err);
        free(tc.x);
        tc.x = xc;
        memcpy(tc.L, C, sizeof C);
        tc.p.rescale = r2 ? 2.0 : 1.0, tc.p.anisotropy = 1.5, tc.p.augment = aug,
        tc.p.smooth = 1.0;
    }
    return tc;
}

/* The case's model; NULL after a failed check. */
static cp_model *case_model(const char *name, const tcase *tc)
{
    char err[CP_ERR_LEN] = "";
    const char *mpath = json_object_get_string(tu_json_get(tc->j, "model.path"));
    cp_model *m = NULL;
    int rc = cp_model_load(tu_need(tu_path("%s/%s", tu_shared(), mpath + 7)), &m, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    return rc ? NULL : m;
}

static int test_window(const char *name, const char *variant, int64_t sample)
{
    int r2 = variant && strcmp(variant, "r2") == 0, aug = variant && strcmp(variant, "aug") == 0;
    tcase tc = window_case(name, variant);
    char err[CP_ERR_LEN] = "";
    cp_model *m = case_model(name, &tc);
    if (!m) return tu_finish();
    cp_net3d_out o;
    double c0 = cpu_now();
    int rc = cp_run_net3d(m, tc.x, tc.L, &tc.p, &o, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (rc) return tu_finish();
    const int64_t G[3] = {o.nz, o.ny, o.nx};
    printf("%s: %s: volume %lldx%lldx%lld, output grid %lldx%lldx%lld (rescale %g, anisotropy "
           "%g, resample %d, augment %d, smooth %g, overlap %g): whole volume %.2f CPU s\n", name,
           variant ? variant : "main", (long long)tc.L[0], (long long)tc.L[1],
           (long long)tc.L[2], (long long)G[0], (long long)G[1], (long long)G[2], tc.p.rescale,
           tc.p.anisotropy, tc.p.resample, tc.p.augment, tc.p.smooth, tc.p.tile_overlap,
           cpu_now() - c0);
    box_reader rd = {tc.x, {tc.L[0], tc.L[1], tc.L[2]}, 0};
    static const int64_t SIDES[3] = {4, 7, 16};
    for (int k = 0; k < 3; k++) {
        int64_t b = SIDES[k], nb[3], n = 1;
        for (int a = 0; a < 3; a++) n *= nb[a] = (G[a] + b - 1) / b;
        /* all blocks, or `sample` spread from the first to the last (one: the last) */
        int64_t count = sample > 0 && sample < n ? sample : n;
        wstats st = {0, 0, 0, 0, 0, 0};
        for (int64_t j = 0, prev = -1; j < count; j++) {
            int64_t t = count == n ? j : count == 1 ? n - 1 : j * (n - 1) / (count - 1);
            if (t == prev) continue;
            prev = t;
            int64_t bz = t / (nb[1] * nb[2]), by = t / nb[2] % nb[1], bx = t % nb[2];
            cp_box3 w = {{bz * b, by * b, bx * b}, {0, 0, 0}};
            w.n[0] = G[0] - w.o[0] < b ? G[0] - w.o[0] : b;
            w.n[1] = G[1] - w.o[1] < b ? G[1] - w.o[1] : b;
            w.n[2] = G[2] - w.o[2] < b ? G[2] - w.o[2] : b;
            window_vs_whole(m, &rd, &tc.p, &o, w, &st);
        }
        char what[96];
        snprintf(what, sizeof what, "blocks of %lld (of %lld)", (long long)b, (long long)n);
        report(name, what, &st, tc.L);
    }
    /* off the grid, and the whole grid */
    cp_box3 odd = {{G[0] / 3, G[1] / 5 + 1, G[2] / 4 + 3}, {0, 0, 0}};
    odd.n[0] = G[0] - odd.o[0] < 5 ? G[0] - odd.o[0] : 5;
    odd.n[1] = G[1] - odd.o[1] < 9 ? G[1] - odd.o[1] : 9;
    odd.n[2] = G[2] - odd.o[2] < 13 ? G[2] - odd.o[2] : 13;
    cp_box3 all = {{0, 0, 0}, {G[0], G[1], G[2]}};
    wstats so = {0, 0, 0, 0, 0, 0}, sa = {0, 0, 0, 0, 0, 0};
    window_vs_whole(m, &rd, &tc.p, &o, odd, &so);
    char what[160];
    snprintf(what, sizeof what, "window %lldx%lldx%lld at (%lld, %lld, %lld)", (long long)odd.n[0],
             (long long)odd.n[1], (long long)odd.n[2], (long long)odd.o[0], (long long)odd.o[1],
             (long long)odd.o[2]);
    report(name, what, &so, tc.L);
    if (sample <= 0 || G[0] * G[1] * G[2] <= 100000) { /* as long as the whole run */
        window_vs_whole(m, &rd, &tc.p, &o, all, &sa);
        report(name, "the whole grid as one window", &sa, tc.L);
    }
    float *oracle = r2 || aug ? NULL : oracle_field(name, &tc.p, G);
    if (oracle) {
        int64_t nw = odd.n[0] * odd.n[1] * odd.n[2];
        float *mine = malloc(sizeof(float) * (size_t)(4 * nw));
        float *ref4 = malloc(sizeof(float) * (size_t)(4 * nw));
        rc = cp_net3d_window(m, read_box, &rd, tc.L, &tc.p, odd, mine, err);
        TU_CHECK(rc == 0, "%s: %s", name, err);
        field_box(oracle, G, odd, ref4);
        if (!rc) compare(name, "window off the grid vs the oracle (dZ, dY, dX, cellprob)", mine,
                         ref4, 4 * nw, 1e-3);
        free(mine);
        free(ref4);
        free(oracle);
    }
    /* refused: a window outside the grid or empty, batch size 0; the reader's error passes */
    float dummy[4];
    cp_box3 bad = {{G[0], 0, 0}, {1, 1, 1}}, empty = {{0, 0, 0}, {1, 0, 1}},
            one = {{0, 0, 0}, {1, 1, 1}};
    rc = cp_net3d_window(m, read_box, &rd, tc.L, &tc.p, bad, dummy, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "outside"), "%s: outside the grid: %d %s", name, rc,
             err);
    rc = cp_net3d_window(m, read_box, &rd, tc.L, &tc.p, empty, dummy, err);
    TU_CHECK(rc == CP_EPARAM, "%s: an empty window: %d %s", name, rc, err);
    cp_net3d_params p0 = tc.p;
    p0.batch_size = 0;
    rc = cp_net3d_window(m, read_box, &rd, tc.L, &p0, one, dummy, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "batch size 0"), "%s: batch 0: %d %s", name, rc, err);
    rc = cp_net3d_window(m, read_fails, NULL, tc.L, &tc.p, one, dummy, err);
    TU_CHECK(rc == CP_EIO && strcmp(err, "reader: no volume") == 0, "%s: reader error: %d %s",
             name, rc, err);
    cp_net3d_out_free(&o);
    cp_model_free(m);
    close_case(&tc);
    return tu_finish();
}

/* ---- each tile once over blocks (cp_dnet3_windows, MPI) ------------------------------------ */

/* What the emitted windows of this rank gave, against the whole volume's field. */
typedef struct dnet3_check {
    const cp_net3d_out *o;
    const cp_box3 *ws;
    int64_t emitted, values, differ;
    double maxabs;
    volatile sig_atomic_t stop; /* set by rank 0's first emit */
} dnet3_check;

enum { WAVE = 4 }; /* windows per rank in a wave of the test runs */

static int dnet3_compare(void *arg, int64_t j, const float *out4, char *err)
{
    (void)err;
    dnet3_check *k = arg;
    const int64_t G[3] = {k->o->nz, k->o->ny, k->o->nx}, nw = cp_box3_voxels(k->ws[j]);
    float *ref4 = malloc(sizeof(float) * (size_t)(4 * nw));
    field_box(k->o->dP, G, k->ws[j], ref4);
    int64_t where;
    double e = tu_maxabs(out4, ref4, 4 * nw, &where);
    k->maxabs = e > k->maxabs ? e : k->maxabs;
    k->differ += nbits_differ(out4, ref4, 4 * nw);
    k->values += 4 * nw, k->emitted++;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    k->stop = rank == 0;
    free(ref4);
    return 0;
}

/* Fails on the last rank: every rank must return the error, none may wait for ever. */
static int read_fails_last(void *arg, cp_box3 b, float *dst, char *err)
{
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return rank == n - 1 ? read_fails(arg, b, dst, err) : read_box(arg, b, dst, err);
}

/* The blocks of side B of the output grid, grown by 1 voxel (as the driver's "dp3"), dealt to the
 * ranks as the driver deals them, through cp_dnet3_windows on every rank: each window bit for bit
 * against cp_run_net3d on the whole volume; the tile evaluations, summed over the ranks, equal the
 * whole volume's tiles when one wave holds every block and nothing is resized (no more with a
 * resize); then a reader failing on the last rank ends every rank with its error, and a stop
 * set by rank 0's first window ends every rank after the first wave (its windows emitted, no
 * more); no scratch file is left. */
static int test_dnet3(const char *name, const char *variant, int64_t B)
{
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    tcase tc = window_case(name, variant);
    char err[CP_ERR_LEN] = "";
    cp_model *m = case_model(name, &tc);
    cp_net3d_out o;
    int rc = m ? cp_run_net3d(m, tc.x, tc.L, &tc.p, &o, err) : CP_EPARAM;
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (rc) return tu_finish();
    cp_grid g;
    cp_grid_init3(&g, o.nz, o.ny, o.nx, B, nranks);
    int64_t b0, b1;
    cp_grid_range(&g, rank, &b0, &b1);
    cp_box3 *ws = malloc(sizeof *ws * (size_t)(b1 - b0 + 1));
    for (int64_t b = b0; b < b1; b++) ws[b - b0] = cp_box3_grow(&g, cp_grid_box(&g, b), 1);
    box_reader rd = {tc.x, {tc.L[0], tc.L[1], tc.L[2]}, 0};
    dnet3_check k = {&o, ws, 0, 0, 0, 0, 0};
    cp_dnet3_stats st = {0, 0};
    double t0 = MPI_Wtime();
    char tmp[512]; /* the scratch folder of this run, empty again at the end */
    snprintf(tmp, sizeof tmp, "%s/dnet3_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (rank == 0) TU_CHECK(mkdtemp(tmp) != NULL, "mkdtemp %s", tmp);
    MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, MPI_COMM_WORLD);
    rc = cp_dnet3_windows(MPI_COMM_WORLD, m, read_box, &rd, tc.L, &tc.p, ws, b1 - b0, WAVE, tmp,
                          NULL, dnet3_compare, &k, &st, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    int64_t sums[3] = {k.emitted, k.values, k.differ}, most = b1 - b0;
    MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &k.maxabs, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    int one_wave = most <= WAVE, resized = tc.Ln[0] != tc.L[0] ||
                                                    tc.Ln[1] != tc.L[1] || tc.Ln[2] != tc.L[2];
    if (rank == 0)
        printf("%s: %s: %d rank(s), %lld blocks of %lld (grown by 1), %s: %lld windows, %lld "
               "values: %lld not bit-identical, max abs difference %.3g; %lld tile evaluations "
               "for the volume's %lld tiles; %.2f s\n", name, variant, nranks,
               (long long)g.nblocks, (long long)B, one_wave ? "one wave" : "several waves",
               (long long)sums[0], (long long)sums[1], (long long)sums[2], k.maxabs,
               (long long)st.tiles_run, (long long)st.tiles_volume, MPI_Wtime() - t0);
    TU_CHECK(sums[0] == g.nblocks && sums[2] == 0, "%s: %lld of %lld windows, %lld values differ",
             name, (long long)sums[0], (long long)g.nblocks, (long long)sums[2]);
    TU_CHECK(!one_wave || (resized ? st.tiles_run <= st.tiles_volume
                                   : st.tiles_run == st.tiles_volume),
             "%s: one wave: %lld tile evaluations for %lld tiles", name, (long long)st.tiles_run,
             (long long)st.tiles_volume);
    /* a reader failing on one rank, a stop on one rank: every rank returns the error */
    rc = cp_dnet3_windows(MPI_COMM_WORLD, m, read_fails_last, &rd, tc.L, &tc.p, ws, b1 - b0, WAVE,
                          tmp, NULL, dnet3_compare, &k, NULL, err);
    TU_CHECK(rc == CP_EIO && strstr(err, "reader: no volume"), "failing reader: %d %s", rc, err);
    k.stop = 0, k.emitted = 0;
    rc = cp_dnet3_windows(MPI_COMM_WORLD, m, read_box, &rd, tc.L, &tc.p, ws, b1 - b0, WAVE, tmp,
                          &k.stop, dnet3_compare, &k, NULL, err);
    /* rank 0's first window sets the stop: the rest of the first wave is emitted, no more */
    int64_t first = b1 - b0 < WAVE ? b1 - b0 : WAVE;
    TU_CHECK(one_wave ? rc == 0 : rc == CP_EINTR && strstr(err, "stopped"),
             "stop on rank 0 (%s): %d %s", one_wave ? "one wave" : "waves", rc, err);
    TU_CHECK(k.emitted == first, "stop: %lld windows emitted, the first wave has %lld",
             (long long)k.emitted, (long long)first);
    if (rank == 0)
        printf("failing reader, stop in the first wave on rank 0: every rank returned (%s); the "
               "first wave's windows kept\n", rc ? err : "done: one wave");
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) TU_CHECK(rmdir(tmp) == 0, "%s: a scratch file was left there", tmp);
    free(ws);
    cp_net3d_out_free(&o);
    cp_model_free(m);
    close_case(&tc);
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

/* cp_net_images: images run together, with batches that span images (2 tiles per image, batch
 * 3), give each image the bits it gets alone. */
static void unit_batch_across_images(void)
{
    cp_model *m = NULL;
    char err[CP_ERR_LEN] = "";
    int rc = cp_model_load(tu_need(tu_path("%s/models/tiny_random_nbase8_seed7.pth", tu_shared())),
                           &m, err);
    TU_CHECK(rc == 0, "%s", err);
    if (rc) return;
    enum { N = 3, R = 6, C = 225 }; /* a Z x X slice of the multitile case: 2 tiles of 32x224 */
    float *x = malloc(sizeof(float) * N * R * C * 2), *all = malloc(sizeof(float) * N * 3 * R * C);
    float *one = malloc(sizeof(float) * 3 * R * C);
    unsigned s = 7;
    for (int i = 0; i < N * R * C * 2; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 8) % 1000) / 500.0f;
    }
    TU_CHECK(cp_net_image_tiles(R, C, 224, 0.1, 0) == 2, "tiles per image");
    rc = cp_net_images(m, x, N, R, C, 224, 0.1, 0, 3, all, NULL, err);
    TU_CHECK(rc == 0, "%s", err);
    int64_t differ = 0;
    for (int i = 0; !rc && i < N; i++) {
        rc = cp_net_images(m, x + i * R * C * 2, 1, R, C, 224, 0.1, 0, 8, one, NULL, err);
        TU_CHECK(rc == 0, "%s", err);
        differ += nbits_differ(one, all + i * 3 * R * C, 3 * R * C);
    }
    printf("batch across images: %lld of %d values differ from one image at a time\n",
           (long long)differ, N * 3 * R * C);
    TU_CHECK(differ == 0, "batch across images: %lld values differ", (long long)differ);
    free(x);
    free(all);
    free(one);
    cp_model_free(m);
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
        unit_batch_across_images();
        return tu_finish();
    }
    if (argc >= 3 && strcmp(argv[1], "xnet") == 0) return test_xnet(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "views") == 0) return test_views(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "tiling") == 0) return test_tiling(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "smooth") == 0) return test_smooth(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "net") == 0)
        return test_net(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc >= 5 && strcmp(argv[1], "dnet3") == 0) {
        MPI_Init(&argc, &argv);
        int rc = test_dnet3(argv[2], argv[3], atoll(argv[4]));
        MPI_Finalize();
        return rc;
    }
    if (argc >= 3 && strcmp(argv[1], "window") == 0)
        return test_window(argv[2], argc > 3 ? argv[3] : NULL,
                           argc > 4 && strcmp(argv[4], "all") != 0 ? atoll(argv[4]) : 0);
    fprintf(stderr, "usage: test_net3d unit | xnet|views|tiling|smooth <case> | net <case> "
                    "[smooth1|noresample] | window <case> [main|smooth1|noresample|r2|aug] "
                    "[blocks per size|all] | dnet3 <case> <variant> <block> (under mpirun)\n");
    return 2;
}
