# End-to-end parity through the CLI, one test per reference case and mode (tests/test_e2e.c).
set(CP_E2E_IMAGE
  random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000 tiny_nbase8_augment_diam60
  tiny_nbase8_stack3 synth_trained_nbase16_synth512 synth_trained_nbase16_stack3
  synth_trained_nbase16_neuron512 synth_trained_nbase16_diam40_noresample
  synth_trained_nbase16_float32_invert synth_trained_nbase16_synth1024)
set(CP_E2E_FLOWS
  random_cp3_seed0_synth512 random_cp3_seed0_bsize512_niter2000 tiny_nbase8_augment_diam60
  tiny_nbase8_stack3 synth_trained_nbase16_synth512 synth_trained_nbase16_stack3
  synth_trained_nbase16_neuron512 synth_trained_nbase16_float32_invert
  flows_protrusions_niter2000 flows_protrusions_nointerp)
foreach(c ${CP_E2E_IMAGE})
  cp_add_test(NAME e2e_image_${c} SOURCE test_e2e.c ARGS ${c} image)
endforeach()
foreach(c ${CP_E2E_FLOWS})
  cp_add_test(NAME e2e_flows_${c} SOURCE test_e2e.c ARGS ${c} flows)
endforeach()
cp_add_test(NAME e2e_image_tiny_nbase8_stack3_stitch025 SOURCE test_e2e.c ARGS tiny_nbase8_stack3 image stitch025)
cp_add_test(NAME e2e_flows_tiny_nbase8_stack3_stitch025 SOURCE test_e2e.c ARGS tiny_nbase8_stack3 flows stitch025)
cp_add_test(NAME e2e_flows_flows_protrusions_niter200 SOURCE test_e2e.c ARGS flows_protrusions_niter2000 flows niter200)
cp_add_test(NAME e2e_image_synth_trained_nbase16_synth1024_recipe SOURCE test_e2e.c ARGS synth_trained_nbase16_synth1024 image recipe LABELS heavy)
# 3-D (--do_3D): every 3-D network case, with its flow3D_smooth and resample=False runs; the
# three plain cases on 2 OpenMP threads (the parallel loops of the network and the 3-D dynamics).
foreach(c tiny_nbase8_vol3d tiny_nbase8_vol3d_multitile synth_trained_nbase16_vol3d_aniso)
  cp_add_test(NAME e2e_image_${c} SOURCE test_e2e.c ARGS ${c} image THREADS 2)
endforeach()
cp_add_test(NAME e2e_image_tiny_nbase8_vol3d_multitile_smooth1 SOURCE test_e2e.c ARGS tiny_nbase8_vol3d_multitile image smooth1)
cp_add_test(NAME e2e_image_synth_trained_nbase16_vol3d_aniso_noresample SOURCE test_e2e.c ARGS synth_trained_nbase16_vol3d_aniso image noresample)
# Masks from the oracle's own 3-D flows (--flows dP.tif --cellprob_in cellprob.tif --do_3D).
foreach(c tiny_nbase8_vol3d synth_trained_nbase16_vol3d_aniso flows3d_protrusions)
  cp_add_test(NAME e2e_flows_${c} SOURCE test_e2e.c ARGS ${c} flows)
endforeach()
cp_add_test(NAME e2e_flows_tiny_nbase8_vol3d_multitile_smooth1 SOURCE test_e2e.c ARGS tiny_nbase8_vol3d_multitile flows smooth1)
# --do_3D over cubic blocks of 32 voxels (mpi/dvolume.c) on 1-4 ranks: bit-identical to the
# whole-volume run (labels, cells, flows), on a random net and on the trained net (real masks).
# The tiny case also runs in the sanitizer pass (seconds).
cp_add_test(NAME e2e_image_tiny_nbase8_vol3d_blocks SOURCE test_e2e.c ARGS tiny_nbase8_vol3d
            image blocks)
cp_add_test(NAME e2e_image_synth_trained_nbase16_vol3d_aniso_blocks SOURCE test_e2e.c
            ARGS synth_trained_nbase16_vol3d_aniso image blocks LABELS heavy)
# --no_resample over blocks: the dynamics at the network scale (18x60x66), the raw masks resized
# to the volume's grid over blocks (mpi/dresize3.c), then the hole filling.
cp_add_test(NAME e2e_image_synth_trained_nbase16_vol3d_aniso_noresample_blocks SOURCE test_e2e.c
            ARGS synth_trained_nbase16_vol3d_aniso image noresample blocks)
# The same from the oracle's own 3-D flows (--flows over blocks reads them by windows).
cp_add_test(NAME e2e_flows_tiny_nbase8_vol3d_blocks SOURCE test_e2e.c ARGS tiny_nbase8_vol3d
            flows blocks)
cp_add_test(NAME e2e_flows_flows3d_protrusions_blocks SOURCE test_e2e.c ARGS flows3d_protrusions
            flows blocks)
