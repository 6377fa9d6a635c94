// `nydus-image check`: validates a bootstrap with the reader (open +
// validate_tree), optionally reads every file's content from the blobs
// (verifying chunk digests), and describes the image as JSON:
//
//   {"bootstrap": PATH, "inodes": N, "blobs": [{"id", "chunk_count", ...}],
//    "files": [{"path", "type", "nid", "mode", "uid", "gid", "size", "nlink",
//               "mtime", "mtime_nsec", "rdev_major", "rdev_minor" (devices),
//               "target" (symlinks), "xattrs": {NAME: HEX_VALUE},
//               "digest" (regular files with blobs: sha256 hex of the content)}]}
//
// Paths that are not valid UTF-8 also get "path_hex" (the exact bytes);
// "path" then holds them with U+FFFD replacements.
// "type" is one of file, dir, symlink, chardev, blockdev, fifo, socket;
// "mode" holds the permission bits (st_mode & 07777); paths start with "/".
// Xattr values are hex because they are bytes, not text.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nydus::builder {

struct CheckOptions {
  std::string bootstrap;
  std::optional<std::string> blob_dir;
  bool verbose = false;  // print each path to stdout
};

Result<nlohmann::json> run_check(const CheckOptions& opts);

}  // namespace nydus::builder
