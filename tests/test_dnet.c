/* The network phase over windows and owner blocks (mpi/dnet.c) against the whole-plane network
 * phase (cp_run_net), bit for bit:
 *   window CASE      4 single windows (a corner pixel, the 1-pixel last row, 37x63, 100x100)
 *                    through cp_dnet_window, and every window of an uneven tiling of the
 *                    dynamics-scale plane (1-pixel first and last rows/columns, odd sizes, 64,
 *                    100, 128, ...) through cp_dnet_windows (run with NP 1);
 *   run CASE B       cp_dnet_run with blocks of side B on the ranks: every "dp" block (block + 1 px
 *                    halo) gathered on rank 0; then one block file deleted and the run resumed:
 *                    the other blocks are reused and the bits are the same; a wrong grid fails on
 *                    every rank with the same message.
 * CASE: a reference case (parameters from its case.json) or tiny_synth1024 (the tiny model on the
 * whole synth_1024 image, diameter 45, bsize 96, tile_overlap 0.3: many small tiles). Rank 0
 * computes the normalization constants over the whole plane (what the distributed normalization
 * phase provides) and broadcasts them.
 * Each tile is evaluated once (DESIGN.md §2.2), by one rank, for every window and every rank
 * needing it: the first run's tile evaluations, summed over the ranks, equal the plane's tiles
 * (checked; tiny_synth1024 with B 128: 144 at NP 1-4, where each rank running the tiles its blocks
 * touched ran 144 / 168 / 184 / 216); the 361-window tiling runs 144 as well. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agree.h"
#include "bstore.h"
#include "cp_err.h"
#include "dnet.h"
#include "dplane.h"
#include "run_net.h"
#include "testutil.h"

typedef struct tcase {
    char image[4096], model[4096], dp[4096], cellprob[4096]; /* dp: oracle flows, "" if none */
    int chan, chan2, z_axis, channel_axis;
    double diameter, tile_overlap;
    int64_t bsize, batch;
    int invert, no_norm, augment, resample;
} tcase;

/* "shared/x/y" in case.json -> <tu_shared()>/x/y */
static void shared_path(char *dst, json_object *o)
{
    const char *p = json_object_get_string(o);
    snprintf(dst, 4096, "%s/%s", tu_shared(), strncmp(p, "shared/", 7) ? p : p + 7);
}

static int is_set(json_object *o) { return o && !json_object_is_type(o, json_type_null); }

static tcase load_case(const char *name)
{
    tcase t = {.chan = 1, .chan2 = 2, .z_axis = -1, .channel_axis = -1, .tile_overlap = 0.1,
               .bsize = 224, .batch = 8, .resample = 1};
    if (!strcmp(name, "tiny_synth1024")) {
        snprintf(t.image, sizeof t.image, "%s/data/synthetic/synth_1024.tif", tu_shared());
        snprintf(t.model, sizeof t.model, "%s/models/tiny_random_nbase8_seed7.pth", tu_shared());
        t.diameter = 45, t.bsize = 96, t.tile_overlap = 0.3;
        return t;
    }
    json_object *j = tu_case_json(name), *k = tu_json_get(j, "call.eval_kwargs"), *o;
    if ((o = tu_json_get(j, "input.path"))) shared_path(t.image, o);
    else snprintf(t.image, sizeof t.image, "%s/reference/%s/input.tif", tu_shared(), name);
    shared_path(t.model, tu_json_get(j, "model.path"));
    if (tu_json_get(j, "files.dP.tif")) {
        snprintf(t.dp, sizeof t.dp, "%s/reference/%s/dP.tif", tu_shared(), name);
        snprintf(t.cellprob, sizeof t.cellprob, "%s/reference/%s/cellprob.tif", tu_shared(), name);
    }
    o = tu_json_get(k, "channels");
    t.chan = is_set(o) ? json_object_get_int(json_object_array_get_idx(o, 0)) : -1;
    t.chan2 = is_set(o) ? json_object_get_int(json_object_array_get_idx(o, 1)) : 0;
    t.diameter = is_set(o = tu_json_get(k, "diameter")) ? json_object_get_double(o) : 0.0;
    if (is_set(o = tu_json_get(k, "bsize"))) t.bsize = json_object_get_int(o);
    if (is_set(o = tu_json_get(k, "tile_overlap"))) t.tile_overlap = json_object_get_double(o);
    if (is_set(o = tu_json_get(k, "batch_size"))) t.batch = json_object_get_int(o);
    if (is_set(o = tu_json_get(k, "z_axis"))) t.z_axis = json_object_get_int(o);
    if (is_set(o = tu_json_get(k, "channel_axis"))) t.channel_axis = json_object_get_int(o);
    t.resample = !(is_set(o = tu_json_get(k, "resample")) && !json_object_get_boolean(o));
    t.augment = is_set(o = tu_json_get(k, "augment")) && json_object_get_boolean(o);
    t.invert = is_set(o = tu_json_get(k, "invert")) && json_object_get_boolean(o);
    t.no_norm = is_set(o = tu_json_get(k, "normalize")) &&
                json_object_is_type(o, json_type_boolean) && !json_object_get_boolean(o);
    json_object_put(j);
    tu_need(t.image), tu_need(t.model); /* every rank alike: skipped together */
    if (t.dp[0]) tu_need(t.dp), tu_need(t.cellprob);
    return t;
}

