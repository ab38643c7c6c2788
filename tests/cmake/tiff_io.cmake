# tiff_io: generated layouts, writers, bad inputs, and every TIFF of shared/ against the oracle.
foreach(mode variants write bad data)
  cp_add_test(NAME tiff_io_${mode} SOURCE test_tiff_io.c LINK tiff_io ARGS ${mode} TIMEOUT 120)
endforeach()
foreach(case fill_holes_min_size_gaps flows_protrusions_niter2000 flows_protrusions_nointerp
        masks_to_flows_small random_cp3_seed0_bsize512_niter2000 random_cp3_seed0_synth512
        synth_trained_nbase16_diam40_noresample synth_trained_nbase16_float32_invert
        synth_trained_nbase16_neuron512 synth_trained_nbase16_stack3
        synth_trained_nbase16_synth1024 synth_trained_nbase16_synth512
        tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
  cp_add_test(NAME tiff_io_ref_${case} SOURCE test_tiff_io.c LINK tiff_io ARGS reference ${case}
              TIMEOUT 120)
endforeach()
