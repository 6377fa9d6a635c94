#include "tests/support/temp_dir.h"

#include <stdlib.h>
#include <sys/mount.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace nydus::testing {

namespace {

// Mount points at or below `root`, deepest first, read from /proc/self/mountinfo.
std::vector<std::string> mounts_below(const std::string& root) {
  std::vector<std::string> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // fields: id parent major:minor root mountpoint ...
    size_t pos = 0;
    for (int i = 0; i < 4 && pos != std::string::npos; ++i) pos = line.find(' ', pos + 1);
    if (pos == std::string::npos) continue;
    size_t end = line.find(' ', pos + 1);
    std::string mp = line.substr(pos + 1, end - pos - 1);
    if (mp == root || mp.rfind(root + "/", 0) == 0) found.push_back(mp);
  }
  std::sort(found.begin(), found.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  return found;
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  for (const auto& mp : mounts_below(path_.string())) umount2(mp.c_str(), MNT_DETACH);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace nydus::testing
