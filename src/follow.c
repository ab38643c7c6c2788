/* Flow following (CELLPOSE_ALGORITHM.md §4.3): the field, the particles, and their advance along
 * the field, bit-exactly as Cellpose's numba code. Two kernels do the same IEEE operations in the
 * same order: a scalar one that states the recipe, and an AVX2 one that advances 8 particles per
 * vector (4 vectors interleaved to hide latency; 16-byte loads of pixel pairs, no gathers), chosen
 * at run time. No FMA anywhere (-ffp-contract=off; the intrinsics are plain multiplies and adds). */
#include "follow.h"

#include <limits.h>
#include <stdlib.h>

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

/* One iteration of one particle (the reference statement of the recipe; also interp = 0): done
 * if it has steps left and its stencil is inside the window. Returns 1 if it moved. */
static inline int step_scalar(const cp_field *F, cp_particle *q, int32_t steps, int interp)
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
    q->py = clamp_pos(py + dy, (float)(F->Ly - 1));
    q->px = clamp_pos(px + dx, (float)(F->Lx - 1));
    q->steps++;
    return 1;
}

/* Advances m particles: every particle one iteration per pass, so that the core overlaps the
 * independent dependency chains of the particles. */
static void advance_scalar(const cp_field *F, cp_particle *q, int64_t m, int32_t steps, int interp)
{
    for (int moved = 1; moved;) {
        moved = 0;
        for (int64_t i = 0; i < m; i++) moved |= step_scalar(F, &q[i], steps, interp);
    }
}

#ifdef CP_FOLLOW_X86
enum { VEC = 8, GROUP = 4, GROUP_N = VEC * GROUP };

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

/* One iteration for the 8 particles of a vector: lanes with steps left and the stencil inside
 * the window move, the others keep their position. Returns the mask of lanes that moved. */
__attribute__((target("avx2"))) static inline __m256i step8(const avx_field *A, __m256 *py,
                                                            __m256 *px, __m256i *left)
{
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    __m256i iy = _mm256_cvttps_epi32(*py), ix = _mm256_cvttps_epi32(*px);
    __m256i y0 = _mm256_min_epi32(_mm256_max_epi32(iy, zero), A->ymax);
    __m256i x0 = _mm256_min_epi32(_mm256_max_epi32(ix, zero), A->xmax);
    /* window coordinates of the stencil */
    __m256i ly0 = _mm256_sub_epi32(y0, A->wy), lx0 = _mm256_sub_epi32(x0, A->wx);
    __m256i ly1 = _mm256_sub_epi32(_mm256_min_epi32(_mm256_add_epi32(y0, one), A->ymax), A->wy);
    __m256i lx1 = _mm256_sub_epi32(_mm256_min_epi32(_mm256_add_epi32(x0, one), A->xmax), A->wx);
    __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(zero, ly0), _mm256_cmpgt_epi32(zero, lx0));
    out = _mm256_or_si256(out, _mm256_cmpgt_epi32(ly1, _mm256_sub_epi32(A->ny, one)));
    out = _mm256_or_si256(out, _mm256_cmpgt_epi32(lx1, _mm256_sub_epi32(A->nx, one)));
    __m256i act = _mm256_andnot_si256(out, _mm256_cmpgt_epi32(*left, zero));
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

    __m256 fy = _mm256_sub_ps(*py, _mm256_cvtepi32_ps(iy));
    __m256 fx = _mm256_sub_ps(*px, _mm256_cvtepi32_ps(ix));
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
    __m256 ny = _mm256_min_ps(A->ymaxf, _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(*py, dy)));
    __m256 nx = _mm256_min_ps(A->xmaxf, _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(*px, dx)));
    __m256 m = _mm256_castsi256_ps(act);
    *py = _mm256_blendv_ps(*py, ny, m);
    *px = _mm256_blendv_ps(*px, nx, m);
    *left = _mm256_add_epi32(*left, act); /* act is -1 where the lane moved */
    return act;
}

/* Advances m <= GROUP_N particles with interpolation: positions stay in registers for all steps;
 * unused lanes have no steps left. */
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
    float ty[GROUP_N] = {0}, tx[GROUP_N] = {0};
    int32_t tleft[GROUP_N] = {0};
    for (int64_t i = 0; i < m; i++) {
        ty[i] = q[i].py;
        tx[i] = q[i].px;
        tleft[i] = q[i].steps < steps ? steps - q[i].steps : 0;
    }
    __m256 py[GROUP], px[GROUP];
    __m256i left[GROUP];
    for (int g = 0; g < GROUP; g++) {
        py[g] = _mm256_loadu_ps(ty + VEC * g);
        px[g] = _mm256_loadu_ps(tx + VEC * g);
        left[g] = _mm256_loadu_si256((const __m256i *)(tleft + VEC * g));
    }
    for (;;) {
        __m256i moved = _mm256_setzero_si256();
        for (int g = 0; g < GROUP; g++) moved = _mm256_or_si256(moved, step8(&A, &py[g], &px[g], &left[g]));
        if (_mm256_testz_si256(moved, moved)) break;
    }
    for (int g = 0; g < GROUP; g++) {
        _mm256_storeu_ps(ty + VEC * g, py[g]);
        _mm256_storeu_ps(tx + VEC * g, px[g]);
        _mm256_storeu_si256((__m256i *)(tleft + VEC * g), left[g]);
    }
    for (int64_t i = 0; i < m; i++) {
        if (q[i].steps >= steps) continue;
        q[i].py = ty[i];
        q[i].px = tx[i];
        q[i].steps = steps - tleft[i];
    }
}

/* The AVX2 kernel handles interpolation on CPUs that have AVX2 and windows of 2 columns or more
 * whose float offsets fit in int32 (larger windows use the scalar kernel). CP_FOLLOW_SCALAR=1 in the
 * environment forces the scalar kernel (the tests compare both). */
static int use_avx2(const cp_field *F, int interp)
{
    const char *off = getenv("CP_FOLLOW_SCALAR");
    return interp && !(off && *off == '1') && __builtin_cpu_supports("avx2") && F->Ly <= INT32_MAX && F->Lx <= INT32_MAX &&
           F->ny > 0 && F->nx >= 2 && F->ny * F->nx <= INT32_MAX / 2;
}
#else
enum { GROUP_N = 32 };
static int use_avx2(const cp_field *F, int interp)
{
    (void)F, (void)interp;
    return 0;
}
static void advance_avx2(const cp_field *F, cp_particle *q, int64_t m, int32_t steps)
{
    (void)F, (void)q, (void)m, (void)steps;
}
#endif

int64_t cp_follow_run(const cp_field *F, cp_particle *p, int64_t n, int32_t steps, int interp)
{
    const int vec = use_avx2(F, interp);
    const int64_t ngroups = (n + GROUP_N - 1) / GROUP_N;
    int64_t stopped = 0;
    /* groups are independent: any schedule gives the same bits */
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : stopped)
    for (int64_t g = 0; g < ngroups; g++) {
        cp_particle *q = p + g * GROUP_N;
        int64_t m = n - g * GROUP_N < GROUP_N ? n - g * GROUP_N : GROUP_N;
        if (vec)
            advance_avx2(F, q, m, steps);
        else
            advance_scalar(F, q, m, steps, interp);
        for (int64_t i = 0; i < m; i++) stopped += q[i].steps < steps;
    }
    return stopped;
}
