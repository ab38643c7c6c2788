/* Mask post-processing (CELLPOSE_ALGORITHM.md §4.7-4.9, §5): flow-error QC, hole filling, the
 * corrected min_size rule (DESIGN.md §2.8), renumbering, and stitching of stack planes. */
#ifndef CP_POST_H
#define CP_POST_H

#include <stdint.h>

/* The corrected min_size rule (DESIGN.md §2.8): a mask of area pixels is removed when
 * area < min_size, whatever its label. */
int cp_post_too_small(int64_t area, int64_t min_size);

/* Cellpose's flow error of one label (scipy.ndimage.mean of each channel, summed): add each of
 * its pixels, in raster order, to the f64 sums s[0], s[1] of the squared differences between its
 * ideal flows (mu0, mu1) and the network's dP / 5 (dy, dx); the error of its cnt pixels is then
 * cp_post_flow_error(s, cnt). The whole-plane QC and the distributed one both use these two. */
static inline void cp_post_flow_error_add(double *s, double mu0, double mu1, float dy, float dx)
{
    double d0 = mu0 - (double)(dy / 5.0f), d1 = mu1 - (double)(dx / 5.0f);
    s[0] += d0 * d0;
    s[1] += d1 * d1;
}

static inline double cp_post_flow_error(const double *s, int64_t cnt)
{
    return (0.0 + s[0] / (double)cnt) + s[1] / (double)cnt;
}

/* Flow-error QC: removes (sets to 0, no renumbering) every label whose error between its ideal
 * flows and dP/5 exceeds threshold (strict). dP (2, Ly, Lx) channel-first at the dynamics scale.
 * errors, if not NULL, gets max_label+1 doubles (error per label, index 0 unused, NaN for a
 * label value with no pixel). threshold <= 0 removes nothing (errors are still computed). */
int cp_post_flow_qc(uint32_t *labels, int64_t Ly, int64_t Lx, const float *dP, double threshold,
                    double *errors, char *err);

/* Hole filling and min_size, corrected rule: (a) remove masks with area < min_size (by label),
 * renumber; (b) fill holes of each label (4-connected background not touching its box border;
 * an enclosed mask is swallowed as in Cellpose), compacting labels in label order; (c) (a) again.
 * min_size <= 0: (b) only. 2-D: nz == 1; 3-D (stitched stacks): 6-connected holes, 3-D boxes. */
int cp_post_fill_and_min_size(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx,
                              int64_t min_size, char *err);

/* cp_post_fill_and_min_size with the rule of a volume also when nz == 1 (do_3D, §8.9: a box one
 * plane deep has every voxel on a z face, so nothing is filled there). */
int cp_post_fill_and_min_size_3d(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx,
                                 int64_t min_size, char *err);

/* Bounding box [z0, z1) x [y0, y1) x [x0, x1); z1 == 0 when a label is absent. */
typedef struct cp_box {
    int64_t z0, z1, y0, y1, x0, x1;
} cp_box;

/* The holes of label v inside box b of labels (nz, Ly, Lx) as Cellpose's hole filling sees them:
 * state (box-sized) gets 1 on v, 2 on the pixels not v reached from the box border through
 * pixels not v (4-connected in 2-D; 6-connected with the z faces as border when three_d), and 0
 * on the holes. stack: box-sized scratch. */
void cp_post_hole_map(const uint32_t *labels, int64_t Ly, int64_t Lx, int three_d, uint32_t v,
                      const cp_box *b, unsigned char *state, int64_t *stack);

/* The faces of a box that cp_post_hole_map_faces floods from: bits of CP_FACE_*. */
enum {
    CP_FACE_Z0 = 1, CP_FACE_Z1 = 2, CP_FACE_Y0 = 4, CP_FACE_Y1 = 8, CP_FACE_X0 = 16,
    CP_FACE_X1 = 32, CP_FACES_YX = 4 | 8 | 16 | 32, CP_FACES_ALL = 63
};

/* cp_post_hole_map (6-connected) flooding only from the faces of b named in `faces`: the pixels
 * not v of b left 0 are not reached from those faces inside b. cp_post_hole_map is faces
 * CP_FACES_ALL (three_d) or CP_FACES_YX. A part of a larger box (a block's share of a label's
 * box) names the faces it shares with that box: a pixel reached here is reached there. */
void cp_post_hole_map_faces(const uint32_t *labels, int64_t Ly, int64_t Lx, unsigned faces,
                            uint32_t v, const cp_box *b, unsigned char *state, int64_t *stack);

/* Cellpose's stitch3D over planes (nz, Ly, Lx) in place with IoU threshold, ids in uint32 (no
 * wrap: more than 2^32-1 ids is CP_EDATA, the array then partly relabelled; the empty-plane
 * label collision is fixed: a plane next to an empty one gets ids above the running maximum). */
int cp_post_stitch(uint32_t *labels, int64_t nz, int64_t Ly, int64_t Lx, double threshold,
                   char *err);

#endif