/* Everything a rank needs: the open image, the model and the dnet description. */
typedef struct setup {
    tcase t;
    cp_image im;
    cp_model *model;
    cp_dnet net;
    int64_t Dy, Dx;
} setup;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "FAIL %s: %s\n", what, err);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Rank 0 reads the whole plane and computes the normalization constants (broadcast to all);
 * with want_ref it also runs cp_run_net on the whole plane into *ref. */
static void setup_case(setup *s, const char *name, int rank, int want_ref, cp_net_out *ref)
{
    char err[CP_ERR_LEN];
    memset(s, 0, sizeof *s);
    s->t = load_case(name);
    tcase *t = &s->t;
    if (cp_image_open(&s->im, t->image, t->z_axis, t->channel_axis, 0, t->chan, t->chan2, err))
        die("open image", err);
    if (cp_model_load(t->model, &s->model, err)) die("load model", err);
    const cp_model_info *mi = cp_model_get_info(s->model);
    cp_dnet *n = &s->net;
    *n = (cp_dnet){.model = s->model, .im = &s->im, .z = 0, .no_norm = t->no_norm,
                   .rescale = cp_rescale(t->diameter, mi->diam_mean, mi->diam_labels),
                   .resample = t->resample, .bsize = t->bsize, .tile_overlap = t->tile_overlap,
                   .augment = t->augment, .batch_size = t->batch};
    int64_t ny = s->im.layout.ny, nx = s->im.layout.nx;
    if (rank == 0) {
        float *x2 = malloc(sizeof(float) * (size_t)(2 * ny * nx));
        if (cp_image_read(&s->im, 0, 0, 0, ny, nx, x2, err)) die("read image", err);
        for (int c = 0; c < 2; c++) {
            if (cp_norm_compute(x2, ny, nx, c, 1.0, 99.0, &n->norm[c], err)) die("norm", err);
            n->inv[c] = t->invert && !t->no_norm && n->norm[c].good;
        }
        if (want_ref) {
            double t0 = tu_now();
            if (!t->no_norm) cp_norm_apply(x2, ny * nx, n->norm, 0);
            cp_norm_invert(x2, ny * nx, n->inv);
            if (cp_run_net(s->model, x2, ny, nx, n->rescale, n->resample, n->bsize,
                           n->tile_overlap, n->augment, n->batch_size, ref, err))
                die("cp_run_net", err);
            printf("%s: image %lldx%lld, rescale %.6g, dynamics plane %lldx%lld; whole-plane "
                   "cp_run_net %.2f s\n", name, (long long)ny, (long long)nx, n->rescale,
                   (long long)ref->ny, (long long)ref->nx, tu_now() - t0);
        }
        free(x2);
    }
    MPI_Bcast(n->norm, (int)sizeof n->norm, MPI_BYTE, 0, MPI_COMM_WORLD);
    MPI_Bcast(n->inv, 2, MPI_INT, 0, MPI_COMM_WORLD);
    if (cp_dnet_size(n, &s->Dy, &s->Dx, err)) die("cp_dnet_size", err);
}

