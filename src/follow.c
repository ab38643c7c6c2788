/* Flow following (CELLPOSE_ALGORITHM.md §4.3): the field, the particles, and their advance along
 * the field, bit-exactly as Cellpose's numba code. Three kernels do the same IEEE operations in the
 * same order, chosen at run time: a scalar one that states the recipe; an AVX2 one that advances 8
 * particles per vector (16-byte loads of pixel pairs, no gathers); an AVX-512 one that advances 8
 * particles per vector as (y, x) pairs with 64-bit gathers of the corners. The vector kernels keep
 * the positions of GROUP interleaved vectors in registers for all steps (the AVX-512 one refills a
 * lane with the next particle when its particle is done, and steps its vectors phase by phase).
 * All end a particle whose step brings it back to the position before its current one (a 2-cycle,
 * or a fixed point): the remaining steps are known without doing them, and most particles end so,
 * resting at or oscillating around their sink. No FMA anywhere (-ffp-contract=off; the intrinsics
 * are plain multiplies and adds). */
#include "follow.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CP_FOLLOW_X86 1
#endif

void cp_follow_field(const float *dP, const float *cellprob, int64_t npix, float threshold,
                     float *f)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < npix; i++) {
        /* multiply by the 0/1 mask (not a select: NaN * 0 stays NaN, as in numpy), then / 5 */
        float keep = cellprob[i] > threshold ? 1.0f : 0.0f;
        f[2 * i] = (dP[i] * keep) / 5.0f;
        f[2 * i + 1] = (dP[npix + i] * keep) / 5.0f;
    }
}

int64_t cp_follow_particles(const float *cellprob, int64_t Ly, int64_t Lx, float threshold,
                            cp_particle *p)
{
    int64_t n = 0;
    for (int64_t y = 0; y < Ly; y++)
        for (int64_t x = 0; x < Lx; x++) {
            if (!(cellprob[y * Lx + x] > threshold)) continue;
            if (p) p[n] = (cp_particle){.src = y * Lx + x, .py = (float)y, .px = (float)x};
            n++;
        }
    return n;
}

/* float -> int32 as x86's cvttss2si (what numba's int() and the AVX2 kernel compile to):
 * truncation toward zero, INT32_MIN for NaN and out-of-range values. */
static inline int32_t trunc_i32(float v)
{
    return (v > -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
}

/* Particles per chunk of the scalar and AVX2 kernels: GROUP vectors of VEC lanes. */
enum { VEC = 8, GROUP = 4, GROUP_N = VEC * GROUP };

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* p = min(L-1, max(0, p + d)) in float32, with the operand order of x86 maxss/minss so that a
 * NaN propagates as in numpy (and as in the AVX2 kernel). */
static inline float clamp_pos(float v, float hi)
{
    v = 0.0f > v ? 0.0f : v;
    return hi < v ? hi : v;
}

/* The mixed-precision bilinear interpolation of §4.3 for one channel. */
static inline float bilinear(float f00, float f01, float f10, float f11, float fy, float fx)
{
    double gy = 1.0 - (double)fy, gx = 1.0 - (double)fx;
    double t0 = ((double)f00 * gy) * gx;
    double t1 = ((double)f01 * gy) * (double)fx;
    double t2 = (double)(f10 * fy) * gx;
    double t3 = (double)((f11 * fy) * fx);
    return (float)(((t0 + t1) + t2) + t3);
}

static inline int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* One iteration of one particle (the reference statement of the recipe; also interp = 0): done
 * if it has steps left and its stencil is inside the window. prev: the position before q's (q's
 * own at the start of a call), updated. Returns 1 if it moved. */
