/* flow3D_smooth (CELLPOSE_ALGORITHM.md §8.6): scipy.ndimage.gaussian_filter of a float32 volume
 * along Z, Y and X, re-done to the bit (scipy 1.10: kernel radius, weights normalised by numpy's
 * pairwise sum, 'reflect' borders, float64 line arithmetic, float32 result between passes). */
#ifndef CP_SMOOTH3D_H
#define CP_SMOOTH3D_H

#include <stdint.h>

#include "box.h"

/* Smooths v (nz, ny, nx) in place with a Gaussian of standard deviation sigma > 0 (voxels) along
 * the Z, then Y, then X axis, each 1-D pass reading the float32 result of the previous one, as
 * gaussian_filter(dP, (0, s, s, s)) does for one flow component. Scratch: the kernel and one
 * f64 line (axis length + 2 radius) per thread; lines are gathered from v and written back.
 * Errors: CP_EPARAM for sigma <= 0 or not finite, CP_ENOMEM. */
int cp_smooth3d_gaussian(float *v, int64_t nz, int64_t ny, int64_t nx, double sigma, char *err);

/* The span [*b0, *b0 + *bn) of an axis of n values that the smoothed values [o0, o0+on) read
 * (the kernel radius around them, reflected at the borders). */
void cp_smooth3d_reach(double sigma, int64_t n, int64_t o0, int64_t on, int64_t *b0, int64_t *bn);

/* Window version of cp_smooth3d_gaussian on a volume L: src holds the box b of the unsmoothed
 * volume, covering the reach (cp_smooth3d_reach) of the box o on every axis; dst (o.n)
 * receives the smoothed values of box o, the same bits as the whole-volume call. Scratch: two
 * boxes between b and o. Errors: as cp_smooth3d_gaussian. */
int cp_smooth3d_window(const float *src, cp_box3 b, const int64_t L[3], double sigma, float *dst,
                       cp_box3 o, char *err);

#endif
