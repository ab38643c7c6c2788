/* Tests of src/tiles.c: the tile grid of each reference case against case.json `tiling`, tile 0
 * built from x_norm (resize, pad, extract) against tile0_in.tif, the taper values, window
 * blending == whole-canvas blending, the single-tile 1-ulp behaviour, augment flips.
 * Usage: test_tiles case <case> | test_tiles unit */
#include "tiles.h"

#include "cp_err.h"
#include "resize.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t jint(json_object *j, const char *key, size_t idx)
{
    json_object *v = tu_json_get(j, key);
    if (v && json_object_is_type(v, json_type_array)) v = json_object_array_get_idx(v, idx);
    return v ? json_object_get_int64(v) : -1;
}

static int test_case(const char *name)
{
    json_object *j = tu_case_json(name);
    json_object *t = tu_json_get(j, "tiling");
    json_object *kw = tu_json_get(j, "call.eval_kwargs");
    int64_t Lyr = jint(t, "network_scale_shape_YX", 0), Lxr = jint(t, "network_scale_shape_YX", 1);
    int64_t py0, py1, px0, px1;
    cp_pad_amounts(Lyr, &py0, &py1);
    cp_pad_amounts(Lxr, &px0, &px1);
    TU_CHECK(py0 == jint(t, "pad_y", 0) && py1 == jint(t, "pad_y", 1) &&
                 px0 == jint(t, "pad_x", 0) && px1 == jint(t, "pad_x", 1),
             "%s: pads %lld %lld %lld %lld", name, (long long)py0, (long long)py1,
             (long long)px0, (long long)px1);
    int64_t Ly = Lyr + py0 + py1, Lx = Lxr + px0 + px1;
    TU_CHECK(Ly == jint(t, "padded_shape_YX", 0) && Lx == jint(t, "padded_shape_YX", 1),
             "%s: padded %lldx%lld", name, (long long)Ly, (long long)Lx);
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    int augment = json_object_get_boolean(tu_json_get(kw, "augment"));
    int rc = cp_tiles_plan(Ly, Lx, jint(kw, "bsize", 0),
                           json_object_get_double(tu_json_get(kw, "tile_overlap")), augment, &g,
                           err);
    TU_CHECK(rc == 0, "%s: plan: %s", name, err);
    if (rc) return tu_finish();
    int ok = g.Ey == jint(t, "tiled_canvas_YX", 0) && g.Ex == jint(t, "tiled_canvas_YX", 1) &&
             g.ty == jint(t, "tile_size_YX", 0) && g.tx == jint(t, "tile_size_YX", 1) &&
             g.ny == jint(t, "ny", 0) && g.nx == jint(t, "nx", 0);
    for (int64_t k = 0; ok && k < g.ny; k++) ok = g.ystart[k] == jint(t, "tile_ystart", (size_t)k);
    for (int64_t k = 0; ok && k < g.nx; k++) ok = g.xstart[k] == jint(t, "tile_xstart", (size_t)k);
    printf("%s: padded %lldx%lld canvas %lldx%lld tiles %lldx%lld of %lldx%lld, starts y0 %lld "
           "x0 %lld ... y %lld x %lld\n", name, (long long)Ly, (long long)Lx, (long long)g.Ey,
           (long long)g.Ex, (long long)g.ny, (long long)g.nx, (long long)g.ty, (long long)g.tx,
           (long long)g.ystart[0], (long long)g.xstart[0], (long long)g.ystart[g.ny - 1],
           (long long)g.xstart[g.nx - 1]);
    TU_CHECK(ok, "%s: tile grid differs from case.json tiling", name);

    /* tile 0 from x_norm: resize (rescale != 1), pad, extract */
    FILE *f = fopen(tu_path("%s/reference/%s/tile0_in.tif", tu_shared(), name), "rb");
    if (f) {
        fclose(f);
        tu_tiff x = tu_read_tiff(tu_path("%s/reference/%s/x_norm.tif", tu_shared(), name));
        tu_tiff ref = tu_read_tiff(tu_path("%s/reference/%s/tile0_in.tif", tu_shared(), name));
        int64_t n0 = x.ny * x.nx, nr = Lyr * Lxr;
        float *il = malloc((size_t)(n0 * 2) * sizeof *il), *rs = malloc((size_t)(nr * 2) * 4);
        for (int c = 0; c < 2; c++)
            for (int64_t i = 0; i < n0; i++) il[i * 2 + c] = x.f32[c * n0 + i];
        cp_resize_bilinear(il, x.ny, x.nx, 2, rs, Lyr, Lxr);
        float *pad = calloc((size_t)(2 * Ly * Lx), sizeof *pad);
        for (int c = 0; c < 2; c++)
            for (int64_t y = 0; y < Lyr; y++)
                for (int64_t xx = 0; xx < Lxr; xx++)
                    pad[(c * Ly + y + py0) * Lx + xx + px0] = rs[(y * Lxr + xx) * 2 + c];
        float *tile = malloc((size_t)(2 * g.ty * g.tx) * sizeof *tile);
        cp_tiles_extract(&g, 0, pad, 0, 0, Ly, Lx, 2, tile);
        TU_CHECK(ref.pages == 2 && ref.ny == g.ty && ref.nx == g.tx, "%s: tile0 shape", name);
        int64_t nd = 0;
        for (int64_t i = 0; i < 2 * g.ty * g.tx; i++)
            nd += memcmp(&tile[i], &ref.f32[i], 4) != 0;
        double e = tu_maxabs(tile, ref.f32, 2 * g.ty * g.tx, NULL);
        printf("%s: tile0_in (x_norm %lldx%lld -> %lldx%lld, padded): max abs error %.3g, %lld "
               "values not bit-identical\n", name, (long long)x.ny, (long long)x.nx,
               (long long)Lyr, (long long)Lxr, e, (long long)nd);
        TU_CHECK(nd == 0, "%s: tile0_in differs", name);
        free(il);
        free(rs);
        free(pad);
        free(tile);
        tu_tiff_free(&x);
        tu_tiff_free(&ref);
    }
    cp_tiles_free(&g);
    json_object_put(j);
    return tu_finish();
}

