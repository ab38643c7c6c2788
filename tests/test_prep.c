/* Tests of src/prep.c: x_norm parity against the oracle (one run per reference case, bit-exact,
 * percentiles equal to case.json; 3-D cases: over the whole volume, §8.3), the axis decisions
 * of §2.1, percentile selection against a full sort, and the channel mean.
 * Usage: test_prep xnorm <case> | test_prep unit */
#include "prep.h"

#include "cp_err.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The oracle input path of a case: case.json input.path with "shared/" -> tu_shared(). */
static const char *input_path(json_object *j, const char *name)
{
    json_object *p = tu_json_get(j, "input.path");
    if (!p) return tu_path("%s/reference/%s/input.tif", tu_shared(), name);
    const char *s = json_object_get_string(p);
    if (strncmp(s, "shared/", 7) == 0) return tu_path("%s/%s", tu_shared(), s + 7);
    return s;
}

static int json_int(json_object *j, const char *key, int dflt)
{
    json_object *v = tu_json_get(j, key);
    return (v && !json_object_is_type(v, json_type_null)) ? json_object_get_int(v) : dflt;
}

static int test_xnorm(const char *name)
{
    json_object *j = tu_case_json(name);
    json_object *kw = tu_json_get(j, "call.eval_kwargs");
    json_object *chans = tu_json_get(kw, "channels");
    int chan = -1, chan2 = 0;
    if (chans && json_object_is_type(chans, json_type_array)) {
        chan = json_object_get_int(json_object_array_get_idx(chans, 0));
        chan2 = json_object_get_int(json_object_array_get_idx(chans, 1));
    }
    int z_axis = json_int(kw, "z_axis", -1), channel_axis = json_int(kw, "channel_axis", -1);
    double st = json_object_get_double(tu_json_get(kw, "stitch_threshold"));
    /* do_3D (§8.2-8.3): convert_image's 3-D flag as with stitching, norm over the volume */
    int do3d = json_object_get_boolean(tu_json_get(kw, "do_3D"));
    int stitch = st > 0 || do3d, invert = json_object_get_boolean(tu_json_get(kw, "invert"));
    int normalize = json_object_get_boolean(tu_json_get(kw, "normalize"));

    json_object *shp = tu_json_get(j, "input.shape");
    int ndim = (int)json_object_array_length(shp);
    int64_t shape[6];
    for (int i = 0; i < ndim; i++)
        shape[i] = json_object_get_int64(json_object_array_get_idx(shp, (size_t)i));
    cp_layout l;
    char err[CP_ERR_LEN] = "";
    int rc = cp_layout_decide(shape, ndim, z_axis, channel_axis, stitch, chan, chan2, &l, err);
    TU_CHECK(rc == 0, "%s: layout: %s", name, err);
    if (rc) return tu_finish();
    printf("%s: layout nz %lld ny %lld nx %lld nc %d z_page %lld c_page %lld c_sample %d\n", name,
           (long long)l.nz, (long long)l.ny, (long long)l.nx, l.nc, (long long)l.z_page,
           (long long)l.c_page, l.c_sample);

    tu_tiff in = tu_read_tiff(input_path(j, name));
    TU_CHECK(in.ny == l.ny && in.nx == l.nx, "%s: layout %lldx%lld vs file %lldx%lld", name,
             (long long)l.ny, (long long)l.nx, (long long)in.ny, (long long)in.nx);
    int64_t npix = l.ny * l.nx, nz = l.nz;
    float *raw = malloc((size_t)(npix * l.nc) * sizeof *raw);
    float *x2 = malloc((size_t)(nz * npix * 2) * sizeof *x2);
    for (int64_t z = 0; z < nz; z++) {
        for (int c = 0; c < l.nc; c++) {
            int64_t page = z * l.z_page + c * l.c_page, s = c * l.c_sample;
            const float *src = in.f32 + page * npix * in.spp;
            for (int64_t i = 0; i < npix; i++) raw[i * l.nc + c] = src[i * in.spp + s];
        }
        cp_prep_channels(raw, npix, l.nc, chan, chan2, x2 + z * npix * 2);
    }

    /* percentiles: over the stack with stitching, else per plane */
    cp_norm *norms = calloc((size_t)(nz * 2), sizeof *norms);
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    if (normalize) {
        if (stitch) {
            for (int c = 0; c < 2; c++) {
                TU_CHECK(cp_norm_compute_stack(x2, nz, l.ny, l.nx, c, 1.0, 99.0, &norms[c],
                                               err) == 0, "%s: %s", name, err);
                for (int64_t z = 1; z < nz; z++) norms[2 * z + c] = norms[c];
            }
        } else {
            for (int64_t z = 0; z < nz; z++)
                for (int c = 0; c < 2; c++)
                    TU_CHECK(cp_norm_compute(x2 + z * npix * 2, l.ny, l.nx, c, 1.0, 99.0,
                                             &norms[2 * z + c], err) == 0, "%s: %s", name, err);
        }
        int inv[2] = {0, 0};
        for (int64_t z = 0; z < nz; z++) {
            cp_norm_apply(x2 + z * npix * 2, npix, norms + 2 * z, 0);
            for (int c = 0; c < 2; c++) inv[c] |= invert && norms[2 * z + c].good;
        }
        for (int64_t z = 0; z < nz; z++) cp_norm_invert(x2 + z * npix * 2, npix, inv);
    }
    printf("%s: percentiles + normalization %.3f s\n", name,
           (double)clock() / CLOCKS_PER_SEC - t0);

    /* percentiles against case.json normalize99 */
    json_object *vals = tu_json_get(j, "normalize99.values");
    for (size_t k = 0; vals && k < json_object_array_length(vals); k++) {
        json_object *v = json_object_array_get_idx(vals, k);
        int plane = json_int(v, "plane", 0), c = json_int(v, "channel", 0);
        const cp_norm *nm = &norms[2 * plane + c];
        json_object *x01 = tu_json_get(v, "x01");
        if (!x01) {
            TU_CHECK(!nm->good, "%s: plane %d channel %d: constant in Cellpose, good here", name,
                     plane, c);
            continue;
        }
        double e1 = json_object_get_double(x01), e99 = json_object_get_double(tu_json_get(v, "x99"));
        printf("%s: plane %d channel %d: p1 %.17g (ref %.17g) p99 %.17g (ref %.17g)\n", name,
               plane, c, nm->p1, e1, nm->p99, e99);
        TU_CHECK(nm->good && nm->p1 == e1 && nm->p99 == e99,
                 "%s: plane %d channel %d: percentiles %.17g %.17g vs %.17g %.17g", name, plane,
                 c, nm->p1, nm->p99, e1, e99);
    }

    /* x_norm (CYX, ZCYX for stacks, CZYX for volumes) */
    json_object *xf = NULL, *xp = NULL; /* "x_norm.tif" has a dot: no dotted lookup */
    if (json_object_object_get_ex(tu_json_get(j, "files"), "x_norm.tif", &xf))
        xp = tu_json_get(xf, "path");
    const char *xpath = xp ? tu_path("%s/%s", tu_shared(), json_object_get_string(xp) + 7)
                           : tu_path("%s/reference/%s/x_norm.tif", tu_shared(), name);
    tu_tiff ref = tu_read_tiff(xpath);
    TU_CHECK(ref.pages == nz * 2 && ref.ny == l.ny && ref.nx == l.nx, "%s: x_norm shape", name);
    if (ref.pages == nz * 2) {
        float *mine = malloc((size_t)(nz * npix * 2) * sizeof *mine);
        for (int64_t z = 0; z < nz; z++)
            for (int c = 0; c < 2; c++)
                for (int64_t i = 0; i < npix; i++)
                    mine[(do3d ? c * nz + z : z * 2 + c) * npix + i] =
                        x2[(z * npix + i) * 2 + c];
        int64_t where = 0;
        double e = tu_maxabs(mine, ref.f32, nz * npix * 2, &where);
        int64_t nbits = 0;
        for (int64_t i = 0; i < nz * npix * 2; i++)
            nbits += memcmp(&mine[i], &ref.f32[i], sizeof(float)) != 0;
        printf("%s: x_norm max abs error %.3g, %lld values not bit-identical\n", name, e,
               (long long)nbits);
        TU_CHECK(nbits == 0, "%s: x_norm differs (max %.3g at %lld)", name, e, (long long)where);
        free(mine);
    }
    tu_tiff_free(&ref);
    tu_tiff_free(&in);
    free(raw);
    free(x2);
    free(norms);
    json_object_put(j);
    return tu_finish();
}

