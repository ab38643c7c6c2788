/* What the one driver (mpi/dsegment.c, DESIGN.md §3) has below it in src/: a volume in 3-D on
 * one process, and what every driver shares (output paths, progress lines). */
#ifndef CP_SEGMENT_H
#define CP_SEGMENT_H

#include <stddef.h>

#include "compute_masks.h"
#include "cpnet.h"
#include "image.h"
#include "params.h"
#include "run_net.h"
#include "timing.h"

/* --do_3D needs a volume: CP_EPARAM naming image when L has fewer than 2 planes. */
int cp_volume_check(const char *image, const cp_layout *L, char *err);

/* The grids of a --do_3D run of a volume L (§8.4-8.9) at rescale: the dynamics (and saved flows)
 * at Ld, the volume or the network scale without resample, and the labels at Lm
 * (cp_masks3_out_shape). Errors of cp_net3d_scale (CP_EPARAM). */
int cp_volume_grids(const cp_params *p, const int64_t L[3], double rescale, int64_t Ld[3],
                    int64_t Lm[3], char *err);

/* --do_3D on one process: segments the volume `image` with the loaded model into out_path
 * (written atomically). model_path is recorded in the output; cmdline too. Timing is added to
 * *tm. */
int cp_segment_volume(const cp_params *p, const cp_model *m, const char *model_path,
                      const char *image, const char *out_path, const char *cmdline, cp_timing *tm,
                      char *err);

struct cp_h5out;
struct cp_provenance;
/* The end of a --do_3D run on one process (from an image or saved flows): the label volume
 * (nz, ny, nx) in one write, its 3-D /cells and the attributes of p and pv into the open output h,
 * then commit (h is freed, also on error); the --save_tif file after. pv->n_masks is set here. */
int cp_write_output(const cp_params *p, struct cp_h5out *h, const uint32_t *labels, int64_t nz,
                    int64_t ny, int64_t nx, struct cp_provenance *pv, const char *out_path,
                    char *err);

/* A progress line "cellpose-mpi: ..." on stderr, unless quiet. */
void cp_say(int quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* <input without extension>_seg.h5 next to the input. */
void cp_default_output(const char *input, char *out, size_t len);
/* <folder of out_path>/<input name without extension><suffix>: the files written beside the
 * output (--save_tif, --save_overlay). */
void cp_sibling_path(const char *out_path, const char *input, const char *suffix, char *buf,
                     size_t len);
/* The --save_tif file: <folder of out_path>/<input name without extension>_cp_masks.tif. */
void cp_masks_tif_path(const char *out_path, const char *input, char *buf, size_t len);

#endif
