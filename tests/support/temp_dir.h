// A temporary directory owned by one test: created under $TMPDIR (or /tmp)
// and removed recursively, with any mounts below it lazily detached, when the
// owner goes out of scope, also when the test fails.
#pragma once

#include <filesystem>
#include <string>

namespace nydus::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "nydus-test");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace nydus::testing
