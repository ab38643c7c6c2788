/* Tests of the Winograd F(4x4, 3x3) convolution (src/winograd.c) and of its use in CPnet:
 *   layers       every 3x3 shape of the three models (full width [2 32 64 128 256], trained
 *                [2 16 32 64 128], tiny [2 8 16 32 64]; encoder, decoder with upsampling, with and
 *                without the fused BatchNorm + ReLU, accumulate or not) and odd sizes, against a
 *                float64 direct convolution; prints the worst error relative to sum |w| |x|
 *   determinism  the network on tiles run at batch 1 and 8, 1 and 2 threads: bit-identical; and the
 *                Winograd layers really run (CP_NET_CONV=im2col gives other bits, within 1e-4) */
#include "cpnet.h"
#include "winograd.h"

#include "cp_err.h"
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bound the layers test asserts, relative to sum over the 3x3 window and channels of
 * |w| |act(x)|. Winograd's transforms add roundings of values up to ~10x (B^T rows sum to 10 in
 * absolute value, A^T rows to 19, G's to 0.5), each 2^-24 relative: a first-order bound is a few
 * hundred float32 ulps of sum |w||x| in the worst case, 2e-5; measured worst is printed. With
 * fewer than 8 input channels the sum has few terms and the transforms' roundings weigh more
 * (measured up to 6e-5): CPnet keeps those layers (its first conv, 2 channels) on im2col, and they
 * are held to the looser REL_BOUND_FEW. */
#define REL_BOUND 2e-5
#define REL_BOUND_FEW 2e-4

static uint32_t rng = 2463534242u;
static int isa_runs[3]; /* layers run per kernel copy besides generic */
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

/* One random layer: worst |wino - direct| / sum|w||x| over all outputs. */
static double layer(int m, int cin, int cout, int H, int W, int up, int act, int accumulate)
{
    const int Hs = H >> up, Ws = W >> up;
    const int64_t P = (int64_t)H * W;
    float *w = malloc((size_t)cout * cin * 9 * sizeof(float));
    float *U = malloc((size_t)CP_WINO_MAX_POINTS * cout * cin * sizeof(float));
    float *b = malloc((size_t)cout * sizeof(float));
    float *x = malloc((size_t)cin * Hs * Ws * sizeof(float));
    float *sc = malloc((size_t)cin * sizeof(float)), *sh = malloc((size_t)cin * sizeof(float));
    float *out = malloc((size_t)(cout * P) * sizeof(float));
    float *out0 = malloc((size_t)(cout * P) * sizeof(float));
    double *a = malloc((size_t)(cin * P) * sizeof(double)); /* activated, upsampled input */
    const float wscale = 1.0f / sqrtf(9.0f * (float)cin);
    for (int64_t k = 0; k < (int64_t)cout * cin * 9; k++)
        w[k] = frand() * wscale;
    for (int o = 0; o < cout; o++)
        b[o] = 0.1f * frand();
    for (int64_t k = 0; k < (int64_t)cin * Hs * Ws; k++)
        x[k] = 3.0f * frand();
    for (int c = 0; c < cin; c++) {
        sc[c] = 0.5f + 0.5f * frand();
        sh[c] = 0.5f * frand();
    }
    for (int64_t k = 0; k < cout * P; k++)
        out0[k] = out[k] = accumulate ? frand() : 12345.0f;
    for (int c = 0; c < cin; c++)
        for (int y = 0; y < H; y++)
            for (int q = 0; q < W; q++) {
                float v = x[((int64_t)c * Hs + (y >> up)) * Ws + (q >> up)];
                if (act) {
                    v = v * sc[c] + sh[c];
                    v = v < 0 ? 0.0f : v;
                }
                a[(int64_t)c * P + (int64_t)y * W + q] = v;
            }
    cp_wino_weights(w, cout, cin, m, U);
    cp_wino_plan pl;
    cp_wino_plan_make(cin, cout, H, W, m, &pl);
    float *ws = malloc((size_t)pl.ws_floats * sizeof(float));
    const cp_wino_src s = {x, up, act ? sc : NULL, act ? sh : NULL, act};
    /* every copy of the kernel this CPU runs gives the generic copy's bits */
    float *other = malloc((size_t)(cout * P) * sizeof(float));
    pl.isa = CP_WINO_GENERIC;
    for (int blk = 0; blk < pl.nblk; blk++)
        cp_wino_block(&pl, U, b, &s, blk, out, accumulate, ws);
    for (int isa = CP_WINO_AVX2; isa <= CP_WINO_AVX512; isa++) {
        if (!cp_wino_isa_supported(isa))
            continue;
        pl.isa = isa;
        memcpy(other, out0, (size_t)(cout * P) * sizeof(float));
        for (int blk = 0; blk < pl.nblk; blk++)
            cp_wino_block(&pl, U, b, &s, blk, other, accumulate, ws);
        TU_CHECK(!memcmp(other, out, (size_t)(cout * P) * sizeof(float)),
                 "%d -> %d at %d x %d: the %s kernel gives other bits than the generic one", cin,
                 cout, H, W, cp_wino_isa_name(isa));
        isa_runs[isa]++;
    }
    free(other);
    double worst = 0;
    for (int o = 0; o < cout; o++)
        for (int y = 0; y < H; y++)
            for (int q = 0; q < W; q++) {
                double sum = 0, mag = 0;
                for (int c = 0; c < cin; c++)
                    for (int u = 0; u < 3; u++)
                        for (int v = 0; v < 3; v++) {
                            const int yy = y + u - 1, xx = q + v - 1;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                                continue;
                            const double wv = w[(((int64_t)o * cin + c) * 3 + u) * 3 + v];
                            const double xv = a[(int64_t)c * P + (int64_t)yy * W + xx];
                            sum += wv * xv;
                            mag += fabs(wv * xv);
                        }
                const int64_t k = o * P + (int64_t)y * W + q;
                const double ref = (accumulate ? (double)out0[k] : 0.0) + b[o] + sum;
                const double base = fabs(accumulate ? (double)out0[k] : 0.0) + fabs(b[o]);
                const double e = fabs(out[k] - ref) / (mag + base + 1e-30);
                worst = e > worst || e != e ? e : worst;
            }
    free(w);
    free(U);
    free(b);
    free(x);
    free(sc);
    free(sh);
    free(out);
    free(out0);
    free(a);
    free(ws);
    return worst;
}