static inline int step_scalar(const cp_field *F, cp_particle *q, float prev[2], int32_t steps,
                              int interp)
{
    if (q->steps >= steps) return 0;
    const float py = q->py, px = q->px;
    const int32_t iy = trunc_i32(py), ix = trunc_i32(px);
    const int64_t y0 = clamp64(iy, 0, F->Ly - 1), x0 = clamp64(ix, 0, F->Lx - 1);
    const int64_t y1 = interp && y0 + 1 < F->Ly ? y0 + 1 : y0;
    const int64_t x1 = interp && x0 + 1 < F->Lx ? x0 + 1 : x0;
    if (y0 < F->y0 || y1 >= F->y0 + F->ny || x0 < F->x0 || x1 >= F->x0 + F->nx) return 0;
    const float *r0 = F->f + 2 * ((y0 - F->y0) * F->nx - F->x0);
    const float *r1 = F->f + 2 * ((y1 - F->y0) * F->nx - F->x0);
    float dy, dx;
    if (interp) {
        float fy = py - (float)iy, fx = px - (float)ix; /* exact */
        dy = bilinear(r0[2 * x0], r0[2 * x1], r1[2 * x0], r1[2 * x1], fy, fx);
        dx = bilinear(r0[2 * x0 + 1], r0[2 * x1 + 1], r1[2 * x0 + 1], r1[2 * x1 + 1], fy, fx);
    } else {
        dy = r0[2 * x0];
        dx = r0[2 * x0 + 1];
    }
    const float ny = clamp_pos(py + dy, (float)(F->Ly - 1)), nx = clamp_pos(px + dx, (float)(F->Lx - 1));
    /* back at the position before this one: a 2-cycle (see cp_follow_run), the rest alternates
     * between the new position and this one; the new one is last iff the steps left are even */
    const int cycle = same_bits(ny, prev[0]) && same_bits(nx, prev[1]);
    const int stay = cycle && (steps - q->steps - 1) % 2 != 0;
    prev[0] = py, prev[1] = px;
    q->py = stay ? py : ny;
    q->px = stay ? px : nx;
    q->steps = cycle ? steps : q->steps + 1;
    return 1;
}

/* Advances m <= GROUP_N particles: every particle one iteration per pass, so that the core
 * overlaps the independent dependency chains of the particles. */
static void advance_scalar(const cp_field *F, cp_particle *q, int64_t m, int32_t steps, int interp)
{
    float prev[GROUP_N][2];
    for (int64_t i = 0; i < m; i++) prev[i][0] = q[i].py, prev[i][1] = q[i].px;
    for (int moved = 1; moved;) {
        moved = 0;
        for (int64_t i = 0; i < m; i++) moved |= step_scalar(F, &q[i], prev[i], steps, interp);
    }
}

#ifdef CP_FOLLOW_X86

/* Constants of a field as 8-lane vectors for the AVX2 kernel. */
typedef struct avx_field {
    __m256i ymax, xmax, wy, wx, ny, nx;
    __m256 ymaxf, xmaxf;
    const float *f;
} avx_field;

/* One channel of bilinear() on 8 lanes: the f64 terms in two halves of 4. */
__attribute__((target("avx2"))) static inline __m256 bilinear8(__m256 f00, __m256 f01, __m256 f10,
                                                               __m256 f11, __m256 fy, __m256 fx,
                                                               const __m256d gy[2],
                                                               const __m256d gx[2],
                                                               const __m256d fxd[2])
{
    __m256 a10 = _mm256_mul_ps(f10, fy);
    __m256 a11 = _mm256_mul_ps(_mm256_mul_ps(f11, fy), fx);
    __m128 half[2];
    for (int h = 0; h < 2; h++) {
        __m128 h00 = h ? _mm256_extractf128_ps(f00, 1) : _mm256_castps256_ps128(f00);
        __m128 h01 = h ? _mm256_extractf128_ps(f01, 1) : _mm256_castps256_ps128(f01);
        __m128 h10 = h ? _mm256_extractf128_ps(a10, 1) : _mm256_castps256_ps128(a10);
        __m128 h11 = h ? _mm256_extractf128_ps(a11, 1) : _mm256_castps256_ps128(a11);
        __m256d t0 = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(h00), gy[h]), gx[h]);
        __m256d t1 = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(h01), gy[h]), fxd[h]);
        __m256d t2 = _mm256_mul_pd(_mm256_cvtps_pd(h10), gx[h]);
        __m256d t3 = _mm256_cvtps_pd(h11);
        half[h] = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_add_pd(_mm256_add_pd(t0, t1), t2), t3));
    }
    return _mm256_set_m128(half[1], half[0]);
}