/* ---- unit tests ---------------------------------------------------------------------------- */

static int layout(const int64_t *shape, int ndim, int z_axis, int channel_axis, int stitch,
                  int chan, int chan2, cp_layout *l, char *err)
{
    err[0] = 0;
    return cp_layout_decide(shape, ndim, z_axis, channel_axis, stitch, chan, chan2, l, err);
}

static void test_layouts(void)
{
    cp_layout l;
    char err[CP_ERR_LEN];
    /* ZYX, Z <= 5, no z_axis, no stitching: channels */
    int64_t zyx3[] = {3, 256, 256};
    TU_CHECK(layout(zyx3, 3, -1, -1, 0, 0, 0, &l, err) == 0 && l.nz == 1 && l.nc == 3 &&
                 l.c_page == 1 && l.c_sample == 0 && l.ny == 256,
             "ZYX3 no stitch: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* with stitching: a stack */
    TU_CHECK(layout(zyx3, 3, -1, -1, 1, 0, 0, &l, err) == 0 && l.nz == 3 && l.nc == 1 &&
                 l.z_page == 1, "ZYX3 stitch: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* explicit z_axis: a stack */
    TU_CHECK(layout(zyx3, 3, 0, -1, 0, 0, 0, &l, err) == 0 && l.nz == 3 && l.nc == 1,
             "ZYX3 z_axis 0: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* Z in 6..9 with channels given: a stack; with all_channels: channels */
    int64_t zyx7[] = {7, 100, 120};
    TU_CHECK(layout(zyx7, 3, -1, -1, 0, 0, 0, &l, err) == 0 && l.nz == 7 && l.nc == 1,
             "ZYX7: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    TU_CHECK(layout(zyx7, 3, -1, -1, 0, -1, 0, &l, err) == 0 && l.nz == 1 && l.nc == 7,
             "ZYX7 all_channels: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* Z >= 10: neither channels (min >= 10) nor... detected as Z by step 2 */
    int64_t zyx12[] = {12, 100, 120};
    TU_CHECK(layout(zyx12, 3, -1, -1, 0, 0, 0, &l, err) == 0 && l.nz == 12 && l.nc == 1,
             "ZYX12: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* YXC RGB */
    int64_t yxc[] = {300, 400, 3};
    TU_CHECK(layout(yxc, 3, -1, -1, 0, 2, 1, &l, err) == 0 && l.nz == 1 && l.nc == 3 &&
                 l.c_sample == 1 && l.c_page == 0 && l.ny == 300 && l.nx == 400,
             "YXC: nc %d c_sample %d (%s)", l.nc, l.c_sample, err);
    /* YXC with stitching: Cellpose would take Y as Z -> refused */
    TU_CHECK(layout(yxc, 3, -1, -1, 1, 2, 1, &l, err) == CP_EUNSUPPORTED &&
                 strstr(err, "(300, 400, 3)") && strstr(err, "rows"),
             "YXC stitch: %s", err);
    /* CYX 2 channels */
    int64_t cyx[] = {2, 512, 512};
    TU_CHECK(layout(cyx, 3, -1, -1, 0, 1, 2, &l, err) == 0 && l.nc == 2 && l.c_page == 1 &&
                 l.nz == 1, "CYX: nc %d (%s)", l.nc, err);
    /* 2-D */
    int64_t yx[] = {320, 320};
    TU_CHECK(layout(yx, 2, -1, -1, 0, 0, 0, &l, err) == 0 && l.nc == 1 && l.nz == 1,
             "YX: %s", err);
    /* 2-D + stitch -> error */
    TU_CHECK(layout(yx, 2, -1, -1, 1, 0, 0, &l, err) == CP_EPARAM &&
                 strstr(err, "2-D") && strstr(err, "stitch"), "YX stitch: %s", err);
    /* channel index >= C -> error */
    TU_CHECK(layout(cyx, 3, -1, -1, 0, 3, 0, &l, err) == CP_EPARAM &&
                 strstr(err, "--chan 3") && strstr(err, "only 2 channels"), "chan 3: %s", err);
    TU_CHECK(layout(yxc, 3, -1, -1, 0, 1, 4, &l, err) == CP_EPARAM && strstr(err, "only 3"),
             "chan2 4: %s", err);
    /* a 1-channel image ignores the indices (Cellpose: C == 1 -> [image, 0]) */
    TU_CHECK(layout(yx, 2, -1, -1, 0, 2, 3, &l, err) == 0, "YX chan 2: %s", err);
    /* < 8 rows -> error */
    int64_t thin[] = {7, 300};
    TU_CHECK(layout(thin, 2, -1, -1, 0, 0, 0, &l, err) == CP_EUNSUPPORTED &&
                 strstr(err, "7 rows") && strstr(err, "fewer than 8"), "7 rows: %s", err);
    /* axis out of range */
    TU_CHECK(layout(cyx, 3, 3, -1, 0, 0, 0, &l, err) == CP_EPARAM && strstr(err, "--z_axis 3"),
             "z_axis 3: %s", err);
    TU_CHECK(layout(cyx, 3, -1, 5, 0, 0, 0, &l, err) == CP_EPARAM &&
                 strstr(err, "--channel_axis 5"), "channel_axis 5: %s", err);
    /* channel_axis given on CYX */
    TU_CHECK(layout(cyx, 3, -1, 0, 0, 1, 2, &l, err) == 0 && l.nc == 2 && l.c_page == 1,
             "CYX channel_axis 0: %s", err);
    /* ZCYX hyperstack (4, 2, Y, X) with z_axis 0: Z stride 2 pages, C stride 1 */
    int64_t zcyx[] = {4, 2, 64, 80};
    TU_CHECK(layout(zcyx, 4, 0, 1, 0, 1, 2, &l, err) == 0 && l.nz == 4 && l.z_page == 2 &&
                 l.nc == 2 && l.c_page == 1, "ZCYX: nz %lld z_page %lld nc %d c_page %lld (%s)",
             (long long)l.nz, (long long)l.z_page, l.nc, (long long)l.c_page, err);
    /* squeezed singleton: (1, 3, Y, X) with stitching -> stack of 3 */
    int64_t sq[] = {1, 3, 64, 80};
    TU_CHECK(layout(sq, 4, -1, -1, 1, 0, 0, &l, err) == 0 && l.nz == 3 && l.z_page == 1 &&
                 l.nc == 1, "squeeze: nz %lld nc %d (%s)", (long long)l.nz, l.nc, err);
    /* (Z, Y, X, S) multi-page RGB */
    int64_t zyxs[] = {5, 64, 80, 3};
    TU_CHECK(layout(zyxs, 4, -1, -1, 0, 2, 0, &l, err) == 0 && l.nz == 5 && l.z_page == 1 &&
                 l.nc == 3 && l.c_sample == 1, "ZYXS: nz %lld nc %d (%s)", (long long)l.nz, l.nc,
             err);
}

static void test_channels(void)
{
    float raw[] = {1.0f, 2.0f, 4.0f, 0.1f, 0.2f, 0.7f};
    float x2[4];
    cp_prep_channels(raw, 2, 3, 0, 0, x2);
    float m0 = ((1.0f + 2.0f) + 4.0f) / 3.0f, m1 = ((0.1f + 0.2f) + 0.7f) / 3.0f;
    TU_CHECK(x2[0] == m0 && x2[1] == 0.0f && x2[2] == m1 && x2[3] == 0.0f, "mean of 3");
    cp_prep_channels(raw, 2, 3, 3, 1, x2);
    TU_CHECK(x2[0] == 4.0f && x2[1] == 1.0f && x2[2] == 0.7f && x2[3] == 0.1f, "chan 3, 1");
    cp_prep_channels(raw, 2, 3, 2, 0, x2);
    TU_CHECK(x2[0] == 2.0f && x2[1] == 0.0f, "chan 2, 0");
    cp_prep_channels(raw, 2, 1, 2, 1, x2);
    TU_CHECK(x2[0] == 1.0f && x2[1] == 0.0f, "one channel");
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Selection == full sort, on tie-heavy and continuous data, several sizes and q. */
static void test_percentiles(void)
{
    uint64_t s = 12345;
    int64_t sizes[] = {1, 2, 3, 17, 100, 1001, 65536, 200003};
    double qs[][2] = {{1, 99}, {0, 100}, {0.5, 99.5}, {1, 2}, {50, 50.0000001}, {25, 75}};
    int bad = 0, runs = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int kind = 0; kind < 3; kind++) {
            int64_t n = sizes[si];
            float *x2 = malloc((size_t)n * 2 * sizeof *x2);
            double *v = malloc((size_t)n * sizeof *v);
            for (int64_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t r = (uint32_t)(s >> 33);
                float f = kind == 0 ? (float)(r % 7) : kind == 1 ? (float)r / 7e6f
                                                                 : (float)(r % 60000) * 0.37f;
                x2[2 * i] = f;
                x2[2 * i + 1] = 0;
                v[i] = f;
            }
            qsort(v, (size_t)n, sizeof *v, cmpd);
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
                cp_norm nm;
                char err[CP_ERR_LEN];
                cp_norm_compute(x2, 1, n, 0, qs[qi][0], qs[qi][1], &nm, err);
                if (!nm.good) continue; /* constant sample */
                double e1 = cp_percentile_sorted(v, n, qs[qi][0]);
                double e9 = cp_percentile_sorted(v, n, qs[qi][1]);
                runs++;
                if (memcmp(&e1, &nm.p1, 8) || memcmp(&e9, &nm.p99, 8)) {
                    bad++;
                    fprintf(stderr, "n %lld kind %d q %g %g: %.17g %.17g vs %.17g %.17g\n",
                            (long long)n, kind, qs[qi][0], qs[qi][1], nm.p1, nm.p99, e1, e9);
                }
            }
            free(x2);
            free(v);
        }
    printf("percentile selection vs sort: %d of %d runs differ\n", bad, runs);
    TU_CHECK(bad == 0 && runs > 100, "selection differs from sort in %d runs", bad);
    /* numpy examples: percentile([1,2,3,4], 1) = 1.03; ([0, 10], 99) = 9.9 via hi - d*(1-t) */
    double a[] = {1, 2, 3, 4}, b[] = {0, 10};
    TU_CHECK(cp_percentile_sorted(a, 4, 1.0) == 1.0 + 1.0 * (3 * 0.01), "1.03");
    TU_CHECK(cp_percentile_sorted(b, 2, 99.0) == 10.0 - 10.0 * (1.0 - 0.99), "9.9");
    /* range tests: constant and NaN channels are not good, tiny range is zeroed */
    float c2[] = {7, 0, 7, 0, 7, 0}, n2[] = {1, 0, NAN, 0, 3, 0}, t2[] = {1, 0, 1.0001f, 0};
    cp_norm nm[2];
    char err[CP_ERR_LEN];
    cp_norm_compute(c2, 1, 3, 0, 1, 99, &nm[0], err);
    TU_CHECK(!nm[0].good, "constant channel good");
    cp_norm_compute(n2, 1, 3, 0, 1, 99, &nm[0], err);
    TU_CHECK(!nm[0].good, "NaN channel good");
    TU_CHECK(cp_norm_compute(t2, 1, 2, 0, 50, 50, &nm[0], err) == CP_EPARAM &&
                 strstr(err, "percentiles 50 50"), "q1 == q99 refused: %s", err);
    cp_norm_compute(t2, 1, 2, 0, 1, 99, &nm[0], err);
    nm[1] = (cp_norm){0};
    cp_norm_apply(t2, 2, nm, 1);
    TU_CHECK(nm[0].good && nm[0].zero && t2[0] == 1.0f && t2[2] == 1.0f && t2[1] == 0.0f,
             "tiny range: zeroed then inverted, second channel untouched");
}

/* The 224^3 subsampling (§2.2, §8.3): a stack or volume of more than 224^3 voxels uses the
 * strides (sz, sy, sx) given here (max(1, nz // 50), max(1, ny // 224), max(1, nx // 224)). */
static void test_subsample(int64_t nz, int64_t ny, int64_t nx, int64_t sz, int64_t sy, int64_t sx)
{
    int64_t npix = nz * ny * nx;
    float *x2 = malloc((size_t)npix * 2 * sizeof *x2);
    for (int64_t i = 0; i < npix; i++) {
        int64_t z = i / (ny * nx), y = (i / nx) % ny, x = i % nx;
        /* values on the sampled grid are small, others large: the percentiles show the grid */
        int on = (z % sz == 0) && (y % sy == 0) && (x % sx == 0);
        x2[2 * i] = on ? (float)((z * 7 + y + x) % 1000) : 5000.0f + (float)(i % 13);
        x2[2 * i + 1] = 0;
    }
    int64_t n = ((nz + sz - 1) / sz) * ((ny + sy - 1) / sy) * ((nx + sx - 1) / sx);
    double *v = malloc((size_t)n * sizeof *v);
    int64_t k = 0;
    for (int64_t z = 0; z < nz; z += sz)
        for (int64_t y = 0; y < ny; y += sy)
            for (int64_t x = 0; x < nx; x += sx) v[k++] = x2[2 * ((z * ny + y) * nx + x)];
    qsort(v, (size_t)n, sizeof *v, cmpd);
    cp_norm nm;
    char err[CP_ERR_LEN];
    cp_norm_compute_stack(x2, nz, ny, nx, 0, 1, 99, &nm, err);
    TU_CHECK(nm.good && nm.p1 == cp_percentile_sorted(v, n, 1) &&
                 nm.p99 == cp_percentile_sorted(v, n, 99),
             "subsampled %lldx%lldx%lld percentiles %g %g", (long long)nz, (long long)ny,
             (long long)nx, nm.p1, nm.p99);
    /* one plane of it (plane 1: off the Z grid when sz > 1) has fewer than 224^3 pixels: no
     * subsampling */
    cp_norm_compute(x2 + 2 * ny * nx, ny, nx, 0, 1, 99, &nm, err);
    TU_CHECK(nm.good && nm.p99 > 4999.0, "single plane is not subsampled (p99 %g)", nm.p99);
    free(v);
    free(x2);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "xnorm") == 0) return test_xnorm(argv[2]);
    if (argc == 2 && strcmp(argv[1], "unit") == 0) {
        test_layouts();
        test_channels();
        test_percentiles();
        test_subsample(3, 2300, 2300, 1, 10, 10);
        test_subsample(150, 300, 300, 3, 1, 1); /* a volume: Z strided (§8.3) */
        return tu_finish();
    }
    fprintf(stderr, "usage: test_prep xnorm <case> | test_prep unit\n");
    return 2;
}
