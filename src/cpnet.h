/* CPnet, Cellpose 3's U-net, in float32: the model (architecture derived from the tensor shapes of
 * a .pth file) and the forward pass of a batch of tiles (CELLPOSE_ALGORITHM.md §3.2): Winograd
 * F(4x4, 3x3) for the 3x3 convs (winograd.h), im2col + OpenBLAS sgemm for the 1x1 ones and the
 * first conv, OpenMP across tiles and output blocks.
 * Determinism (DESIGN.md §2.10): a tile's output bits do not depend on the batch size or the
 * thread count: work is split over outputs, never over a reduction. */
#ifndef CP_CPNET_H
#define CP_CPNET_H

#include <stdint.h>

typedef struct cp_model cp_model; /* weights + architecture (opaque) */

typedef struct cp_model_info {
    int nchan;          /* input channels */
    int nbase[5];       /* [nchan, w1, w2, w3, w4] */
    int nout;           /* 3 */
    int style_dim;      /* nbase[4] */
    float diam_mean, diam_labels;
    char sha256[65];    /* of the file, hex */
} cp_model_info;

/* Loads a Cellpose model file. Refuses files that are not a CPnet (missing/mis-shaped tensors,
 * nout != 3) with a message naming the file and the tensor. */
int cp_model_load(const char *path, cp_model **out, char *err);
const cp_model_info *cp_model_get_info(const cp_model *m);
/* How many of the model's 32 3x3 convs run as Winograd F(4x4, 3x3) (winograd.h); the others, and
 * the 1x1 convs, run as im2col + sgemm. The choice is by layer shape only (0 when the environment
 * had CP_NET_CONV=im2col at load). */
int cp_model_winograd_convs(const cp_model *m);
void cp_model_free(cp_model *m);

/* Resolves --pretrained_model like Cellpose: an existing path is used as is; otherwise a name is
 * looked up in $CELLPOSE_LOCAL_MODELS_PATH if set (it replaces the default), else in
 * ~/.cellpose/models. Not found: an error naming the places searched and how to get the file
 * (copy it from a Python Cellpose install's ~/.cellpose/models; nothing is downloaded). */
int cp_model_resolve(const char *name_or_path, char *path_out, int path_len, char *err);

/* Runs the network on n tiles, each (nchan, ty, tx) float32 contiguous, ty and tx multiples of 16;
 * writes (nout, ty, tx) per tile to out, and the style vector (style_dim per tile) to style if not
 * NULL. Uses the OpenMP threads in force. */
int cp_net_forward(const cp_model *m, const float *in, int n, int ty, int tx, float *out,
                   float *style, char *err);

#endif