/* All ones in the lanes where a and b have the same bits (unlike ==: -0 != +0, NaN == NaN). */
__attribute__((target("avx2"))) static inline __m256i same_bits8(__m256 a, __m256 b)
{
    return _mm256_cmpeq_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b));
}

/* 8 particles in the AVX2 kernel: position, the position before it (see step_scalar), steps left. */
typedef struct avx_lanes {
    __m256 py, px, qy, qx;
    __m256i left;
} avx_lanes;

/* One iteration for the 8 particles of a vector: lanes with steps left and the stencil inside
 * the window move, the others keep their position. Returns the mask of lanes that moved. */
__attribute__((target("avx2"))) static inline __m256i step8(const avx_field *A, avx_lanes *L)
{
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    __m256i iy = _mm256_cvttps_epi32(L->py), ix = _mm256_cvttps_epi32(L->px);
    __m256i y0 = _mm256_min_epi32(_mm256_max_epi32(iy, zero), A->ymax);
    __m256i x0 = _mm256_min_epi32(_mm256_max_epi32(ix, zero), A->xmax);
    /* window coordinates of the stencil */
    __m256i ly0 = _mm256_sub_epi32(y0, A->wy), lx0 = _mm256_sub_epi32(x0, A->wx);
    __m256i ly1 = _mm256_sub_epi32(_mm256_min_epi32(_mm256_add_epi32(y0, one), A->ymax), A->wy);
    __m256i lx1 = _mm256_sub_epi32(_mm256_min_epi32(_mm256_add_epi32(x0, one), A->xmax), A->wx);
    __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(zero, ly0), _mm256_cmpgt_epi32(zero, lx0));
    out = _mm256_or_si256(out, _mm256_cmpgt_epi32(ly1, _mm256_sub_epi32(A->ny, one)));
    out = _mm256_or_si256(out, _mm256_cmpgt_epi32(lx1, _mm256_sub_epi32(A->nx, one)));
    __m256i act = _mm256_andnot_si256(out, _mm256_cmpgt_epi32(L->left, zero));
    /* float offsets of the pixel pairs (x1-1, x1) of both stencil rows (inactive lanes read the
     * first two pixels of the window) */
    __m256i c = _mm256_sub_epi32(lx1, one);
    __m256i o0 = _mm256_add_epi32(_mm256_mullo_epi32(ly0, A->nx), c);
    __m256i o1 = _mm256_add_epi32(_mm256_mullo_epi32(ly1, A->nx), c);
    int32_t off[2][VEC];
    _mm256_storeu_si256((__m256i *)off[0], _mm256_and_si256(act, _mm256_slli_epi32(o0, 1)));
    _mm256_storeu_si256((__m256i *)off[1], _mm256_and_si256(act, _mm256_slli_epi32(o1, 1)));
    /* at the right edge of the plane x1 == x0: corner x0 is then the second pixel of the pair */
    __m256 edge = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lx0, lx1));
    __m256 f0[2][2], f1[2][2]; /* [row][channel]: corners x0 and x1 */
    for (int r = 0; r < 2; r++) {
        const float *f = A->f;
        const int32_t *o = off[r];
        __m256 m[4];
        for (int i = 0; i < 4; i++) /* lane i in the low half, lane i+4 in the high half */
            m[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(f + o[i])),
                                        _mm_loadu_ps(f + o[i + 4]), 1);
        __m256d t0 = _mm256_castps_pd(_mm256_unpacklo_ps(m[0], m[1]));
        __m256d t1 = _mm256_castps_pd(_mm256_unpackhi_ps(m[0], m[1]));
        __m256d t2 = _mm256_castps_pd(_mm256_unpacklo_ps(m[2], m[3]));
        __m256d t3 = _mm256_castps_pd(_mm256_unpackhi_ps(m[2], m[3]));
        for (int ch = 0; ch < 2; ch++) {
            __m256 a = _mm256_castpd_ps(ch ? _mm256_unpackhi_pd(t0, t2) : _mm256_unpacklo_pd(t0, t2));
            __m256 b = _mm256_castpd_ps(ch ? _mm256_unpackhi_pd(t1, t3) : _mm256_unpacklo_pd(t1, t3));
            f0[r][ch] = _mm256_blendv_ps(a, b, edge);
            f1[r][ch] = b;
        }
    }

    __m256 fy = _mm256_sub_ps(L->py, _mm256_cvtepi32_ps(iy));
    __m256 fx = _mm256_sub_ps(L->px, _mm256_cvtepi32_ps(ix));
    const __m256d one_d = _mm256_set1_pd(1.0);
    __m256d gy[2], gx[2], fxd[2];
    for (int h = 0; h < 2; h++) {
        __m128 hy = h ? _mm256_extractf128_ps(fy, 1) : _mm256_castps256_ps128(fy);
        __m128 hx = h ? _mm256_extractf128_ps(fx, 1) : _mm256_castps256_ps128(fx);
        fxd[h] = _mm256_cvtps_pd(hx);
        gx[h] = _mm256_sub_pd(one_d, fxd[h]);
        gy[h] = _mm256_sub_pd(one_d, _mm256_cvtps_pd(hy));
    }
    __m256 dy = bilinear8(f0[0][0], f1[0][0], f0[1][0], f1[1][0], fy, fx, gy, gx, fxd);
    __m256 dx = bilinear8(f0[0][1], f1[0][1], f0[1][1], f1[1][1], fy, fx, gy, gx, fxd);
    /* min(L-1, max(0, p + d)): same operand order as clamp_pos() */
    __m256 ny = _mm256_min_ps(A->ymaxf, _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(L->py, dy)));
    __m256 nx = _mm256_min_ps(A->xmaxf, _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(L->px, dx)));
    /* a 2-cycle ends the particle, as in step_scalar */
    __m256i cycle = _mm256_and_si256(act, same_bits8(ny, L->qy));
    cycle = _mm256_and_si256(cycle, same_bits8(nx, L->qx));
    __m256i left = _mm256_add_epi32(L->left, act); /* act is -1 where the lane moved */
    __m256i stay = _mm256_and_si256(cycle, _mm256_cmpeq_epi32(_mm256_and_si256(left, one), one));
    __m256 a = _mm256_castsi256_ps(act), move = _mm256_castsi256_ps(_mm256_andnot_si256(stay, act));
    L->qy = _mm256_blendv_ps(L->qy, L->py, a);
    L->qx = _mm256_blendv_ps(L->qx, L->px, a);
    L->py = _mm256_blendv_ps(L->py, ny, move);
    L->px = _mm256_blendv_ps(L->px, nx, move);
    L->left = _mm256_andnot_si256(cycle, left);
    return act;
}

