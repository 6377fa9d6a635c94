#include "nydusd/fscache/blob_entry.h"

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

namespace nydus::fscache {

namespace {

using json = nlohmann::json;

Error invalid(std::string_view what) {
  return Error(ErrorKind::kInvalidArgument, fmt::format("blob entry: {}", what));
}

// Reads an optional string member; a present non-string is an error.
Result<std::string> opt_string(const json& obj, const char* key, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return invalid(fmt::format("{}.{} must be a string", where, key));
  return it->get<std::string>();
}

Result<bool> opt_bool(const json& obj, const char* key, std::string_view where, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return invalid(fmt::format("{}.{} must be a boolean", where, key));
  return it->get<bool>();
}

Result<const json*> opt_object(const json& obj, const char* key, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return static_cast<const json*>(nullptr);
  if (!it->is_object()) return invalid(fmt::format("{}.{} must be an object", where, key));
  return &*it;
}

// The localfs settings {"dir", "blob_file"}.
Status read_localfs(const json* cfg, std::string_view where, storage::BackendConfig* out) {
  if (!cfg) return invalid(fmt::format("{}: localfs backend needs \"dir\" or \"blob_file\"", where));
  NYDUS_ASSIGN_OR_RETURN(std::string dir, opt_string(*cfg, "dir", where));
  NYDUS_ASSIGN_OR_RETURN(std::string file, opt_string(*cfg, "blob_file", where));
  if (dir.empty() && file.empty()) {
    return invalid(fmt::format("{}: localfs backend needs \"dir\" or \"blob_file\"", where));
  }
  out->type = "localfs";
  if (!dir.empty()) out->dir = dir;
  if (!file.empty()) out->blob_file = file;
  return ok_status();
}

Status check_backend_type(const std::string& type, std::string_view where) {
  if (type == "localfs") return ok_status();
  if (type.empty()) return invalid(fmt::format("{}: backend type is missing", where));
  static const char* kKnown[] = {"localdisk", "oss", "s3", "registry", "http-proxy"};
  for (const char* k : kKnown) {
    if (type == k) {
      return make_error(ErrorKind::kUnsupported,
                        "blob entry: {}: backend type \"{}\" is not supported by this build (localfs only)",
                        where, type);
    }
  }
  return invalid(fmt::format("{}: unknown backend type \"{}\"", where, type));
}

// Maps a cache type and its work_dir onto the entry.
Status apply_cache(const std::string& type, const std::string& work_dir, bool validate,
                   std::string_view where, BlobEntry* e) {
  e->cache_type = type;
  e->work_dir = work_dir;
  e->storage.validate = validate;
  if (type == "fscache") {
    e->cache_mode = CacheMode::kFscache;
    e->storage.cache.type = "";
  } else if (type == "blobcache" || type == "filecache") {
    e->cache_mode = CacheMode::kBlobCache;
    e->storage.cache.type = "blobcache";
  } else if (type == "dummycache" || type.empty()) {
    e->cache_mode = CacheMode::kNone;
    e->storage.cache.type = "";
  } else {
    return invalid(fmt::format("{}: unknown cache type \"{}\"", where, type));
  }
  if (e->cache_mode != CacheMode::kNone && work_dir.empty()) {
    return invalid(fmt::format("{}: cache type \"{}\" needs a work_dir", where, type));
  }
  e->storage.cache.work_dir = e->cache_mode == CacheMode::kBlobCache ? work_dir : "";
  return ok_status();
}

Status parse_config_v2(const json& c, BlobEntry* e) {
  constexpr std::string_view w = "config_v2";
  if (auto it = c.find("version"); it != c.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != 2) return invalid("config_v2.version must be 2");
  }
  NYDUS_ASSIGN_OR_RETURN(e->metadata_path, opt_string(c, "metadata_path", w));

