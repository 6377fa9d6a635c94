// Compares a tree with what a filesystem under test shows of it: the one
// oracle comparison every test that mounts an image uses (builder oracle
// tests, nydusd FUSE tests, fscache VM tests).
//
// Per entry: presence both ways (names, any bytes), type and mode, uid, gid,
// size (not for directories), mtime s and ns, nlink, rdev (devices), symlink
// target, xattrs (names and values), every byte of regular files, and the
// hard-link structure (names sharing an inode in one tree share one in the
// other, and only those). Contents are streamed (no whole-file copies) and
// may be read by several threads at once, which is how the VM tests put
// concurrent READs on a daemon.
//
// Differences are reported as "/rel/path: what", at most `limit` of them.
// No Catch2 here: the VM driver links it into a plain program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace nydus::testing {

struct TreeCompareOptions {
  bool nlink_dirs = true;      // directories' nlink (FUSE pseudo roots may differ)
  bool mtime_nsec = true;
  bool root_times = true;      // the root's mtime (a FUSE root may be a pseudo dir)
  bool xattrs = true;
  bool hard_links = true;      // the hard-link structure
  // st_ino of both trees compared on their low 56 bits (a FUSE mount of an
  // image against the kernel's EROFS mount of it: node id = index << 56 | nid).
  bool ino_low_bits = false;
  unsigned readers = 1;        // threads comparing contents
  size_t limit = 40;           // differences kept
};

struct TreeCompareResult {
  std::vector<std::string> diffs;  // empty when equal
  uint64_t entries = 0;            // entries visited
  uint64_t files = 0;              // regular files whose bytes were compared
  uint64_t bytes = 0;              // bytes compared
  bool equal() const { return diffs.empty(); }
};

TreeCompareResult diff_trees(const std::filesystem::path& expected, const std::filesystem::path& actual,
                             const TreeCompareOptions& options = {});

// Streams two files and compares them: empty when equal, else what differs
// (first differing offset, length, or the error).
std::string diff_file_contents(const std::filesystem::path& expected, const std::filesystem::path& actual);

}  // namespace nydus::testing