/* The positions and steps left of m <= GROUP_N particles, as the vector kernels load them:
 * unused lanes have no steps left (and position 0). */
static void group_load(const cp_particle *q, int64_t m, int32_t steps, float *y, float *x,
                       int32_t *left)
{
    for (int64_t i = 0; i < GROUP_N; i++) {
        y[i] = i < m ? q[i].py : 0.0f;
        x[i] = i < m ? q[i].px : 0.0f;
        left[i] = i < m && q[i].steps < steps ? steps - q[i].steps : 0;
    }
}

/* Writes back what group_load() read, for the particles that had steps left. */
static void group_store(cp_particle *q, int64_t m, int32_t steps, const float *y, const float *x,
                        const int32_t *left)
{
    for (int64_t i = 0; i < m; i++) {
        if (q[i].steps >= steps) continue;
        q[i].py = y[i];
        q[i].px = x[i];
        q[i].steps = steps - left[i];
    }
}

/* Advances m <= GROUP_N particles with interpolation: positions stay in registers for all steps. */
__attribute__((target("avx2"))) static void advance_avx2(const cp_field *F, cp_particle *q,
                                                         int64_t m, int32_t steps)
{
    avx_field A = {
        .ymax = _mm256_set1_epi32((int32_t)(F->Ly - 1)),
        .xmax = _mm256_set1_epi32((int32_t)(F->Lx - 1)),
        .wy = _mm256_set1_epi32((int32_t)F->y0),
        .wx = _mm256_set1_epi32((int32_t)F->x0),
        .ny = _mm256_set1_epi32((int32_t)F->ny),
        .nx = _mm256_set1_epi32((int32_t)F->nx),
        .ymaxf = _mm256_set1_ps((float)(F->Ly - 1)),
        .xmaxf = _mm256_set1_ps((float)(F->Lx - 1)),
        .f = F->f,
    };
    float ty[GROUP_N], tx[GROUP_N];
    int32_t tleft[GROUP_N];
    group_load(q, m, steps, ty, tx, tleft);
    avx_lanes L[GROUP];
    for (int g = 0; g < GROUP; g++) {
        L[g].py = L[g].qy = _mm256_loadu_ps(ty + VEC * g);
        L[g].px = L[g].qx = _mm256_loadu_ps(tx + VEC * g);
        L[g].left = _mm256_loadu_si256((const __m256i *)(tleft + VEC * g));
    }
    for (;;) {
        __m256i moved = _mm256_setzero_si256();
        for (int g = 0; g < GROUP; g++) moved = _mm256_or_si256(moved, step8(&A, &L[g]));
        if (_mm256_testz_si256(moved, moved)) break;
    }
    for (int g = 0; g < GROUP; g++) {
        _mm256_storeu_ps(ty + VEC * g, L[g].py);
        _mm256_storeu_ps(tx + VEC * g, L[g].px);
        _mm256_storeu_si256((__m256i *)(tleft + VEC * g), L[g].left);
    }
    group_store(q, m, steps, ty, tx, tleft);
}

