/* The per-label tables of the per-mask steps (see dpost_impl.h): area, first raster index and
 * bounding box of every label, summed / minimised over all ranks, and the new ids of the
 * corrected min_size rule (the rule and the renumbering themselves: post.h, renumber.h). */
#include <stdlib.h>

#include "dpost_impl.h"
#include "post.h"
#include "renumber.h"

/* In-place allreduce of n int64 in chunks that fit an int count. */
static void allreduce_i64(MPI_Comm comm, int64_t *v, int64_t n, MPI_Op op)
{
    for (int64_t o = 0; o < n; o += 1 << 26)
        MPI_Allreduce(MPI_IN_PLACE, v + o, (int)min64(n - o, 1 << 26), MPI_INT64_T, op, comm);
}

int cp_dpost_stats_init(struct stats *s, int64_t n, char *err)
{
    s->n = n;
    s->area = calloc((size_t)n + 1, sizeof(int64_t));
    s->mn = malloc(sizeof(int64_t) * 5 * ((size_t)n + 1));
    if (!s->area || !s->mn) return oom(err, "per-label tables");
    for (int64_t i = 0; i < 5 * (n + 1); i++) s->mn[i] = INT64_MAX;
    return 0;
}

void cp_dpost_stats_free(struct stats *s)
{
    free(s->area);
    free(s->mn);
    s->area = s->mn = NULL;
}

/* Adds the pixels of block array a (rectangle br of the plane) to s. */
void cp_dpost_stats_add(struct stats *s, const uint32_t *a, cp_rect br, int64_t Lx)
{
    for (int64_t y = 0; y < br.ny; y++)
        for (int64_t x = 0; x < br.nx; x++) {
            uint32_t v = a[y * br.nx + x];
            if (!v) continue;
            int64_t *m = s->mn + 5 * (int64_t)v, gy = br.y0 + y, gx = br.x0 + x;
            s->area[v]++;
            m[0] = min64(m[0], gy * Lx + gx);
            m[1] = min64(m[1], gy);
            m[2] = min64(m[2], gx);
            m[3] = min64(m[3], -(gy + 1));
            m[4] = min64(m[4], -(gx + 1));
        }
}

void cp_dpost_stats_reduce(MPI_Comm comm, struct stats *s)
{
    allreduce_i64(comm, s->area, s->n + 1, MPI_SUM);
    allreduce_i64(comm, s->mn, 5 * (s->n + 1), MPI_MIN);
}

/* The corrected min_size rule with renumbering by first appearance: map[v] (s->n + 1 entries) =
 * new id of label v, 0 for a label too small (cp_post_too_small), absent, or flagged in drop (may
 * be NULL). *count: the labels kept. */
int cp_dpost_renumber_map(const struct stats *s, int64_t min_size, const unsigned char *drop,
                 uint32_t *map, int64_t *count, char *err)
{
    for (int64_t v = 1; v <= s->n; v++)
        map[v] = !cp_post_too_small(s->area[v], min_size) && !(drop && drop[v]);
    if ((*count = cp_renumber_ids(s->mn, 5, s->n, map)) < 0) return oom(err, "renumbering");
    return 0;
}