  NYDUS_ASSIGN_OR_RETURN(const json* backend, opt_object(c, "backend", w));
  if (!backend) return invalid("config_v2.backend is missing");
  NYDUS_ASSIGN_OR_RETURN(std::string btype, opt_string(*backend, "type", "config_v2.backend"));
  NYDUS_TRY(check_backend_type(btype, "config_v2.backend"));
  NYDUS_ASSIGN_OR_RETURN(const json* localfs, opt_object(*backend, "localfs", "config_v2.backend"));
  NYDUS_TRY(read_localfs(localfs, "config_v2.backend.localfs", &e->storage.backend));

  NYDUS_ASSIGN_OR_RETURN(const json* cache, opt_object(c, "cache", w));
  std::string ctype, work_dir;
  bool validate = false;
  if (cache) {
    NYDUS_ASSIGN_OR_RETURN(ctype, opt_string(*cache, "type", "config_v2.cache"));
    NYDUS_ASSIGN_OR_RETURN(validate, opt_bool(*cache, "validate", "config_v2.cache", false));
    // The work_dir sits under the key of the cache type; filecache and
    // blobcache name the same thing.
    std::vector<const char*> keys;
    if (ctype == "fscache") keys = {"fscache"};
    if (ctype == "filecache" || ctype == "blobcache") keys = {"filecache", "blobcache"};
    for (const char* k : keys) {
      NYDUS_ASSIGN_OR_RETURN(const json* sub, opt_object(*cache, k, "config_v2.cache"));
      if (!sub) continue;
      NYDUS_ASSIGN_OR_RETURN(work_dir, opt_string(*sub, "work_dir", fmt::format("config_v2.cache.{}", k)));
      if (!work_dir.empty()) break;
    }
  }
  return apply_cache(ctype, work_dir, validate, "config_v2.cache", e);
}

Status parse_legacy_config(const json& c, BlobEntry* e) {
  constexpr std::string_view w = "config";
  NYDUS_ASSIGN_OR_RETURN(e->metadata_path, opt_string(c, "metadata_path", w));
  NYDUS_ASSIGN_OR_RETURN(std::string btype, opt_string(c, "backend_type", w));
  NYDUS_TRY(check_backend_type(btype, "config.backend_type"));
  NYDUS_ASSIGN_OR_RETURN(const json* bcfg, opt_object(c, "backend_config", w));
  NYDUS_TRY(read_localfs(bcfg, "config.backend_config", &e->storage.backend));
  NYDUS_ASSIGN_OR_RETURN(std::string ctype, opt_string(c, "cache_type", w));
  NYDUS_ASSIGN_OR_RETURN(const json* ccfg, opt_object(c, "cache_config", w));
  std::string work_dir;
  if (ccfg) {
    NYDUS_ASSIGN_OR_RETURN(work_dir, opt_string(*ccfg, "work_dir", "config.cache_config"));
  }
  return apply_cache(ctype, work_dir, false, "config", e);
}

}  // namespace

Status check_id(std::string_view what, std::string_view id, bool allow_empty) {
  if (id.empty()) {
    if (allow_empty) return ok_status();
    return invalid(fmt::format("{} is empty", what));
  }
  if (id.size() > kMaxIdLength) return invalid(fmt::format("{} is longer than {} bytes", what, kMaxIdLength));
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/') return invalid(fmt::format("{} \"{}\" must not contain '/'", what, id));
    // ',' separates mount options (fsid=..,domain_id=..): such an id could never be mounted.
    if (c == ',') return invalid(fmt::format("{} \"{}\" must not contain ','", what, id));
    if (u < 0x20 || u == 0x7F) return invalid(fmt::format("{} contains a control character", what));
  }
  return ok_status();
}

