// The filesystem config of one RAFS mount: what `--config FILE` holds and what
// POST /api/v1/mount carries as its "config" string. Two JSON forms are read
// (docs/reference-nydusd.md §8):
//
//   v1 (what the reference snapshotter writes for fusedev):
//     {"device":{"backend":{"type":"localfs","config":{"dir":D|"blob_file":F}},
//                "cache":{"type":"blobcache","config":{"work_dir":W}}},
//      "mode":"direct"|"cached", "digest_validate":bool, "enable_xattr":bool,
//      "entry_timeout":s, "attr_timeout":s,
//      "iostats_files":bool, "access_pattern":bool, "latest_read_files":bool,
//      "fs_prefetch":{"enable":bool,"threads_count":n,"prefetch_all":bool,...}}
//   v2:
//     {"version":2, "id":.., "backend":{"type":"localfs","localfs":{"dir"|"blob_file"}},
//      "cache":{"type":"blobcache","filecache":{"work_dir":W}},   ("blobcache" also read)
//      "rafs":{"mode", "validate", "enable_xattr", "entry_timeout", "attr_timeout",
//              "iostats_files", "access_pattern", "latest_read_files",
//              "prefetch":{"enable","threads","prefetch_all","files":[abs paths]}}}
//
// Unknown keys are ignored, as the reference's serde does; a known key of the
// wrong type, an unknown backend or cache type, or a missing required field is
// an error naming the key. Only the localfs backend exists here: the
// reference's other backends are recognised and refused as unsupported.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "nydusd/fuse/fs_metrics.h"
#include "nydusd/storage/storage.h"

namespace nydus::daemon {

inline constexpr double kDefaultEntryTimeoutSecs = 5.0;
inline constexpr double kDefaultAttrTimeoutSecs = 5.0;
inline constexpr size_t kMaxConfigFileSize = 0x100000;  // 1 MiB, as the reference
inline constexpr uint32_t kMaxPrefetchThreads = 1024;

struct FsConfig {
  int version = 2;                 // the form it was written in
  storage::StorageConfig storage;
  std::string mode = "direct";     // "direct" | "cached" (both served the same way)
  bool enable_xattr = true;
  double entry_timeout = kDefaultEntryTimeoutSecs;
  double attr_timeout = kDefaultAttrTimeoutSecs;
  std::vector<std::string> prefetch_files;  // v2 rafs.prefetch.files
  fuse::FileAccounting accounting;          // per-file metrics switches
  // The config as parsed, with secrets blanked, for GET /api/v1/daemon.
  nlohmann::json redacted;
};

// Parses either form (v2 when the top level has "version": 2). Pure: it does
// not look at the filesystem.
Result<FsConfig> parse_fs_config(std::string_view json_text);

// Checks what parse_fs_config cannot: the backend directory (or blob file)
// exists, the work_dir's parent exists. The messages name the path.
Status check_fs_config_paths(const FsConfig& config);

// Reads a config file (at most kMaxConfigFileSize bytes) and parses it.
Result<FsConfig> load_fs_config_file(const std::string& path);

// Reads a `--prefetch-files` list: one path per line, blank lines skipped;
// every path must be absolute.
Result<std::vector<std::string>> load_prefetch_list(const std::string& path);

// Checks a prefetch path list (absolute paths only).
Status validate_prefetch_files(const std::vector<std::string>& files);

}  // namespace nydus::daemon
