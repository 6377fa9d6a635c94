#include "tests/support/temp_dir.h"

#include <stdlib.h>
#include <sys/mount.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "common/mount.h"

namespace nydus::testing {

TempDir::TempDir(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  for (const auto& mp : nydus::mounts_below(path_.string())) umount2(mp.c_str(), MNT_DETACH);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace nydus::testing
