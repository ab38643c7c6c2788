/* The per-block work of the Winograd convolution (winograd.h): input transform with the fused
 * activation, the 36 sgemm calls, output transform. Compiled once per instruction set (CMake:
 * baseline x86-64, AVX2, AVX-512F; WINO_ISA names the copy) and chosen at run time by
 * cp_wino_block. All arithmetic is lane-wise IEEE add / multiply in a fixed order with
 * -ffp-contract=off (no FMA): every copy gives the same bits, which tests/test_winograd.c checks
 * where the CPU runs them. */
#include "winograd.h"
#include "winograd_impl.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#ifndef WINO_ISA
#define WINO_ISA generic
#endif
#define WINO_CAT2(a, b) a##b
#define WINO_CAT(a, b) WINO_CAT2(a, b)

/* Eight floats, lane by lane the same arithmetic as scalar code (GCC vector extension: two SSE
 * operations on baseline x86-64, one AVX operation in the AVX2 clone). */
typedef float v8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi" /* v8 only passes between static inline functions */
#define VL 8

static inline v8 ldv8(const float *p)
{
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void stv8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* Transformed points of one row of 6 values d[0..5] (B^T d), kept in the order of Lavin & Gray. */
#define BT6(d0, d1, d2, d3, d4, d5, t)                                                            \
    do {                                                                                         \
        t[0] = (4.0f * (d0) + (d4)) - 5.0f * (d2);                                               \
        t[1] = ((d3) + (d4)) - 4.0f * ((d1) + (d2));                                             \
        t[2] = ((d4) - (d3)) + 4.0f * ((d1) - (d2));                                             \
        t[3] = ((d4) - (d2)) + 2.0f * ((d3) - (d1));                                             \
        t[4] = ((d4) - (d2)) - 2.0f * ((d3) - (d1));                                             \
        t[5] = (4.0f * (d1) + (d5)) - 5.0f * (d3);                                               \
    } while (0)

/* Row y of input channel c, activated (BN affine, ReLU) and upsampled as the layer reads it, into
 * buf[1..W]; buf[0] and buf[W+1..n) are the zero padding. */
static void activate_row(const cp_wino_plan *p, const cp_wino_src *s, int c, int y, int n,
                         float *restrict buf)
{
    const int W = p->W;
    const int up = s->up, Ws = W >> up;
    const float *restrict xr = s->x + (int64_t)c * (p->H >> up) * Ws + (int64_t)(y >> up) * Ws;
    float *restrict b = buf + 1;
    buf[0] = 0.0f;
    if (!s->scale) {
        if (up)
            for (int q = 0; q < Ws; q++)
                b[2 * q] = b[2 * q + 1] = xr[q];
        else
            memcpy(b, xr, (size_t)W * sizeof(float));
    } else {
        const float sc = s->scale[c], sh = s->shift[c];
        if (up) {
            for (int q = 0; q < Ws; q++) {
                float v = xr[q] * sc + sh;
                v = s->relu && v < 0 ? 0.0f : v; /* NaN propagates, as torch.relu */
                b[2 * q] = v;
                b[2 * q + 1] = v;
            }
        } else if (s->relu) {
            for (int q = 0; q < W; q++) {
                const float v = xr[q] * sc + sh;
                b[q] = v < 0 ? 0.0f : v;
            }
        } else {
            for (int q = 0; q < W; q++)
                b[q] = xr[q] * sc + sh;
        }
    }
    for (int i = W + 1; i < n; i++)
        buf[i] = 0.0f;
}

/* The activated input row y, de-interleaved by phase: ph[m][j] = act(x[y][4 j + m - 1]) for
 * 4 j + m in [0, 4 tw + 4), zero outside the image (ph: 4 arrays of tw + 1 floats, row buf of
 * 4 tw + 4 floats). */
static void load_row(const cp_wino_plan *p, const cp_wino_src *s, int c, int y,
                     float *restrict buf, float *restrict ph)
{
    const int tw = p->tw, n = 4 * tw + 4;
    float *restrict p0 = ph, *restrict p1 = p0 + tw + 1, *restrict p2 = p1 + tw + 1,
                   *restrict p3 = p2 + tw + 1;
    if (y < 0 || y >= p->H) {
        memset(ph, 0, (size_t)(4 * (tw + 1)) * sizeof(float));
        return;
    }
    activate_row(p, s, c, y, n, buf);
    for (int j = 0; j <= tw; j++) {
        p0[j] = buf[4 * j];
        p1[j] = buf[4 * j + 1];
        p2[j] = buf[4 * j + 2];
        p3[j] = buf[4 * j + 3];
    }
}

/* V[xi][c][tx] for the tiles of tile row ty, channel c (ldv floats between points). Scratch: buf
 * (4 tw + 4), ph (6 rows x 4 phases x (tw + 1)), C (6 x 4 x (tw + 1)). The column transform
 * (along y) runs first, on whole rows, then the row transform (along x) on the phases. */
static void input_row(const cp_wino_plan *p, const cp_wino_src *s, int c, int ty,
                      float *restrict V, int64_t ldv, float *restrict buf, float *restrict ph,
                      float *restrict C)
{
    const int tw = p->tw, n1 = tw + 1;
    const int64_t rs = 4 * (int64_t)n1; /* floats per row of phases */
    for (int r = 0; r < 6; r++)
        load_row(p, s, c, 4 * ty - 1 + r, buf, ph + r * rs);
    /* C[i][m][j] = sum_r BT[i][r] ph[r][m][j] */
    int64_t q = 0;
    for (; q + VL <= rs; q += VL) {
        v8 t[6];
        BT6(ldv8(ph + q), ldv8(ph + rs + q), ldv8(ph + 2 * rs + q), ldv8(ph + 3 * rs + q),
            ldv8(ph + 4 * rs + q), ldv8(ph + 5 * rs + q), t);
        for (int i = 0; i < 6; i++)
            stv8(C + i * rs + q, t[i]);
    }
    for (; q < rs; q++) {
        float t[6];
        BT6(ph[q], ph[rs + q], ph[2 * rs + q], ph[3 * rs + q], ph[4 * rs + q], ph[5 * rs + q], t);
        for (int i = 0; i < 6; i++)
            C[i * rs + q] = t[i];
    }
    /* V[i*6+k][tx] = sum_x BT[k][x] C[i][4 tx + x] */
    for (int i = 0; i < 6; i++) {
        const float *c0 = C + i * rs, *c1 = c0 + n1, *c2 = c1 + n1, *c3 = c2 + n1;
        float *v0 = V + (int64_t)(6 * i) * ldv;
        int tx = 0;
        for (; tx + VL <= tw; tx += VL) {
            v8 t[6];
            BT6(ldv8(c0 + tx), ldv8(c1 + tx), ldv8(c2 + tx), ldv8(c3 + tx), ldv8(c0 + tx + 1),
                ldv8(c1 + tx + 1), t);
            for (int k = 0; k < 6; k++)
                stv8(v0 + k * ldv + tx, t[k]);
        }
        for (; tx < tw; tx++) {
            float t[6];
            BT6(c0[tx], c1[tx], c2[tx], c3[tx], c0[tx + 1], c1[tx + 1], t);
            for (int k = 0; k < 6; k++)
                v0[k * ldv + tx] = t[k];
        }
    }
}

/* out[o] rows of tile row ty from M[xi][tx] (ldm floats between points). Scratch: T (24 tw),
 * ybuf (4 tw). */
static void output_row(const cp_wino_plan *p, const float *restrict M, int64_t ldm, int ty,
                       float bias, float *restrict out, int accumulate, float *restrict T,
                       float *restrict ybuf)
{
    const int tw = p->tw, W = p->W;
    /* T[i][k][tx] = sum_r AT[i][r] M[r*6+k] */
    for (int k = 0; k < 6; k++) {
        const float *restrict m0 = M + k * ldm, *restrict m1 = m0 + 6 * ldm,
                             *restrict m2 = m1 + 6 * ldm, *restrict m3 = m2 + 6 * ldm,
                             *restrict m4 = m3 + 6 * ldm, *restrict m5 = m4 + 6 * ldm;
        float *restrict t0 = T + k * (int64_t)tw, *restrict t1 = t0 + 6 * (int64_t)tw,
                       *restrict t2 = t1 + 6 * (int64_t)tw, *restrict t3 = t2 + 6 * (int64_t)tw;
        for (int tx = 0; tx < tw; tx++) {
            const float a = m1[tx] + m2[tx], b = m1[tx] - m2[tx];
            const float c = m3[tx] + m4[tx], d = m3[tx] - m4[tx];
            t0[tx] = (m0[tx] + a) + c;
            t1[tx] = b + 2.0f * d;
            t2[tx] = a + 4.0f * c;
            t3[tx] = (b + 8.0f * d) + m5[tx];
        }
    }
    for (int i = 0; i < 4; i++) {
        const int y = 4 * ty + i;
        if (y >= p->H)
            break;
        const float *restrict q0 = T + (int64_t)i * 6 * tw, *restrict q1 = q0 + tw,
                             *restrict q2 = q1 + tw, *restrict q3 = q2 + tw,
                             *restrict q4 = q3 + tw, *restrict q5 = q4 + tw;
        for (int tx = 0; tx < tw; tx++) {
            const float a = q1[tx] + q2[tx], b = q1[tx] - q2[tx];
            const float c = q3[tx] + q4[tx], d = q3[tx] - q4[tx];
            ybuf[4 * tx] = (q0[tx] + a) + c;
            ybuf[4 * tx + 1] = b + 2.0f * d;
            ybuf[4 * tx + 2] = a + 4.0f * c;
            ybuf[4 * tx + 3] = (b + 8.0f * d) + q5[tx];
        }
        float *restrict o = out + (int64_t)y * W;
        if (accumulate)
            for (int x = 0; x < W; x++)
                o[x] = (o[x] + bias) + ybuf[x];
        else
            for (int x = 0; x < W; x++)
                o[x] = bias + ybuf[x];
    }
}

void WINO_CAT(cp_wino_block4_, WINO_ISA)(const cp_wino_plan *p, const float *U, const float *bias, const cp_wino_src *s,
                   int blk, float *out, int accumulate, float *ws)
{
    const int tw = p->tw, cin = p->cin, cout = p->cout;
    const int ty0 = blk * p->rows;
    const int nrows = p->th - ty0 < p->rows ? p->th - ty0 : p->rows;
    const int64_t nt = (int64_t)nrows * tw; /* tiles of this block */
    const int64_t ldv = (int64_t)cin * nt, ldm = (int64_t)cout * nt;
    float *V = ws, *M = V + 36 * ldv;
    float *buf = M + 36 * ldm, *ph = buf + 4 * (int64_t)tw + 8;
    float *C = ph + 24 * ((int64_t)tw + 1), *R = ph; /* R: the output's scratch */
    /* input transform: V[xi][c][tile] */
    for (int c = 0; c < cin; c++)
        for (int r = 0; r < nrows; r++)
            input_row(p, s, c, ty0 + r, V + (int64_t)c * nt + (int64_t)r * tw, ldv, buf, ph, C);
    /* M[xi] = U[xi] V[xi]: (cout x cin) (cin x nt) */
    const int64_t oc = (int64_t)cout * cin;
    for (int xi = 0; xi < 36; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)nt, cin, 1.0f,
                    U + xi * oc, cin, V + xi * ldv, (int)nt, 0.0f, M + xi * ldm, (int)nt);
    /* output transform */
    float *ybuf = buf; /* 4 tw floats; the input rows are no longer needed */
    for (int o = 0; o < cout; o++)
        for (int r = 0; r < nrows; r++)
            output_row(p, M + (int64_t)o * nt + (int64_t)r * tw, ldm, ty0 + r, bias[o],
                       out + (int64_t)o * p->H * p->W, accumulate, R, ybuf);
}

