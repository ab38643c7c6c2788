# The 3-D network stage (src/net3d.c, src/smooth3d.c, cp_resize_volume): CELLPOSE_ALGORITHM.md
# §8.4-8.6 against the 3-D reference cases. x_norm of the same cases: prep.cmake.
cp_add_test(NAME net3d_unit SOURCE test_net3d.c LINK net3d ARGS unit TIMEOUT 120)
cp_add_test(NAME net3d_xnet_synth_trained_nbase16_vol3d_aniso SOURCE test_net3d.c LINK net3d
            ARGS xnet synth_trained_nbase16_vol3d_aniso TIMEOUT 120)
foreach(c tiny_nbase8_vol3d synth_trained_nbase16_vol3d_aniso)
  cp_add_test(NAME net3d_views_${c} SOURCE test_net3d.c LINK net3d ARGS views ${c} TIMEOUT 120)
endforeach()
foreach(c tiny_nbase8_vol3d tiny_nbase8_vol3d_multitile synth_trained_nbase16_vol3d_aniso)
  cp_add_test(NAME net3d_tiling_${c} SOURCE test_net3d.c LINK net3d ARGS tiling ${c} TIMEOUT 120)
endforeach()
cp_add_test(NAME net3d_smooth_tiny_nbase8_vol3d_multitile SOURCE test_net3d.c LINK net3d
            ARGS smooth tiny_nbase8_vol3d_multitile TIMEOUT 120)
foreach(c tiny_nbase8_vol3d tiny_nbase8_vol3d_multitile synth_trained_nbase16_vol3d_aniso)
  cp_add_test(NAME net3d_net_${c} SOURCE test_net3d.c LINK net3d ARGS net ${c} TIMEOUT 900)
endforeach()
cp_add_test(NAME net3d_net_tiny_nbase8_vol3d_multitile_smooth1 SOURCE test_net3d.c LINK net3d
            ARGS net tiny_nbase8_vol3d_multitile smooth1 TIMEOUT 900)
cp_add_test(NAME net3d_net_synth_trained_nbase16_vol3d_aniso_noresample SOURCE test_net3d.c
            LINK net3d ARGS net synth_trained_nbase16_vol3d_aniso noresample TIMEOUT 900)
