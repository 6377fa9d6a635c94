// Helpers shared by the VM tests (LABEL vm).
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/process.h"
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

// nydus-image create of `src` (extra options such as -c/-S in `options`);
// the blob lands in blob_dir, the tool's output in <boot>.log.
inline void build_image(const std::filesystem::path& src, const std::filesystem::path& boot,
                        const std::filesystem::path& blob_dir, const std::vector<std::string>& options = {}) {
  std::filesystem::create_directories(blob_dir);
  SpawnOptions so;
  so.argv = {std::string(NYDUS_BIN_DIR) + "/nydus-image", "create", "-t", "dir-rafs", "-B", boot.string(), "-D",
             blob_dir.string()};
  so.argv.insert(so.argv.end(), options.begin(), options.end());
  so.argv.push_back(src.string());
  so.stdout_redirect = Redirect::append_to(boot.string() + ".log");
  so.stderr_redirect = Redirect::append_to(boot.string() + ".log");
  auto p = Process::spawn(so);
  REQUIRE(p.ok());
  auto status = p->wait(std::chrono::seconds(120));
  REQUIRE(status.ok());
  std::ifstream log(boot.string() + ".log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  INFO(text);
  REQUIRE(*status == 0);
}

}  // namespace nydus::testing::vm
