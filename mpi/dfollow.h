/* Flow following over owner blocks (DESIGN.md §2.4, §4 "Particle rounds"): particles carry their
 * state (src, position, steps done) and advance on one block's field window at a time; when a
 * particle's stencil leaves the window it migrates to the block (and rank) where it now lies.
 * The arithmetic is src/follow.c's on every window, so the end points are bit-identical to a
 * whole-plane cp_follow_run for any number of ranks and any block size. */
#ifndef CP_DFOLLOW_H
#define CP_DFOLLOW_H

#include <stdint.h>

#include "dplane.h"

/* Collective. Reads "dp" of own blocks; one particle per pixel of the block with cellprob >
 * (float)threshold (src = y*Lx + x, start (y, x)); advances all particles `steps` iterations, moving
 * each particle to the owner of the block containing its truncated position whenever it leaves a
 * block's window (the block grown by 1 px, where "dp" is defined); writes "fin" of every own block
 * (an empty array where none ends): the finished particles whose end cell (trunc py, trunc px)
 * lies in that block, sorted by src. *rounds: number of communication rounds. A failure on any
 * rank is returned by every rank ("rank R: dfollow.c: ..."). Memory per rank: one block's field
 * and one block's particles at a time, at most CP_DFOLLOW_MAX_HELD particles held for its blocks
 * (beyond that they are spilled to the store), and at most as many (plus one block's) waiting to
 * leave the rank. */
int cp_dfollow_run(const cp_dplane *d, int32_t steps, int interp, float threshold, int64_t *rounds,
                   char *err);

/* Particles held in memory (queued for this rank's blocks, or finished and not yet sorted) before
 * they are spilled to the block store: 2^21 (48 MiB). */
#define CP_DFOLLOW_MAX_HELD ((int64_t)1 << 21)

/* cp_dfollow_run with its limits given: at most max_msg particles per rank pair in one MPI
 * message (an exchange is split into as many messages as the largest pair needs; values above
 * INT_MAX / nranks, the most MPI's int counts and displacements allow, are lowered to it), and
 * at most max_held particles held in memory before spilling (0: every particle goes through the
 * store). cp_dfollow_run uses INT_MAX / nranks and CP_DFOLLOW_MAX_HELD; small values test the
 * splitting and the spilling. */
int cp_dfollow_run_opts(const cp_dplane *d, int32_t steps, int interp, float threshold,
                        int64_t max_msg, int64_t max_held, int64_t *rounds, char *err);

#endif
