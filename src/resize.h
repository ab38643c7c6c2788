/* OpenCV 4.6-identical resizing of float32 images (CELLPOSE_ALGORITHM.md §2.3): bilinear
 * (INTER_LINEAR, incl. the exact-2x area path) and nearest for labels. Window versions compute a
 * part of the output from the part of the input it needs (DESIGN.md §2.3). */
#ifndef CP_RESIZE_H
#define CP_RESIZE_H

#include <math.h>
#include <stdint.h>

#include "box.h"

/* Source rows (or columns) [*s0, *s1) that output rows [d0, d1) read when an axis of length n is
 * resized to m. */
void cp_resize_src_span(int64_t n, int64_t m, int64_t d0, int64_t d1, int64_t *s0, int64_t *s1);

/* Bilinear resize of a whole image src (sny, snx, nc) -> dst (dny, dnx, nc), interleaved.
 * Equal sizes copy; sny == 2*dny and snx == 2*dnx take OpenCV's area path in its scalar order
 * 0 + (((a + b) + c) + d), which OpenCV uses for nc = 2, 3 (the channel counts Cellpose
 * resizes). The same order is used for every nc on purpose, so resizing channels one at a time
 * (nc = 1) gives Cellpose's 3-channel bits (OpenCV's own nc = 1, 4 SIMD path would sum
 * (a + b) + (c + d)). */
void cp_resize_bilinear(const float *src, int64_t sny, int64_t snx, int nc, float *dst,
                        int64_t dny, int64_t dnx);

/* Window version: the full source is sny x snx and the full destination dny x dnx; src holds
 * source rows/columns starting at (sy0, sx0) with row stride src_nx (it must cover the span of
 * cp_resize_src_span); dst receives output rows [oy0, oy0+ony) x columns [ox0, ox0+onx).
 * Same bits as the whole-image call. */
void cp_resize_bilinear_window(const float *src, int64_t sy0, int64_t sx0, int64_t src_nx,
                               int64_t sny, int64_t snx, int nc, float *dst, int64_t oy0,
                               int64_t ox0, int64_t ony, int64_t onx, int64_t dny, int64_t dnx);

/* A volume src (nz, ny, nx, nc) interleaved -> dst (mz, my, mx, nc), as Cellpose's 3-D code
 * resizes with cv2.resize (CELLPOSE_ALGORITHM.md §8.4, §8.6): first every Z plane
 * (ny, nx) -> (my, mx), then every Y plane (nz, mx) -> (mz, mx) (columns keep their size, so only
 * Z is interpolated); a pass whose sizes are equal is skipped (OpenCV copies). pairwise: the
 * exact-2x area path sums (a + b) + (c + d), OpenCV's order for 4 channels (the 3-D network
 * output, which the caller may resize one channel at a time, nc = 1); else the 2- and 3-channel
 * order of cp_resize_bilinear. Scratch: one (nz, my, mx, nc) volume when both passes run, plus
 * one (mz, mx, nc) plane. Errors: CP_ENOMEM. */
int cp_resize_volume(const float *src, int64_t nz, int64_t ny, int64_t nx, int nc, float *dst,
                     int64_t mz, int64_t my, int64_t mx, int pairwise, char *err);

/* The box of the source volume (n[0], n[1], n[2]) that cp_resize_volume_window reads for the
 * destination box `out` of the volume (m[0], m[1], m[2]). */
cp_box3 cp_resize_volume_src_box(const int64_t n[3], const int64_t m[3], cp_box3 out);

/* Window version of cp_resize_volume: src holds the box `in` of the volume n (nc channels
 * interleaved), covering cp_resize_volume_src_box(n, m, out); dst receives the box `out` of the
 * resized volume m, (out.n, nc): the same bits as the whole-volume call (which is this call on
 * whole boxes). Scratch: the Y, X pass over the Z span it needs, plus one Z x X plane of out.
 * Errors: CP_ENOMEM. */
int cp_resize_volume_window(const float *src, cp_box3 in, const int64_t n[3], int nc, float *dst,
                            cp_box3 out, const int64_t m[3], int pairwise, char *err);

/* INTER_NEAREST's source index of destination index i, for n source and m destination pixels
 * on an axis: min(floor(i * (1 / (m / n))), n - 1). */
static inline int64_t cp_nearest_source(int64_t i, int64_t n, int64_t m)
{
    int64_t s = (int64_t)floor((double)i * (1.0 / ((double)m / (double)n)));
    return s > n - 1 ? n - 1 : s;
}

/* INTER_NEAREST resize of labels (cp_nearest_source per axis).
 * Cellpose passes uint32 labels through float32 (exact below 2^24); here values are copied
 * exactly, which is identical below 2^24 and keeps label identity above (§6). */
void cp_resize_nearest_u32(const uint32_t *src, int64_t sny, int64_t snx, uint32_t *dst,
                           int64_t dny, int64_t dnx);

#endif
