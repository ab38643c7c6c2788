/* Flow following in 3-D (CELLPOSE_ALGORITHM.md §8.7): the field, the particles and their advance,
 * bit-exactly as Cellpose 3.1.1.3's CPU path (torch grid_sample with interp, numba steps3D
 * without). Every operation is a float32 IEEE operation in the order of §8.7 (no FMA: the project
 * compiles with -ffp-contract=off). As in 2-D (follow.c) a particle whose step brings it back to
 * the position before its current one ends at once: a step is a function of the position alone,
 * so it alternates between the two forever. Interpolation runs a vector kernel where the CPU has
 * one (follow3d_kern.h, written once, instantiated for AVX-512 and AVX2; 16 or 8 particles per
 * vector with masked gathers of the corners); the scalar kernel states the recipe. */
#include "follow3d.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

int cp_follow3_check(const int64_t L[3], int interp, char *err)
{
    static const char axis[3] = {'Z', 'Y', 'X'};
    for (int k = 0; k < 3; k++)
        if (L[k] < (interp ? 2 : 1) || L[k] > INT32_MAX)
            return cp_errf(err, CP_EPARAM,
                           "follow3d: volume %lld x %lld x %lld: axis %c must have %s voxels%s",
                           (long long)L[0], (long long)L[1], (long long)L[2], axis[k],
                           interp ? "2 to 2^31-1" : "1 to 2^31-1",
                           interp ? " (interpolated 3-D dynamics divide by L - 1)" : "");
    return 0;
}

/* grid_sample's normalised step per voxel: (float)(2.0 / (double)(L - 1)). */
static float norm_scale(int64_t L)
{
    return (float)(2.0 / (double)(L - 1));
}

void cp_follow3_field(const float *dP, const float *cellprob, int64_t nvox, const int64_t L[3],
                      float threshold, int interp, float *f)
{
    float s[3] = {1.0f, 1.0f, 1.0f};
    for (int k = 0; interp && k < 3; k++) s[k] = norm_scale(L[k]);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nvox; i++) {
        /* multiply by the 0/1 mask (NaN * 0 stays NaN, as in numpy), / 5, then the scale */
        const float keep = cellprob[i] > threshold ? 1.0f : 0.0f;
        for (int k = 0; k < 3; k++) {
            const float F = (dP[k * nvox + i] * keep) / 5.0f;
            f[3 * i + k] = interp ? F * s[k] : F;
        }
    }
}

/* Start coordinate of voxel index i on an axis of length L in the mode's frame. */
static float start_coord(int64_t i, int64_t L, int interp)
{
    return interp ? (((float)i / (float)(L - 1)) * 2.0f) - 1.0f : (float)i;
}

int64_t cp_follow3_particles_box(const float *cellprob, const int64_t L[3], const int64_t o[3],
                                 const int64_t n[3], float threshold, int interp, cp_particle3 *p)
{
    int64_t np = 0, i = 0;
    for (int64_t z = o[0]; z < o[0] + n[0]; z++)
        for (int64_t y = o[1]; y < o[1] + n[1]; y++)
            for (int64_t x = o[2]; x < o[2] + n[2]; x++, i++) {
                if (!(cellprob[i] > threshold)) continue;
                if (p)
                    p[np] = (cp_particle3){.src = (z * L[1] + y) * L[2] + x,
                                           .c = {start_coord(z, L[0], interp),
                                                 start_coord(y, L[1], interp),
                                                 start_coord(x, L[2], interp)}};
                np++;
            }
    return np;
}

int64_t cp_follow3_particles(const float *cellprob, const int64_t L[3], float threshold,
                             int interp, cp_particle3 *p)
{
    static const int64_t o[3] = {0, 0, 0};
    return cp_follow3_particles_box(cellprob, L, o, L, threshold, interp, p);
}

void cp_follow3_to_voxels(cp_particle3 *p, int64_t n, const int64_t L[3], int interp)
{
    for (int64_t i = 0; interp && i < n; i++)
        for (int k = 0; k < 3; k++) p[i].c[k] = ((p[i].c[k] + 1.0f) * 0.5f) * (float)(L[k] - 1);
}