static void setup_free(setup *s)
{
    cp_image_close(&s->im);
    cp_model_free(s->model);
}

/* The reference (3 planes: dY, dX, cellprob of the whole plane) at (c, y, x). */
static float ref_at(const cp_net_out *r, int c, int64_t y, int64_t x)
{
    return c < 2 ? r->dP[(c * r->ny + y) * r->nx + x] : r->cellprob[y * r->nx + x];
}

/* Differences of v (3, w.ny, w.nx) against the reference over w: bitwise count and worst. */
static void compare(const cp_net_out *r, cp_rect w, const float *v, int64_t *ndiff, double *worst)
{
    for (int c = 0; c < 3; c++)
        for (int64_t y = 0; y < w.ny; y++)
            for (int64_t x = 0; x < w.nx; x++) {
                float a = v[(c * w.ny + y) * w.nx + x], b = ref_at(r, c, w.y0 + y, w.x0 + x);
                if (memcmp(&a, &b, sizeof a)) {
                    (*ndiff)++;
                    double d = (double)a > (double)b ? (double)a - (double)b : (double)b - (double)a;
                    *worst = d > *worst ? d : *worst;
                }
            }
}

/* The reference against the oracle's flows (a check that the case parameters were read right). */
static void check_oracle(const tcase *t, const cp_net_out *r)
{
    if (!t->dp[0]) return;
    tu_tiff dp = tu_read_tiff(t->dp), cp = tu_read_tiff(t->cellprob);
    int64_t n = r->ny * r->nx;
    TU_CHECK(dp.n == 2 * n && cp.n == n, "oracle flows have %lld values, ours %lld",
             (long long)dp.n, (long long)(2 * n));
    if (dp.n == 2 * n && cp.n == n) {
        double e = tu_maxabs(r->dP, dp.f32, 2 * n, NULL), ec = tu_maxabs(r->cellprob, cp.f32, n, NULL);
        printf("whole plane vs oracle: max |dP| error %.3g, max |cellprob| error %.3g\n", e, ec);
        TU_CHECK(e <= 1e-3 && ec <= 1e-3, "whole plane differs from the oracle: %.3g / %.3g", e, ec);
    }
    tu_tiff_free(&dp);
    tu_tiff_free(&cp);
}

/* Uneven cuts of [0, L): a 1-pixel first and last piece, odd sizes, 64 and 100 in between. */
static int64_t cuts(int64_t L, int64_t *at)
{
    static const int64_t sizes[] = {1, 64, 100, 37, 63, 128, 5, 99};
    int64_t n = 0, pos = 0;
    while (pos < L - 1) {
        int64_t sz = sizes[n % 8];
        if (pos + sz > L - 1) sz = L - 1 - pos;
        at[n++] = pos;
        pos += sz;
    }
    at[n++] = L - 1;
    at[n] = L;
    return n;
}

/* cp_dnet_windows' sink in the test: compare window i with the reference. */
typedef struct cmp_sink {
    const cp_net_out *ref;
    const cp_rect *wins;
    int64_t ndiff;
    double worst;
} cmp_sink;

static int compare_window(void *arg, int64_t i, const float *out3, char *err)
{
    (void)err;
    cmp_sink *k = arg;
    compare(k->ref, k->wins[i], out3, &k->ndiff, &k->worst);
    return 0;
}

