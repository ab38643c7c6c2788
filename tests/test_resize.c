/* Tests of src/resize.c: the oracle's network output resized back to image size must give its
 * dP/cellprob bit-exactly (tiny_nbase8_augment_diam60, OpenCV INTER_LINEAR 2x upscale); window
 * resizes equal whole-image resizes bit for bit; nearest resize of labels.
 * Usage: test_resize oracle | test_resize unit */
#include "resize.h"

#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t count_bits_diff(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static int test_oracle(void)
{
    const char *c = "tiny_nbase8_augment_diam60";
    tu_tiff net = tu_read_tiff(tu_path("%s/reference/%s/net_out.tif", tu_shared(), c));
    tu_tiff dp = tu_read_tiff(tu_path("%s/reference/%s/dP.tif", tu_shared(), c));
    tu_tiff cp = tu_read_tiff(tu_path("%s/reference/%s/cellprob.tif", tu_shared(), c));
    int64_t sny = net.ny, snx = net.nx, dny = dp.ny, dnx = dp.nx;
    TU_CHECK(net.pages == 3 && dp.pages == 2 && cp.pages == 1, "oracle shapes");
    float *src = malloc((size_t)(sny * snx * 3) * sizeof *src);
    float *dst = malloc((size_t)(dny * dnx * 3) * sizeof *dst);
    float *mine = malloc((size_t)(dny * dnx * 3) * sizeof *mine);
    float *ref = malloc((size_t)(dny * dnx * 3) * sizeof *ref);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < sny * snx; i++) src[i * 3 + k] = net.f32[k * sny * snx + i];
    cp_resize_bilinear(src, sny, snx, 3, dst, dny, dnx);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < dny * dnx; i++) mine[k * dny * dnx + i] = dst[i * 3 + k];
    memcpy(ref, dp.f32, (size_t)(2 * dny * dnx) * sizeof *ref);
    memcpy(ref + 2 * dny * dnx, cp.f32, (size_t)(dny * dnx) * sizeof *ref);
    double e = tu_maxabs(mine, ref, 3 * dny * dnx, NULL);
    int64_t nd = count_bits_diff(mine, ref, 3 * dny * dnx);
    printf("%s: net_out %lldx%lld -> %lldx%lld: max abs error %.3g, %lld of %lld values differ\n",
           c, (long long)sny, (long long)snx, (long long)dny, (long long)dnx, e, (long long)nd,
           (long long)(3 * dny * dnx));
    TU_CHECK(nd == 0, "resize back of net_out differs from dP/cellprob (max %.3g)", e);
    free(src);
    free(dst);
    free(mine);
    free(ref);
    tu_tiff_free(&net);
    tu_tiff_free(&dp);
    tu_tiff_free(&cp);
    return tu_finish();
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1 << 24) * 4.0f - 2.0f;
}

/* Whole resize vs a 3x3 split of the output into windows, each fed only its source span. */
static void window_vs_whole(int64_t sny, int64_t snx, int64_t dny, int64_t dnx, int nc)
{
    float *src = malloc((size_t)(sny * snx * nc) * sizeof *src);
    float *whole = malloc((size_t)(dny * dnx * nc) * sizeof *whole);
    float *win = malloc((size_t)(dny * dnx * nc) * sizeof *win);
    for (int64_t i = 0; i < sny * snx * nc; i++) src[i] = frand();
    cp_resize_bilinear(src, sny, snx, nc, whole, dny, dnx);
    int64_t ycut[4] = {0, dny / 3, dny / 3 + (dny + 1) / 2 - dny / 3, dny};
    int64_t xcut[4] = {0, dnx / 4, dnx / 4 + dnx / 3, dnx};
    if (ycut[2] <= ycut[1]) ycut[2] = ycut[1];
    int64_t ndiff = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int64_t oy0 = ycut[a], ony = ycut[a + 1] - oy0, ox0 = xcut[b], onx = xcut[b + 1] - ox0;
            if (ony <= 0 || onx <= 0) continue;
            int64_t sy0, sy1, sx0, sx1;
            cp_resize_src_span(sny, dny, oy0, oy0 + ony, &sy0, &sy1);
            cp_resize_src_span(snx, dnx, ox0, ox0 + onx, &sx0, &sx1);
            int64_t wnx = sx1 - sx0;
            float *part = malloc((size_t)((sy1 - sy0) * wnx * nc) * sizeof *part);
            for (int64_t y = sy0; y < sy1; y++)
                memcpy(part + (y - sy0) * wnx * nc, src + (y * snx + sx0) * nc,
                       (size_t)(wnx * nc) * sizeof *part);
            float *out = malloc((size_t)(ony * onx * nc) * sizeof *out);
            cp_resize_bilinear_window(part, sy0, sx0, wnx, sny, snx, nc, out, oy0, ox0, ony, onx,
                                      dny, dnx);
            for (int64_t y = 0; y < ony; y++)
                memcpy(win + ((oy0 + y) * dnx + ox0) * nc, out + y * onx * nc,
                       (size_t)(onx * nc) * sizeof *out);
            free(part);
            free(out);
        }
    ndiff = count_bits_diff(whole, win, dny * dnx * nc);
    printf("window vs whole %lldx%lld -> %lldx%lld, %d ch: %lld values differ\n",
           (long long)sny, (long long)snx, (long long)dny, (long long)dnx, nc, (long long)ndiff);
    TU_CHECK(ndiff == 0, "window resize %lldx%lld -> %lldx%lld differs", (long long)sny,
             (long long)snx, (long long)dny, (long long)dnx);
    free(src);
    free(whole);
    free(win);
}