void cp_follow3_cell(const cp_particle3 *p, const int64_t L[3], int interp, int64_t cell[3])
{
    for (int k = 0; k < 3; k++) {
        const float Lf = (float)L[k], g = p->c[k];
        /* interp_axis's u and floor; positions stay within [-1, 1] (u within [-0.5, L - 0.5]) */
        const float v = interp ? floorf((((g + 1.0f) * Lf) - 1.0f) / 2.0f) : g;
        cell[k] = !(v > 0.0f) ? 0 : v >= (float)(L[k] - 1) ? L[k] - 1 : (int64_t)v;
    }
}

/* ---- one step of one particle ---- */

static inline int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* One axis of a trilinear stencil: lower corner a (window coordinate la), weights w0 (of a) and
 * w1 (of a + 1), which of the two corners lie inside the volume, and the window coordinates to
 * read for each (a corner outside the volume reads the other one; its term is dropped). */
typedef struct axis3 {
    float w0, w1;
    int in0, in1;
    int64_t r0, r1;
} axis3;

/* The stencil axis of normalised coordinate g on an axis of length L, window [w0, w0 + n).
 * Returns 0 when a corner inside the volume is outside the window (or g is NaN). */
static inline int interp_axis(float g, int64_t L, float Lf, int64_t w0, int64_t n, axis3 *s)
{
    const float u = (((g + 1.0f) * Lf) - 1.0f) / 2.0f; /* grid_sample, align_corners=False */
    if (!(u >= -1.0f && u <= Lf)) return 0;            /* NaN */
    const float fl = floorf(u);
    const int64_t a = (int64_t)fl;
    s->w0 = (fl + 1.0f) - u; /* (float)(a + 1) - u */
    s->w1 = u - fl;
    s->in0 = a >= 0;
    s->in1 = a + 1 < L;
    const int64_t lo = s->in0 ? a : a + 1, hi = s->in1 ? a + 1 : a;
    if (lo < w0 || hi >= w0 + n) return 0;
    s->r0 = lo - w0;
    s->r1 = hi - w0;
    return 1;
}

/* grid_sample at g: d[k] = sum over the 8 corners in the order (z, y, x) = (0,0,0), (0,0,1),
 * (0,1,0), ... of G_k[corner] * ((wx * wy) * wz), left to right from 0, corners outside the
 * volume skipped. Returns 0 (d untouched) when the stencil leaves the window. */
static inline int sample(const cp_field3 *F, const float Lf[3], const float g[3], float d[3])
{
    axis3 s[3];
    for (int k = 0; k < 3; k++)
        if (!interp_axis(g[k], F->L[k], Lf[k], F->w0[k], F->n[k], &s[k])) return 0;
    const float wxy[4] = {s[2].w0 * s[1].w0, s[2].w1 * s[1].w0, s[2].w0 * s[1].w1,
                          s[2].w1 * s[1].w1};
    const int64_t rz[2] = {s[0].r0, s[0].r1}, ry[2] = {s[1].r0, s[1].r1}, rx[2] = {s[2].r0, s[2].r1};
    const int iz[2] = {s[0].in0, s[0].in1}, iy[2] = {s[1].in0, s[1].in1}, ix[2] = {s[2].in0, s[2].in1};
    const float wz[2] = {s[0].w0, s[0].w1};
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int c = 0; c < 8; c++) {
        const int cz = c >> 2, cy = (c >> 1) & 1, cx = c & 1;
        const float w = wxy[c & 3] * wz[cz];
        const float *v = F->f + 3 * ((rz[cz] * F->n[1] + ry[cy]) * F->n[2] + rx[cx]);
        const int in = iz[cz] & iy[cy] & ix[cx];
        /* a skipped corner adds nothing; acc starts at +0 and is never -0, so + 0.0f is exact */
        for (int k = 0; k < 3; k++) acc[k] = acc[k] + (in ? v[k] * w : 0.0f);
    }
    d[0] = acc[0], d[1] = acc[1], d[2] = acc[2];
    return 1;
}