Result<BlobEntry> blob_entry_from_json(const json& j) {
  if (!j.is_object()) return invalid("must be a JSON object");
  BlobEntry e;
  NYDUS_ASSIGN_OR_RETURN(e.type, opt_string(j, "type", "entry"));
  if (e.type == kEntryTypeDataBlob) {
    return invalid("only \"bootstrap\" entries can be added; data blobs come from the bootstrap's blob table");
  }
  if (e.type != kEntryTypeBootstrap) return invalid(fmt::format("unknown type \"{}\"", e.type));
  NYDUS_ASSIGN_OR_RETURN(e.id, opt_string(j, "id", "entry"));
  NYDUS_ASSIGN_OR_RETURN(e.domain_id, opt_string(j, "domain_id", "entry"));
  NYDUS_TRY(check_id("id", e.id, false));
  NYDUS_TRY(check_id("domain_id", e.domain_id, true));

  NYDUS_ASSIGN_OR_RETURN(const json* v2, opt_object(j, "config_v2", "entry"));
  NYDUS_ASSIGN_OR_RETURN(const json* v1, opt_object(j, "config", "entry"));
  if (v2) {
    NYDUS_TRY(parse_config_v2(*v2, &e));
  } else if (v1) {
    NYDUS_TRY(parse_legacy_config(*v1, &e));
  } else {
    return invalid("\"config_v2\" (or legacy \"config\") is missing");
  }
  if (e.metadata_path.empty()) return invalid("metadata_path (the bootstrap file) is missing");
  e.json = j;
  return e;
}

Result<BlobEntry> parse_blob_entry(std::string_view json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid("not valid JSON");
  return blob_entry_from_json(j);
}

Result<std::vector<BlobEntry>> parse_blob_entry_list(std::string_view json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid("blob list: not a JSON object");
  std::vector<BlobEntry> out;
  auto it = j.find("blobs");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return invalid("blob list: \"blobs\" must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    auto e = blob_entry_from_json((*it)[i]);
    if (!e.ok()) return std::move(e).error().wrap(fmt::format("blobs[{}]", i));
    out.push_back(std::move(e).value());
  }
  return out;
}

Status check_blob_entry_paths(const BlobEntry& e) {
  struct stat st;
  if (::stat(e.metadata_path.c_str(), &st) != 0) {
    return Error::from_errno(errno, fmt::format("blob entry {}: metadata_path {}", e.id, e.metadata_path));
  }
  if (!S_ISREG(st.st_mode)) {
    return invalid(fmt::format("entry {}: metadata_path {} is not a regular file", e.id, e.metadata_path));
  }
  const auto& b = e.storage.backend;
  if (b.dir && (::stat(b.dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    return invalid(fmt::format("entry {}: backend dir {} is not a directory", e.id, *b.dir));
  }
  if (b.blob_file && (::stat(b.blob_file->c_str(), &st) != 0 || !S_ISREG(st.st_mode))) {
    return invalid(fmt::format("entry {}: backend blob_file {} is not a regular file", e.id, *b.blob_file));
  }
  if (!e.work_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(e.work_dir, ec);
    if (ec || !std::filesystem::is_directory(e.work_dir)) {
      return make_error(ErrorKind::kIo, "blob entry {}: cache work_dir {}: {}", e.id, e.work_dir,
                        ec ? ec.message() : "not a directory");
    }
  }
  return ok_status();
}

Result<BlobEntry> make_bootstrap_entry(const std::string& id, const std::string& domain_id,
                                       const std::string& metadata_path, const std::string& blob_dir,
                                       const std::string& cache_type, const std::string& work_dir) {
  json cache = {{"type", cache_type}};
  if (!work_dir.empty()) {
    cache[cache_type == "fscache" ? "fscache" : "filecache"] = {{"work_dir", work_dir}};
  }
  json j = {{"type", kEntryTypeBootstrap},
            {"id", id},
            {"domain_id", domain_id},
            {"config_v2",
             {{"version", 2},
              {"id", id},
              {"backend", {{"type", "localfs"}, {"localfs", {{"dir", blob_dir}}}}},
              {"cache", cache},
              {"metadata_path", metadata_path}}}};
  return blob_entry_from_json(j);
}

}  // namespace nydus::fscache