/* ---- unit ---------------------------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void test_taper(void)
{
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    cp_tiles_plan(528, 528, 224, 0.1, 0, &g, err);
    double corner = g.taper[0], edge = g.taper[112], centre = g.taper[112 * 224 + 112];
    printf("taper 224: corner %.6g edge centre %.6g centre %.8g\n", corner, edge, centre);
    TU_CHECK(fabs(corner - 0.00478) < 5e-6 && fabs(edge - 0.0691) < 5e-5 &&
                 fabs(centre - 0.99999) < 5e-6, "taper values");
    /* symmetry: m[k] == m[B-1-k] */
    TU_CHECK(g.taper[5 * 224 + 7] == g.taper[(223 - 5) * 224 + 223 - 7], "taper symmetry");
    cp_tiles_free(&g);
    /* a small tile is the centre crop of the 224 taper */
    cp_tile_grid s, b;
    cp_tiles_plan(128, 144, 224, 0.1, 0, &s, err);
    cp_tiles_plan(528, 528, 224, 0.1, 0, &b, err);
    TU_CHECK(s.ny == 1 && s.nx == 1 && s.ty == 128 && s.tx == 144, "single tile grid");
    TU_CHECK(s.taper[0] == b.taper[(112 - 64) * 224 + 112 - 72], "128x144 taper crop");
    cp_tiles_free(&s);
    cp_tiles_free(&b);
}

/* Blending the whole canvas at once == blending each window of a 3x3 split separately, from whole
 * tiles or (every other window) from the tiles' parts over the window (cp_tiles_crop). */
