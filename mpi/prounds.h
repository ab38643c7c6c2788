/* Particle rounds over owner blocks (DESIGN.md §4 "Particle rounds"), written once for the 2-D
 * (dfollow.c) and 3-D (dfollow3.c) flow following: each round, every rank advances the particles
 * queued for each of its blocks on that block's field window; finished particles go to "fin" of
 * the block of their end point, stopped ones to the next round's queue of the block whose window
 * holds their stencil; those bound for another rank's block travel through cp_exchange; an
 * MPI_Allreduce of the number still travelling ends the loop. What differs between 2-D and 3-D
 * (the record, where a particle goes, the advance on one block) is a small table of operations,
 * as a backend: the rounds only move opaque records whose first member is the int64_t src. */
#ifndef CP_PROUNDS_H
#define CP_PROUNDS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "bstore.h"
#include "grid.h"
#include "progress.h"

typedef struct cp_prounds_ops {
    size_t size; /* bytes per particle record; the record starts with its int64_t src */
    /* The block particle p goes to next; *fin = 1 if it has finished (the block of its end
     * point), 0 if not (the block whose field window holds its stencil). */
    int64_t (*dest)(const void *ctx, const void *p, int *fin);
    /* Advances the *nq particles *q (malloc'ed, may be NULL) of block b in round r: in round 0
     * first appends the block's seeds (realloc'ing *q), reporting them to pr when pr is not
     * NULL; *travelling += those left unfinished. Finished particles must be left in the form
     * "fin" holds. 0 or a cp_err status with a message. */
    int (*advance)(void *ctx, int64_t b, int64_t r, void **q, int64_t *nq, cp_progress *pr,
                   int64_t *travelling, char *err);
    /* The number of seeds of block b (for the progress line; only called when it is shown). */
    int64_t (*count_seeds)(void *ctx, int64_t b);
} cp_prounds_ops;

/* One run: the communicator and this rank, the block grid (2-D or 3-D: only the numbering and
 * the owners of the blocks matter here), the store, the names of the arrays (each block's
 * "fin" output and the two queues by round parity), the steps, the operations and their context,
 * and `what` (the file name errors start with, "dfollow.c: ..."). */
typedef struct cp_prounds {
    MPI_Comm comm;
    int rank;
    const cp_grid *grid;
    const cp_bstore *store;
    const char *fin, *queue[2];
    const char *what, *progress_label;
    const cp_prounds_ops *ops;
    void *ctx;
} cp_prounds;

/* Collective. Runs the rounds until no particle travels, with at most max_msg particles per rank
 * pair in one MPI message (values above INT_MAX / nranks are lowered to it) and at most max_held
 * particles held in memory before all of them are spilled to the store (0: every particle goes
 * through the store); within a round, the particles bound for other ranks are sent whenever
 * max_held of them wait (after at least one block), so they too are bounded. Writes "fin" of every own block sorted by src (an empty array where none
 * ends); removes the queues. *rounds: number of communication rounds. A failure on any rank
 * (bad max_msg / max_held included) is returned by every rank ("rank R: <what>: ..."). */
int cp_prounds_run(const cp_prounds *pr, int64_t max_msg, int64_t max_held, int64_t *rounds,
                   char *err);

#endif
