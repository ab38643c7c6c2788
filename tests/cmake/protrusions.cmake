# Protrusion recovery (src/protrusions.c): the metric against Cellpose's recorded scores, then
# --protrusions on synth_1024 with the trained model (quality, determinism, off = Cellpose;
# heavy: it runs the network, minutes under the sanitizers).
cp_add_test(NAME protrusions_metric_reference SOURCE test_protrusions.c LINK protrusions
            ARGS reference TIMEOUT 60)
cp_add_test(NAME protrusions_windows SOURCE test_protrusions.c LINK protrusions ARGS windows
            TIMEOUT 120)
cp_add_test(NAME protrusions_unit SOURCE test_protrusions.c LINK protrusions ARGS unit TIMEOUT 60)
cp_add_test(NAME protrusions_synth1024 SOURCE test_protrusions.c LINK protrusions
            ARGS synth1024 TIMEOUT 300 LABELS heavy)
