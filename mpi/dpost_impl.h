/* What the files of the per-mask steps share (dpost.c, dpost_labels.c, dpost_qc.c,
 * dpost_holes.c; see dpost.h): the stage context, the per-label tables and the functions one
 * file gives the others. Private to those files. */
#ifndef CP_DPOST_IMPL_H
#define CP_DPOST_IMPL_H

#include <stdint.h>

#include "cp_err.h"
#include "dplane.h"
#include "exchange.h"

/* Per-label tables (labels 1..n): area, and mn[5v..5v+4] = first raster index, y0, x0, -y1,
 * -x1 of the bounding box [y0, y1) x [x0, x1), so one MIN reduction gives them all. */
struct stats {
    int64_t n;
    int64_t *area, *mn;
};

/* What every stage needs: the plane, this rank's blocks, block-sized scratch, outboxes. */
struct run {
    const cp_dplane *d;
    const cp_grid *g;
    int64_t b0, b1, bmax; /* own blocks [b0, b1); bmax = B*B */
    uint32_t *blk, *out;  /* one block */
    float *dp;            /* one "dp" block */
    cp_outbox qpx, kpx, ed; /* records bound for other ranks (made by the stage that sends them) */
    char *err;
};

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static inline int oom(char *err, const char *what)
{
    return cp_errf(err, CP_ENOMEM, "dpost.c: out of memory for %s", what);
}

/* Queues record rec for rank dst in outbox o; what: what is sent, for the message. */
static inline int send(struct run *r, cp_outbox *o, int dst, const void *rec, const char *what)
{
    return cp_outbox_push(o, dst, rec, 1) ? oom(r->err, what) : 0;
}

static inline cp_rect label_box(const struct stats *s, uint32_t v)
{
    const int64_t *m = s->mn + 5 * (int64_t)v;
    return (cp_rect){m[1], m[2], -m[3] - m[1], -m[4] - m[2]};
}

/* A label whose box does not lie in one block. */
static inline int crossing(const struct run *r, const struct stats *s, uint32_t v)
{
    cp_rect b = label_box(s, v);
    return cp_grid_block_at(r->g, b.y0, b.x0) !=
           cp_grid_block_at(r->g, b.y0 + b.ny - 1, b.x0 + b.nx - 1);
}

/* The rank owning the block of label v's first pixel. */
static inline int label_owner(const struct run *r, const struct stats *s, uint32_t v)
{
    int64_t i = s->mn[5 * (int64_t)v];
    return cp_grid_owner(r->g, cp_grid_block_at(r->g, i / r->g->Lx, i % r->g->Lx));
}

static inline int load(struct run *r, cp_slot what, int64_t b, uint32_t *a, cp_rect *br)
{
    char name[64];
    *br = cp_grid_block(r->g, b);
    return cp_bstore_get(r->d->store, cp_dname(r->d, what, name), b, a,
                         sizeof(uint32_t) * (size_t)(br->ny * br->nx), r->err);
}

static inline int store(struct run *r, cp_slot what, int64_t b, const uint32_t *a, cp_rect br)
{
    char name[64];
    return cp_bstore_put(r->d->store, cp_dname(r->d, what, name), b, a,
                         sizeof(uint32_t) * (size_t)(br.ny * br.nx), r->err);
}

/* dpost_labels.c: the tables (s->n + 1 entries each; init: area 0, mn INT64_MAX; free: also of
 * a table never initialized, zeroed), the pixels of a block array a (rectangle br) added, the
 * tables of all ranks combined (collective), and the renumbering of the min_size rule. */
int cp_dpost_stats_init(struct stats *s, int64_t n, char *err);
void cp_dpost_stats_free(struct stats *s);
void cp_dpost_stats_add(struct stats *s, const uint32_t *a, cp_rect br, int64_t Lx);
void cp_dpost_stats_reduce(MPI_Comm comm, struct stats *s);
int cp_dpost_renumber_map(const struct stats *s, int64_t min_size, const unsigned char *drop,
                          uint32_t *map, int64_t *count, char *err);

/* dpost_qc.c: the flow QC (collective): bad[v] = 1 for every label it removes (bad zeroed by
 * the caller); then "qc" of every own block, "m0" without the labels flagged bad. */
int cp_dpost_flow_qc(struct run *r, const struct stats *s, double thr, unsigned char *bad);
int cp_dpost_write_qc(struct run *r, const unsigned char *bad);

/* dpost_holes.c: step (b), hole filling (collective): reads map["qc"] of own blocks (labels
 * described by s), stores the filled array as "fh", and reduces its tables into s2 (allocated
 * there, s->n labels). */
int cp_dpost_fill_holes(struct run *r, const struct stats *s, const uint32_t *map,
                        struct stats *s2);

#endif
