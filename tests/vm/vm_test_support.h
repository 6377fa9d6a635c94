// Helpers shared by the VM tests (LABEL vm).
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/vm/vm_harness.h"

namespace nydus::testing::vm {

// Skips the whole test binary (exit kSkipExitCode; ctest reports "Skipped",
// see SKIP_RETURN_CODE in tests/vm/CMakeLists.txt) when qemu or the VM
// kernel is missing. Any other setup problem fails the test instead.
inline VmTools require_vm_or_skip() {
  auto tools = find_vm_tools();
  if (!tools.ok() && tools.error().kind() == ErrorKind::kUnsupported) {
    std::printf("SKIPPED: %s\n", tools.error().message().c_str());
    std::fflush(stdout);
    std::exit(kSkipExitCode);
  }
  INFO((tools.ok() ? std::string() : tools.error().message()));
  REQUIRE(tools.ok());
  return *tools;
}

// Runs the command in a VM and fails the test (with the console tail) if
// the VM itself did not work out; the command's own status is returned.
inline VmResult run_or_fail(VmOptions options) {
  auto r = run_in_vm(options);
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Source trees of the images the VM tests build.
inline void write_file(const std::filesystem::path& p, const std::string& data, mode_t mode = 0644) {
  std::ofstream(p, std::ios::binary) << data;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

inline std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng() & 0xFF);
  return s;
}

}  // namespace nydus::testing::vm
