# Checks of `kiln bench` result files for the CTest smoke runs (cmake -P
# scripts in tests/cmake/ include this file).
#
#   bench_read_result(DIR)       exactly one *.json in DIR, else FATAL_ERROR;
#                                sets `files` (its path) and `json` (its text)
#   want_type(PATH TYPE)         [PATH] of json (string(JSON) path, ";"-joined)
#                                has that JSON type
#   want_positive(PATH)          ... is a number > 0
#   want_equal(PATH VALUE)       ... equals VALUE
#   bench_want_record(I N)       json is an array of N records and record I
#                                has every key of telemetry/report.h: non-empty
#                                strings, positive value and ceiling, settings
#                                an object

macro(bench_read_result dir)
  file(GLOB files ${dir}/*.json)
  list(LENGTH files _nfiles)
  if(NOT _nfiles EQUAL 1)
    message(FATAL_ERROR "expected one result file in ${dir}, found ${_nfiles}: ${files}")
  endif()
  file(READ ${files} json)
endmacro()

function(want_type path type)
  string(JSON got ERROR_VARIABLE e TYPE "${json}" ${path})
  if(e OR NOT got STREQUAL type)
    message(FATAL_ERROR "${files}: [${path}] should be ${type}, is ${got} ${e}")
  endif()
endfunction()

function(want_positive path)
  want_type("${path}" NUMBER)
  string(JSON v GET "${json}" ${path})
  if(NOT v GREATER 0)
    message(FATAL_ERROR "${files}: [${path}] = ${v}, should be > 0")
  endif()
endfunction()

function(want_equal path value)
  string(JSON v ERROR_VARIABLE e GET "${json}" ${path})
  if(e OR NOT v STREQUAL value)
    message(FATAL_ERROR "${files}: [${path}] = '${v}', should be '${value}' ${e}")
  endif()
endfunction()

function(bench_want_record i n)
  want_type("" ARRAY)
  string(JSON got LENGTH "${json}")
  if(NOT got EQUAL n)
    message(FATAL_ERROR "${files}: ${got} records, expected ${n}")
  endif()
  foreach(key benchmark shape unit ceiling_what device driver commit date)
    want_type("${i};${key}" STRING)
    string(JSON v GET "${json}" ${i} ${key})
    if(v STREQUAL "")
      message(FATAL_ERROR "${files}: record ${i} has an empty ${key}")
    endif()
  endforeach()
  want_positive("${i};value")
  want_positive("${i};ceiling")
  want_type("${i};settings" OBJECT)
endfunction()