/* ---- F(6x6, 3x3): 8x8 input patches, 64 points ------------------------------------------------ */

/* B^T d of 8 values (the 8-point input transform of Lavin & Gray's F(6, 3), points 0, +-1, +-2,
 * +-1/2, infinity), in NNPACK's order of operations. */
#define BT8(d0, d1, d2, d3, d4, d5, d6, d7, t)                                                    \
    do {                                                                                         \
        t[0] = ((d0) - (d6)) + 5.25f * ((d4) - (d2));                                            \
        t[7] = ((d7) - (d1)) + 5.25f * ((d3) - (d5));                                            \
        __typeof__(t[0]) a_ = ((d2) + (d6)) - 4.25f * (d4), b_ = ((d1) + (d5)) - 4.25f * (d3);   \
        t[1] = a_ + b_;                                                                          \
        t[2] = a_ - b_;                                                                          \
        a_ = ((d6) + 0.25f * (d2)) - 1.25f * (d4);                                               \
        b_ = (0.5f * (d1) - 2.5f * (d3)) + 2.0f * (d5);                                          \
        t[3] = a_ + b_;                                                                          \
        t[4] = a_ - b_;                                                                          \
        a_ = (d6) + 4.0f * ((d2) - 1.25f * (d4));                                                \
        b_ = (2.0f * (d1) - 2.5f * (d3)) + 0.5f * (d5);                                          \
        t[5] = a_ + b_;                                                                          \
        t[6] = a_ - b_;                                                                          \
    } while (0)

