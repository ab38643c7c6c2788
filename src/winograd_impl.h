/* Private to winograd.c / winograd_kern.c: the copies of the block kernel, one per tile size (F(4x4, 3x3) and
 * F(6x6, 3x3)) and instruction set (same source, same bits). */
#ifndef CP_WINOGRAD_IMPL_H
#define CP_WINOGRAD_IMPL_H

#include "winograd.h"

void cp_wino_block4_generic(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block4_avx2(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block4_avx512(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block6_generic(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block6_avx2(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block6_avx512(const cp_wino_plan *p, const float *U, const float *bias,
    const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);

#endif
