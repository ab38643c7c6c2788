# Ideal flows (src/flows.c) and mask post-processing (src/post.c): parity with the oracle.
cp_add_test(NAME flows_parity SOURCE test_flows.c LINK flows ARGS parity TIMEOUT 60)
cp_add_test(NAME flows_protrusions SOURCE test_flows.c LINK flows ARGS protrusions TIMEOUT 60)
cp_add_test(NAME flows_unit SOURCE test_flows.c LINK flows ARGS unit TIMEOUT 60)
cp_add_test(NAME flows_perf SOURCE test_flows.c LINK flows ARGS perf TIMEOUT 120)

# Flow-error QC: masks_raw + dP -> masks_flowqc, per-label errors against case.json.
foreach(c flows_protrusions_niter2000 flows_protrusions_nointerp random_cp3_seed0_bsize512_niter2000
          random_cp3_seed0_synth512 synth_trained_nbase16_diam40_noresample
          synth_trained_nbase16_float32_invert synth_trained_nbase16_neuron512
          synth_trained_nbase16_stack3 synth_trained_nbase16_synth512 tiny_nbase8_augment_diam60
          tiny_nbase8_stack3)
  cp_add_test(NAME post_qc_${c} SOURCE test_post.c LINK post flows ARGS qc ${c} TIMEOUT 60)
endforeach()
cp_add_test(NAME post_qc_tiny_nbase8_stack3_stitch025 SOURCE test_post.c LINK post flows
            ARGS qc tiny_nbase8_stack3 _stitch025 TIMEOUT 60)

# Hole filling + min_size: masks_flowqc -> masks (masks_planes in stitching runs). The diam40
# no-resample case needs the nearest resize first: post_noresample.
foreach(c flows_protrusions_niter2000 flows_protrusions_nointerp random_cp3_seed0_bsize512_niter2000
          random_cp3_seed0_synth512 synth_trained_nbase16_float32_invert
          synth_trained_nbase16_neuron512 synth_trained_nbase16_stack3
          synth_trained_nbase16_synth512 tiny_nbase8_augment_diam60 tiny_nbase8_stack3)
  cp_add_test(NAME post_fill_${c} SOURCE test_post.c LINK post flows ARGS fill ${c} TIMEOUT 60)
endforeach()
cp_add_test(NAME post_fill_tiny_nbase8_stack3_stitch025 SOURCE test_post.c LINK post flows
            ARGS fill tiny_nbase8_stack3 _stitch025 TIMEOUT 60)
cp_add_test(NAME post_chain_flows_protrusions_niter200 SOURCE test_post.c LINK post flows
            ARGS chain flows_protrusions_niter2000 _niter200 TIMEOUT 60)
cp_add_test(NAME post_noresample SOURCE test_post.c LINK post flows ARGS noresample TIMEOUT 60)
cp_add_test(NAME post_gaps SOURCE test_post.c LINK post flows ARGS gaps TIMEOUT 60)

# Stitching: masks_planes -> stitch -> 3-D fill/min_size -> final masks.
cp_add_test(NAME post_stitch_synth_trained_nbase16_stack3 SOURCE test_post.c LINK post flows
            ARGS stitch synth_trained_nbase16_stack3 TIMEOUT 60)
cp_add_test(NAME post_stitch_tiny_nbase8_stack3 SOURCE test_post.c LINK post flows
            ARGS stitch tiny_nbase8_stack3 _stitch025 TIMEOUT 60)
cp_add_test(NAME post_unit SOURCE test_post.c LINK post flows ARGS unit TIMEOUT 60)
