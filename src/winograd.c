/* Winograd F(4x4, 3x3) convolution (winograd.h): weight, input and output transforms in plain C,
 * the 36 products per block through OpenBLAS sgemm. The transforms run along whole rows of tiles,
 * so that their inner loops are over tiles (contiguous, vectorised by the compiler). */
#include "winograd.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Tiles per block the shape asks for: the transformed input and output of a block (36 (cin +
 * cout) tiles floats) should stay near 2 MiB, with at least 64 tiles so that each sgemm is not
 * dominated by packing its cout x cin operand. */
#define BLOCK_FLOATS (1 << 19)
#define MIN_TILES 64

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

void cp_wino_weights(const float *w, int cout, int cin, float *U)
{
    static const double G[6][3] = {{1.0 / 4, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
    const int64_t oc = (int64_t)cout * cin;
    for (int o = 0; o < cout; o++)
        for (int c = 0; c < cin; c++) {
            const float *g = w + ((int64_t)o * cin + c) * 9;
            double t[6][3]; /* G g */
            for (int i = 0; i < 6; i++)
                for (int v = 0; v < 3; v++)
                    t[i][v] = G[i][0] * g[v] + G[i][1] * g[3 + v] + G[i][2] * g[6 + v];
            for (int i = 0; i < 6; i++)
                for (int k = 0; k < 6; k++)
                    U[(i * 6 + k) * oc + (int64_t)o * cin + c] =
                        (float)(t[i][0] * G[k][0] + t[i][1] * G[k][1] + t[i][2] * G[k][2]);
        }
}

void cp_wino_plan_make(int cin, int cout, int H, int W, cp_wino_plan *p)
{
    p->cin = cin;
    p->cout = cout;
    p->H = H;
    p->W = W;
    p->th = (H + 3) / 4;
    p->tw = (W + 3) / 4;
    int64_t tiles = BLOCK_FLOATS / (CP_WINO_POINTS * (int64_t)(cin + cout));
    if (tiles < MIN_TILES)
        tiles = MIN_TILES;
    int rows = (int)((tiles + p->tw / 2) / p->tw);
    rows = rows < 1 ? 1 : rows > p->th ? p->th : rows;
    p->rows = rows;
    p->nblk = (p->th + rows - 1) / rows;
    const int64_t tb = (int64_t)rows * p->tw;
    const int64_t rowbuf = 6 * (4 * (int64_t)p->tw + 8) + 36 * (int64_t)p->tw + 16;
    p->ws_floats = CP_WINO_POINTS * (cin + cout) * tb + rowbuf;
}

/* buf[i] = act(x[y][i - 1]) for i in [0, 4 tw + 2), zero outside the image. */
static void load_row(const cp_wino_plan *p, const cp_wino_src *s, int c, int y, float *buf)
{
    const int n = 4 * p->tw + 2, W = p->W;
    if (y < 0 || y >= p->H) {
        memset(buf, 0, (size_t)n * sizeof(float));
        return;
    }
    const int up = s->up, Ws = W >> up;
    const float *xr = s->x + (int64_t)c * (p->H >> up) * Ws + (int64_t)(y >> up) * Ws;
    float *b = buf + 1;
    buf[0] = 0.0f;
    if (!s->scale) {
        if (up)
            for (int q = 0; q < W; q++)
                b[q] = xr[q >> 1];
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

/* V[xi][c][j0 + tx] for the tiles of tile row ty, channel c (ldv floats between points). */
static void input_row(const cp_wino_plan *p, const cp_wino_src *s, int c, int ty, float *V,
                      int64_t ldv, float *buf, float *R)
{
    const int tw = p->tw;
    /* R[r][k][tx]: row transform of patch row r */
    for (int r = 0; r < 6; r++) {
        load_row(p, s, c, 4 * ty - 1 + r, buf);
        float *R0 = R + (int64_t)r * 6 * tw;
        float *R1 = R0 + tw, *R2 = R1 + tw, *R3 = R2 + tw, *R4 = R3 + tw, *R5 = R4 + tw;
        for (int tx = 0; tx < tw; tx++) {
            const float *d = buf + 4 * tx;
            float t[6];
            BT6(d[0], d[1], d[2], d[3], d[4], d[5], t);
            R0[tx] = t[0];
            R1[tx] = t[1];
            R2[tx] = t[2];
            R3[tx] = t[3];
            R4[tx] = t[4];
            R5[tx] = t[5];
        }
    }
    /* column transform: V[i*6+k] = sum_r BT[i][r] R[r][k] */
    const int64_t rs = 6 * (int64_t)tw;
    for (int k = 0; k < 6; k++) {
        const float *r0 = R + k * (int64_t)tw;
        float *v0 = V + k * ldv, *v1 = v0 + 6 * ldv, *v2 = v1 + 6 * ldv, *v3 = v2 + 6 * ldv;
        float *v4 = v3 + 6 * ldv, *v5 = v4 + 6 * ldv;
        for (int tx = 0; tx < tw; tx++) {
            const float d0 = r0[tx], d1 = r0[rs + tx], d2 = r0[2 * rs + tx],
                        d3 = r0[3 * rs + tx], d4 = r0[4 * rs + tx], d5 = r0[5 * rs + tx];
            float t[6];
            BT6(d0, d1, d2, d3, d4, d5, t);
            v0[tx] = t[0];
            v1[tx] = t[1];
            v2[tx] = t[2];
            v3[tx] = t[3];
            v4[tx] = t[4];
            v5[tx] = t[5];
        }
    }
}

/* out[o] rows of tile row ty from M[xi][o][j0 + tx] (ldm floats between points). */
static void output_row(const cp_wino_plan *p, const float *M, int64_t ldm, int ty, float bias,
                       float *out, int accumulate, float *T, float *ybuf)
{
    const int tw = p->tw, W = p->W;
    /* T[i][k][tx] = sum_r AT[i][r] M[r*6+k] */
    for (int k = 0; k < 6; k++) {
        const float *m0 = M + k * ldm, *m1 = m0 + 6 * ldm, *m2 = m1 + 6 * ldm,
                    *m3 = m2 + 6 * ldm, *m4 = m3 + 6 * ldm, *m5 = m4 + 6 * ldm;
        float *t0 = T + k * (int64_t)tw, *t1 = t0 + 6 * (int64_t)tw, *t2 = t1 + 6 * (int64_t)tw,
              *t3 = t2 + 6 * (int64_t)tw;
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
        const float *q0 = T + (int64_t)i * 6 * tw, *q1 = q0 + tw, *q2 = q1 + tw, *q3 = q2 + tw,
                    *q4 = q3 + tw, *q5 = q4 + tw;
        for (int tx = 0; tx < tw; tx++) {
            const float a = q1[tx] + q2[tx], b = q1[tx] - q2[tx];
            const float c = q3[tx] + q4[tx], d = q3[tx] - q4[tx];
            float *yb = ybuf + 4 * tx;
            yb[0] = (q0[tx] + a) + c;
            yb[1] = b + 2.0f * d;
            yb[2] = a + 4.0f * c;
            yb[3] = (b + 8.0f * d) + q5[tx];
        }
        float *o = out + (int64_t)y * W;
        if (accumulate)
            for (int x = 0; x < W; x++)
                o[x] = (o[x] + bias) + ybuf[x];
        else
            for (int x = 0; x < W; x++)
                o[x] = bias + ybuf[x];
    }
}

void cp_wino_block(const cp_wino_plan *p, const float *U, const float *bias, const cp_wino_src *s,
                   int blk, float *out, int accumulate, float *ws)
{
    const int tw = p->tw, cin = p->cin, cout = p->cout;
    const int ty0 = blk * p->rows;
    const int nrows = p->th - ty0 < p->rows ? p->th - ty0 : p->rows;
    const int64_t nt = (int64_t)nrows * tw; /* tiles of this block */
    const int64_t ldv = (int64_t)cin * nt, ldm = (int64_t)cout * nt;
    float *V = ws, *M = V + CP_WINO_POINTS * ldv;
    float *buf = M + CP_WINO_POINTS * ldm, *R = buf + 4 * (int64_t)tw + 8;
    /* input transform: V[xi][c][tile] */
    for (int c = 0; c < cin; c++)
        for (int r = 0; r < nrows; r++)
            input_row(p, s, c, ty0 + r, V + (int64_t)c * nt + (int64_t)r * tw, ldv, buf, R);
    /* M[xi] = U[xi] V[xi]: (cout x cin) (cin x nt) */
    const int64_t oc = (int64_t)cout * cin;
    for (int xi = 0; xi < CP_WINO_POINTS; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)nt, cin, 1.0f,
                    U + xi * oc, cin, V + xi * ldv, (int)nt, 0.0f, M + xi * ldm, (int)nt);
    /* output transform */
    float *ybuf = buf; /* 4 tw floats; the input rows are no longer needed */
    for (int o = 0; o < cout; o++)
        for (int r = 0; r < nrows; r++)
            output_row(p, M + (int64_t)o * nt + (int64_t)r * tw, ldm, ty0 + r, bias[o],
                       out + (int64_t)o * p->H * p->W, accumulate, R, ybuf);
}