/* Hand-computed OpenCV behaviour on small cases. */
static void test_rules(void)
{
    /* 2 -> 4 upscale of one row/column: f = (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25 */
    float s[4] = {1.0f, 3.0f, 10.0f, 30.0f}; /* 2x2, 1 channel */
    float d[16];
    cp_resize_bilinear(s, 2, 2, 1, d, 4, 4);
    /* x: d0 -> s<0 -> S[0]; d1 -> 0.75*S0 + 0.25*S1; d2 -> 0.25*S0+0.75*S1; d3 -> edge S[1] */
    float h0[4] = {1.0f, 1.0f * 0.75f + 3.0f * 0.25f, 1.0f * 0.25f + 3.0f * 0.75f, 3.0f};
    float h1[4] = {10.0f, 10.0f * 0.75f + 30.0f * 0.25f, 10.0f * 0.25f + 30.0f * 0.75f, 30.0f};
    /* y: unclamped weights: d0: s=-1, f=0.75 -> rows (0, 0) with weights 0.25, 0.75 */
    int ok = 1;
    for (int x = 0; x < 4; x++) {
        ok &= d[x] == h0[x] * 0.25f + h0[x] * 0.75f;
        ok &= d[4 + x] == h0[x] * 0.75f + h1[x] * 0.25f;
        ok &= d[12 + x] == h1[x] * 0.75f + h1[x] * 0.25f; /* s = 1 -> rows (1, 1) */
    }
    TU_CHECK(ok, "2x2 -> 4x4 hand-computed OpenCV values");
    /* exact 2x downscale: area path */
    float a[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f}; /* 2x4 */
    float o[2];
    cp_resize_bilinear(a, 2, 4, 1, o, 1, 2);
    TU_CHECK(o[0] == ((1.0f + 2.0f) + 5.0f + 6.0f) * 0.25f && o[1] == ((3.0f + 4.0f) + 7.0f + 8.0f) * 0.25f,
             "area path %g %g", o[0], o[1]);
    /* equal size: copy */
    float c[6] = {1, 2, 3, 4, 5, 6}, co[6];
    cp_resize_bilinear(c, 3, 2, 1, co, 3, 2);
    TU_CHECK(!memcmp(c, co, sizeof c), "copy");
}

static void test_nearest(void)
{
    /* 3 -> 5 columns: scale 0.6: sources 0, 0, 1, 1, 2; 4 -> 3 rows: scale 4/3: 0, 1, 2 */
    uint32_t s[12], d[15];
    for (int i = 0; i < 12; i++) s[i] = (uint32_t)(i + 1) + (i == 11 ? (1u << 30) : 0);
    cp_resize_nearest_u32(s, 4, 3, d, 3, 5);
    int xs[5] = {0, 0, 1, 1, 2}, ok = 1;
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++) ok &= d[y * 5 + x] == s[y * 3 + xs[x]];
    TU_CHECK(ok, "nearest 4x3 -> 3x5");
    /* downscale 5 -> 2: scale 2.5: 0, 2 ; label above 2^24 kept exactly */
    uint32_t big[5] = {7, 8, (1u << 24) + 1, 9, 10}, bo[2];
    cp_resize_nearest_u32(big, 1, 5, bo, 1, 2);
    TU_CHECK(bo[0] == 7 && bo[1] == (1u << 24) + 1, "nearest 5 -> 2: %u %u", bo[0], bo[1]);
    /* random labels, window-free identity */
    uint32_t *r = malloc(97 * 131 * sizeof *r), *ro = malloc(97 * 131 * sizeof *ro);
    for (int i = 0; i < 97 * 131; i++) r[i] = (uint32_t)(frand() * 1e6f);
    cp_resize_nearest_u32(r, 97, 131, ro, 97, 131);
    TU_CHECK(!memcmp(r, ro, 97 * 131 * sizeof *r), "nearest identity");
    free(r);
    free(ro);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "oracle") == 0) return test_oracle();
    if (argc == 2 && strcmp(argv[1], "unit") == 0) {
        test_rules();
        test_nearest();
        int64_t pairs[][4] = {{300, 400, 150, 200}, {150, 200, 300, 400}, {97, 131, 203, 77},
                              {512, 512, 300, 300}, {300, 300, 512, 512}, {64, 90, 64, 45},
                              {288, 336, 384, 448}, {384, 448, 288, 336}, {50, 50, 50, 50},
                              {176, 224, 88, 112}};
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
            for (int nc = 2; nc <= 3; nc++)
                window_vs_whole(pairs[i][0], pairs[i][1], pairs[i][2], pairs[i][3], nc);
        return tu_finish();
    }
    fprintf(stderr, "usage: test_resize oracle | unit\n");
    return 2;
}