/* steps3D: the flow of voxel trunc(p). Returns 0 when that voxel is outside the window. */
static inline int voxel(const cp_field3 *F, const float p[3], float d[3])
{
    int64_t r[3];
    for (int k = 0; k < 3; k++) {
        if (!(p[k] >= 0.0f && p[k] < 2147483648.0f)) return 0; /* NaN */
        r[k] = (int64_t)p[k] - F->w0[k];
        if (r[k] < 0 || r[k] >= F->n[k]) return 0;
    }
    const float *v = F->f + 3 * ((r[0] * F->n[1] + r[1]) * F->n[2] + r[2]);
    d[0] = v[0], d[1] = v[1], d[2] = v[2];
    return 1;
}

/* The clamp of the mode: torch.clamp(v, -1, 1) with interp, min(L-1, max(0, v)) without (x86
 * maxss/minss operand order, as follow.c); NaN propagates in both. */
static inline float clamp_coord(float v, float lo, float hi)
{
    v = lo > v ? lo : v;
    return hi < v ? hi : v;
}

/* Constants of a run: float lengths and the clamp bounds of the mode. */
typedef struct run3 {
    float Lf[3], lo[3], hi[3];
} run3;

/* One iteration of one particle, if it has steps left and its stencil is inside the window.
 * prev: the position before q's (q's own at the start of a call), updated. Returns 1 if it
 * moved. */
static inline int step(const cp_field3 *F, const run3 *R, cp_particle3 *q, float prev[3],
                       int32_t steps)
{
    if (q->steps >= steps) return 0;
    float d[3], np[3];
    if (!(F->interp ? sample(F, R->Lf, q->c, d) : voxel(F, q->c, d))) return 0;
    for (int k = 0; k < 3; k++) np[k] = clamp_coord(q->c[k] + d[k], R->lo[k], R->hi[k]);
    /* back at the position before this one: the rest alternates between np and q->c; np is last
     * iff the steps left after this one are even */
    const int cycle = same_bits(np[0], prev[0]) && same_bits(np[1], prev[1]) &&
                      same_bits(np[2], prev[2]);
    const int stay = cycle && (steps - q->steps - 1) % 2 != 0;
    for (int k = 0; k < 3; k++) {
        prev[k] = q->c[k];
        q->c[k] = stay ? q->c[k] : np[k];
    }
    q->steps = cycle ? steps : q->steps + 1;
    return 1;
}

/* Particles per chunk (scalar: advanced one iteration per pass over the chunk so that the core
 * overlaps their independent dependency chains; vector kernels: CHUNK / lanes vectors). */
enum { CHUNK = 64 };

static void advance_scalar(const cp_field3 *F, const run3 *R, cp_particle3 *q, int64_t m,
                           int32_t steps)
{
    float prev[CHUNK][3];
    for (int64_t i = 0; i < m; i++) memcpy(prev[i], q[i].c, sizeof prev[i]);
    for (int moved = 1; moved;) {
        moved = 0;
        for (int64_t i = 0; i < m; i++) moved |= step(F, R, &q[i], prev[i], steps);
    }
}

enum kernel { K_SCALAR, K_AVX2, K_AVX512 };
static const char *const kernel_names[] = {"scalar", "avx2", "avx512"};

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CP_FOLLOW3_X86 1

/* The positions and steps left of m <= CHUNK particles as the vector kernels load them (unused
 * lanes: no steps left, position 0), and back for the particles that had steps left. */
static void group_load(const cp_particle3 *q, int64_t m, int32_t steps, float c[3][CHUNK],
                       int32_t left[CHUNK])
{
    for (int64_t i = 0; i < CHUNK; i++) {
        for (int k = 0; k < 3; k++) c[k][i] = i < m ? q[i].c[k] : 0.0f;
        left[i] = i < m && q[i].steps < steps ? steps - q[i].steps : 0;
    }
}

static void group_store(cp_particle3 *q, int64_t m, int32_t steps, float c[3][CHUNK],
                        const int32_t left[CHUNK])
{
    for (int64_t i = 0; i < m; i++) {
        if (q[i].steps >= steps) continue;
        for (int k = 0; k < 3; k++) q[i].c[k] = c[k][i];
        q[i].steps = steps - left[i];
    }
}


