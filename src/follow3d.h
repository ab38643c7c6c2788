/* Flow following in 3-D (CELLPOSE_ALGORITHM.md §8.7): particles start at the voxels with
 * cellprob > threshold and move along the summed 3-D flow field for `steps` iterations, bit-exactly
 * as Cellpose 3.1.1.3 on CPU: with interp, PyTorch's grid_sample (trilinear, zero padding,
 * align_corners=False) on coordinates kept in the normalised frame; without, numba's steps3D.
 * As in 2-D (follow.h) a particle carries its state, so a window of the field can advance it part
 * of the way and another window finish it. */
#ifndef CP_FOLLOW3D_H
#define CP_FOLLOW3D_H

#include <stdint.h>

/* A particle. c is its position (z, y, x) in the frame of the mode: with interp the normalised
 * grid_sample coordinates g in [-1, 1] (the voxel i starts at ((i / (L-1)) * 2) - 1), without
 * interp voxel units in [0, L-1]. cp_follow3_to_voxels converts to voxel end points. */
typedef struct cp_particle3 {
    int64_t src;   /* C-order index (z * Ly + y) * Lx + x of the source voxel */
    float c[3];    /* position (z, y, x), see above */
    int32_t steps; /* iterations done */
} cp_particle3;

/* A window of the field, 3 floats per voxel interleaved (z, y, x), C order over the window.
 * With interp the channels are G_k = (float)(F_k * s_k), s_k = (float)(2.0 / (double)(L_k - 1));
 * without, F_k; F = (float)((float)(dP * keep) / 5.0f) as in 2-D. */
typedef struct cp_field3 {
    int64_t L[3];  /* the whole volume (Lz, Ly, Lx) */
    int64_t w0[3]; /* window origin (z, y, x) in volume coordinates */
    int64_t n[3];  /* window size */
    int interp;    /* which field (and which particle frame) this is */
    const float *f; /* n[0] * n[1] * n[2] * 3 */
} cp_field3;

/* Checks a volume for the mode: every axis needs L >= 1, and L >= 2 with interp (grid_sample's
 * normalisation divides by L - 1; Cellpose would produce NaN positions). CP_EPARAM otherwise. */
int cp_follow3_check(const int64_t L[3], int interp, char *err);

/* The field of nvox voxels of a volume (or of a window of it: only L is used for the scales):
 * dP (3 planes of nvox, channel-first dZ, dY, dX), cellprob (nvox), keep = cellprob >
 * (float)threshold -> f (nvox * 3 interleaved), scaled as cp_field3 says for the mode. */
void cp_follow3_field(const float *dP, const float *cellprob, int64_t nvox, const int64_t L[3],
                      float threshold, int interp, float *f);

/* Particles of a volume: one per voxel with cellprob > threshold (float32 comparison), in C order,
 * at the voxel's start position in the mode's frame, 0 steps done. p may be NULL to count only.
 * Returns the count. */
int64_t cp_follow3_particles(const float *cellprob, const int64_t L[3], float threshold,
                             int interp, cp_particle3 *p);
/* cp_follow3_particles for the box of origin o and size n of the volume L only (a block of a
 * distributed run): cellprob on the box (C order), src and positions of the volume. */
int64_t cp_follow3_particles_box(const float *cellprob, const int64_t L[3], const int64_t o[3],
                                 const int64_t n[3], float threshold, int interp, cp_particle3 *p);

/* Advances each particle until it has done `steps` iterations or a corner of its stencil that lies
 * inside the volume is outside the window (corners outside the volume are zero padding and need
 * no field). Stencil with interp: the 2x2x2 voxels (a_k, a_k + 1), a_k = floor(u_k),
 * u_k = (((g_k + 1) * L_k) - 1) / 2; without: the voxel trunc(p). A stopped particle keeps its
 * state, so a later call on another window continues it with the same bits. A particle whose step
 * brings it back (bit for bit) to the position before its current one gets its remaining steps at
 * once (it alternates between two positions forever; a fixed point included), as in follow.h.
 * Particles with steps >= `steps` are left alone. OpenMP over particles; the result does not
 * depend on the thread count. Returns how many particles have fewer than `steps` steps. */
int64_t cp_follow3_run(const cp_field3 *F, cp_particle3 *p, int64_t n, int32_t steps);

/* The kernel cp_follow3_run uses on F: "avx512" or "avx2" (interp, on a CPU that has it, window
 * offsets within int32), else "scalar"; CP_FOLLOW_KERNEL=scalar|avx2|avx512 in the environment
 * picks one where available (as for follow.h). All give the same bits. */
const char *cp_follow3_kernel(const cp_field3 *F);

/* The voxel whose neighbourhood of 1 voxel holds every corner inside the volume of p's stencil
 * (cp_follow3_run): with interp the lower corner a_k clamped into [0, L_k - 1], without trunc(p)
 * clamped likewise; 0 on an axis where the position is NaN. A window holding that voxel grown by
 * 1 advances p at least one step (a distributed run sends a stopped particle to its block). */
void cp_follow3_cell(const cp_particle3 *p, const int64_t L[3], int interp, int64_t cell[3]);

/* Ends the run of p[0..n) of a volume L: c becomes the end point (z, y, x) in voxel units, with
 * interp p_k = ((g_k + 1) * 0.5f) * (float)(L_k - 1) (what Cellpose returns), without it c is
 * already that. What masks3d.h takes; with interp the particles cannot be advanced further. */
void cp_follow3_to_voxels(cp_particle3 *p, int64_t n, const int64_t L[3], int interp);

#endif
