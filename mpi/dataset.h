/* Datasets (DESIGN.md §4): many images, one output each, spread over the ranks by a work queue on
 * rank 0. Each image runs through the single-process engine on the rank that takes it; a failing
 * image is reported (by rank 0, naming the image) and skipped, the others finish. */
#ifndef CP_DATASET_H
#define CP_DATASET_H

#include <mpi.h>

#include "cpnet.h"
#include "params.h"
#include "timing.h"

/* Collective. files[0..n) are the images; each is written to <image>_seg.h5. With one rank the
 * images run in order; with more, rank 0 hands them out and ranks 1..N-1 segment. With --resume
 * an image whose output exists is skipped (the final name only ever holds a complete file). On
 * SIGTERM/SIGUSR1 (stop.h) the image in hand stops without output and no other starts. Returns
 * CP_EINTR if stopped, else the number of images that failed (the same on every rank). */
int cp_dataset_run(MPI_Comm comm, const cp_params *p, const cp_model *m, const char *model_path,
                   char **files, int n, const char *cmdline, cp_timing *tm);

#endif