static void blend_windows(int64_t Ly, int64_t Lx, int64_t bsize, double ov, int augment)
{
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    cp_tiles_plan(Ly, Lx, bsize, ov, augment, &g, err);
    int nout = 3;
    int64_t nt = g.ny * g.nx, tsz = g.ty * g.tx, E = g.Ey * g.Ex;
    float *outs = malloc((size_t)(nt * nout * tsz) * sizeof *outs);
    for (int64_t i = 0; i < nt * nout * tsz; i++) outs[i] = frand();
    float *acc = calloc((size_t)(nout * E), sizeof *acc);
    double *w = calloc((size_t)E, sizeof *w);
    for (int64_t k = 0; k < nt; k++)
        cp_tiles_accumulate(&g, k, outs + k * nout * tsz, nout, acc, w, 0, 0, g.Ey, g.Ex);
    cp_tiles_finish(acc, w, nout, E);
    int64_t yc[4] = {0, g.Ey / 3 + 1, 2 * g.Ey / 3 + 5, g.Ey}, xc[4] = {0, g.Ex / 4, g.Ex / 2 + 3, g.Ex};
    int64_t nd = 0, nw = 0, nl = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int64_t wy0 = yc[a], wny = yc[a + 1] - wy0, wx0 = xc[b], wnx = xc[b + 1] - wx0;
            float *wa = calloc((size_t)(nout * wny * wnx), sizeof *wa);
            double *ww = calloc((size_t)(wny * wnx), sizeof *ww);
            int64_t list[64];
            int64_t n = cp_tiles_touching(&g, wy0, wx0, wny, wnx, list), m = 0, y0, y1, x0, x1;
            for (int64_t k = 0; k < nt; k++) /* the tiles meeting the window, one by one */
                if (cp_tiles_clip(&g, k, wy0, wx0, wny, wnx, &y0, &y1, &x0, &x1))
                    nl += m >= n || list[m++] != k;
            nl += m != n;
            float *part = malloc((size_t)(nout * tsz) * sizeof *part);
            for (int64_t i = 0; i < n; i++) {
                const float *o = outs + list[i] * nout * tsz;
                if ((a + b) % 2 == 0) {
                    cp_tiles_accumulate(&g, list[i], o, nout, wa, ww, wy0, wx0, wny, wnx);
                    continue;
                }
                cp_tiles_crop(&g, list[i], o, nout, wy0, wx0, wny, wnx, part);
                cp_tiles_accumulate_part(&g, list[i], part, nout, wa, ww, wy0, wx0, wny, wnx);
            }
            free(part);
            cp_tiles_finish(wa, ww, nout, wny * wnx);
            for (int c = 0; c < nout; c++)
                for (int64_t y = 0; y < wny; y++)
                    for (int64_t x = 0; x < wnx; x++)
                        nd += memcmp(&wa[(c * wny + y) * wnx + x],
                                     &acc[c * E + (wy0 + y) * g.Ex + wx0 + x], 4) != 0;
            for (int64_t y = 0; y < wny; y++)
                for (int64_t x = 0; x < wnx; x++)
                    nw += ww[y * wnx + x] != w[(wy0 + y) * g.Ex + wx0 + x];
            free(wa);
            free(ww);
        }
    printf("blend %lldx%lld (bsize %lld, augment %d, %lldx%lld tiles): window vs whole: %lld "
           "values, %lld weights differ; %lld tile lists differ from one by one\n", (long long)Ly,
           (long long)Lx, (long long)bsize, augment, (long long)g.ny, (long long)g.nx,
           (long long)nd, (long long)nw, (long long)nl);
    TU_CHECK(nd == 0 && nw == 0 && nl == 0, "window blending or tile lists differ");
    free(outs);
    free(acc);
    free(w);
    cp_tiles_free(&g);
}

/* One tile: (float)((double)(float)(Y*taper) / taper) differs from Y by at most 1 ulp, for
 * about 1 % of the values (§3.4). */
static void test_single_tile(void)
{
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    cp_tiles_plan(128, 144, 224, 0.1, 0, &g, err);
    int64_t n = 3 * 128 * 144;
    float *y = malloc((size_t)n * sizeof *y), *acc = calloc((size_t)n, sizeof *acc);
    double *w = calloc(128 * 144, sizeof *w);
    for (int64_t i = 0; i < n; i++) y[i] = frand();
    cp_tiles_accumulate(&g, 0, y, 3, acc, w, 0, 0, 128, 144);
    cp_tiles_finish(acc, w, 3, 128 * 144);
    int64_t nd = 0, big = 0;
    for (int64_t i = 0; i < n; i++)
        if (acc[i] != y[i]) {
            nd++;
            big += acc[i] != nextafterf(y[i], INFINITY) && acc[i] != nextafterf(y[i], -INFINITY);
        }
    printf("single tile 128x144x3: %lld of %lld values differ from Y by 1 ulp, %lld by more\n",
           (long long)nd, (long long)n, (long long)big);
    TU_CHECK(nd > 0 && nd < n / 20 && big == 0, "single-tile rounding");
    free(y);
    free(acc);
    free(w);
    cp_tiles_free(&g);
}

