# `kiln bench tokenize` smoke run on the committed tokenizer.json files of
# tests/data/tokenizers/ (byte-level BPE, BPE with byte fallback, WordPiece;
# one of them as <dir>/tokenizer.json, which the record names by its
# directory), 0.2 s each on the default corpus, without peers.  The run must
# exit 0 and write exactly one result file with one record per tokenizer,
# carrying every key of telemetry/report.h with positive figures.  Timings
# are never compared with anything.
#
# This file is both the registration (included by cmake/KilnTests.cmake) and
# the check it registers (run as cmake -P with KILN, SRC_DIR, OUT set; the
# record checks are those of cmake/KilnBenchCheck.cmake).

if(NOT CMAKE_SCRIPT_MODE_FILE)
  add_test(NAME bench_tokenize_smoke
           COMMAND ${CMAKE_COMMAND} -DKILN=$<TARGET_FILE:kiln> -DSRC_DIR=${CMAKE_SOURCE_DIR}
                   -DOUT=${CMAKE_BINARY_DIR}/bench-smoke/tokenize
                   -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(bench_tokenize_smoke PROPERTIES LABELS bench TIMEOUT 300)
  kiln_set_test_env(bench_tokenize_smoke)
  return()
endif()

# ---- the check (cmake -P) ---------------------------------------------------

include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/KilnBenchCheck.cmake)

foreach(var KILN SRC_DIR OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "bench tokenize smoke: -D${var}=... is required")
  endif()
endforeach()

set(toks ${SRC_DIR}/tests/data/tokenizers)
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT}/results ${OUT}/wp-dir)
file(COPY_FILE ${toks}/wordpiece.json ${OUT}/wp-dir/tokenizer.json)
# shape and tokenizer kind each record must carry, in -m order
set(shapes bpe_bytelevel.json bpe_fallback.json wp-dir)
set(kinds "byte-level BPE" "BPE (byte fallback / Metaspace)" "WordPiece")

execute_process(COMMAND ${KILN} bench tokenize -m ${toks}/bpe_bytelevel.json
                        -m ${toks}/bpe_fallback.json -m ${OUT}/wp-dir/tokenizer.json
                        --seconds 0.2 --no-peer --out ${OUT}/results
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "kiln bench tokenize:\n${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kiln bench tokenize exited with ${rc}")
endif()

bench_read_result(${OUT}/results)
# one input per corpus line
file(READ ${SRC_DIR}/tests/data/tokenizer_corpus.txt corpus)
string(REGEX MATCHALL "\n" newlines "${corpus}")
list(LENGTH newlines ninputs)

list(LENGTH shapes n)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  bench_want_record(${i} ${n})
  list(GET shapes ${i} shape)
  list(GET kinds ${i} kind)
  want_equal("${i};benchmark" tokenize)
  want_equal("${i};shape" ${shape})
  want_equal("${i};unit" MB/s)
  want_type("${i};peer" NULL)
  want_equal("${i};settings;threads" 1)
  want_equal("${i};settings;tokenizer" "${kind}")
  want_equal("${i};settings;inputs" ${ninputs})
  want_positive("${i};settings;bytes")
  want_positive("${i};settings;passes")
endforeach()
