#include "snapshotter/fs_util.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {

namespace fs = std::filesystem;

Result<Usage> disk_usage(const fs::path& root) {
  std::set<std::pair<dev_t, ino_t>> seen;
  Usage usage;
  auto count = [&](const fs::path& p) -> Status {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) {
      // A file removed while we walk is simply gone.
      if (errno == ENOENT && p != root) return ok_status();
      return Error::from_errno(errno, fmt::format("disk usage: lstat {}", p.string()));
    }
    if (seen.emplace(st.st_dev, st.st_ino).second) usage.size += static_cast<int64_t>(st.st_blocks) * 512;
    return ok_status();
  };
  NYDUS_TRY(count(root));
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) return Error::from_errno(ec.value(), fmt::format("disk usage: reading {}", root.string()));
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    NYDUS_TRY(count(it->path()));
  }
  if (ec) return Error::from_errno(ec.value(), fmt::format("disk usage: walking {}", root.string()));
  usage.inodes = static_cast<int64_t>(seen.size());
  return usage;
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view s) {
  auto oct = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && oct(s[i + 1]) && oct(s[i + 2]) && oct(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

std::vector<std::string> mounts_below(const fs::path& path) {
  std::string root = path.lexically_normal().string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::vector<std::string> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options ...
    size_t pos = 0;
    for (int i = 0; i < 4 && pos != std::string::npos; ++i) pos = line.find(' ', pos + 1);
    if (pos == std::string::npos) continue;
    size_t end = line.find(' ', pos + 1);
    std::string mp = unescape_mountinfo(std::string_view(line).substr(pos + 1, end - pos - 1));
    if (mp == root || mp.rfind(root + "/", 0) == 0) found.push_back(mp);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  found.erase(std::unique(found.begin(), found.end()), found.end());
  return found;
}

Status remove_tree(const fs::path& path) {
  for (const auto& mp : mounts_below(path)) {
    if (::umount2(mp.c_str(), MNT_DETACH) == 0) {
      spdlog::warn("detached leftover mount {} while removing {}", mp, path.string());
    } else if (errno != EINVAL && errno != ENOENT) {
      return Error::from_errno(errno, fmt::format("detaching {} before removing {}", mp, path.string()));
    }
  }
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Error::from_errno(ec.value(), fmt::format("removing {}", path.string()));
  return ok_status();
}

Result<StagedDir> StagedDir::create(const fs::path& parent) {
  std::string tmpl = (parent / (std::string(kStagingPrefix) + "XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error::from_errno(errno, fmt::format("creating a staging directory in {}", parent.string()));
  }
  return StagedDir(fs::path(tmpl));
}

StagedDir::~StagedDir() {
  if (path_.empty()) return;
  auto st = remove_tree(path_);
  if (!st.ok()) spdlog::error("cleaning up staged directory: {}", st.error().message());
}

Status StagedDir::rename_to(const fs::path& target) {
  if (::rename(path_.c_str(), target.c_str()) != 0) {
    return Error::from_errno(errno, fmt::format("renaming {} to {}", path_.string(), target.string()));
  }
  path_ = target;
  return ok_status();
}

bool overlay_index_enabled_by_default() {
  std::ifstream in("/sys/module/overlay/parameters/index");
  char c = 0;
  return in.get(c) && c == 'Y';
}

}  // namespace nydus::snapshotter
