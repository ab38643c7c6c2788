# Protrusion recovery (src/protrusions.c): the metric against Cellpose's recorded scores, then
# --protrusions on synth_1024 with the trained model (quality, determinism, off = Cellpose).
cp_add_test(NAME protrusions_metric_reference SOURCE test_protrusions.c ARGS reference TIMEOUT 60)
