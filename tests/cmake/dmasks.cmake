# Raw masks over owner blocks (mpi/dmasks.c), each on 1, 2, 3 and 4 ranks: Cellpose's masks_raw
# from the oracle's end points for every reference case with p_final + masks_raw (and the
# niter-200 / stitch-0.25 reruns), blocks of 32..128; synthetic seam/tie/big-mask planes against
# cp_masks_raw of the whole plane; bad "fin" content.
set(CP_DMASKS_CASES
  flows_protrusions_niter2000 flows_protrusions_nointerp
  random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000
  synth_trained_nbase16_synth512 synth_trained_nbase16_neuron512
  synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
  synth_trained_nbase16_stack3 tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
foreach(np 1 2 3 4)
  foreach(c ${CP_DMASKS_CASES})
    cp_add_mpi_test(NAME dmasks_${c}_np${np} SOURCE test_dmasks.c NP ${np} LINK dmasks follow
                    ARGS case ${c} TIMEOUT 180)
  endforeach()
  cp_add_mpi_test(NAME dmasks_flows_protrusions_niter200_np${np} SOURCE test_dmasks.c NP ${np}
                  LINK dmasks follow ARGS case flows_protrusions_niter2000 niter200 TIMEOUT 180)
  cp_add_mpi_test(NAME dmasks_tiny_nbase8_stack3_stitch025_np${np} SOURCE test_dmasks.c NP ${np}
                  LINK dmasks follow ARGS case tiny_nbase8_stack3 stitch025 TIMEOUT 180)
  cp_add_mpi_test(NAME dmasks_stress_np${np} SOURCE test_dmasks.c NP ${np} LINK dmasks follow
                  ARGS stress TIMEOUT 180)
  cp_add_mpi_test(NAME dmasks_bad_np${np} SOURCE test_dmasks.c NP ${np} LINK dmasks follow
                  ARGS bad TIMEOUT 60)
endforeach()
