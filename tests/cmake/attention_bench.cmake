# bench/kernels/attention_bench.cu: decode and prefill attention on the GPU
# (GB/s against the measured copy bandwidth, TFLOP/s).  Built only when
# named: make attention_bench.  Never run by CTest.
if(KILN_HAVE_CUDA AND TARGET kiln_cuda)
  add_executable(attention_bench EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/kernels/attention_bench.cu)
  target_link_libraries(attention_bench PRIVATE kiln_cuda kiln_core)
  target_compile_options(attention_bench PRIVATE
                         $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo -Xcompiler=-Wall,-Wextra>)
  if(KILN_WERROR)
    target_compile_options(attention_bench PRIVATE
                           $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  endif()
endif()