/* ---- AVX-512 kernel ----
 * Vector layout: a __m512 holds 8 particles as (y, x) float pairs, i.e. one 64-bit lane per
 * particle. The field stores a pixel's (dy, dx) the same way, so a 64-bit gather fetches both
 * channels of one stencil corner for 8 particles in that layout, and a position update p + d is
 * one add for both coordinates. Integer coordinates are int32 pairs in the same lanes; steps
 * left are int64 per lane; masks are 8 bits, one per particle (64-bit blends). The f64 part of
 * bilinear() runs on 4 particles x 2 channels per __m512d, in the same pair layout. */
#define CP_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))

/* Constants of a field for the AVX-512 kernel, as (y, x) int32 or float pairs. */
typedef struct avx512_field {
    __m512i max;  /* (Ly - 1, Lx - 1) */
    __m512i w0;   /* window origin (y0, x0) */
    __m512i wlast; /* last pixel of the window (y0 + ny - 1, x0 + nx - 1) */
    __m512i nx;   /* window row length, per 64-bit lane */
    __m512 maxf;  /* (float)(Ly - 1), (float)(Lx - 1) */
    const float *f;
} avx512_field;

/* The 4 low (h = 0) or high (h = 1) particles of a pair-layout vector, converted to f64. */
CP_AVX512 static inline __m512d half_pd(__m512 v, int h)
{
    return _mm512_cvtps_pd(h ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v));
}

/* a with the particles of mask m taken from b (one 64-bit (y, x) pair per particle). */
CP_AVX512 static inline __m512 pick_pairs(__m512 a, __mmask8 m, __m512 b)
{
    return _mm512_castpd_ps(_mm512_mask_mov_pd(_mm512_castps_pd(a), m, _mm512_castps_pd(b)));
}

/* bilinear() for 4 particles x 2 channels; a10 = f10 * fy and a11 = (f11 * fy) * fx were done in
 * f32; gy = 1 - fy, gx = 1 - fx and fx in f64, each duplicated over the particle's pair. */
CP_AVX512 static inline __m256 bilinear4x2(__m512d f00, __m512d f01, __m512d a10, __m512d a11,
                                           __m512d gy, __m512d gx, __m512d fx)
{
    __m512d t0 = _mm512_mul_pd(_mm512_mul_pd(f00, gy), gx);
    __m512d t1 = _mm512_mul_pd(_mm512_mul_pd(f01, gy), fx);
    __m512d t2 = _mm512_mul_pd(a10, gx);
    return _mm512_cvtpd_ps(_mm512_add_pd(_mm512_add_pd(_mm512_add_pd(t0, t1), t2), a11));
}

/* The stencils of 8 particles: which move (steps left, stencil inside the window), the integer
 * parts of their positions, and the field at the 4 corners. */
typedef struct corners {
    __mmask8 act;
    __m512i ip;
    __m512 f00, f01, f10, f11;
} corners;

