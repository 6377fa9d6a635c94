#include "tests/support/tree_compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::testing {

namespace fs = std::filesystem;

namespace {

constexpr size_t kCompareBuffer = 1 << 20;

// name -> value; a value that cannot be read is "<error: ...>" so that it
// differs from any real value.
std::map<std::string, std::string> list_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    out["<list error>"] = std::strerror(errno);
    return out;
  }
  if (n == 0) return out;
  std::string names(size_t(n), '\0');
  n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) {
    out["<list error>"] = std::strerror(errno);
    return out;
  }
  names.resize(size_t(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    std::string value(v > 0 ? size_t(v) : 0, '\0');
    if (v > 0) v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    out[name] = v >= 0 ? value.substr(0, size_t(v)) : fmt::format("<error: {}>", std::strerror(errno));
  }
  return out;
}

// Sorted names; any bytes (no UTF-8 assumptions).
std::vector<std::string> list_dir(const std::string& path, std::string* error) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) *error = ec.message();
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> read_link(const std::string& path) {
  std::string target(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
  if (n < 0) return Error::from_errno(errno, "readlink");
  target.resize(size_t(n));
  return target;
}

std::string join(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

}  // namespace

std::string diff_file_contents(const fs::path& expected, const fs::path& actual) {
  UniqueFd e(::open(expected.c_str(), O_RDONLY | O_CLOEXEC));
  if (!e) return fmt::format("cannot open the expected file: {}", std::strerror(errno));
  UniqueFd a(::open(actual.c_str(), O_RDONLY | O_CLOEXEC));
  if (!a) return fmt::format("cannot open: {}", std::strerror(errno));
  std::vector<char> be(kCompareBuffer), ba(kCompareBuffer);
  uint64_t off = 0;
  for (;;) {
    ssize_t ne = ::read(e.get(), be.data(), be.size());
    if (ne < 0) {
      if (errno == EINTR) continue;
      return fmt::format("read of the expected file at {}: {}", off, std::strerror(errno));
    }
    size_t got = 0;
    while (got < size_t(ne)) {
      ssize_t na = ::read(a.get(), ba.data() + got, size_t(ne) - got);
      if (na < 0 && errno == EINTR) continue;
      if (na < 0) return fmt::format("read at {}: {}", off + got, std::strerror(errno));
      if (na == 0) return fmt::format("ends at {}, expected more", off + got);
      got += size_t(na);
    }
    if (ne == 0) {
      ssize_t extra;
      do {
        extra = ::read(a.get(), ba.data(), 1);
      } while (extra < 0 && errno == EINTR);
      if (extra < 0) return fmt::format("read at {}: {}", off, std::strerror(errno));
      return extra > 0 ? fmt::format("longer than the expected {} bytes", off) : "";
    }
    if (std::memcmp(be.data(), ba.data(), size_t(ne)) != 0) {
      size_t i = 0;
      while (be[i] == ba[i]) ++i;
      return fmt::format("content differs at byte {}", off + i);
    }
    off += uint64_t(ne);
  }
}

TreeCompareResult diff_trees(const fs::path& expected_root, const fs::path& actual_root,
                             const TreeCompareOptions& options) {
  TreeCompareResult res;
  std::mutex mu;  // res.diffs: the content readers report concurrently
  auto report = [&](const std::string& rel, const std::string& what) {
    std::lock_guard lock(mu);
    if (res.diffs.size() < options.limit) res.diffs.push_back("/" + rel + ": " + what);
  };
  const std::string expected = expected_root.string(), actual = actual_root.string();
  std::map<ino_t, ino_t> links, back;  // expected ino <-> actual ino
  std::vector<std::pair<std::string, uint64_t>> regular;  // rel path, size

  std::function<void(const std::string&)> visit = [&](const std::string& rel) {
    const std::string e = rel.empty() ? expected : expected + "/" + rel;
    const std::string a = rel.empty() ? actual : actual + "/" + rel;
    res.entries++;
    struct stat se {}, sa {};
    if (::lstat(e.c_str(), &se) != 0) return report(rel, fmt::format("expected entry unreadable: {}", std::strerror(errno)));
    if (::lstat(a.c_str(), &sa) != 0) return report(rel, fmt::format("missing: {}", std::strerror(errno)));
    auto cmp = [&](const char* field, uint64_t x, uint64_t y, bool octal = false) {
      if (x == y) return;
      report(rel, octal ? fmt::format("{} {:#o} != {:#o} (expected != actual)", field, x, y)
                        : fmt::format("{} {} != {} (expected != actual)", field, x, y));
    };
    const bool dir = S_ISDIR(se.st_mode);
    cmp("mode", se.st_mode, sa.st_mode, true);
    cmp("uid", se.st_uid, sa.st_uid);
    cmp("gid", se.st_gid, sa.st_gid);
    if (!rel.empty() || options.root_times) {
      cmp("mtime", uint64_t(se.st_mtim.tv_sec), uint64_t(sa.st_mtim.tv_sec));
      if (options.mtime_nsec) cmp("mtime_nsec", uint64_t(se.st_mtim.tv_nsec), uint64_t(sa.st_mtim.tv_nsec));
    }
    if (!dir || options.nlink_dirs) cmp("nlink", se.st_nlink, sa.st_nlink);
    if (!dir) cmp("size", uint64_t(se.st_size), uint64_t(sa.st_size));
    if (S_ISCHR(se.st_mode) || S_ISBLK(se.st_mode)) cmp("rdev", se.st_rdev, sa.st_rdev);
    if (options.ino_low_bits) {
      constexpr uint64_t kInoMask = (uint64_t{1} << 56) - 1;
      cmp("ino (low 56 bits)", se.st_ino & kInoMask, sa.st_ino & kInoMask);
    }
    if (options.xattrs && list_xattrs(e) != list_xattrs(a)) report(rel, "xattrs differ");
    if ((se.st_mode & S_IFMT) != (sa.st_mode & S_IFMT)) return;
    if (!dir && options.hard_links) {
      // Names sharing an inode on one side must share one on the other.
      auto [it, added] = links.emplace(se.st_ino, sa.st_ino);
      auto [bit, badded] = back.emplace(sa.st_ino, se.st_ino);
      if (it->second != sa.st_ino || bit->second != se.st_ino) report(rel, "hard-link structure differs");
    }
    if (S_ISLNK(se.st_mode)) {
      auto te = read_link(e), ta = read_link(a);
      if (!ta.ok()) report(rel, ta.error().message());
      else if (!te.ok() || *te != *ta) report(rel, "symlink target differs");
    }
    if (S_ISREG(se.st_mode)) regular.emplace_back(rel, uint64_t(se.st_size));
    if (!dir) return;
    std::string err_e, err_a;
    auto ne = list_dir(e, &err_e), na = list_dir(a, &err_a);
    if (!err_a.empty()) report(rel, "readdir: " + err_a);
    if (ne != na) {
      std::set<std::string> sn(ne.begin(), ne.end()), sm(na.begin(), na.end());
      for (const auto& n : ne)
        if (!sm.count(n)) report(join(rel, n), "missing");
      for (const auto& n : na)
        if (!sn.count(n)) report(join(rel, n), "unexpected");
    }
    for (const auto& n : ne) {
      if (std::binary_search(na.begin(), na.end(), n)) visit(join(rel, n));
    }
  };
  visit("");

  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::max(1u, options.readers); ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < regular.size();) {
        const auto& [rel, size] = regular[i];
        std::string why = diff_file_contents(expected + "/" + rel, actual + "/" + rel);
        if (!why.empty()) report(rel, why);
      }
    });
  }
  for (auto& t : pool) t.join();
  res.files = regular.size();
  for (const auto& r : regular) res.bytes += r.second;
  return res;
}

}  // namespace nydus::testing
