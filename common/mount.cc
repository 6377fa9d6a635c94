#include "common/mount.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

namespace nydus {

namespace {

bool parse_number(std::string_view s, auto& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) out.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool is_octal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

std::string decode_mountinfo_escapes(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && is_octal(field[i + 1]) &&
        is_octal(field[i + 2]) && is_octal(field[i + 3])) {
      int v = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0');
      if (v <= 0xff) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text) {
  std::vector<MountInfo> mounts;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.empty()) continue;

    auto bad = [&](std::string_view why) {
      return make_error(ErrorKind::kCorrupt, "mountinfo line {}: {}: '{}'", line_no, why, line);
    };
    auto f = split_spaces(line);
    // id parent major:minor root mount_point options [optional...] - type source super
    // Ten fields with no optional field; nine when the super options are
    // missing (old kernels).
    if (f.size() < 9) return bad("too few fields");
    MountInfo m;
    if (!parse_number(f[0], m.mount_id) || !parse_number(f[1], m.parent_id)) {
      return bad("bad mount id");
    }
    auto colon = f[2].find(':');
    if (colon == std::string_view::npos || !parse_number(f[2].substr(0, colon), m.major) ||
        !parse_number(f[2].substr(colon + 1), m.minor)) {
      return bad("bad major:minor");
    }
    m.root = decode_mountinfo_escapes(f[3]);
    m.mount_point = decode_mountinfo_escapes(f[4]);
    m.mount_options = std::string(f[5]);
    size_t i = 6;
    while (i < f.size() && f[i] != "-") m.optional_fields.emplace_back(f[i++]);
    if (i == f.size()) return bad("no '-' separator");
    ++i;
    // The super options may be missing on some old kernels; type and source not.
    if (f.size() - i < 2) return bad("missing fs type or source");
    m.fs_type = decode_mountinfo_escapes(f[i]);
    m.source = decode_mountinfo_escapes(f[i + 1]);
    if (i + 2 < f.size()) m.super_options = std::string(f[i + 2]);
    mounts.push_back(std::move(m));
  }
  return mounts;
}

Result<std::vector<MountInfo>> read_mountinfo(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::from_errno(errno, fmt::format("open {}", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorKind::kIo, "read {} failed", path);
  auto res = parse_mountinfo(ss.str());
  if (!res.ok()) return std::move(res).error().wrap(path);
  return res;
}

std::vector<std::string> mounts_below(const std::string& root) {
  std::string base = std::filesystem::path(root).lexically_normal().string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::vector<std::string> found;
  auto mounts = read_mountinfo();
  if (!mounts.ok()) return found;
  for (const auto& m : *mounts) {
    if (m.mount_point == base || m.mount_point.rfind(base + "/", 0) == 0) found.push_back(m.mount_point);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  found.erase(std::unique(found.begin(), found.end()), found.end());
  return found;
}

Result<std::string> mountinfo_path(const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return make_error(ErrorKind::kInvalidArgument, "empty path");
  std::error_code ec;
  fs::path p = fs::path(path).lexically_normal();
  if (p.is_relative()) {
    fs::path cwd = fs::current_path(ec);
    if (ec) return Error::from_errno(ec.value(), "getcwd");
    p = (cwd / p).lexically_normal();
  }
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (s == "/") return s;
  fs::path parent = fs::path(s).parent_path();
  std::string name = fs::path(s).filename().string();
  char resolved[PATH_MAX];
  if (::realpath(parent.c_str(), resolved) == nullptr) {
    return Error::from_errno(errno, fmt::format("realpath {}", parent.string()));
  }
  std::string out = resolved;
  if (out != "/") out += "/";
  return out + name;
}

bool is_mountpoint(const std::string& path) {
  auto target = mountinfo_path(path);
  if (!target.ok()) return false;
  auto mounts = read_mountinfo();
  if (!mounts.ok()) {
    spdlog::warn("is_mountpoint {}: {}", path, mounts.error().message());
    return false;
  }
  for (const auto& m : *mounts) {
    if (m.mount_point == *target) return true;
  }
  return false;
}

Status unmount(const std::string& path) {
  int rc;
  do {
    rc = ::umount2(path.c_str(), UMOUNT_NOFOLLOW);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return ok_status();
  int err = errno;
  if (err == EINVAL || err == ENOENT) return ok_status();  // not (or no longer) mounted
  if (err != EBUSY) return Error::from_errno(err, fmt::format("umount {}", path));
  spdlog::warn("umount {}: busy, detaching lazily", path);
  if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
    err = errno;
    if (err == EINVAL || err == ENOENT) return ok_status();
    return Error::from_errno(err, fmt::format("umount {} (MNT_DETACH)", path));
  }
  return ok_status();
}

Status lazy_unmount(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
    int err = errno;
    if (err == EINVAL) {
      return Error(ErrorKind::kNotFound, fmt::format("umount {}: not a mount point", path), err);
    }
    return Error::from_errno(err, fmt::format("umount {} (MNT_DETACH)", path));
  }
  return ok_status();
}

MountGuard& MountGuard::operator=(MountGuard&& other) noexcept {
  if (this != &other) {
    (void)unmount();
    mountpoint_ = std::move(other.mountpoint_);
    other.mountpoint_.clear();
  }
  return *this;
}

MountGuard::~MountGuard() { (void)unmount(); }

Result<MountGuard> MountGuard::mount(const std::string& source, const std::string& target,
                                     const std::string& fs_type, unsigned long flags,
                                     const std::string& data) {
  if (::mount(source.c_str(), target.c_str(), fs_type.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    return Error::from_errno(errno,
                             fmt::format("mount {} on {} (type {})", source, target, fs_type));
  }
  return MountGuard(target);
}

Status MountGuard::unmount() {
  if (mountpoint_.empty()) return ok_status();
  std::string path = std::move(mountpoint_);
  mountpoint_.clear();
  Status st = nydus::unmount(path);
  if (!st.ok()) {
    try {
      spdlog::error("mount guard: {}", st.error().message());
    } catch (...) {
    }
  }
  return st;
}

}  // namespace nydus
