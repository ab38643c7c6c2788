/* Progress a person can follow: one line per phase (network tiles, flow following, blocks,
 * planes, images) with the percentage done and an estimate of the time left, on stderr.
 *
 * On a terminal the line is rewritten in place ("\r"), at most 5 times a second, and ends with a
 * newline once the phase is over:
 *   cellpose-mpi: network         37% (9/24 tiles)  ETA 0:07
 *   cellpose-mpi: network        100% (24/24 tiles)  in 11.2 s
 * In a log (stderr not a terminal) the text, with the elapsed time before the ETA
 * ("37% (9/24 tiles)  elapsed 0:04  ETA 0:07"), is written as a line each time the phase
 * reaches a new tenth (10%, 20%, ... 90%: at most one line each; one line when a step crosses
 * several), then the final 100% line; no "\r".
 *
 * Where the output goes is set once per process by the driver (cp_progress_setup): it is a
 * property of the process's stderr, like stderr itself, so it is the one piece of state here that
 * is not in a caller's struct. Until it is set (unit tests of the engine, benchmarks) nothing is
 * printed. The driver sets it on rank 0 only: on N ranks the phases of a plane report rank 0's
 * own share of the work (its tiles, its blocks, its planes: the blocks are dealt evenly, so rank
 * 0's pace estimates the job's) without any new communication; the images of a --dir are counted
 * over all ranks (rank 0 hands them out and hears of each one done).
 *
 * What each phase counts: "network" the tiles run through the network (per batch; on blocks,
 * the tile evaluations the cache will need, counted before the first block); "flow following"
 * the particles (per chunk of 32 or more: nothing per step), on blocks those of the first
 * particle round of the own blocks, where every particle starts and most finish (later rounds
 * are in the elapsed time, not in the count); "planes" the planes of a stack; "images" those of a --dir.
 * CELLPOSE_MPI_PROGRESS=tty|log|off overrides the mode (cp_progress_detect).
 *
 * A phase's state is a cp_progress of the caller; cp_progress_add may be called from any thread
 * (OpenMP workers) and costs an atomic add when nothing is due; cp_progress_begin and
 * cp_progress_end from one thread, outside parallel regions. Every function accepts NULL. */
#ifndef CP_PROGRESS_H
#define CP_PROGRESS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cp_progress_mode {
    CP_PROGRESS_OFF = 0, /* nothing (--quiet, ranks other than 0, before setup) */
    CP_PROGRESS_TTY,     /* one line rewritten in place */
    CP_PROGRESS_LOG,     /* a line per tenth */
} cp_progress_mode;

/* One phase. Fields are private to progress.c. */
typedef struct cp_progress {
    cp_progress_mode mode; /* copied from the setup at begin */
    char label[32], unit[48];
    int64_t total;
    _Atomic int64_t done;
    atomic_flag busy;      /* held by the thread that prints */
    double t0, last;       /* start of the phase, last line on a terminal */
    _Atomic int tenth;     /* log: the last tenth printed */
    int width;             /* terminal: length of the last line, to blank what it leaves */
} cp_progress;

/* Where progress goes for the rest of the process: f (stderr in the program) in mode. */
void cp_progress_setup(FILE *f, cp_progress_mode mode);

/* The mode for stream f: CELLPOSE_MPI_PROGRESS=tty|log|off in the environment if set; else TTY
 * when f is a terminal; else, for a rank started by a local MPI launcher (mpirun forwards a
 * rank's stderr through a pipe), TTY when the launcher's own stderr is a terminal; else LOG. */
cp_progress_mode cp_progress_detect(FILE *f);

/* 1 if this process prints progress (set up, not OFF): lets a phase skip work done only to
 * count its units. */
int cp_progress_on(void);

/* Starts a phase of `total` units (`unit`: "tiles", "blocks of rank 0", ...). On a terminal the
 * 0% line appears at once. A phase of 0 units prints nothing. */
void cp_progress_begin(cp_progress *pr, const char *label, const char *unit, int64_t total);

/* n more units done (thread-safe). */
void cp_progress_add(cp_progress *pr, int64_t n);

/* Ends the phase: when every unit is done, the 100% line with the elapsed time; otherwise (an
 * error, a stop) the terminal line is only ended with a newline. */
void cp_progress_end(cp_progress *pr);

/* Ends the phase without its 100% line, whatever the count (a failure elsewhere); the terminal
 * line is ended with a newline. A later cp_progress_end does nothing. */
void cp_progress_cancel(cp_progress *pr);

/* Ends a line left open on the terminal, so that a message can start on a fresh line. Drivers
 * call it before printing anything else on stderr. */
void cp_progress_break(void);

#endif
