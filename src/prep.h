/* Preprocessing (CELLPOSE_ALGORITHM.md §2.1-2.2): which array axis is Z and which is channels,
 * Cellpose's channel selection to the network's 2 channels, normalize99 percentiles with numpy's
 * exact arithmetic, normalization and inversion. */
#ifndef CP_PREP_H
#define CP_PREP_H

#include <stdint.h>

/* How the planes and channels of an image array map to TIFF pages and samples. */
typedef struct cp_layout {
    int64_t nz, ny, nx;  /* planes to segment, rows, columns */
    int nc;              /* image channels (before selection) */
    /* page = z * z_page + c * c_page; sample = c * c_sample */
    int64_t z_page, c_page;
    int c_sample;
} cp_layout;

/* Decides the layout from the tifffile shape (cp_tiff_info.shape) as Cellpose's convert_image
 * does (§2.1), given --chan/--chan2 (channels given unless all_channels), --z_axis and
 * --channel_axis (-1 = not given) and whether stitching is on. Errors: a 2-D image with
 * stitching, a channel index >= nc, an axis out of range, images fewer than 8 rows high (we
 * refuse rather than garble, §2.1 quirk).
 * chan < 0 means --all_channels (channels=None: no Z detection, the first two channels are
 * used). The shape's axes are (pages..., Y, X[, S]); a trailing axis of 2..4 entries (ndim >= 3)
 * is the TIFF samples axis, as tifffile reports it. Cellpose decisions that would take an axis
 * other than the page rows/columns as Y/X (e.g. stitching a YXC image without --z_axis, which
 * Cellpose reads as Y planes of X x C pixels) or the samples axis as Z are refused
 * (CP_EUNSUPPORTED) with a message naming the shape. */
int cp_layout_decide(const int64_t *shape, int ndim, int z_axis, int channel_axis, int stitch,
                     int chan, int chan2, cp_layout *out, char *err);

/* Channel selection of npix pixels: raw (npix, nc) interleaved -> x (npix, 2) interleaved:
 * [raw, 0] for nc == 1, [mean of all, 0] for chan == 0, else [chan-1, chan2-1 or 0]. The mean is
 * the f32 left-to-right sum divided by nc. chan < 0 (all channels): the first two channels, a
 * zero second channel when nc == 1. Indices must have been validated by cp_layout_decide. */
void cp_prep_channels(const float *raw, int64_t npix, int nc, int chan, int chan2, float *x2);

/* Normalization constants of one channel (§2.2). */
typedef struct cp_norm {
    int good;          /* range > 0: normalized (and invertible) */
    int zero;          /* good but p99 - p1 <= 1e-3: set to 0 */
    double p1, p99;    /* percentiles (f64) */
} cp_norm;

/* numpy's "linear" method in two steps, for callers that find the order statistics themselves:
 * the virtual index (n-1) * (q/100) as integer part *i and fraction *t, then the interpolation
 * between the values at i and min(i+1, n-1) (numpy's _lerp, f64). */
void cp_percentile_index(int64_t n, double q, int64_t *i, double *t);
double cp_percentile_lerp(double lo, double hi, double t);

/* numpy "linear" percentile q (0..100) of n values already sorted ascending (f64 arithmetic). */
double cp_percentile_sorted(const double *v, int64_t n, double q);

/* Percentiles of channel c of x (ny, nx, 2) over Cellpose's sample (all pixels, or the
 * [::ny//224, ::nx//224] grid when the channel has more than 224^3 pixels), and the range test.
 * q1, q99: the percentiles (1, 99 by default; --norm_percentile), 0 <= q1 < q99 <= 100 else
 * CP_EPARAM. The two order statistics and their neighbours are found by selection (O(n)), with
 * the same bits as sorting. A channel with NaN or no range is not good (left as is). */
int cp_norm_compute(const float *x2, int64_t ny, int64_t nx, int c, double q1, double q99,
                    cp_norm *out, char *err);

/* The same over a whole stack x (nz, ny, nx, 2) (norm3D, used with stitching, §5): the range
 * test and the percentiles are over all planes of channel c; the sample is subsampled when the
 * channel has more than 224^3 pixels, with strides (max(1, nz//50), max(1, ny//224),
 * max(1, nx//224)). With nz == 1 this is exactly cp_norm_compute. Errors: CP_ENOMEM. */
int cp_norm_compute_stack(const float *x2, int64_t nz, int64_t ny, int64_t nx, int c, double q1,
                          double q99, cp_norm *out, char *err);

/* Applies the normalization of both channels to npix pixels of x (npix, 2), then 1 - x on good
 * channels when invert. Exactly the f32 operations of §2.2. */
void cp_norm_apply(float *x2, int64_t npix, const cp_norm norm[2], int invert);

/* x = 1 - x (f32) on the channels c with inv[c] != 0. For a stack normalized per plane (§2.2
 * step 3) the driver calls cp_norm_apply with invert = 0 on every plane, then this on every
 * plane with inv[c] = "some plane of channel c was good". */
void cp_norm_invert(float *x2, int64_t npix, const int inv[2]);

#endif
