/* Private to follow3d.c, included once per instruction set: the vector kernel of the interpolated
 * 3-D following (§8.7), K_W particles per vector, written once over the operations that
 * follow3d.c defines for the set (K_* names: VF float vector, VI int32 vector, VM lane mask).
 * Same IEEE operations in the same order as follow3d.c's step(): x / 2 is x * 0.5 (both exact
 * halvings), and a masked add leaves the lane of a corner outside the volume as it was. */

/* Constants of a field, per axis (z, y, x). */
typedef struct K_NAME(kfield) {
    VF Lf[3];
    VI L[3], w0[3], wend[3], stride[3]; /* stride: floats per voxel step along the axis */
    const float *f;
} K_NAME(kfield);

/* K_W particles: position, the position before it (see step()), steps left. */
typedef struct K_NAME(klanes) {
    VF c[3], prev[3];
    VI left;
} K_NAME(klanes);

/* One iteration of the lanes of V with steps left whose stencil is inside the window. Returns
 * the mask of the lanes that moved. */
K_TARGET static inline VM K_NAME(kstep)(const K_NAME(kfield) *K, K_NAME(klanes) *V)
{
    const VF one = VF_SET1(1.0f), half = VF_SET1(0.5f);
    const VI zero = VI_SET1(0), onei = VI_SET1(1);
    VM act = M_GT(V->left, zero);
    VF w0[3], w1[3];
    VI r0[3], r1[3];
    VM in0[3], in1[3];
    for (int k = 0; k < 3; k++) {
        const VF u = VF_MUL(VF_SUB(VF_MUL(VF_ADD(V->c[k], one), K->Lf[k]), one), half);
        act = M_AND(act, M_ORD(u)); /* NaN */
        const VF fl = VF_FLOOR(u);
        const VI a = VI_CVTT(fl), a1 = VI_ADD(a, onei);
        w0[k] = VF_SUB(VF_ADD(fl, one), u);
        w1[k] = VF_SUB(u, fl);
        in0[k] = M_GT(a1, zero);     /* a >= 0 */
        in1[k] = M_GT(K->L[k], a1); /* a + 1 < L */
        const VI lo = VI_BLEND(in0[k], a1, a), hi = VI_BLEND(in1[k], a, a1);
        act = M_AND(act, M_AND(M_GT(VI_ADD(lo, onei), K->w0[k]), M_GT(K->wend[k], hi)));
        r0[k] = VI_MUL(VI_SUB(lo, K->w0[k]), K->stride[k]);
        r1[k] = VI_MUL(VI_SUB(hi, K->w0[k]), K->stride[k]);
    }
    const VF wxy[4] = {VF_MUL(w0[2], w0[1]), VF_MUL(w1[2], w0[1]), VF_MUL(w0[2], w1[1]),
                       VF_MUL(w1[2], w1[1])};
    VF acc[3] = {VF_SET1(0.0f), VF_SET1(0.0f), VF_SET1(0.0f)};
    for (int c = 0; c < 8; c++) {
        const int cz = c >> 2, cy = (c >> 1) & 1, cx = c & 1;
        const VF w = VF_MUL(wxy[c & 3], cz ? w1[0] : w0[0]);
        const VM in = M_AND(M_AND(act, cz ? in1[0] : in0[0]),
                            M_AND(cy ? in1[1] : in0[1], cx ? in1[2] : in0[2]));
        const VI off = VI_ADD(VI_ADD(cz ? r1[0] : r0[0], cy ? r1[1] : r0[1]), cx ? r1[2] : r0[2]);
        for (int k = 0; k < 3; k++)
            acc[k] = VF_MASK_ADD(in, acc[k], VF_MUL(VF_GATHER(in, off, K->f + k), w));
    }
    /* clamp_coord(v, -1, 1): min(1, max(-1, v)) in maxps/minps operand order; then the 2-cycle
     * end of step() */
    VM cycle = act;
    VF np[3];
    for (int k = 0; k < 3; k++) {
        np[k] = VF_MIN(one, VF_MAX(VF_SET1(-1.0f), VF_ADD(V->c[k], acc[k])));
        cycle = M_AND(cycle, M_SAME_BITS(np[k], V->prev[k]));
    }
    const VI left1 = VI_MASK_DEC(act, V->left);
    const VM stay = M_AND(cycle, M_ODD(left1));
    const VM move = M_ANDNOT(stay, act);
    for (int k = 0; k < 3; k++) {
        V->prev[k] = VF_BLEND(act, V->prev[k], V->c[k]);
        V->c[k] = VF_BLEND(move, V->c[k], np[k]);
    }
    V->left = VI_BLEND(cycle, left1, zero);
    return act;
}

/* Advances m <= CHUNK particles with interpolation: CHUNK / K_W vectors, positions in registers
 * for all steps, one iteration of every vector per pass (their dependency chains overlap). */
K_TARGET static void K_NAME(advance)(const cp_field3 *F, cp_particle3 *q, int64_t m, int32_t steps)
{
    enum { NV = CHUNK / K_W };
    K_NAME(kfield) K = {.f = F->f};
    const int64_t stride[3] = {3 * F->n[1] * F->n[2], 3 * F->n[2], 3};
    for (int k = 0; k < 3; k++) {
        K.Lf[k] = VF_SET1((float)F->L[k]);
        K.L[k] = VI_SET1((int32_t)F->L[k]);
        K.w0[k] = VI_SET1((int32_t)F->w0[k]);
        K.wend[k] = VI_SET1((int32_t)(F->w0[k] + F->n[k]));
        K.stride[k] = VI_SET1((int32_t)stride[k]);
    }
    _Alignas(64) float c[3][CHUNK];
    _Alignas(64) int32_t left[CHUNK];
    group_load(q, m, steps, c, left);
    K_NAME(klanes) V[NV];
    for (int g = 0; g < NV; g++) {
        for (int k = 0; k < 3; k++) V[g].c[k] = V[g].prev[k] = VF_LOAD(c[k] + K_W * g);
        V[g].left = VI_LOAD(left + K_W * g);
    }
    for (int moved = 1; moved;) {
        moved = 0;
        for (int g = 0; g < NV; g++) moved |= M_ANY(K_NAME(kstep)(&K, &V[g]));
    }
    for (int g = 0; g < NV; g++) {
        for (int k = 0; k < 3; k++) VF_STORE(c[k] + K_W * g, V[g].c[k]);
        VI_STORE(left + K_W * g, V[g].left);
    }
    group_store(q, m, steps, c, left);
}