/* A^T m of 8 values: 6 outputs. */
#define AT8(m0, m1, m2, m3, m4, m5, m6, m7, y)                                                    \
    do {                                                                                         \
        const __typeof__(y[0]) a1_ = (m1) + (m2), b1_ = (m1) - (m2), a2_ = (m3) + (m4),          \
                               b2_ = (m3) - (m4), a3_ = (m5) + (m6), b3_ = (m5) - (m6);          \
        y[0] = (((m0) + a1_) + a2_) + a3_;                                                       \
        y[1] = (b1_ + 2.0f * b2_) + 0.5f * b3_;                                                  \
        y[2] = (a1_ + 4.0f * a2_) + 0.25f * a3_;                                                 \
        y[3] = (b1_ + 8.0f * b2_) + 0.125f * b3_;                                                \
        y[4] = (a1_ + 16.0f * a2_) + 0.0625f * a3_;                                              \
        y[5] = ((b1_ + 32.0f * b2_) + 0.03125f * b3_) + (m7);                                    \
    } while (0)

/* As load_row, 6 phases: ph[m][j] = act(x[y][6 j + m - 1]), j in [0, tw] (buf: 6 tw + 8). */
static void load_row6(const cp_wino_plan *p, const cp_wino_src *s, int c, int y,
                      float *restrict buf, float *restrict ph)
{
    const int tw = p->tw, n = 6 * tw + 6, n1 = tw + 1;
    if (y < 0 || y >= p->H) {
        memset(ph, 0, (size_t)(6 * n1) * sizeof(float));
        return;
    }
    activate_row(p, s, c, y, n, buf);
    for (int m = 0; m < 6; m++) {
        float *restrict pm = ph + m * n1;
        for (int j = 0; j <= tw; j++)
            pm[j] = buf[6 * j + m];
    }
}

