/* What every distributed phase knows about the plane it works on: the communicator, the block
 * grid at the dynamics scale, and the block store holding the per-block arrays that phases hand
 * to each other: the slots below, the one place where they are named and laid out. Helpers here
 * move arrays in and out of blocks (windows across blocks, whole planes for tests and small
 * outputs). */
#ifndef CP_DPLANE_H
#define CP_DPLANE_H

#include <mpi.h>
#include <stdint.h>

#include "bstore.h"
#include "grid.h"

/* The per-block arrays of a plane (file "<name>.z<z>.<block>" in the work directory). Those a
 * phase hands to the next: */
typedef enum cp_slot {
    CP_SLOT_DP,   /* float32 (3, hy, hx) on the block grown by 1 pixel (cp_rect_grow(block, 1)):
                     dY, dX, cellprob — the network phase (or saved flows) for all later ones */
    CP_SLOT_FIN,  /* cp_particle records: finished particles whose end cell lies in the block —
                     flow following for the masks */
    CP_SLOT_M0,   /* uint32 block: raw masks after big-mask removal, renumbered (Cellpose's
                     masks_raw) — the masks phase for the per-mask steps and protrusions */
    CP_SLOT_QC,   /* uint32 block: after the flow-error QC (not renumbered) */
    CP_SLOT_LAB,  /* uint32 block: the final labels — for the output and the cells table */
    /* scratch of one phase: */
    CP_SLOT_FQ0, CP_SLOT_FQ1, /* particle queues of flow following, by round parity */
    CP_SLOT_MH, CP_SLOT_MHQ, CP_SLOT_MLQ, /* masks: extended histogram, its queue, label queue */
    CP_SLOT_FH,   /* per-mask steps: labels after hole filling */
    CP_SLOT_PLAB, /* protrusions: new labels before they replace "lab" */
    CP_NSLOTS
} cp_slot;

/* Name and element layout of a slot (uint32 or float32 arrays; queues are records). */
typedef struct cp_slot_info {
    const char *name;
    int nch;   /* channels (channel-first) of a block array */
    int grown; /* stored on the block grown by this many pixels */
} cp_slot_info;
extern const cp_slot_info cp_slots[CP_NSLOTS];

typedef struct cp_dplane {
    MPI_Comm comm;
    int rank, nranks;
    cp_grid grid;            /* the plane at the dynamics scale */
    const cp_bstore *store;
    int64_t z;               /* plane index: block arrays are named "<what>.z<z>" */
} cp_dplane;

/* Sets up d for plane z of Ly x Lx with blocks of side B (collective: nothing communicated). */
void cp_dplane_init(cp_dplane *d, MPI_Comm comm, int64_t Ly, int64_t Lx, int64_t B,
                    const cp_bstore *store, int64_t z);
/* "<what>.z<z>" into buf (64 bytes). */
const char *cp_dname(const cp_dplane *d, cp_slot what, char *buf);

/* Copies the part of the nch-channel array src (elements of elem bytes on rectangle sr,
 * channel-first) that lies in rectangle dr into the nch-channel array dst on dr. */
void cp_rect_paste(const void *src, cp_rect sr, size_t elem, int nch, void *dst, cp_rect dr);
/* Array `what` of the plane on rectangle w (inside the plane), assembled into out from the
 * blocks it touches, whoever owns them (the work directory is shared): uint32 block arrays, or
 * the 3 float channels of "dp" (stored on blocks grown by 1), channel-first on w. */
int cp_dplane_load_window(const cp_dplane *d, cp_slot what, cp_rect w, void *out, char *err);
/* Every rank writes the "dp" arrays of its own blocks from whole-plane dP (2, Ly, Lx) and
 * cellprob (Ly, Lx) that it holds (tests, --flows input). */
int cp_dplane_put_dp(const cp_dplane *d, const float *dP, const float *cellprob, char *err);
/* Gathers uint32 block array `what` of all blocks into whole (Ly, Lx) on rank 0 (whole may be
 * NULL elsewhere). Collective. */
int cp_dplane_gather_u32(const cp_dplane *d, cp_slot what, uint32_t *whole, char *err);

#endif
