// libFuzzer target for the RAFS v6 bootstrap reader: any byte string is
// opened with Bootstrap::from_bytes and, when it opens, every accessor is
// driven over everything reachable (validate_tree, getattr, lookup, readdir,
// readlink, xattrs, map_range). A crash, a sanitizer report, an error
// without a message, or lookup disagreeing with readdir in a tree that
// validate_tree accepted is a finding. Built and run by run-fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nydusd/rafs/bootstrap.h"
#include "tests/fuzz/bootstrap_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto b = nydus::rafs::Bootstrap::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz");
  if (!b.ok()) {
    nydus::rafs::testing::invariant(!b.error().message().empty(), "open error without a message");
    return 0;
  }
  nydus::rafs::testing::exercise_bootstrap(**b, 256);
  return 0;
}
