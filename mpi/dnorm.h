/* Normalization percentiles of an image read in pieces by many ranks (CELLPOSE_ALGORITHM.md §2.2
 * and §5 norm3D, DESIGN.md §2.1): the exact global order statistics of Cellpose's sample, found by
 * a two-round radix select on order-preserving 32-bit keys whose histograms are summed across
 * ranks. Never per block: the result is bit-identical to cp_norm_compute_stack on the whole
 * planes, for any number of ranks. */
#ifndef CP_DNORM_H
#define CP_DNORM_H

#include <mpi.h>
#include <stdint.h>

#include "image.h"
#include "prep.h"

/* Collective over comm. The range test and the q1/q99 percentiles of both network channels over
 * planes [z0, z0+nz) of im (nz = 1: one plane normalized alone; all planes: norm3D), the sample
 * being all pixels or, when a channel has more than 224^3 pixels, the strided subsample with
 * strides (max(1, nz//50), max(1, ny//224), max(1, nx//224)) counted from plane z0, row 0,
 * column 0. Every rank reads a contiguous share of chunks of rows across the full width with
 * cp_image_read (at most twice: min/max and the high-16-bit histogram, then the low 16 bits of
 * the bins holding the wanted ranks), so memory per rank is O(chunk), never O(image).
 * out[c] is identical on every rank and to cp_norm_compute_stack(x2 of those planes, c, ...).
 * Failures (q1/q99 out of 0 <= q1 < q99 <= 100, planes outside the image, read errors, non-finite
 * pixels refused by cp_image_read, allocation) are agreed with cp_agree: every rank returns the
 * same status and message. */
int cp_dnorm_compute(MPI_Comm comm, cp_image *im, int64_t z0, int64_t nz, double q1, double q99,
                     cp_norm out[2], char *err);

/* The same with chunks of chunk_rows rows (>= 1; cp_dnorm_compute uses about 2^16 pixels per
 * chunk). The result does not depend on it; tests use small chunks to spread a small image over
 * many reads and ranks. */
int cp_dnorm_compute_rows(MPI_Comm comm, cp_image *im, int64_t z0, int64_t nz, int64_t chunk_rows,
                          double q1, double q99, cp_norm out[2], char *err);

#endif
