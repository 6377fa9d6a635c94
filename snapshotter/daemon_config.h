// nydusd configuration files the snapshotter writes.
//
// daemon.nydusd_config names a JSON template (packaging ships
// nydusd-config.fusedev.json): the v1 fusedev form
//   {"device":{"backend":{"type":"localfs","config":{"dir":...}},
//              "cache":{"type":"blobcache","config":{"work_dir":...}}},
//    "mode":"direct","digest_validate":false,...}
// Each RAFS instance gets a deep copy with the fields the reference fills in
// (reference-snapshotter.md §4.3 step 5): device.id = "/<rafsKey>" and
// device.cache.config.work_dir = the snapshotter's cache dir. Everything
// else (the localfs blobs dir among it, for now) comes from the template.
//
// Files are written atomically (temporary file in the same directory,
// fsync, rename), so a nydusd started or restarted at any moment reads
// either the old or the new config, never a torn one.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nydus::snapshotter {

// Parses a template. It must be a JSON object with a "device" object (v1
// fusedev) or "version": 2 with a "backend" object; anything else is
// kInvalidArgument naming `source`.
Result<nlohmann::json> parse_nydusd_config_template(std::string_view text, std::string_view source);
Result<nlohmann::json> load_nydusd_config_template(const std::string& path);

// The per-instance config of `rafs_key` (the meta snapshot's id): a copy of
// `tmpl` with device.id and the cache work_dir set (v1), or id and
// cache.<type>.work_dir (v2). Pure.
nlohmann::json instance_config(const nlohmann::json& tmpl, const std::string& rafs_key,
                               const std::string& cache_dir);

// fscache mode: the BlobCacheEntry (PUT /api/v2/blobs) that binds
// `bootstrap` under fscache id `fsid` (the kernel's mount "fsid=", also its
// domain: no domain_id). Its config_v2 takes the template's backend (v1
// device.backend {type, config} or v2 backend as is) and its digest
// validation; the cache is "fscache" (the kernel's cache file) with
// `cache_dir` as work_dir. Pure.
nlohmann::json fscache_blob_entry(const nlohmann::json& tmpl, const std::string& fsid, const std::string& bootstrap,
                                  const std::string& cache_dir);

}  // namespace nydus::snapshotter
