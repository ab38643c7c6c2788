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

void cp_wino_weights(const float *w, int cout, int cin, float *U)
{
    static const double G[6][3] = {{1.0 / 4, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
    const int64_t oc = (int64_t)cout * cin;
#pragma omp parallel for schedule(static) /* each U element on its own: any split, same bits */
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
    const int64_t rowbuf = 4 * (int64_t)p->tw + 8 + 48 * ((int64_t)p->tw + 1);
    p->ws_floats = CP_WINO_POINTS * (cin + cout) * tb + rowbuf;
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
    switch (p->isa) {
#if defined(CP_WINO_X86)
    case CP_WINO_AVX512:
        cp_wino_block_avx512(p, U, bias, s, blk, out, accumulate, ws);
        return;
    case CP_WINO_AVX2:
        cp_wino_block_avx2(p, U, bias, s, blk, out, accumulate, ws);
        return;
#endif
    default:
        cp_wino_block_generic(p, U, bias, s, blk, out, accumulate, ws);
    }
}