/* The stencils of the 8 particles of a vector at p with steps left `left`. */
CP_AVX512 static inline corners stencil8(const avx512_field *A, __m512 p, __m512i left)
{
    corners c;
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    c.ip = _mm512_cvttps_epi32(p);
    const __m512i c0 = _mm512_min_epi32(_mm512_max_epi32(c.ip, zero), A->max);
    const __m512i c1 = _mm512_min_epi32(_mm512_add_epi32(c0, one), A->max);
    /* stencil in window coordinates; outside where d0 or wlast - c1 has a negative component */
    const __m512i d0 = _mm512_sub_epi32(c0, A->w0), d1 = _mm512_sub_epi32(c1, A->w0);
    const __m512i neg = _mm512_or_si512(d0, _mm512_sub_epi32(A->wlast, c1));
    const __mmask8 inside = _mm512_testn_epi64_mask(neg, _mm512_set1_epi32(INT32_MIN));
    c.act = _mm512_mask_cmpgt_epi64_mask(inside, left, zero);
    /* pixel offsets of the corners: row * nx (low int32 of the lane) + column (high int32) */
    const __m512i r0 = _mm512_mul_epu32(d0, A->nx), r1 = _mm512_mul_epu32(d1, A->nx);
    const __m512i x0 = _mm512_srli_epi64(d0, 32), x1 = _mm512_srli_epi64(d1, 32);
    const __m512d none = _mm512_setzero_pd();
    c.f00 = _mm512_castpd_ps(_mm512_mask_i64gather_pd(none, c.act, _mm512_add_epi64(r0, x0), A->f, 8));
    c.f01 = _mm512_castpd_ps(_mm512_mask_i64gather_pd(none, c.act, _mm512_add_epi64(r0, x1), A->f, 8));
    c.f10 = _mm512_castpd_ps(_mm512_mask_i64gather_pd(none, c.act, _mm512_add_epi64(r1, x0), A->f, 8));
    c.f11 = _mm512_castpd_ps(_mm512_mask_i64gather_pd(none, c.act, _mm512_add_epi64(r1, x1), A->f, 8));
    return c;
}

/* The positions after the step from p, for the stencils c of p. */
CP_AVX512 static inline __m512 move8(const avx512_field *A, __m512 p, const corners *c)
{
    const __m512 fyx = _mm512_sub_ps(p, _mm512_cvtepi32_ps(c->ip));
    const __m512 fy = _mm512_moveldup_ps(fyx), fx = _mm512_movehdup_ps(fyx); /* (fy, fy), (fx, fx) */
    const __m512 a10 = _mm512_mul_ps(c->f10, fy), a11 = _mm512_mul_ps(_mm512_mul_ps(c->f11, fy), fx);
    const __m512d one_d = _mm512_set1_pd(1.0);
    __m256 d[2];
    for (int h = 0; h < 2; h++) {
        __m512d fxd = half_pd(fx, h);
        d[h] = bilinear4x2(half_pd(c->f00, h), half_pd(c->f01, h), half_pd(a10, h), half_pd(a11, h),
                           _mm512_sub_pd(one_d, half_pd(fy, h)), _mm512_sub_pd(one_d, fxd), fxd);
    }
    const __m512 dyx = _mm512_insertf32x8(_mm512_castps256_ps512(d[0]), d[1], 1);
    /* min(L-1, max(0, p + d)): same operand order as clamp_pos() */
    return _mm512_min_ps(A->maxf, _mm512_max_ps(_mm512_setzero_ps(), _mm512_add_ps(p, dyx)));
}

/* The lanes of a vector of the AVX-512 kernel and the particles they hold (-1: none). */
typedef struct lanes {
    __m512 p, prev; /* position, the position before it (see step_scalar) */
    __m512i left;
    int64_t who[VEC];
} lanes;

/* The particles of mask act of L move to np, or end at a 2-cycle (as in step_scalar). */
CP_AVX512 static inline void update8(lanes *L, __m512 np, __mmask8 act)
{
    const __m512i one64 = _mm512_set1_epi64(1);
    const __mmask8 cycle =
        _mm512_mask_cmpeq_epi64_mask(act, _mm512_castps_si512(np), _mm512_castps_si512(L->prev));
    const __m512i left1 = _mm512_mask_sub_epi64(L->left, act, L->left, one64);
    const __mmask8 stay = _mm512_mask_test_epi64_mask(cycle, left1, one64);
    L->prev = pick_pairs(L->prev, act, L->p);
    L->p = pick_pairs(L->p, act & (__mmask8)~stay, np);
    L->left = _mm512_maskz_mov_epi64((__mmask8)~cycle, left1);
}

