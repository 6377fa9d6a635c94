// Helpers for the builder's kernel-oracle tests: run nydus-image, mount an
// EROFS image with mount(2) (file-backed; mount(8) would loop it), generate
// varied source trees, and compare two trees attribute by attribute and
// byte by byte.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace nydus::builder::testing {

namespace fs = std::filesystem;

// Runs argv[0] with the arguments; returns the exit status (or -1) and the
// combined stdout+stderr in *output.
int run(const std::vector<std::string>& argv, std::string* output = nullptr);

std::string nydus_image();

// Mounts an EROFS image read-only with mount(2) and unmounts it (lazily, so
// a failing test never leaves it behind) when destroyed.
class ErofsMount {
 public:
  ErofsMount(const fs::path& source, const fs::path& target, const std::string& options = "");
  ~ErofsMount();
  ErofsMount(const ErofsMount&) = delete;
  ErofsMount& operator=(const ErofsMount&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  fs::path target_;
  bool ok_ = false;
  std::string error_;
};

// Creates the varied tree the oracle tests build: empty and tiny files,
// sizes around 4 KiB and the chunk sizes, a 64 MiB mixed file, a sparse
// file, a 10,000-entry directory, 255-byte and non-ASCII names, inline and
// 4095-byte symlinks, hard links, user./trusted./ACL xattrs, fifos, devices,
// a socket, 64 nested levels, ids above 65535, setuid/sticky modes and
// nanosecond mtimes on everything.
void make_varied_tree(const fs::path& root);

// Differences between two trees (empty when equal): names, type and mode,
// uid, gid, size, mtime (s + ns), nlink, rdev, symlink targets, xattrs,
// content bytes, and hard-link structure. At most `limit` entries. The
// comparison is tests/support/tree_compare.h, shared by every image test.
std::vector<std::string> compare_trees(const fs::path& expected, const fs::path& actual, size_t limit = 30);

// Reads a whole file (or fails the test).
std::string read_all(const fs::path& p);

std::string hex(const std::string& bytes);

}  // namespace nydus::builder::testing
