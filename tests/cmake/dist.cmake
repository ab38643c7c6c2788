# Distributed runs through the CLI under mpirun (tests/test_dist.c, tests/test_dist_ops.c).
# Label "heavy": left out of the sanitizer pass (minutes each there); they run in the main pass.
foreach(c synth_trained_nbase16_synth512 random_cp3_seed0_synth512 synth_trained_nbase16_neuron512
          synth_trained_nbase16_float32_invert synth_trained_nbase16_diam40_noresample)
  cp_add_test(NAME dist_seams_${c} SOURCE test_dist.c LINK flows tiff_io ARGS seams ${c}
              LABELS heavy)
endforeach()
# --save_flows on 1-4 ranks: /flows and /cellprob bit-identical to one process, at the image
# scale and, with --no_resample and a diameter, at the network scale
foreach(c synth_trained_nbase16_synth512 synth_trained_nbase16_diam40_noresample)
  cp_add_test(NAME dist_seams_flows_${c} SOURCE test_dist.c ARGS seams_flows ${c} LABELS heavy)
endforeach()
# --protrusions with --no_resample and a diameter: the masks before the QC and the flows are
# resized to the image scale block by block, as the single process resizes them
cp_add_test(NAME dist_seams_protrusions_noresample SOURCE test_dist.c
            ARGS seams_protrusions synth_trained_nbase16_diam40_noresample LABELS heavy)
cp_add_test(NAME dist_seams_tiny_nbase8_augment_diam60 SOURCE test_dist.c ARGS seams
            tiny_nbase8_augment_diam60)
cp_add_test(NAME dist_seams_tiny_4mpx SOURCE test_dist.c ARGS tiny_4mpx LABELS heavy)
cp_add_test(NAME dist_seams_thin_cells_niter2000 SOURCE test_dist.c ARGS thin_cells)
cp_add_test(NAME dist_tiles_once SOURCE test_dist.c ARGS tiles_once)
foreach(t dataset bad_block h5py)
  cp_add_test(NAME dist_${t} SOURCE test_dist_ops.c LINK tiff_io ARGS ${t})
endforeach()
foreach(t stack stack8 kill_network kill_dynamics signal signal_stack signal_volume)
  cp_add_test(NAME dist_${t} SOURCE test_dist_ops.c LINK tiff_io ARGS ${t} LABELS heavy)
endforeach()
