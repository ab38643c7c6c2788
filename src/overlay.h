/* The --save_overlay picture (ours; Cellpose's --save_png writes the masks as a PNG instead): the
 * input image, normalised for display, with the outline of every mask in a colour of its own, as
 * an 8-bit RGB PNG for a quick look at a result. It is read back from the committed output file
 * and the input image, so one code path serves one process, N ranks (rank 0 calls it after the
 * collective write), folders and stacks (the middle plane). Memory follows the picture (at most
 * CP_OVERLAY_MAX pixels on its longer side) and one row of the image, never the whole image. */
#ifndef CP_OVERLAY_H
#define CP_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

#define CP_OVERLAY_MAX 2048

/* The file name: <folder of out_path>/<input file name without extension>_cp_overlay.png, the
 * rule of --save_tif's <name>_cp_masks.tif. */
void cp_overlay_path(const char *out_path, const char *input, char *buf, size_t len);

/* The picture's size for a plane of ny x nx: the same if neither side exceeds CP_OVERLAY_MAX;
 * otherwise the longer side becomes CP_OVERLAY_MAX and the shorter one
 * (n * CP_OVERLAY_MAX + longer / 2) / longer, at least 1. */
void cp_overlay_size(int64_t ny, int64_t nx, int64_t *oy, int64_t *ox);

/* The image row (or column) shown at picture row o of on, for an image side of n: nearest
 * sampling at the picture pixel's centre, (2 o + 1) n / (2 on) in integers. Outlines are
 * computed on the labels sampled this way, so that every outline survives the downsampling. */
int64_t cp_overlay_source(int64_t o, int64_t on, int64_t n);

/* The colour of label l > 0, integers only: hue h = (l * 949) mod 1536 on a wheel of 6 sectors
 * of 256 steps (949/1536 ~ the golden ratio, so that neighbouring ids differ), saturation 3/4,
 * value 1: sector s = h / 256, f = h mod 256, up = 64 + f * 191 / 255, down = 255 - f * 191 / 255,
 * (R,G,B) = s 0: (255,up,64)  1: (down,255,64)  2: (64,255,up)  3: (64,down,255)  4: (up,64,255)
 * 5: (255,64,down). Every component is at least 64 and the three are never equal, so an outline
 * pixel never equals a pixel of the grey image (R=G=B) nor of a two-channel one (a component 0). */
void cp_overlay_color(uint32_t l, uint8_t rgb[3]);

/* Paints the outlines of labels (oy, ox) over rgb (oy, ox, 3): a pixel with label l > 0 that has
 * a 4-neighbour inside the picture with another value (0 or another label) gets colour(l). */
void cp_overlay_outline(const uint32_t *labels, int64_t oy, int64_t ox, uint8_t *rgb);

/* Writes rgb (oy, ox, 3) as an 8-bit RGB PNG (libpng) to <path>.partial, then renames it to
 * path: nothing half-written is ever under the final name. Errors name the file and libpng's
 * reason. */
int cp_overlay_png_write(const char *path, const uint8_t *rgb, int64_t oy, int64_t ox, char *err);

/* The whole --save_overlay of one result: plane nz / 2 (0-based; the middle plane of a stack) of
 * /labels of the committed output h5_path, sampled at the picture's pixels chunk by chunk, and
 * the same pixels of image as the run read it (p->chan, p->chan2, p->z_axis, p->channel_axis);
 * each channel scaled from its 1st to its 99th percentile over the sampled pixels to 0..255, shown
 * as Cellpose's image_to_rgb does (--chan 0: grey; else --chan in RGB component chan-1 and --chan2
 * in chan2-1, modulo 3); image NULL (masks from saved flows): a black background. Then the
 * outlines, then png_path. Serial HDF5 and TIFF reads: call it on one rank. */
int cp_overlay_save(const char *h5_path, const char *image, const cp_params *p,
                    const char *png_path, char *err);

#endif
