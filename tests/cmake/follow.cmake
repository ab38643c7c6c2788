# Flow following (src/follow.c) and raw masks (src/masks.c): one ctest per reference case with
# dynamics inputs (p_final bit-exact, then masks_raw label for label), the niter-200 and
# stitch-0.25 reruns, windows/threads/kernels, and the masks unit tests.
set(CP_FOLLOW_CASES
  flows_protrusions_niter2000 flows_protrusions_nointerp
  random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000
  synth_trained_nbase16_synth512 synth_trained_nbase16_neuron512
  synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
  synth_trained_nbase16_stack3 tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
foreach(c ${CP_FOLLOW_CASES})
  cp_add_test(NAME follow_${c} SOURCE test_follow.c LINK follow masks ARGS case ${c} TIMEOUT 120)
  cp_add_test(NAME masks_${c} SOURCE test_masks.c LINK masks ARGS case ${c} TIMEOUT 60)
endforeach()
cp_add_test(NAME follow_flows_protrusions_niter200 SOURCE test_follow.c LINK follow masks
            ARGS case flows_protrusions_niter2000 niter200 TIMEOUT 120)
cp_add_test(NAME follow_tiny_nbase8_stack3_stitch025 SOURCE test_follow.c LINK follow masks
            ARGS case tiny_nbase8_stack3 stitch025 TIMEOUT 120)
cp_add_test(NAME masks_tiny_nbase8_stack3_stitch025 SOURCE test_masks.c LINK masks
            ARGS case tiny_nbase8_stack3 stitch025 TIMEOUT 60)
cp_add_test(NAME follow_window SOURCE test_follow.c LINK follow masks ARGS window TIMEOUT 120)
cp_add_test(NAME masks_argsort SOURCE test_masks.c LINK masks ARGS argsort TIMEOUT 120)
cp_add_test(NAME masks_unit SOURCE test_masks.c LINK masks ARGS unit TIMEOUT 60)
