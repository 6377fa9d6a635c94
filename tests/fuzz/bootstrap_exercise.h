// Drives every Bootstrap accessor over everything reachable in an image,
// with bounded work, and checks the invariants that must hold for any input:
// no crash, every error has a message, and when validate_tree() accepts the
// image, lookup() agrees with readdir() for every name. Shared by the
// libFuzzer target (tests/fuzz/bootstrap_fuzz.cc) and the corruption tests.
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "nydusd/rafs/bootstrap.h"

namespace nydus::rafs::testing {

// Aborts (a crash the fuzzer reports) with a message.
inline void invariant(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    fprintf(stderr, "invariant violated: %s %s\n", what, detail.c_str());
    abort();
  }
}

template <typename R>
inline bool checked(const R& r) {
  if (!r.ok()) invariant(!r.error().message().empty(), "error without a message");
  return r.ok();
}

struct ExerciseStats {
  bool tree_valid = false;
  size_t inodes = 0;
  size_t entries = 0;
  size_t chunks = 0;
};

inline ExerciseStats exercise_bootstrap(const Bootstrap& b, size_t max_inodes = 2048) {
  ExerciseStats stats;
  stats.tree_valid = checked(b.validate_tree());
  (void)b.super();
  (void)b.blobs();
  (void)b.chunk_table();
  (void)checked(b.prefetch_nids());

  std::vector<uint64_t> queue{b.root_nid()};
  std::set<uint64_t> seen{b.root_nid()};
  while (!queue.empty() && stats.inodes < max_inodes) {
    const uint64_t nid = queue.back();
    queue.pop_back();
    ++stats.inodes;
    auto attr = b.getattr(nid);
    if (!checked(attr)) continue;
    (void)checked(b.xattrs(nid));
    (void)checked(b.readlink(nid));
    auto all = b.map_range(nid, 0, ~uint64_t(0));
    if (checked(all)) stats.chunks += all->size();
    (void)checked(b.map_range(nid, attr->size / 2, 5000));
    (void)checked(b.map_range(nid, attr->size, 1));
    if (!S_ISDIR(attr->mode)) continue;

    std::vector<DirEntry> entries;
    auto st = b.readdir(nid, 0, [&](const DirEntry& e, uint64_t) {
      entries.push_back(e);
      return entries.size() < 100000;
    });
    (void)checked(st);
    stats.entries += entries.size();
    // A resumed listing must continue where the full one was.
    uint64_t resumed = 0;
    (void)checked(b.readdir(nid, entries.size() / 2, [&](const DirEntry& e, uint64_t next) {
      ++resumed;
      return resumed < 4;
    }));
    for (const auto& e : entries) {
      auto found = b.lookup(nid, e.name);
      (void)checked(found);
      if (stats.tree_valid) {
        invariant(found.ok() && *found == e.nid, "lookup disagrees with readdir in a valid tree", e.name);
      }
      if (e.name != "." && e.name != ".." && seen.insert(e.nid).second) queue.push_back(e.nid);
    }
    (void)checked(b.lookup(nid, "\x01"));
    (void)checked(b.lookup(nid, "\xff\xff"));
    (void)checked(b.lookup(nid, ""));
  }
  return stats;
}

}  // namespace nydus::rafs::testing
