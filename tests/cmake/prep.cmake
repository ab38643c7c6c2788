# Preprocessing, resize and tile grid (src/prep.c, src/resize.c, src/tiles.c).
foreach(c random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000
          synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
          synth_trained_nbase16_neuron512 synth_trained_nbase16_stack3
          synth_trained_nbase16_synth512 tiny_nbase8_augment_diam60 tiny_nbase8_stack3
          tiny_nbase8_vol3d tiny_nbase8_vol3d_multitile synth_trained_nbase16_vol3d_aniso)
  cp_add_test(NAME prep_xnorm_${c} SOURCE test_prep.c LINK prep ARGS xnorm ${c} TIMEOUT 120)
endforeach()
cp_add_test(NAME prep_unit SOURCE test_prep.c LINK prep ARGS unit TIMEOUT 120)
cp_add_test(NAME resize_oracle_tiny_nbase8_augment_diam60 SOURCE test_resize.c LINK resize
            ARGS oracle TIMEOUT 120)
cp_add_test(NAME resize_unit SOURCE test_resize.c LINK resize ARGS unit TIMEOUT 120)
foreach(c random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000
          synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
          synth_trained_nbase16_neuron512 synth_trained_nbase16_stack3
          synth_trained_nbase16_synth512 tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
  cp_add_test(NAME tiles_case_${c} SOURCE test_tiles.c LINK tiles resize ARGS case ${c}
              TIMEOUT 120)
endforeach()
cp_add_test(NAME tiles_unit SOURCE test_tiles.c LINK tiles resize ARGS unit TIMEOUT 120)
