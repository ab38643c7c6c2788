/* Flow following (CELLPOSE_ALGORITHM.md §4.3): particles start at foreground pixels and move along
 * the network's flow field for `steps` iterations, bit-exactly as Cellpose's numba code.
 * A particle carries its state, so a window of the field can advance it part of the way and
 * another window (another rank) can finish it (DESIGN.md §2.4). */
#ifndef CP_FOLLOW_H
#define CP_FOLLOW_H

#include <stdint.h>

typedef struct cp_particle {
    int64_t src;       /* global raster index of the source pixel (y * Lx + x) */
    float py, px;      /* position */
    int32_t steps;     /* iterations done */
    int32_t pad_;
} cp_particle;

/* A window of the field F = (float)((float)(dP * keep) / 5.0f), interleaved (dy, dx) per pixel. */
typedef struct cp_field {
    int64_t Ly, Lx;          /* the whole plane (clamping bounds) */
    int64_t y0, x0, ny, nx;  /* window in plane coordinates */
    const float *f;          /* ny * nx * 2 */
} cp_field;

/* Computes the field of npix pixels: F from dP (2 planes of npix, channel-first: dY then dX) and
 * cellprob, with keep = cellprob > (float)threshold. f: npix * 2 interleaved. */
void cp_follow_field(const float *dP, const float *cellprob, int64_t npix, float threshold,
                     float *f);

/* Particles of a Ly x Lx plane (§4.3 step 3): one per pixel with cellprob > threshold (float32
 * comparison), in row-major order, at the pixel's (row, column), src = y * Lx + x, 0 steps done.
 * p may be NULL to count only. Returns the count. */
int64_t cp_follow_particles(const float *cellprob, int64_t Ly, int64_t Lx, float threshold,
                            cp_particle *p);

/* Advances each particle until it has done `steps` iterations or the stencil of its current
 * position leaves the window; a stopped particle keeps its position and step count, so a later
 * call on another window (or the whole field) continues it with bit-identical results. Stencil:
 * rows y0 = clamp(trunc(py), 0, Ly-1) .. min(y0+1, Ly-1), likewise columns; with interp = 0
 * (Cellpose's interp=False rule: the flow of the pixel) the single pixel (y0, x0). A step is a
 * function of the position alone, so a particle whose step from b brings it back (bit for bit)
 * to the position a it had before b (or to b itself, a fixed point; at the start of a call only
 * that is checked) alternates between a and b forever: it gets all its remaining steps at once,
 * ending at a if their number after this step is even, else at b. Particles with
 * steps >= `steps` are left alone. OpenMP over particles; the result does not depend on the
 * thread count. Interpolation runs the widest vector kernel the CPU has (AVX-512, else AVX2, else
 * scalar; all give the same bits); CP_FOLLOW_KERNEL=scalar|avx2|avx512 in the environment picks
 * one where available. Returns how many particles have fewer than `steps` steps on return. */
int64_t cp_follow_run(const cp_field *F, cp_particle *p, int64_t n, int32_t steps, int interp);

struct cp_progress;
/* cp_follow_run that also adds to pr (progress.h; may be NULL) the particles of each chunk as
 * the chunk is done (from the OpenMP workers: one atomic add per chunk of 32 or more particles,
 * nothing per step). Same results. */
int64_t cp_follow_run_progress(const cp_field *F, cp_particle *p, int64_t n, int32_t steps,
                               int interp, struct cp_progress *pr);

/* The name of the kernel cp_follow_run uses on F: "scalar", "avx2" or "avx512" (static string). */
const char *cp_follow_kernel(const cp_field *F, int interp);

#endif