/* One iteration for the GROUP vectors of L: particles with steps left and the stencil inside the
 * window move, the others keep their position; moved[g]: those of L[g] that moved. A step of a
 * vector is a long chain of dependent instructions (gathers, conversions); written phase by phase
 * over the vectors, the core overlaps the chains of the GROUP vectors. */
CP_AVX512 static inline void step_group(const avx512_field *A, lanes L[GROUP],
                                        __mmask8 moved[GROUP])
{
    corners c[GROUP];
    __m512 np[GROUP];
    for (int g = 0; g < GROUP; g++) c[g] = stencil8(A, L[g].p, L[g].left);
    for (int g = 0; g < GROUP; g++) np[g] = move8(A, L[g].p, &c[g]);
    for (int g = 0; g < GROUP; g++) update8(&L[g], np[g], c[g].act), moved[g] = c[g].act;
}

/* Hands the particles of the lanes in `done` back to q and gives those lanes the next particles
 * of q[*next .. m) that have steps left. Returns 1 if a lane got a particle. */
CP_AVX512 static int refill(lanes *L, __mmask8 done, cp_particle *q, int64_t m, int64_t *next,
                            int32_t steps)
{
    _Alignas(64) float yx[2 * VEC];
    _Alignas(64) int64_t left[VEC];
    int got = 0;
    _mm512_store_ps(yx, L->p);
    _mm512_store_si512(left, L->left);
    for (int l = 0; l < VEC; l++) {
        if (!(done >> l & 1)) continue;
        if (L->who[l] >= 0) {
            cp_particle *o = &q[L->who[l]];
            o->py = yx[2 * l], o->px = yx[2 * l + 1], o->steps = steps - (int32_t)left[l];
        }
        while (*next < m && q[*next].steps >= steps) ++*next;
        L->who[l] = *next < m ? *next : -1;
        left[l] = 0;
        if (*next < m) {
            yx[2 * l] = q[*next].py, yx[2 * l + 1] = q[*next].px, left[l] = steps - q[*next].steps;
            ++*next, got = 1;
        }
    }
    L->p = _mm512_load_ps(yx);
    L->prev = pick_pairs(L->prev, done, L->p);
    L->left = _mm512_load_si512(left);
    return got;
}

/* Advances the m particles of q with interpolation: GROUP vectors of 8 lanes, positions in
 * registers; a lane whose particle is done (all steps, or stopped by the window) takes the next
 * particle, so that the vectors stay full until the last particles. */
CP_AVX512 static void advance_avx512(const cp_field *F, cp_particle *q, int64_t m, int32_t steps)
{
    const __mmask16 xs = 0xAAAA; /* the x lanes */
    const avx512_field A = {
        .max = _mm512_mask_blend_epi32(xs, _mm512_set1_epi32((int32_t)(F->Ly - 1)),
                                       _mm512_set1_epi32((int32_t)(F->Lx - 1))),
        .w0 = _mm512_mask_blend_epi32(xs, _mm512_set1_epi32((int32_t)F->y0),
                                      _mm512_set1_epi32((int32_t)F->x0)),
        .wlast = _mm512_mask_blend_epi32(xs, _mm512_set1_epi32((int32_t)(F->y0 + F->ny - 1)),
                                         _mm512_set1_epi32((int32_t)(F->x0 + F->nx - 1))),
        .nx = _mm512_set1_epi64(F->nx),
        .maxf = _mm512_mask_blend_ps(xs, _mm512_set1_ps((float)(F->Ly - 1)),
                                     _mm512_set1_ps((float)(F->Lx - 1))),
        .f = F->f,
    };
    lanes L[GROUP];
    int64_t next = 0;
    for (int g = 0; g < GROUP; g++) {
        L[g].p = L[g].prev = _mm512_setzero_ps(), L[g].left = _mm512_setzero_si512();
        for (int l = 0; l < VEC; l++) L[g].who[l] = -1;
        refill(&L[g], 0xFF, q, m, &next, steps);
    }
    for (int busy = 1; busy;) {
        busy = 0;
        __mmask8 moved[GROUP];
        step_group(&A, L, moved);
        for (int g = 0; g < GROUP; g++) {
            const __mmask8 idle = (__mmask8)~moved[g];
            busy |= moved[g] != 0;
            if (idle && next < m) busy |= refill(&L[g], idle, q, m, &next, steps);
        }
    }
    for (int g = 0; g < GROUP; g++) refill(&L[g], 0xFF, q, m, &next, steps); /* next == m: hands back */
}

