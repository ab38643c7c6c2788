/* The 3-D holes of labels, found over the blocks their box covers (DESIGN.md §4.1), never on a
 * canvas of the box. A hole of label w (CELLPOSE_ALGORITHM.md §8.9,
 * cp_post_hole_map) is a 6-connected component of the voxels != w of w's box that does not touch
 * the box's faces. Each block's share of the box is split into such components locally; one that
 * touches a face of the box is outside; components of neighbouring blocks that touch across a
 * block face are joined at w's owner (union-find over the components, keyed (block, w, number)).
 * The joined components that are not outside are exactly the holes of the whole box.
 * Memory of a rank: block-sized scratch (13 bytes per voxel of the largest block), records of
 * the block faces inside the boxes (24 bytes per voxel of such a face in transit), and 32 bytes
 * per component that touches a block face and per distinct pair of touching components. */
#ifndef CP_DHOLES3_H
#define CP_DHOLES3_H

#include <mpi.h>
#include <stdint.h>

#include "grid.h"
#include "post.h"

/* Own block b's labels: *vox (C order over *bb), valid until the next call. 0 or an error. */
typedef int (*cp_dholes3_get)(void *ctx, int64_t b, const uint32_t **vox, cp_box *bb);

struct cp_hkey;

typedef struct cp_dholes3 {
    MPI_Comm comm;
    int np;
    const cp_grid *g;
    int64_t b0, b1, bmax; /* this rank's blocks, the largest block's voxels (all ranks) */
    cp_dholes3_get get;
    void *ctx;
    uint32_t *comp;          /* scratch: component of each voxel of a block's share of a box */
    unsigned char *flag;     /* scratch: per component, what it touches */
    int64_t *stack;          /* scratch: flood fill */
    struct cp_hkey *hole;    /* the components of own blocks that are holes, sorted */
    int64_t nhole;
    char *err;
} cp_dholes3;

/* Scratch for blocks of up to bmax voxels (the largest of all ranks). 0 or CP_ENOMEM. */
int cp_dholes3_init(cp_dholes3 *h, MPI_Comm comm, const cp_grid *g, int64_t bmax,
                    cp_dholes3_get get, void *ctx, char *err);
void cp_dholes3_free(cp_dholes3 *h);

/* Collective: the holes of labels cl[0..ncl) (increasing, the same list on every rank; box[k]:
 * the box of cl[k]), kept for cp_dholes3_map. Agreed status. */
int cp_dholes3_find(cp_dholes3 *h, const uint32_t *cl, const cp_box *box, int64_t ncl);

/* What cp_post_hole_map gives for label w (box lb, one of the labels of cp_dholes3_find) on the
 * whole box, on its share of own block b (voxels blk over box bb): state over meet(lb, bb) in C
 * order, 1 for w, 2 for a voxel reached from the box's faces, 0 for a hole. */
void cp_dholes3_map(cp_dholes3 *h, int64_t b, const uint32_t *blk, cp_box bb, uint32_t w,
                    cp_box lb, unsigned char *state);

#endif
