# The model goldens (tests/unit/test_model_golden.c) on the CUDA backend, in
# BF16 and F16: the same executable, KILN_TEST_BACKEND picks the backend and
# its tolerances.  Label gpu: they run on a GPU machine (scripts/gpu-check.sh).
# The _gelu_tanh runs take BERT's erf GELU in the tanh form of cuBLASLt's
# epilogue (KILN_CUDA_GELU_TANH=1) and must meet the same tolerances against
# transformers' erf GELU.
if(KILN_HAVE_CUDA AND TARGET test_model_golden)
  foreach(dt bf16 f16)
    foreach(form "" _gelu_tanh)
      set(name gpu_model_golden_${dt}${form})
      add_test(NAME ${name} COMMAND test_model_golden)
      set_tests_properties(${name} PROPERTIES LABELS gpu TIMEOUT 900)
      kiln_set_test_env(${name})
      set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT "KILN_TEST_BACKEND=cuda-${dt}")
      if(form)
        set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT "KILN_CUDA_GELU_TANH=1")
      endif()
    endforeach()
  endforeach()
endif()