static void layers(int m)
{
    printf("F(%dx%d, 3x3)\n", m, m);
    /* {cin, cout, H, W, up}: the 3x3 convs of CPnet (encoder n: nb[n] -> nb[n+1] at level n, then
     * nb[n+1] -> nb[n+1]; decoder n: conv_0 from up[n+1] (upsampled below level 3), then
     * up[n] -> up[n]) for 224-pixel tiles scaled down to keep the test short, plus odd sizes. */
    static const int nbs[3][5] = {{2, 32, 64, 128, 256}, {2, 16, 32, 64, 128}, {2, 8, 16, 32, 64}};
    double worst = 0;
    int count = 0;
    for (int mi = 0; mi < 3; mi++) {
        const int *nb = nbs[mi];
        const int ups[5] = {nb[1], nb[2], nb[3], nb[4], nb[4]};
        for (int n = 0; n < 4; n++) {
            const int S = 48 >> n; /* level n of a 48-pixel tile */
            const int shapes[4][3] = {{nb[n], nb[n + 1], 0},
                                      {nb[n + 1], nb[n + 1], 0},
                                      {ups[n + 1], ups[n], n < 3},
                                      {ups[n], ups[n], 0}};
            for (int k = 0; k < 4; k++) {
                const int cin = shapes[k][0], cout = shapes[k][1], up = shapes[k][2];
                const double e = layer(m, cin, cout, S, S, up, 1, k & 1);
                printf("model %d level %d: %3d -> %3d, %2d x %2d%s: worst error %.3g sum|w||x|\n",
                       mi, n, cin, cout, S, S, up ? " (upsampled)" : "", e);
                const double bound = cin < 8 ? REL_BOUND_FEW : REL_BOUND;
                TU_CHECK(e <= bound, "%d -> %d at %d x %d: error %.3g > %.3g", cin, cout, S, S, e,
                         bound);
                if (cin >= 8)
                    worst = e > worst ? e : worst;
                count++;
            }
        }
    }
    /* odd sizes (partial tiles on both edges), no activation, few channels, a full-width shape */
    static const int odd[][6] = {{8, 8, 5, 7, 0, 0},   {3, 5, 9, 13, 0, 1},  {16, 24, 1, 1, 0, 1},
                                 {8, 16, 6, 10, 1, 1}, {64, 32, 17, 3, 0, 0}, {2, 32, 11, 19, 0, 1},
                                 {256, 256, 14, 14, 0, 1}};
    for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
        const int *s = odd[k];
        const double e = layer(m, s[0], s[1], s[2], s[3], s[4], s[5], (int)k & 1);
        printf("odd: %3d -> %3d, %2d x %2d%s%s: worst error %.3g sum|w||x|\n", s[0], s[1], s[2],
               s[3], s[4] ? " (upsampled)" : "", s[5] ? " (BN+ReLU)" : "", e);
        const double bound = s[0] < 8 ? REL_BOUND_FEW : REL_BOUND;
        TU_CHECK(e <= bound, "odd shape %d: error %.3g > %.3g", (int)k, e, bound);
        if (s[0] >= 8)
            worst = e > worst ? e : worst;
        count++;
    }
    printf("%d layers: worst error %.3g sum|w||x| from 8 input channels up (bound %.3g)\n", count,
           worst, REL_BOUND);
    for (int isa = CP_WINO_AVX2; isa <= CP_WINO_AVX512; isa++)
        printf("%s kernel: %s\n", cp_wino_isa_name(isa),
               isa_runs[isa] ? "bit-identical to generic on every layer"
                             : "not run (this CPU lacks it); generic and the others share source");
    printf("default kernel here: %s\n", cp_wino_isa_name(cp_wino_isa_default()));
}

