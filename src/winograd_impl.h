/* Private to winograd.c / winograd_kern.c: the copies of the block kernel, one per instruction
 * set (same source, same bits). */
#ifndef CP_WINOGRAD_IMPL_H
#define CP_WINOGRAD_IMPL_H

#include "winograd.h"

void cp_wino_block_generic(const cp_wino_plan *p, const float *U, const float *bias,
                           const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block_avx2(const cp_wino_plan *p, const float *U, const float *bias,
                        const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);
void cp_wino_block_avx512(const cp_wino_plan *p, const float *U, const float *bias,
                          const cp_wino_src *s, int blk, float *out, int accumulate, float *ws);

#endif