static void window_mode(const char *name)
{
    setup s;
    cp_net_out ref;
    setup_case(&s, name, 0, 1, &ref);
    check_oracle(&s.t, &ref);
    TU_CHECK(ref.ny == s.Dy && ref.nx == s.Dx, "cp_dnet_size %lldx%lld, cp_run_net %lldx%lld",
             (long long)s.Dy, (long long)s.Dx, (long long)ref.ny, (long long)ref.nx);
    char err[CP_ERR_LEN];

    /* single windows, each on its own: a corner pixel, the last row, odd sizes, 100 x 100 */
    int64_t Dy = s.Dy, Dx = s.Dx, ndiff = 0;
    double worst = 0, t0 = tu_now();
    const cp_rect one[] = {{0, 0, 1, 1}, {Dy - 1, 0, 1, Dx}, {Dy / 3, Dx / 5, 37, 63},
                           {Dy / 2 - 50, Dx / 2 - 50, 100, 100}};
    for (int i = 0; i < 4; i++) {
        float *v = malloc(sizeof(float) * (size_t)(3 * one[i].ny * one[i].nx));
        int rc = cp_dnet_window(&s.net, one[i], v, err);
        TU_CHECK(rc == 0, "window %d: %s", i, err);
        if (!rc) compare(&ref, one[i], v, &ndiff, &worst);
        free(v);
    }
    printf("4 single windows (cp_dnet_window): %lld values differ from the whole plane, max abs "
           "diff %.3g (%.2f s)\n", (long long)ndiff, worst, tu_now() - t0);
    TU_CHECK(ndiff == 0, "single windows: %lld values differ (max %.3g)", (long long)ndiff, worst);

    /* an uneven tiling of the whole plane, row by row (cp_dnet_windows) */
    int64_t *ry = malloc(sizeof(int64_t) * (size_t)(Dy + 2));
    int64_t *rx = malloc(sizeof(int64_t) * (size_t)(Dx + 2));
    int64_t nry = cuts(Dy, ry), nrx = cuts(Dx, rx), nwin = 0;
    cp_rect *wins = malloc(sizeof(cp_rect) * (size_t)(nry * nrx));
    for (int64_t i = 0; i < nry; i++)
        for (int64_t j = 0; j < nrx; j++)
            wins[nwin++] = (cp_rect){ry[i], rx[j], ry[i + 1] - ry[i], rx[j + 1] - rx[j]};
    cmp_sink k = {&ref, wins, 0, 0};
    cp_dnet_stats st;
    t0 = tu_now();
    int rc = cp_dnet_windows(&s.net, wins, nwin, compare_window, &k, &st, err);
    TU_CHECK(rc == 0, "cp_dnet_windows: %s", err);
    printf("%lld windows (%lld x %lld cuts) covering the plane: %lld values differ from the "
           "whole plane, max abs diff %.3g; %lld tile evaluations for the plane's %lld tiles "
           "(%.2f s)\n", (long long)nwin, (long long)nry, (long long)nrx, (long long)k.ndiff,
           k.worst, (long long)st.tiles_run, (long long)st.tiles_plane, tu_now() - t0);
    TU_CHECK(k.ndiff == 0, "tiling: %lld values differ (max %.3g)", (long long)k.ndiff, k.worst);
    TU_CHECK(st.tiles_run == st.tiles_plane, "tiling: %lld tile evaluations for %lld tiles",
             (long long)st.tiles_run, (long long)st.tiles_plane);

    float v[3];
    cp_rect bad = {Dy - 1, 0, 2, 1};
    rc = cp_dnet_window(&s.net, bad, v, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "is not inside the"), "window past the edge: %d %s",
             rc, err);
    free(wins);
    free(ry);
    free(rx);
    cp_net_out_free(&ref);
    setup_free(&s);
}

/* Every "dp" block (grown by 1 px) sent by its owner to rank 0 and compared there. */
static void gather_compare(const cp_dplane *d, const cp_net_out *ref, const char *what)
{
    char name[64], err[CP_ERR_LEN];
    cp_dname(d, CP_SLOT_DP, name);
    int64_t ndiff = 0;
    double worst = 0;
    for (int64_t b = 0; b < d->grid.nblocks; b++) {
        cp_rect r = cp_rect_grow(&d->grid, cp_grid_block(&d->grid, b), 1);
        int owner = cp_grid_owner(&d->grid, b), n = (int)(3 * r.ny * r.nx);
        if (d->rank != owner && d->rank != 0) continue;
        float *v = malloc(sizeof(float) * (size_t)n);
        if (d->rank == owner) {
            int rc = cp_bstore_get(d->store, name, b, v, sizeof(float) * (size_t)n, err);
            TU_CHECK(rc == 0, "block %lld: %s", (long long)b, err);
            if (owner != 0) MPI_Send(v, n, MPI_FLOAT, 0, 0, d->comm);
        } else {
            MPI_Recv(v, n, MPI_FLOAT, owner, 0, d->comm, MPI_STATUS_IGNORE);
        }
        if (d->rank == 0) compare(ref, r, v, &ndiff, &worst);
        free(v);
    }
    if (d->rank == 0) {
        printf("%s: %lld blocks of %lld px (+1 px halo) gathered: %lld values differ from "
               "cp_run_net, max abs diff %.3g\n", what, (long long)d->grid.nblocks,
               (long long)d->grid.B, (long long)ndiff, worst);
        TU_CHECK(ndiff == 0, "%s: %lld values differ (max %.3g)", what, (long long)ndiff, worst);
    }
}