static void input_row6(const cp_wino_plan *p, const cp_wino_src *s, int c, int ty,
                       float *restrict V, int64_t ldv, float *restrict buf, float *restrict ph,
                       float *restrict C)
{
    const int tw = p->tw, n1 = tw + 1;
    const int64_t rs = 6 * (int64_t)n1;
    for (int r = 0; r < 8; r++)
        load_row6(p, s, c, 6 * ty - 1 + r, buf, ph + r * rs);
    int64_t q = 0;
    for (; q + VL <= rs; q += VL) {
        v8 t[8];
        BT8(ldv8(ph + q), ldv8(ph + rs + q), ldv8(ph + 2 * rs + q), ldv8(ph + 3 * rs + q),
            ldv8(ph + 4 * rs + q), ldv8(ph + 5 * rs + q), ldv8(ph + 6 * rs + q),
            ldv8(ph + 7 * rs + q), t);
        for (int i = 0; i < 8; i++)
            stv8(C + i * rs + q, t[i]);
    }
    for (; q < rs; q++) {
        float t[8];
        BT8(ph[q], ph[rs + q], ph[2 * rs + q], ph[3 * rs + q], ph[4 * rs + q], ph[5 * rs + q],
            ph[6 * rs + q], ph[7 * rs + q], t);
        for (int i = 0; i < 8; i++)
            C[i * rs + q] = t[i];
    }
    for (int i = 0; i < 8; i++) {
        const float *c0 = C + i * rs, *c1 = c0 + n1, *c2 = c1 + n1, *c3 = c2 + n1, *c4 = c3 + n1,
                    *c5 = c4 + n1;
        float *v0 = V + (int64_t)(8 * i) * ldv;
        int tx = 0;
        for (; tx + VL <= tw; tx += VL) {
            v8 t[8];
            BT8(ldv8(c0 + tx), ldv8(c1 + tx), ldv8(c2 + tx), ldv8(c3 + tx), ldv8(c4 + tx),
                ldv8(c5 + tx), ldv8(c0 + tx + 1), ldv8(c1 + tx + 1), t);
            for (int k = 0; k < 8; k++)
                stv8(v0 + k * ldv + tx, t[k]);
        }
        for (; tx < tw; tx++) {
            float t[8];
            BT8(c0[tx], c1[tx], c2[tx], c3[tx], c4[tx], c5[tx], c0[tx + 1], c1[tx + 1], t);
            for (int k = 0; k < 8; k++)
                v0[k * ldv + tx] = t[k];
        }
    }
}

