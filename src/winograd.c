/* Winograd F(4x4, 3x3) convolution (winograd.h): the weight transform, the work split of a layer
 * shape, and the choice of the copy of the block kernel (winograd_kern.c) for this CPU. */
#include "winograd.h"
#include "winograd_impl.h"

#include <stdlib.h>
#include <string.h>

/* Tiles per block the shape asks for: the transformed input and output of a block (36 (cin +
 * cout) tiles floats) should stay near 2 MiB, with at least 64 tiles so that each sgemm is not
 * dominated by packing its cout x cin operand. (Measured flat from 0.5 to 8 MiB on an EPYC.) */
#define BLOCK_FLOATS (1 << 19)
#define MIN_TILES 64

/* G of F(m x m, 3x3): (m + 2) x 3. */
static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};
static const double G6[8][3] = {{1, 0, 0},
                                {-2.0 / 9, -2.0 / 9, -2.0 / 9},
                                {-2.0 / 9, 2.0 / 9, -2.0 / 9},
                                {1.0 / 90, 1.0 / 45, 2.0 / 45},
                                {1.0 / 90, -1.0 / 45, 2.0 / 45},
                                {32.0 / 45, 16.0 / 45, 8.0 / 45},
                                {32.0 / 45, -16.0 / 45, 8.0 / 45},
                                {0, 0, 1}};

void cp_wino_weights(const float *w, int cout, int cin, int m, float *U)
{
    const double(*G)[3] = m == 6 ? G6 : G4;
    const int n = m + 2;
    const int64_t oc = (int64_t)cout * cin;
#pragma omp parallel for schedule(static) /* each U element on its own: any split, same bits */
    for (int o = 0; o < cout; o++)
        for (int c = 0; c < cin; c++) {
            const float *g = w + ((int64_t)o * cin + c) * 9;
            double t[8][3]; /* G g */
            for (int i = 0; i < n; i++)
                for (int v = 0; v < 3; v++)
                    t[i][v] = G[i][0] * g[v] + G[i][1] * g[3 + v] + G[i][2] * g[6 + v];
            for (int i = 0; i < n; i++)
                for (int k = 0; k < n; k++)
                    U[(i * n + k) * oc + (int64_t)o * cin + c] =
                        (float)(t[i][0] * G[k][0] + t[i][1] * G[k][1] + t[i][2] * G[k][2]);
        }
}

void cp_wino_plan_make(int cin, int cout, int H, int W, int m, cp_wino_plan *p)
{
    p->m = m == 6 ? 6 : 4;
    p->points = (p->m + 2) * (p->m + 2);
    p->cin = cin;
    p->cout = cout;
    p->H = H;
    p->W = W;
    p->th = (H + p->m - 1) / p->m;
    p->tw = (W + p->m - 1) / p->m;
    int64_t tiles = BLOCK_FLOATS / (p->points * (int64_t)(cin + cout));
    if (tiles < MIN_TILES)
        tiles = MIN_TILES;
    int rows = (int)((tiles + p->tw / 2) / p->tw);
    rows = rows < 1 ? 1 : rows > p->th ? p->th : rows;
    p->rows = rows;
    p->nblk = (p->th + rows - 1) / rows;
    const int64_t tb = (int64_t)rows * p->tw;
    /* row buffer, input phases and their column transform: (m + 2) rows x m phases x (tw + 1) */
    const int64_t rowbuf = p->m * (int64_t)p->tw + 8 + 2 * (p->m + 2) * p->m * ((int64_t)p->tw + 1);
    p->ws_floats = p->points * (cin + cout) * tb + rowbuf;
    p->isa = cp_wino_isa_default();
}

int cp_wino_isa_supported(int isa)
{
    switch (isa) {
    case CP_WINO_GENERIC:
        return 1;
#if defined(CP_WINO_X86)
    case CP_WINO_AVX2:
        return __builtin_cpu_supports("avx2");
    case CP_WINO_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

const char *cp_wino_isa_name(int isa)
{
    return isa == CP_WINO_AVX512 ? "avx512" : isa == CP_WINO_AVX2 ? "avx2" : "generic";
}

int cp_wino_isa_default(void)
{
    const char *e = getenv("CP_WINO_ISA");
    for (int isa = CP_WINO_AVX512; isa >= CP_WINO_GENERIC; isa--)
        if (cp_wino_isa_supported(isa) && (!e || !*e || !strcmp(e, cp_wino_isa_name(isa))))
            return isa;
    return CP_WINO_GENERIC;
}

void cp_wino_block(const cp_wino_plan *p, const float *U, const float *bias, const cp_wino_src *s,
                   int blk, float *out, int accumulate, float *ws)
{
    const int six = p->m == 6;
    switch (p->isa) {
#if defined(CP_WINO_X86)
    case CP_WINO_AVX512:
        (six ? cp_wino_block6_avx512 : cp_wino_block4_avx512)(p, U, bias, s, blk, out, accumulate,
                                                              ws);
        return;
    case CP_WINO_AVX2:
        (six ? cp_wino_block6_avx2 : cp_wino_block4_avx2)(p, U, bias, s, blk, out, accumulate, ws);
        return;
#endif
    default:
        (six ? cp_wino_block6_generic : cp_wino_block4_generic)(p, U, bias, s, blk, out,
                                                                accumulate, ws);
    }
}
