/* Winograd F(4x4, 3x3) convolution for CPnet's 3x3 layers (stride 1, zero padding 1), with the
 * input's BatchNorm affine + ReLU (and nearest 2x upsampling) applied while the input is
 * transformed, so that the activated input is never written out. F(6x6, 3x3) (64 points, 8x8
 * patches) is here too: 21% fewer products but measured 10-15% slower on CPnet here (the
 * transforms, not the products, bound the time) and 4x the error, so CPnet uses F(4x4).
 *
 * Contract. out[o] (+)= b[o] + sum_c conv3x3(w[o][c], act(in[c])), where act(v) = ReLU?(v * scale[c]
 * + shift[c]) (identity when scale is NULL), zero outside the image. The image is cut into 4x4
 * output tiles (a 6x6 input patch each); tile rows are grouped into blocks whose size depends only
 * on the layer shape (cin, cout, H, W, m), and one block is one unit of work: its input transform,
 * 36 OpenBLAS sgemm calls (one per transform point, cout x cin times cin x tiles) and its output
 * transform all run on the calling thread, in an order fixed by the shape. The bits of a tile's
 * output therefore do not depend on the batch size, the thread count or the rank (DESIGN.md §2.10).
 * The transforms are plain C with -ffp-contract=off, compiled for baseline x86-64, AVX2 and
 * AVX-512F and chosen at run time: lane-wise adds and multiplies in one order, no FMA, so every
 * copy gives the same bits. The sgemm kernel is OpenBLAS's (pin it with OPENBLAS_CORETYPE on mixed
 * clusters, as for im2col).
 *
 * Error. Relative to sum |w| |x| over the 3x3 x cin window the result differs from the exact sum by
 * float32 roundings amplified by the transforms (rows of B^T sum to 10 in absolute value, of A^T
 * to 19): measured worst 3.2e-6 on every CPnet shape from 8 input channels up (asserted <= 2e-5;
 * with fewer channels up to 6e-5, which is why CPnet's first conv stays on im2col; F(6x6):
 * 1.3e-5). On the
 * network's outputs: <= 2.3e-5 absolute on dP / cellprob of every reference case (tolerance
 * 1e-3). tests/test_winograd.c checks every CPnet shape against a float64 direct
 * convolution and prints the worst error. */
#ifndef CP_WINOGRAD_H
#define CP_WINOGRAD_H

#include <stdint.h>

#define CP_WINO_MAX_POINTS 64 /* 8 x 8 transform points of F(6x6, 3x3) */

/* The transformed weights U[(m+2)^2][cout][cin] of F(m x m, 3x3), m = 4 or 6 (float64 arithmetic,
 * rounded once) of PyTorch's (cout, cin, 3, 3) weights w. */
void cp_wino_weights(const float *w, int cout, int cin, int m, float *U);

/* Copies of the block kernel (winograd_kern.c compiled per instruction set); all give the same
 * bits. The default is the widest the CPU runs, or the one named by CP_WINO_ISA (generic, avx2,
 * avx512) in the environment when the CPU runs it. */
enum cp_wino_isa { CP_WINO_GENERIC, CP_WINO_AVX2, CP_WINO_AVX512 };
int cp_wino_isa_supported(int isa);
int cp_wino_isa_default(void);
const char *cp_wino_isa_name(int isa);

/* The work split of one layer shape. */
typedef struct cp_wino_plan {
    int cin, cout, H, W;
    int m, points;      /* output tile m x m (4 or 6), (m + 2)^2 transform points */
    int th, tw;         /* tile rows and columns: ceil(H / m), ceil(W / m) */
    int rows;           /* tile rows per block (the last block may have fewer) */
    int nblk;           /* blocks per image */
    int64_t ws_floats;  /* scratch floats one cp_wino_block call needs */
    int isa;            /* enum cp_wino_isa: cp_wino_isa_default(); a caller may set another */
} cp_wino_plan;

void cp_wino_plan_make(int cin, int cout, int H, int W, int m, cp_wino_plan *p);

/* The input of one image: cin planes of (H >> up) x (W >> up) at x (plane after plane), read
 * through nearest upsampling when up = 1; scale/shift (cin each) and relu as in the contract. */
typedef struct cp_wino_src {
    const float *x;
    int up;
    const float *scale, *shift;
    int relu;
} cp_wino_src;

/* Block blk (0 <= blk < p->nblk) of one image: writes (accumulate = 0) or adds to (accumulate = 1)
 * out[o][y][x] (cout planes of H x W) the bias plus the convolution, for the output rows of the
 * block's tile rows. U from cp_wino_weights; ws: p->ws_floats floats, 64-byte aligned is best. */
void cp_wino_block(const cp_wino_plan *p, const float *U, const float *bias, const cp_wino_src *s,
                   int blk, float *out, int accumulate, float *ws);

#endif