/* ---- AVX-512: 16 lanes, lane masks in k registers ---- */
#define K_NAME(x) x##_avx512
#define K_TARGET __attribute__((target("avx512f,avx512dq")))
#define K_W 16
#define VF __m512
#define VI __m512i
#define VM __mmask16
#define VF_SET1 _mm512_set1_ps
#define VI_SET1 _mm512_set1_epi32
#define VF_ADD _mm512_add_ps
#define VF_SUB _mm512_sub_ps
#define VF_MUL _mm512_mul_ps
#define VF_MIN _mm512_min_ps
#define VF_MAX _mm512_max_ps
#define VF_FLOOR(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define VF_LOAD _mm512_load_ps
#define VF_STORE _mm512_store_ps
#define VI_CVTT _mm512_cvttps_epi32
#define VI_ADD _mm512_add_epi32
#define VI_SUB _mm512_sub_epi32
#define VI_MUL _mm512_mullo_epi32
#define VI_LOAD _mm512_load_si512
#define VI_STORE _mm512_store_si512
#define VI_BLEND(m, a, b) _mm512_mask_blend_epi32(m, a, b)
#define VF_BLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define VI_MASK_DEC(m, v) _mm512_mask_sub_epi32(v, m, v, _mm512_set1_epi32(1))
#define VF_MASK_ADD(m, acc, v) _mm512_mask_add_ps(acc, m, acc, v)
#define VF_GATHER(m, off, base) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, off, base, 4)
#define M_GT(a, b) _mm512_cmpgt_epi32_mask(a, b)
#define M_ORD(u) _mm512_cmp_ps_mask(u, u, _CMP_ORD_Q)
#define M_SAME_BITS(a, b) _mm512_cmpeq_epi32_mask(_mm512_castps_si512(a), _mm512_castps_si512(b))
#define M_ODD(v) _mm512_test_epi32_mask(v, _mm512_set1_epi32(1))
#define M_AND(a, b) ((VM)((a) & (b)))
#define M_ANDNOT(a, b) ((VM)(~(a) & (b)))
#define M_ANY(m) ((m) != 0)
#include "follow3d_kern.h"
#undef K_NAME
#undef K_TARGET
#undef K_W
#undef VF
#undef VI
#undef VM
#undef VF_SET1
#undef VI_SET1
#undef VF_ADD
#undef VF_SUB
#undef VF_MUL
#undef VF_MIN
#undef VF_MAX
#undef VF_FLOOR
#undef VF_LOAD
#undef VF_STORE
#undef VI_CVTT
#undef VI_ADD
#undef VI_SUB
#undef VI_MUL
#undef VI_LOAD
#undef VI_STORE
#undef VI_BLEND
#undef VF_BLEND
#undef VI_MASK_DEC
#undef VF_MASK_ADD
#undef VF_GATHER
#undef M_GT
#undef M_ORD
#undef M_SAME_BITS
#undef M_ODD
#undef M_AND
#undef M_ANDNOT
#undef M_ANY

/* ---- AVX2: 8 lanes, lane masks as all-ones int32 lanes ---- */
#define K_NAME(x) x##_avx2
#define K_TARGET __attribute__((target("avx2")))
#define K_W 8
#define VF __m256
#define VI __m256i
#define VM __m256i
#define VF_SET1 _mm256_set1_ps
#define VI_SET1 _mm256_set1_epi32
#define VF_ADD _mm256_add_ps
#define VF_SUB _mm256_sub_ps
#define VF_MUL _mm256_mul_ps
#define VF_MIN _mm256_min_ps
#define VF_MAX _mm256_max_ps
#define VF_FLOOR(x) _mm256_round_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define VF_LOAD _mm256_load_ps
#define VF_STORE _mm256_store_ps
#define VI_CVTT _mm256_cvttps_epi32
#define VI_ADD _mm256_add_epi32
#define VI_SUB _mm256_sub_epi32
#define VI_MUL _mm256_mullo_epi32
#define VI_LOAD(p) _mm256_load_si256((const __m256i *)(p))
#define VI_STORE(p, v) _mm256_store_si256((__m256i *)(p), v)
#define VI_BLEND(m, a, b) _mm256_blendv_epi8(a, b, m)
#define VF_BLEND(m, a, b) _mm256_blendv_ps(a, b, _mm256_castsi256_ps(m))
#define VI_MASK_DEC(m, v) _mm256_add_epi32(v, m) /* m is -1 in the lanes it holds */
#define VF_MASK_ADD(m, acc, v) _mm256_blendv_ps(acc, _mm256_add_ps(acc, v), _mm256_castsi256_ps(m))
#define VF_GATHER(m, off, base) \
    _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, off, _mm256_castsi256_ps(m), 4)