enum kernel { K_SCALAR, K_AVX2, K_AVX512 };

/* The kernels this CPU runs, for a field whose coordinates fit in int32. */
static int kernel_available(enum kernel k, const cp_field *F)
{
    int fits = F->Ly <= INT32_MAX && F->Lx <= INT32_MAX && F->y0 + F->ny <= INT32_MAX &&
               F->x0 + F->nx <= INT32_MAX;
    switch (k) {
    case K_AVX512:
        return fits && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
    case K_AVX2: /* 16-byte loads of pixel pairs; int32 float offsets */
        return fits && __builtin_cpu_supports("avx2") && F->ny > 0 && F->nx >= 2 &&
               F->ny * F->nx <= INT32_MAX / 2;
    default:
        return 1;
    }
}
#else
enum kernel { K_SCALAR, K_AVX2, K_AVX512 };
static int kernel_available(enum kernel k, const cp_field *F)
{
    (void)F;
    return k == K_SCALAR;
}
static void advance_avx2(const cp_field *F, cp_particle *q, int64_t m, int32_t steps)
{
    (void)F, (void)q, (void)m, (void)steps;
}
static void advance_avx512(const cp_field *F, cp_particle *q, int64_t m, int32_t steps)
{
    (void)F, (void)q, (void)m, (void)steps;
}
#endif

static const char *const kernel_names[] = {"scalar", "avx2", "avx512"};

/* The kernel for interpolation: CP_FOLLOW_KERNEL if set to an available one, else the widest
 * available. Without interpolation: scalar. */
static enum kernel pick_kernel(const cp_field *F, int interp)
{
    if (!interp) return K_SCALAR;
    const char *want = getenv("CP_FOLLOW_KERNEL");
    for (int k = K_AVX512; want && k >= K_SCALAR; k--)
        if (strcmp(want, kernel_names[k]) == 0 && kernel_available((enum kernel)k, F)) return (enum kernel)k;
    for (int k = K_AVX512; k > K_SCALAR; k--)
        if (kernel_available((enum kernel)k, F)) return (enum kernel)k;
    return K_SCALAR;
}

const char *cp_follow_kernel(const cp_field *F, int interp)
{
    return kernel_names[pick_kernel(F, interp)];
}

int64_t cp_follow_run_progress(const cp_field *F, cp_particle *p, int64_t n, int32_t steps,
                               int interp, cp_progress *pr)
{
    const enum kernel k = pick_kernel(F, interp);
    /* AVX-512 refills its lanes: chunks of many groups keep them full for longer */
    const int64_t chunk = k == K_AVX512 ? 32 * GROUP_N : GROUP_N, nchunks = (n + chunk - 1) / chunk;
    int64_t stopped = 0;
    /* chunks are independent: any schedule gives the same bits */
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : stopped)
    for (int64_t c = 0; c < nchunks; c++) {
        cp_particle *q = p + c * chunk;
        int64_t m = n - c * chunk < chunk ? n - c * chunk : chunk;
        if (k == K_AVX512)
            advance_avx512(F, q, m, steps);
        else if (k == K_AVX2)
            advance_avx2(F, q, m, steps);
        else
            advance_scalar(F, q, m, steps, interp);
        for (int64_t i = 0; i < m; i++) stopped += q[i].steps < steps;
        cp_progress_add(pr, m);
    }
    return stopped;
}

int64_t cp_follow_run(const cp_field *F, cp_particle *p, int64_t n, int32_t steps, int interp)
{
    return cp_follow_run_progress(F, p, n, steps, interp, NULL);
}