static void output_row6(const cp_wino_plan *p, const float *restrict M, int64_t ldm, int ty,
                        float bias, float *restrict out, int accumulate, float *restrict T,
                        float *restrict ybuf)
{
    const int tw = p->tw, W = p->W;
    /* T[i][k][tx] = sum_r AT[i][r] M[r*8+k], i < 6 */
    for (int k = 0; k < 8; k++) {
        const float *mk = M + k * ldm;
        const int64_t s8 = 8 * ldm, tt = 8 * (int64_t)tw;
        float *tk = T + k * (int64_t)tw;
        int tx = 0;
        for (; tx + VL <= tw; tx += VL) {
            v8 y[6];
            AT8(ldv8(mk + tx), ldv8(mk + s8 + tx), ldv8(mk + 2 * s8 + tx), ldv8(mk + 3 * s8 + tx),
                ldv8(mk + 4 * s8 + tx), ldv8(mk + 5 * s8 + tx), ldv8(mk + 6 * s8 + tx),
                ldv8(mk + 7 * s8 + tx), y);
            for (int i = 0; i < 6; i++)
                stv8(tk + i * tt + tx, y[i]);
        }
        for (; tx < tw; tx++) {
            float y[6];
            AT8(mk[tx], mk[s8 + tx], mk[2 * s8 + tx], mk[3 * s8 + tx], mk[4 * s8 + tx],
                mk[5 * s8 + tx], mk[6 * s8 + tx], mk[7 * s8 + tx], y);
            for (int i = 0; i < 6; i++)
                tk[i * tt + tx] = y[i];
        }
    }
    for (int i = 0; i < 6; i++) {
        const int y = 6 * ty + i;
        if (y >= p->H)
            break;
        const float *q = T + (int64_t)i * 8 * tw;
        for (int tx = 0; tx < tw; tx++) {
            float yv[6];
            AT8(q[tx], q[tw + tx], q[2 * tw + tx], q[3 * tw + tx], q[4 * tw + tx], q[5 * tw + tx],
                q[6 * tw + tx], q[7 * tw + tx], yv);
            for (int j = 0; j < 6; j++)
                ybuf[6 * tx + j] = yv[j];
        }
        float *restrict o = out + (int64_t)y * W;
        if (accumulate)
            for (int x = 0; x < W; x++)
                o[x] = (o[x] + bias) + ybuf[x];
        else
            for (int x = 0; x < W; x++)
                o[x] = bias + ybuf[x];
    }
}

void WINO_CAT(cp_wino_block6_, WINO_ISA)(const cp_wino_plan *p, const float *U, const float *bias,
                                         const cp_wino_src *s, int blk, float *out,
                                         int accumulate, float *ws)
{
    const int tw = p->tw, cin = p->cin, cout = p->cout;
    const int ty0 = blk * p->rows;
    const int nrows = p->th - ty0 < p->rows ? p->th - ty0 : p->rows;
    const int64_t nt = (int64_t)nrows * tw;
    const int64_t ldv = (int64_t)cin * nt, ldm = (int64_t)cout * nt;
    float *V = ws, *M = V + 64 * ldv;
    float *buf = M + 64 * ldm, *ph = buf + 6 * (int64_t)tw + 8;
    float *C = ph + 48 * ((int64_t)tw + 1), *R = ph;
    for (int c = 0; c < cin; c++)
        for (int r = 0; r < nrows; r++)
            input_row6(p, s, c, ty0 + r, V + (int64_t)c * nt + (int64_t)r * tw, ldv, buf, ph, C);
    const int64_t oc = (int64_t)cout * cin;
    for (int xi = 0; xi < 64; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)nt, cin, 1.0f,
                    U + xi * oc, cin, V + xi * ldv, (int)nt, 0.0f, M + xi * ldm, (int)nt);
    float *ybuf = buf;
    for (int o = 0; o < cout; o++)
        for (int r = 0; r < nrows; r++)
            output_row6(p, M + (int64_t)o * nt + (int64_t)r * tw, ldm, ty0 + r, bias[o],
                        out + (int64_t)o * p->H * p->W, accumulate, R, ybuf);
}
