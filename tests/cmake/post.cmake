# Ideal flows (src/flows.c) and mask post-processing (src/post.c): parity with the oracle.
cp_add_test(NAME flows_parity SOURCE test_flows.c LINK flows ARGS parity TIMEOUT 60)
cp_add_test(NAME flows_protrusions SOURCE test_flows.c LINK flows ARGS protrusions TIMEOUT 60)
cp_add_test(NAME flows_unit SOURCE test_flows.c LINK flows ARGS unit TIMEOUT 60)
cp_add_test(NAME flows_perf SOURCE test_flows.c LINK flows ARGS perf TIMEOUT 120)
