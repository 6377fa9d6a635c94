// Helpers of the in-VM drivers (fscache_vm_driver, snapshotter_fscache_vm_driver):
// their exit codes and the small file readers both need. The host tests
// read the drivers' "ok  "/"FAIL" lines from the console.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace nydus::testing::vm {

inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSetup = 3;

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The last `lines` lines of `text` (for logs quoted in failures).
inline std::string tail(const std::string& text, size_t lines) {
  size_t pos = text.size();
  for (size_t n = 0; pos > 0 && n <= lines; --pos) {
    if (text[pos - 1] == '\n') ++n;
  }
  return text.substr(pos);
}

}  // namespace nydus::testing::vm
