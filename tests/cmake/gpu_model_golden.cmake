# The model goldens (tests/unit/test_model_golden.c) on the CUDA backend, in
# BF16 and F16: the same executable, KILN_TEST_BACKEND picks the backend and
# its tolerances.  Label gpu: they run on a GPU machine (scripts/gpu-check.sh).
if(KILN_HAVE_CUDA AND TARGET test_model_golden)
  foreach(dt bf16 f16)
    add_test(NAME gpu_model_golden_${dt} COMMAND test_model_golden)
    set_tests_properties(gpu_model_golden_${dt} PROPERTIES LABELS gpu TIMEOUT 900)
    kiln_set_test_env(gpu_model_golden_${dt})
    set_property(TEST gpu_model_golden_${dt} APPEND PROPERTY ENVIRONMENT
                 "KILN_TEST_BACKEND=cuda-${dt}")
  endforeach()
endif()