static void fill_tiles(float *x, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        x[k] = 2.0f * frand();
}

static void determinism(const char *file)
{
    char err[CP_ERR_LEN];
    cp_model *m = NULL;
    int rc = cp_model_load(tu_path("%s/models/%s", tu_shared(), file), &m, err);
    TU_CHECK(rc == 0, "load %s: %s", file, err);
    if (rc)
        return;
    const cp_model_info *info = cp_model_get_info(m);
    enum { NT = 8, TY = 64, TX = 80 };
    const int64_t in_n = (int64_t)info->nchan * TY * TX, out_n = 3 * TY * TX;
    float *in = malloc((size_t)(NT * in_n) * sizeof(float));
    float *ref = malloc((size_t)(NT * out_n) * sizeof(float));
    float *out = malloc((size_t)(NT * out_n) * sizeof(float));
    fill_tiles(in, NT * in_n);
    omp_set_num_threads(1);
    for (int t = 0; t < NT; t++) {
        rc = cp_net_forward(m, in + t * in_n, 1, TY, TX, ref + t * out_n, NULL, err);
        TU_CHECK(rc == 0, "forward: %s", err);
    }
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        memset(out, 0, (size_t)(NT * out_n) * sizeof(float));
        rc = cp_net_forward(m, in, NT, TY, TX, out, NULL, err);
        const int same = rc == 0 && !memcmp(out, ref, (size_t)(NT * out_n) * sizeof(float));
        printf("%s: batch %d on %d threads vs batch 1 on 1 thread: %s\n", file, NT, threads,
               same ? "bit-identical" : "DIFFERENT");
        TU_CHECK(same, "%s: batch %d on %d threads differs", file, NT, threads);
        rc = cp_net_forward(m, in + 3 * in_n, 1, TY, TX, out, NULL, err);
        TU_CHECK(rc == 0 && !memcmp(out, ref + 3 * out_n, (size_t)out_n * sizeof(float)),
                 "%s: batch 1 on %d threads differs", file, threads);
    }
    TU_CHECK(cp_model_winograd_convs(m) >= 31, "%s: %d Winograd convs", file,
             cp_model_winograd_convs(m));
    /* the same tiles through im2col only: other bits (Winograd runs), close values */
    cp_model *mi = NULL;
    setenv("CP_NET_CONV", "im2col", 1);
    rc = cp_model_load(tu_path("%s/models/%s", tu_shared(), file), &mi, err);
    unsetenv("CP_NET_CONV");
    TU_CHECK(rc == 0 && cp_model_winograd_convs(mi) == 0, "load %s: %s", file, err);
    if (!rc) {
        rc = cp_net_forward(mi, in, NT, TY, TX, out, NULL, err);
        double refmax = 0;
        for (int64_t k = 0; k < NT * out_n; k++)
            refmax = fmax(refmax, fabs(ref[k]));
        const double d = tu_maxabs(out, ref, NT * out_n, NULL);
        printf("%s: max |winograd - im2col| = %.3g (max |out| %.3g)\n", file, d, refmax);
        TU_CHECK(rc == 0 && d > 0 && d <= 1e-4 * refmax + 1e-5,
                 "%s: winograd vs im2col: %.3g (0 means Winograd did not run)", file, d);
        cp_model_free(mi);
    }
    free(in);
    free(ref);
    free(out);
    cp_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "layers")) {
        layers(4);
        layers(6);
    }
    else if (argc == 3 && !strcmp(argv[1], "determinism"))
        determinism(argv[2]);
    else {
        fprintf(stderr, "usage: %s layers | determinism <model.pth>\n", argv[0]);
        return 2;
    }
    return tu_finish();
}
