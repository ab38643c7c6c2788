# 3-D dynamics (src/follow3d.c, src/masks3d.c, src/compute_masks3d.c; CELLPOSE_ALGORITHM.md
# §8.7-8.9): one ctest per 3-D reference case and rerun (p_final bit-exact, masks_raw and masks
# label for label, from the oracle's dP/cellprob), and the unit tests.
set(CP_DYN3D_LINK follow3d masks3d compute_masks3d)
foreach(c tiny_nbase8_vol3d tiny_nbase8_vol3d_multitile synth_trained_nbase16_vol3d_aniso
          flows3d_protrusions)
  cp_add_test(NAME dyn3d_${c} SOURCE test_dyn3d.c LINK ${CP_DYN3D_LINK} ARGS case ${c} TIMEOUT 300)
endforeach()
cp_add_test(NAME dyn3d_tiny_nbase8_vol3d_multitile_smooth1 SOURCE test_dyn3d.c LINK ${CP_DYN3D_LINK}
            ARGS case tiny_nbase8_vol3d_multitile smooth1 TIMEOUT 300)
cp_add_test(NAME dyn3d_synth_trained_nbase16_vol3d_aniso_noresample SOURCE test_dyn3d.c
            LINK ${CP_DYN3D_LINK} ARGS case synth_trained_nbase16_vol3d_aniso noresample TIMEOUT 300)
cp_add_test(NAME dyn3d_flows3d_protrusions_nointerp SOURCE test_dyn3d.c LINK ${CP_DYN3D_LINK}
            ARGS case flows3d_protrusions nointerp TIMEOUT 300)
cp_add_test(NAME dyn3d_unit SOURCE test_dyn3d.c LINK ${CP_DYN3D_LINK} ARGS unit TIMEOUT 300)