#define M_GT(a, b) _mm256_cmpgt_epi32(a, b)
#define M_ORD(u) _mm256_castps_si256(_mm256_cmp_ps(u, u, _CMP_ORD_Q))
#define M_SAME_BITS(a, b) _mm256_cmpeq_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b))
#define M_ODD(v) _mm256_cmpeq_epi32(_mm256_and_si256(v, _mm256_set1_epi32(1)), _mm256_set1_epi32(1))
#define M_AND(a, b) _mm256_and_si256(a, b)
#define M_ANDNOT(a, b) _mm256_andnot_si256(a, b)
#define M_ANY(m) (!_mm256_testz_si256(m, m))
#include "follow3d_kern.h"

/* The kernels this CPU runs on F: the vector ones need interp and window offsets in int32. */
static int kernel_available(enum kernel k, const cp_field3 *F)
{
    const int fits = 3 * F->n[0] * F->n[1] * F->n[2] <= INT32_MAX &&
                     F->w0[0] + F->n[0] <= INT32_MAX && F->w0[1] + F->n[1] <= INT32_MAX &&
                     F->w0[2] + F->n[2] <= INT32_MAX;
    switch (k) {
    case K_AVX512:
        return F->interp && fits && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512dq");
    case K_AVX2:
        return F->interp && fits && __builtin_cpu_supports("avx2");
    default:
        return 1;
    }
}
#else
static int kernel_available(enum kernel k, const cp_field3 *F)
{
    (void)F;
    return k == K_SCALAR;
}
#endif

/* CP_FOLLOW_KERNEL if set to an available kernel, else the widest available. */
static enum kernel pick_kernel(const cp_field3 *F)
{
    const char *want = getenv("CP_FOLLOW_KERNEL");
    for (int k = K_AVX512; want && k >= K_SCALAR; k--)
        if (strcmp(want, kernel_names[k]) == 0 && kernel_available((enum kernel)k, F))
            return (enum kernel)k;
    for (int k = K_AVX512; k > K_SCALAR; k--)
        if (kernel_available((enum kernel)k, F)) return (enum kernel)k;
    return K_SCALAR;
}

const char *cp_follow3_kernel(const cp_field3 *F)
{
    return kernel_names[pick_kernel(F)];
}

int64_t cp_follow3_run(const cp_field3 *F, cp_particle3 *p, int64_t n, int32_t steps)
{
    run3 R;
    for (int k = 0; k < 3; k++) {
        R.Lf[k] = (float)F->L[k];
        R.lo[k] = F->interp ? -1.0f : 0.0f;
        R.hi[k] = F->interp ? 1.0f : (float)(F->L[k] - 1);
    }
    const enum kernel kern = pick_kernel(F);
    const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    int64_t stopped = 0;
    /* chunks are independent: any schedule gives the same bits */
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : stopped)
    for (int64_t c = 0; c < nchunks; c++) {
        cp_particle3 *q = p + c * CHUNK;
        const int64_t m = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
#ifdef CP_FOLLOW3_X86
        if (kern == K_AVX512)
            advance_avx512(F, q, m, steps);
        else if (kern == K_AVX2)
            advance_avx2(F, q, m, steps);
        else
#endif
            advance_scalar(F, &R, q, m, steps);
        for (int64_t i = 0; i < m; i++) stopped += q[i].steps < steps;
    }
    (void)kern;
    return stopped;
}
