# The 3-D network stage (src/net3d.c, src/smooth3d.c, cp_resize_volume): CELLPOSE_ALGORITHM.md
# §8.4-8.6 against the 3-D reference cases. x_norm of the same cases: prep.cmake.
cp_add_test(NAME net3d_unit SOURCE test_net3d.c LINK net3d net3d_window dnet3 grid ARGS unit TIMEOUT 120)
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
# cp_net3d_window (src/net3d_window.c): windows of block grids (4, 7, 16 per side, a sample of
# blocks per size; all blocks in the heavy runs), one off the grid and (small grids)
# the whole grid, bit for bit against cp_run_net3d on the whole volume; the window off the grid
# against the oracle (1e-3). r2 / aug: cropped volumes at rescale 2 / with augment (test_net3d.c). About
# 10-25 CPU s each; the multitile one about 30 (its whole-volume run).
cp_add_test(NAME net3d_window_tiny_nbase8_vol3d_main SOURCE test_net3d.c LINK net3d
            ARGS window tiny_nbase8_vol3d main 3 TIMEOUT 600)
cp_add_test(NAME net3d_window_tiny_nbase8_vol3d_r2 SOURCE test_net3d.c LINK net3d
            ARGS window tiny_nbase8_vol3d r2 12 TIMEOUT 600)
# (the four longer ones are label heavy: minutes each under the sanitizers)
cp_add_test(NAME net3d_window_tiny_nbase8_vol3d_aug SOURCE test_net3d.c LINK net3d
            ARGS window tiny_nbase8_vol3d aug 1 TIMEOUT 600 LABELS heavy)
cp_add_test(NAME net3d_window_tiny_nbase8_vol3d_multitile_smooth1 SOURCE test_net3d.c LINK net3d
            ARGS window tiny_nbase8_vol3d_multitile smooth1 1 TIMEOUT 900 LABELS heavy)
foreach(v main noresample)
  cp_add_test(NAME net3d_window_synth_trained_nbase16_vol3d_aniso_${v} SOURCE test_net3d.c
              LINK net3d ARGS window synth_trained_nbase16_vol3d_aniso ${v} 2 TIMEOUT 900
              LABELS heavy)
endforeach()
foreach(v main r2)
  cp_add_test(NAME net3d_window_tiny_nbase8_vol3d_${v}_all SOURCE test_net3d.c LINK net3d
              ARGS window tiny_nbase8_vol3d ${v} all TIMEOUT 3600 LABELS heavy)
endforeach()
# cp_dnet3_windows (mpi/dnet3.c): the grown blocks of a grid through the each-tile-once network
# at 1-4 ranks, bit for bit against the whole volume, the tile count of a wave, an error or a stop
# on one rank reaching all: one and several waves (32: 6 blocks; 8: many), a resize up (r2),
# augment, flow3D_smooth with slices of several tiles, and anisotropy without resample.
foreach(np 1 2 3 4)
  cp_add_mpi_test(NAME dnet3_tiny_nbase8_vol3d_main_np${np} SOURCE test_net3d.c NP ${np}
                  ARGS dnet3 tiny_nbase8_vol3d main 32 TIMEOUT 300)
endforeach()
foreach(np 2 3)
  cp_add_mpi_test(NAME dnet3_tiny_nbase8_vol3d_r2_np${np} SOURCE test_net3d.c NP ${np}
                  ARGS dnet3 tiny_nbase8_vol3d r2 8 TIMEOUT 300)
  cp_add_mpi_test(NAME dnet3_tiny_nbase8_vol3d_multitile_smooth1_np${np} SOURCE test_net3d.c
                  NP ${np} ARGS dnet3 tiny_nbase8_vol3d_multitile smooth1 32 TIMEOUT 600
                  LABELS heavy)
endforeach()
cp_add_mpi_test(NAME dnet3_tiny_nbase8_vol3d_aug_np2 SOURCE test_net3d.c NP 2
                ARGS dnet3 tiny_nbase8_vol3d aug 4 TIMEOUT 300)
cp_add_mpi_test(NAME dnet3_synth_trained_nbase16_vol3d_aniso_noresample_np3 SOURCE test_net3d.c
                NP 3 ARGS dnet3 synth_trained_nbase16_vol3d_aniso noresample 16 TIMEOUT 600)
