# Test registration.
#
#  - tests/unit/test_<name>.c     one cmocka executable per module, label "unit"
#  - tests/unit/gpu_test_<name>.c   GPU tests (CUDA builds only), label "gpu"
#  - tests/fuzz/fuzz_<name>.c      libFuzzer targets (KILN_FUZZ=ON), label "fuzz"
#  - tests/cmake/*.cmake           extra registrations a module needs (fixtures
#                                  made by a reference script, CLI tests, ...)
#
# Every test gets KILN_SOURCE_DIR, KILN_BINARY_DIR, KILN_PYTHON, KILN_MODELS_DIR
# and KILN_BIN (path of the kiln binary) in its environment.

set(KILN_TEST_ENV
    "KILN_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    "KILN_BINARY_DIR=${CMAKE_BINARY_DIR}"
    "KILN_PYTHON=${KILN_PYTHON}"
    "KILN_MODELS_DIR=${KILN_MODELS_DIR}"
    "KILN_BIN=$<TARGET_FILE:kiln>")

function(kiln_set_test_env test)
  set_property(TEST ${test} APPEND PROPERTY ENVIRONMENT ${KILN_TEST_ENV})
endfunction()

if(CMOCKA_FOUND AND NOT KILN_FUZZ)
  # Helpers shared by tests (running commands, temporary directories, files).
  file(GLOB KILN_TEST_SUPPORT CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/support/*.c)
  set(KILN_TEST_LIBS ${KILN_LIBS} PkgConfig::CMOCKA)
  if(KILN_TEST_SUPPORT)
    add_library(kiln_testsupport STATIC ${KILN_TEST_SUPPORT})
    target_link_libraries(kiln_testsupport PUBLIC kiln_core PkgConfig::CMOCKA)
    target_include_directories(kiln_testsupport PUBLIC ${CMAKE_SOURCE_DIR}/tests/support)
    set(KILN_TEST_LIBS kiln_testsupport ${KILN_TEST_LIBS})
  endif()
  file(GLOB KILN_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
  foreach(src ${KILN_UNIT_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE ${KILN_TEST_LIBS})
    if(KILN_HAVE_CUDA)
      set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CUDA)
    endif()
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 900)
    kiln_set_test_env(${name})
    add_dependencies(${name} kiln)
  endforeach()

  if(KILN_HAVE_CUDA)
    file(GLOB KILN_GPU_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/gpu_test_*.c)
    foreach(src ${KILN_GPU_TESTS})
      get_filename_component(name ${src} NAME_WE)
      add_executable(${name} ${src})
      target_link_libraries(${name} PRIVATE ${KILN_TEST_LIBS})
      set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CUDA)
      add_test(NAME ${name} COMMAND ${name})
      set_tests_properties(${name} PROPERTIES LABELS gpu TIMEOUT 900)
      kiln_set_test_env(${name})
    endforeach()
  endif()

  file(GLOB KILN_TEST_FRAGMENTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cmake/*.cmake)
  foreach(frag ${KILN_TEST_FRAGMENTS})
    include(${frag})
  endforeach()
elseif(NOT KILN_FUZZ)
  message(WARNING "cmocka not found: unit tests are not built (run scripts/install-deps.sh)")
endif()

if(KILN_FUZZ)
  file(GLOB KILN_FUZZERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
  foreach(src ${KILN_FUZZERS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE kiln_core)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    string(REGEX REPLACE "^fuzz_" "" corpus ${name})
    set(seed_dir ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${corpus})
    set(work_dir ${CMAKE_BINARY_DIR}/fuzz-corpus/${corpus})
    add_test(NAME ${name}
             COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
                     UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
                     $<TARGET_FILE:${name}> -max_total_time=${KILN_FUZZ_SECONDS}
                     -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                     ${work_dir} ${seed_dir})
    # A sanitizer report fails the test even if the process were to exit 0
    # (the flags make UBSan abort; this is the backstop).
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 600
                         FAIL_REGULAR_EXPRESSION "runtime error:;ERROR: AddressSanitizer;ERROR: libFuzzer")
    file(MAKE_DIRECTORY ${work_dir})
  endforeach()
endif()
