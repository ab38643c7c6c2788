# Per-mask post-processing over owner blocks (mpi/dpost.c) on 1-4 ranks: parity with the oracle
# (masks_flowqc, masks) and with the whole-plane functions on synthetic stress planes.
foreach(np 1 2 3 4)
  foreach(c flows_protrusions_niter2000 flows_protrusions_nointerp
            random_cp3_seed0_bsize512_niter2000 random_cp3_seed0_synth512
            synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
            synth_trained_nbase16_neuron512 synth_trained_nbase16_stack3
            synth_trained_nbase16_synth512 tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
    cp_add_mpi_test(NAME dpost_${c}_np${np} SOURCE test_dpost.c NP ${np}
                    LINK dpost dplane post flows ARGS oracle ${c} TIMEOUT 120)
  endforeach()
  cp_add_mpi_test(NAME dpost_tiny_nbase8_stack3_stitch025_np${np} SOURCE test_dpost.c NP ${np}
                  LINK dpost dplane post flows ARGS oracle tiny_nbase8_stack3 _stitch025 TIMEOUT 120)
  cp_add_mpi_test(NAME dpost_flows_protrusions_niter200_np${np} SOURCE test_dpost.c NP ${np}
                  LINK dpost dplane post flows ARGS oracle flows_protrusions_niter2000 _niter200
                  TIMEOUT 120)
  cp_add_mpi_test(NAME dpost_fill_holes_min_size_gaps_np${np} SOURCE test_dpost.c NP ${np}
                  LINK dpost dplane post flows ARGS gaps TIMEOUT 120)
  cp_add_mpi_test(NAME dpost_synth_np${np} SOURCE test_dpost.c NP ${np}
                  LINK dpost dplane post flows ARGS synth TIMEOUT 120)
endforeach()
