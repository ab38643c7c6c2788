/* Masks from saved 3-D flows (--flows with --do_3D): the flows of a --do_3D --save_flows output
 * (/flows (3, Z, Y, X) = (dZ, dY, dX), /cellprob (Z, Y, X)), or a TIFF pair as the oracle stores
 * them (dP: 3 x Z pages, channel-major; cellprob: Z pages), through Cellpose's 3-D mask phase
 * (cp_compute_masks3: no flow QC) into one output. cp_segment_flows3 is one process with the
 * whole volume in memory (4 float32 and 1 uint32 per voxel, plus the dynamics' own); over 3-D
 * blocks (mpi/dvolume.c) each block's window is read with cp_flows3_window. */
#ifndef CP_FLOWS3D_INPUT_H
#define CP_FLOWS3D_INPUT_H

#include <stdint.h>

#include "box.h"
#include "params.h"
#include "timing.h"

/* The grid n (Z, Y, X) of the saved 3-D flows of p->flows (with p->cellprob_in: the TIFF pair).
 * Errors, one line naming the file: a 2-D flows file (leave out --do_3D), a TIFF pair whose
 * pages do not pair up, an unreadable file. */
int cp_flows3_size(const cp_params *p, int64_t n[3], char *err);

/* The box b of those flows (grid n, from cp_flows3_size) into out4 (4, b.n): dZ, dY, dX,
 * cellprob. Reads that box only (a window of each page, or an HDF5 hyperslab). */
int cp_flows3_window(const cp_params *p, const int64_t n[3], cp_box3 b, float *out4, char *err);

/* Reads p->flows (with p->cellprob_in: the TIFF pair) and writes the masks of the flows' grid to
 * out_path (committed atomically; with --save_flows the flows too), niter p->niter or 200 as 2-D
 * --flows. Errors, each one line naming the file, with nothing written: a 2-D flows file (leave
 * out --do_3D), a TIFF pair whose pages do not pair up, those of cp_compute_masks3 and of the
 * output; CP_EINTR when stopped. */
int cp_segment_flows3(const cp_params *p, const char *out_path, const char *cmdline,
                      cp_timing *tm, char *err);

#endif
