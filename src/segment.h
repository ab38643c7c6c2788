/* The single-process driver (DESIGN.md §3): one image file, or a set of saved flows, to one HDF5
 * output (plus the optional _cp_masks.tif), plane by plane, with progress and a timing summary. */
#ifndef CP_SEGMENT_H
#define CP_SEGMENT_H

#include <stddef.h>

#include "cpnet.h"
#include "params.h"
#include "timing.h"

/* Segments `image` with the loaded model into out_path (written atomically). model_path is
 * recorded in the output; cmdline too. Timing is added to *tm. */
int cp_segment_image(const cp_params *p, const cp_model *m, const char *model_path,
                     const char *image, const char *out_path, const char *cmdline, cp_timing *tm,
                     char *err);

/* Masks from saved flows (--flows FILE.h5, or --flows dP.tif --cellprob_in cellprob.tif). */
int cp_segment_flows(const cp_params *p, const char *out_path, const char *cmdline, cp_timing *tm,
                     char *err);

/* <input without extension>_seg.h5 next to the input. */
void cp_default_output(const char *input, char *out, size_t len);

#endif