static void run_mode(const char *name, int64_t B)
{
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    setup s;
    cp_net_out ref;
    memset(&ref, 0, sizeof ref);
    setup_case(&s, name, rank, 1, &ref);
    char dir[4096] = "", err[CP_ERR_LEN];
    if (rank == 0) snprintf(dir, sizeof dir, "%s/work", tu_tmpdir());
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    cp_bstore store;
    if (cp_bstore_open(&store, dir, err)) die("bstore", err);
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, s.Dy, s.Dx, B, &store, 0);

    cp_dnet_stats st;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = tu_now();
    int rc = cp_dnet_run_stats(&d, &s.net, &st, err);
    double dt = tu_now() - t0;
    TU_CHECK(rc == 0, "cp_dnet_run: %s", err);
    TU_CHECK(st.reused == 0, "first run reused %lld blocks", (long long)st.reused);
    if (rank == 0)
        printf("NP %d, %lld blocks: %lld tile evaluations over all ranks for the plane's %lld "
               "tiles (%.2fx), %.2f s\n", nranks, (long long)d.grid.nblocks,
               (long long)st.tiles_run, (long long)st.tiles_plane,
               (double)st.tiles_run / (double)st.tiles_plane, dt);
    TU_CHECK(st.tiles_run == st.tiles_plane, "%lld tile evaluations for %lld tiles",
             (long long)st.tiles_run, (long long)st.tiles_plane);
    gather_compare(&d, &ref, "run");

    /* resume: delete one block's file, the others are reused */
    char dname[64];
    int64_t gone = d.grid.nblocks / 2;
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) cp_bstore_remove(&store, cp_dname(&d, CP_SLOT_DP, dname), gone);
    MPI_Barrier(MPI_COMM_WORLD);
    s.net.resume = 1;
    rc = cp_dnet_run_stats(&d, &s.net, &st, err);
    TU_CHECK(rc == 0, "resumed cp_dnet_run: %s", err);
    TU_CHECK(st.reused == d.grid.nblocks - 1, "resume reused %lld of %lld blocks",
             (long long)st.reused, (long long)d.grid.nblocks);
    if (rank == 0)
        printf("resume after deleting block %lld: %lld blocks reused, %lld tile evaluations\n",
               (long long)gone, (long long)st.reused, (long long)st.tiles_run);
    gather_compare(&d, &ref, "resume");

    /* a grid that is not the dynamics plane: every rank fails with the same message */
    cp_dplane bad;
    cp_dplane_init(&bad, MPI_COMM_WORLD, s.Dy + 1, s.Dx, B, &store, 1);
    rc = cp_dnet_run_stats(&bad, &s.net, &st, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "the block grid covers") && strstr(err, "rank 0: "),
             "wrong grid: %d %s", rc, err);

    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        cp_bstore_destroy(&store);
        tu_run("rm -rf %s", tu_tmpdir());
    }
    cp_net_out_free(&ref);
    setup_free(&s);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc < 3 || (strcmp(argv[1], "window") && (strcmp(argv[1], "run") || argc < 4))) {
        fprintf(stderr, "usage: test_dnet window CASE | run CASE B\n");
        MPI_Finalize();
        return 2;
    }
    if (!strcmp(argv[1], "window")) window_mode(argv[2]);
    else run_mode(argv[2], atoll(argv[3]));
    int st = tu_finish();
    MPI_Finalize();
    return st;
}
