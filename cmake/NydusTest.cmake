# The shared directory beside the project (sample images, the fscache VM
# kernel). A checkout normally sits next to it (../shared); a clone made
# elsewhere (a CI workspace, /tmp) finds it through $NYDUS_SHARED_DIR or the
# workplace's fixed location, so the VM tests run instead of skipping.
if(NOT NYDUS_SHARED_DIR)
  set(_nydus_shared_candidates "$ENV{NYDUS_SHARED_DIR}" "${CMAKE_SOURCE_DIR}/../shared" "/work/shared")
  set(NYDUS_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared")
  foreach(_candidate IN LISTS _nydus_shared_candidates)
    if(_candidate AND EXISTS "${_candidate}/vm/bzImage")
      get_filename_component(NYDUS_SHARED_DIR "${_candidate}" ABSOLUTE)
      break()
    endif()
  endforeach()
  set(NYDUS_SHARED_DIR "${NYDUS_SHARED_DIR}" CACHE PATH "The shared directory (testdata, vm kernel)")
endif()
message(STATUS "shared directory for tests: ${NYDUS_SHARED_DIR}")

# Test registration. Every test executable is a Catch2 binary; each TEST_CASE
# becomes one ctest test carrying a label:
#   unit         - no privileges, no devices; always run
#   integration  - real processes, real FUSE and kernel mounts; needs root + /dev/fuse
#   e2e          - real containerd; needs root + /dev/fuse + containerd
#   vm           - fscache tests in a qemu VM
# Run one group alone with `ctest -L unit` (or integration, e2e, vm).

set(NYDUS_HAVE_PRIVILEGES OFF)
execute_process(COMMAND id -u OUTPUT_VARIABLE _nydus_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_nydus_uid STREQUAL "0" AND EXISTS /dev/fuse)
  set(NYDUS_HAVE_PRIVILEGES ON)
else()
  message(STATUS "integration tests disabled: they need root and /dev/fuse")
endif()

add_library(nydus_test_main STATIC ${CMAKE_SOURCE_DIR}/tests/support/catch_main.cc)
target_link_libraries(nydus_test_main PUBLIC Catch2::Catch2)

# nydus_add_test(NAME LABEL label SOURCES ... LIBS ... [TIMEOUT s])
function(nydus_add_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABEL STREQUAL "unit" AND NOT NYDUS_HAVE_PRIVILEGES)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE nydus_test_main nydus_test_support ${T_LIBS})
  target_compile_definitions(${name} PRIVATE
    NYDUS_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
    NYDUS_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    NYDUS_TESTDATA_DIR="${CMAKE_SOURCE_DIR}/tests/data"
    NYDUS_SHARED_DIR="${NYDUS_SHARED_DIR}")
  catch_discover_tests(${name}
    TEST_PREFIX "${T_LABEL}."
    PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT})
endfunction()