/* Augment: extract + unflip round-trips, flips follow §3.5, zeros beyond the image. */
static void test_augment(void)
{
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    cp_tiles_plan(176, 224, 224, 0.1, 1, &g, err);
    TU_CHECK(g.ny == 2 && g.nx == 2 && g.Ey == 224 && g.Ex == 224 && g.ystart[1] == 0,
             "augment grid of a 176x224 image");
    int64_t Ly = 176, Lx = 224, ts = 224 * 224;
    float *img = malloc((size_t)(2 * Ly * Lx) * sizeof *img), *tile = malloc(2 * ts * 4);
    for (int64_t i = 0; i < 2 * Ly * Lx; i++) img[i] = frand();
    int ok = 1;
    for (int64_t k = 0; k < 4; k++) {
        cp_tiles_extract(&g, k, img, 0, 0, Ly, Lx, 2, tile);
        int fy = (k % 2) == 1, fx = (k / 2) == 1; /* k = j*2 + i */
        for (int64_t a = 0; a < 224; a++)
            for (int64_t b = 0; b < 224; b++) {
                int64_t y = fy ? 223 - a : a, x = fx ? 223 - b : b;
                float e = y < Ly ? img[y * Lx + x] : 0.0f;
                ok &= tile[a * 224 + b] == e;
            }
        /* a fake network output: (channel 0 = dY, 1 = dX, 2 = prob) from the flipped input */
        float *out = malloc((size_t)(3 * ts) * sizeof *out);
        memcpy(out, tile, (size_t)ts * 4);
        memcpy(out + ts, tile, (size_t)ts * 4);
        memcpy(out + 2 * ts, tile, (size_t)ts * 4);
        cp_tiles_unflip(&g, k, out, 3);
        for (int64_t a = 0; a < 224; a++)
            for (int64_t b = 0; b < 224; b++) {
                float e = a < Ly ? img[a * Lx + b] : 0.0f;
                ok &= out[a * 224 + b] == (fy ? -e : e);
                ok &= out[ts + a * 224 + b] == (fx ? -e : e);
                ok &= out[2 * ts + a * 224 + b] == e;
            }
        free(out);
    }
    TU_CHECK(ok, "augment extract/unflip");
    free(img);
    free(tile);
    cp_tiles_free(&g);
}

static void test_grid_rules(void)
{
    int64_t a, b;
    cp_pad_amounts(100, &a, &b);
    TU_CHECK(a == 14 && b == 14, "pad 100");
    cp_pad_amounts(128, &a, &b);
    TU_CHECK(a == 8 && b == 8, "pad 128");
    cp_pad_amounts(300, &a, &b);
    TU_CHECK(a == 10 && b == 10, "pad 300");
    cp_pad_amounts(150, &a, &b);
    TU_CHECK(a == 13 && b == 13, "pad 150");
    cp_tile_grid g;
    char err[CP_ERR_LEN];
    TU_CHECK(cp_tiles_plan(100, 100, 100, 0.1, 0, &g, err) == CP_EPARAM && strstr(err, "bsize 100"),
             "bsize 100 refused: %s", err);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "case") == 0) return test_case(argv[2]);
    if (argc == 2 && strcmp(argv[1], "unit") == 0) {
        test_taper();
        test_grid_rules();
        blend_windows(528, 528, 224, 0.1, 0);
        blend_windows(592, 656, 512, 0.15, 0);
        blend_windows(176, 224, 224, 0.1, 1);
        blend_windows(464, 304, 224, 0.1, 1);
        blend_windows(1040, 800, 224, 0.5, 0);
        test_single_tile();
        test_augment();
        return tu_finish();
    }
    fprintf(stderr, "usage: test_tiles case <case> | unit\n");
    return 2;
}
