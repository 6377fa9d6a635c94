// BlobCacheEntry: what PUT /api/v2/blobs carries and what `nydusd singleton
// --config FILE` preloads as {"blobs":[entry...]} (reference-nydusd.md §8.5).
//
//   {"type": "bootstrap",                  only bootstraps can be added; their
//                                          data blobs come from the blob table
//    "id": "<fscache id = fsid>",          no '/'; the bootstrap's cookie key
//    "domain_id": "<domain>",              no '/'; may be empty (see below)
//    "config_v2": {"version": 2, "id": ..,
//                  "backend": {"type": "localfs", "localfs": {"dir"|"blob_file"}},
//                  "cache": {"type": "fscache"|"filecache"|"blobcache"|"dummycache",
//                            "fscache"|"filecache"|"blobcache": {"work_dir": W},
//                            "validate": bool},
//                  "metadata_path": "<bootstrap file>"}}
//
// or, legacy, "config": {"id", "backend_type", "backend_config": {"dir"|"blob_file"},
// "cache_type", "cache_config": {"work_dir"}, "metadata_path"} in place of
// config_v2. Unknown keys are ignored (the reference's serde does the same).
//
// Cache types here:
//   fscache              the kernel's cachefiles file is the only cache: data
//                        is fetched from the backend and written into it (the
//                        reference's behaviour); work_dir keeps the CI arrays
//   filecache/blobcache  additionally the persistent storage blob cache in
//                        work_dir (<blob_id>.blob.data + chunk_map), shared
//                        with FUSE mode
//   dummycache / ""      no cache files at all
//
// Domain: the kernel names an EROFS volume "erofs,<domain_id>" when mounted
// with domain_id=, else "erofs,<fsid>". An entry with an empty domain_id is
// therefore served in the domain named by its own id (the reference keys such
// an entry by the id alone, which no OPEN ever matches; see registry.h).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "nydusd/storage/storage.h"

namespace nydus::fscache {

inline constexpr std::string_view kEntryTypeBootstrap = "bootstrap";
inline constexpr std::string_view kEntryTypeDataBlob = "datablob";
inline constexpr size_t kMaxIdLength = 255;

enum class CacheMode {
  kFscache,    // only the kernel's cache file
  kBlobCache,  // plus the storage blob cache in work_dir
  kNone,       // no cache files
};

struct BlobEntry {
  std::string type;           // always "bootstrap" once parsed
  std::string id;
  std::string domain_id;      // as given (may be empty)
  std::string metadata_path;  // the bootstrap file
  CacheMode cache_mode = CacheMode::kFscache;
  std::string cache_type;     // as given, for messages
  std::string work_dir;       // cache work_dir (may be empty for kNone)
  storage::StorageConfig storage;  // backend, cache (blobcache or none), validate
  nlohmann::json json;        // the entry as given: what GET lists and failover saves

  // The domain the kernel will name for this entry's objects.
  std::string effective_domain() const { return domain_id.empty() ? id : domain_id; }
};

// Parses and validates one entry (pure: no filesystem access). Errors are
// kInvalidArgument naming the key, or kUnsupported for a backend or cache
// type this build cannot serve.
Result<BlobEntry> parse_blob_entry(std::string_view json_text);
Result<BlobEntry> blob_entry_from_json(const nlohmann::json& j);

// Parses {"blobs":[entry...]} (singleton --config); a missing "blobs" is an
// empty list.
Result<std::vector<BlobEntry>> parse_blob_entry_list(std::string_view json_text);

// What parsing cannot check: metadata_path exists and is a regular file
// (symlinks resolved), the localfs dir or blob_file exists, the cache
// work_dir exists or can be created.
Status check_blob_entry_paths(const BlobEntry& entry);

// An entry built from parts, e.g. for the test driver or a CLI:
// config_v2 with a localfs backend.
Result<BlobEntry> make_bootstrap_entry(const std::string& id, const std::string& domain_id,
                                       const std::string& metadata_path, const std::string& blob_dir,
                                       const std::string& cache_type, const std::string& work_dir);

// Checks an id or domain id: non-empty (ids), at most kMaxIdLength bytes,
// no '/', no NUL, no ',' (the volume key separator), printable.
Status check_id(std::string_view what, std::string_view id, bool allow_empty);

}  // namespace nydus::fscache
