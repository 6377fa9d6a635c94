#include "nydusd/daemon/config.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace nydus::daemon {

namespace {

using nlohmann::json;

// Typed access to optional keys of a JSON object; `where` names the object in
// error messages ("device.backend.config").
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  static Result<Fields> of(const json& parent, const char* key, const std::string& where) {
    std::string path = where.empty() ? key : where + "." + key;
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return Fields(kEmpty, path);
    if (!it->is_object()) return make_error(ErrorKind::kInvalidArgument, "{} must be an object", path);
    return Fields(*it, path);
  }

  bool has(const char* key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }
  const json& object() const { return object_; }
  const std::string& where() const { return where_; }

  Result<std::optional<std::string>> string(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return type_error(key, "a string");
    return std::optional<std::string>(it->get<std::string>());
  }
  Result<std::optional<bool>> boolean(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<bool>();
    if (!it->is_boolean()) return type_error(key, "a boolean");
    return std::optional<bool>(it->get<bool>());
  }
  Result<std::optional<double>> number(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<double>();
    if (!it->is_number()) return type_error(key, "a number");
    return std::optional<double>(it->get<double>());
  }
  Result<std::optional<uint64_t>> unsigned_int(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<uint64_t>();
    if (!it->is_number_unsigned()) return type_error(key, "a non-negative integer");
    return std::optional<uint64_t>(it->get<uint64_t>());
  }
  Result<std::optional<std::vector<std::string>>> strings(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<std::vector<std::string>>();
    if (!it->is_array()) return type_error(key, "an array of strings");
    std::vector<std::string> out;
    for (const auto& item : *it) {
      if (!item.is_string()) return type_error(key, "an array of strings");
      out.push_back(item.get<std::string>());
    }
    return std::optional<std::vector<std::string>>(std::move(out));
  }

 private:
  Error type_error(const char* key, const char* what) const {
    return make_error(ErrorKind::kInvalidArgument, "{}{}{} must be {}", where_,
                      where_.empty() ? "" : ".", key, what);
  }

  static inline const json kEmpty = json::object();
  const json& object_;
  std::string where_;
};

// Backends the reference knows; only localfs is served here.
const std::set<std::string>& known_backends() {
  static const std::set<std::string> kKnown = {"localfs", "localdisk", "oss", "s3", "registry",
                                               "http-proxy"};
  return kKnown;
}

Status check_backend_type(const std::string& type, const std::string& where) {
  if (type == "localfs") return ok_status();
  if (known_backends().count(type)) {
    return make_error(ErrorKind::kUnsupported,
                      "{}: backend type \"{}\" is not supported by this nydusd (only localfs)",
                      where, type);
  }
  return make_error(ErrorKind::kInvalidArgument, "{}: unknown backend type \"{}\"", where, type);
}

// Cache type -> StorageConfig cache type ("" = no cache).
Result<std::string> check_cache_type(const std::string& type, const std::string& where) {
  if (type == "blobcache" || type == "filecache") return type;
  if (type.empty() || type == "dummycache") return std::string();
  if (type == "fscache") {
    return make_error(ErrorKind::kUnsupported,
                      "{}: cache type \"fscache\" is only for singleton (fscache) mode", where);
  }
  return make_error(ErrorKind::kInvalidArgument, "{}: unknown cache type \"{}\"", where, type);
}

Status check_mode(const std::string& mode, const std::string& where) {
  if (mode == "direct" || mode == "cached") return ok_status();
  return make_error(ErrorKind::kInvalidArgument, "{}: mode must be \"direct\" or \"cached\", not \"{}\"",
                    where, mode);
}

Status check_timeout(double secs, const char* name) {
  if (secs < 0 || secs > 1e9) {
    return make_error(ErrorKind::kInvalidArgument, "{} must be between 0 and 1e9 seconds", name);
  }
  return ok_status();
}

// The filesystem options v1 keeps at the top level and v2 under "rafs", with
// the same keys: mode, enable_xattr, the per-file metrics switches and the
// kernel cache timeouts. `where` names the section in errors ("config" or
// "rafs"); `prefix` is put before the timeout keys in their errors.
Status read_fs_options(const Fields& fields, const std::string& where, const std::string& prefix,
                       FsConfig* out) {
  NYDUS_ASSIGN_OR_RETURN(auto mode, fields.string("mode"));
  out->mode = mode.value_or("direct");
  NYDUS_TRY(check_mode(out->mode, where));
  NYDUS_ASSIGN_OR_RETURN(auto xattr, fields.boolean("enable_xattr"));
  out->enable_xattr = xattr.value_or(true);
  NYDUS_ASSIGN_OR_RETURN(auto files, fields.boolean("iostats_files"));
  NYDUS_ASSIGN_OR_RETURN(auto pattern, fields.boolean("access_pattern"));
  NYDUS_ASSIGN_OR_RETURN(auto latest, fields.boolean("latest_read_files"));
  out->accounting.files = files.value_or(false);
  out->accounting.access_pattern = pattern.value_or(false);
  out->accounting.latest_read_files = latest.value_or(false);
  NYDUS_ASSIGN_OR_RETURN(auto entry_timeout, fields.number("entry_timeout"));
  out->entry_timeout = entry_timeout.value_or(kDefaultEntryTimeoutSecs);
  NYDUS_TRY(check_timeout(out->entry_timeout, (prefix + "entry_timeout").c_str()));
  NYDUS_ASSIGN_OR_RETURN(auto attr_timeout, fields.number("attr_timeout"));
  out->attr_timeout = attr_timeout.value_or(kDefaultAttrTimeoutSecs);
  NYDUS_TRY(check_timeout(out->attr_timeout, (prefix + "attr_timeout").c_str()));
  return ok_status();
}

Status check_threads(uint64_t threads, const std::string& where) {
  if (threads < 1 || threads > kMaxPrefetchThreads) {
    return make_error(ErrorKind::kInvalidArgument, "{} must be in 1..={}", where, kMaxPrefetchThreads);
  }
  return ok_status();
}

// Blanks secrets anywhere in the tree (registry auth, tokens, object store keys).
void redact(json& node) {
  static const std::set<std::string> kSecrets = {"auth", "registry_token", "access_key_id",
                                                 "access_key_secret", "encryption_key"};
  if (node.is_object()) {
    for (auto& [key, value] : node.items()) {
      if (kSecrets.count(key) && value.is_string()) {
        value = "";
      } else {
        redact(value);
      }
    }
  } else if (node.is_array()) {
    for (auto& item : node) redact(item);
  }
}

Status parse_localfs(const Fields& localfs, FsConfig& out) {
  NYDUS_ASSIGN_OR_RETURN(out.storage.backend.dir, localfs.string("dir"));
  NYDUS_ASSIGN_OR_RETURN(out.storage.backend.blob_file, localfs.string("blob_file"));
  if (!out.storage.backend.dir && !out.storage.backend.blob_file) {
    return make_error(ErrorKind::kInvalidArgument, "{}: localfs needs \"dir\" or \"blob_file\"",
                      localfs.where());
  }
  return ok_status();
}

Result<FsConfig> parse_v1(const json& root) {
  FsConfig out;
  out.version = 1;
  Fields top(root, "");
  NYDUS_ASSIGN_OR_RETURN(auto device, Fields::of(root, "device", ""));
  if (!top.has("device")) return make_error(ErrorKind::kInvalidArgument, "config has no \"device\"");

  NYDUS_ASSIGN_OR_RETURN(auto backend, Fields::of(device.object(), "backend", "device"));
  NYDUS_ASSIGN_OR_RETURN(auto backend_type, backend.string("type"));
  if (!backend_type) {
    return make_error(ErrorKind::kInvalidArgument, "device.backend.type is missing");
  }
  NYDUS_TRY(check_backend_type(*backend_type, "device.backend"));
  out.storage.backend.type = *backend_type;
  NYDUS_ASSIGN_OR_RETURN(auto backend_config, Fields::of(backend.object(), "config", "device.backend"));
  NYDUS_TRY(parse_localfs(backend_config, out));

  NYDUS_ASSIGN_OR_RETURN(auto cache, Fields::of(device.object(), "cache", "device"));
  NYDUS_ASSIGN_OR_RETURN(auto cache_type, cache.string("type"));
  NYDUS_ASSIGN_OR_RETURN(out.storage.cache.type,
                         check_cache_type(cache_type.value_or(""), "device.cache"));
  if (!out.storage.cache.type.empty()) {
    NYDUS_ASSIGN_OR_RETURN(auto cache_config, Fields::of(cache.object(), "config", "device.cache"));
    NYDUS_ASSIGN_OR_RETURN(auto work_dir, cache_config.string("work_dir"));
    if (!work_dir || work_dir->empty()) {
      return make_error(ErrorKind::kInvalidArgument, "device.cache.config.work_dir is missing");
    }
    out.storage.cache.work_dir = *work_dir;
  }

  NYDUS_TRY(read_fs_options(top, "config", "", &out));
  NYDUS_ASSIGN_OR_RETURN(auto validate, top.boolean("digest_validate"));
  out.storage.validate = validate.value_or(false);

  NYDUS_ASSIGN_OR_RETURN(auto prefetch, Fields::of(root, "fs_prefetch", ""));
  NYDUS_ASSIGN_OR_RETURN(auto enable, prefetch.boolean("enable"));
  out.storage.prefetch.enable = enable.value_or(false);
  NYDUS_ASSIGN_OR_RETURN(auto threads, prefetch.unsigned_int("threads_count"));
  if (threads) NYDUS_TRY(check_threads(*threads, "fs_prefetch.threads_count"));
  out.storage.prefetch.threads = static_cast<uint32_t>(threads.value_or(8));
  NYDUS_ASSIGN_OR_RETURN(auto all, prefetch.boolean("prefetch_all"));
  out.storage.prefetch.prefetch_all = all.value_or(true);  // v1 default, as the reference
  return out;
}

Result<FsConfig> parse_v2(const json& root) {
  FsConfig out;
  out.version = 2;
  NYDUS_ASSIGN_OR_RETURN(auto backend, Fields::of(root, "backend", ""));
  NYDUS_ASSIGN_OR_RETURN(auto backend_type, backend.string("type"));
  if (!backend_type) return make_error(ErrorKind::kInvalidArgument, "backend.type is missing");
  NYDUS_TRY(check_backend_type(*backend_type, "backend"));
  out.storage.backend.type = *backend_type;
  NYDUS_ASSIGN_OR_RETURN(auto localfs, Fields::of(backend.object(), "localfs", "backend"));
  NYDUS_TRY(parse_localfs(localfs, out));

  NYDUS_ASSIGN_OR_RETURN(auto cache, Fields::of(root, "cache", ""));
  NYDUS_ASSIGN_OR_RETURN(auto cache_type, cache.string("type"));
  NYDUS_ASSIGN_OR_RETURN(out.storage.cache.type, check_cache_type(cache_type.value_or(""), "cache"));
  if (!out.storage.cache.type.empty()) {
    // The reference reads "filecache" for both blobcache and filecache.
    const char* section = cache.has("filecache") ? "filecache" : "blobcache";
    NYDUS_ASSIGN_OR_RETURN(auto files, Fields::of(cache.object(), section, "cache"));
    NYDUS_ASSIGN_OR_RETURN(auto work_dir, files.string("work_dir"));
    if (!work_dir || work_dir->empty()) {
      return make_error(ErrorKind::kInvalidArgument, "cache.filecache.work_dir is missing");
    }
    out.storage.cache.work_dir = *work_dir;
  }
  NYDUS_ASSIGN_OR_RETURN(auto cache_prefetch, Fields::of(cache.object(), "prefetch", "cache"));

  NYDUS_ASSIGN_OR_RETURN(auto rafs, Fields::of(root, "rafs", ""));
  NYDUS_TRY(read_fs_options(rafs, "rafs", "rafs.", &out));
  NYDUS_ASSIGN_OR_RETURN(auto validate, rafs.boolean("validate"));
  NYDUS_ASSIGN_OR_RETURN(auto cache_validate, cache.boolean("validate"));
  out.storage.validate = validate.value_or(false) || cache_validate.value_or(false);

  // rafs.prefetch wins; cache.prefetch is read when rafs has none.
  NYDUS_ASSIGN_OR_RETURN(auto rafs_prefetch, Fields::of(rafs.object(), "prefetch", "rafs"));
  const Fields& prefetch = rafs.has("prefetch") ? rafs_prefetch : cache_prefetch;
  if (rafs.has("prefetch") || cache.has("prefetch")) {
    NYDUS_ASSIGN_OR_RETURN(auto enable, prefetch.boolean("enable"));
    if (!enable) {
      return make_error(ErrorKind::kInvalidArgument, "{}.enable is missing", prefetch.where());
    }
    out.storage.prefetch.enable = *enable;
    NYDUS_ASSIGN_OR_RETURN(auto threads, prefetch.unsigned_int("threads"));
    if (threads) NYDUS_TRY(check_threads(*threads, prefetch.where() + ".threads"));
    out.storage.prefetch.threads = static_cast<uint32_t>(threads.value_or(8));
    NYDUS_ASSIGN_OR_RETURN(auto all, prefetch.boolean("prefetch_all"));
    out.storage.prefetch.prefetch_all = all.value_or(false);
    NYDUS_ASSIGN_OR_RETURN(auto files, prefetch.strings("files"));
    if (files) {
      NYDUS_TRY(validate_prefetch_files(*files));
      out.prefetch_files = std::move(*files);
    }
  }
  return out;
}

}  // namespace

Result<FsConfig> parse_fs_config(std::string_view json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    return make_error(ErrorKind::kInvalidArgument, "malformed config JSON: {}", e.what());
  }
  if (!root.is_object()) {
    return make_error(ErrorKind::kInvalidArgument, "config must be a JSON object");
  }
  Result<FsConfig> parsed = Error(ErrorKind::kInternal, "");
  auto version = root.find("version");
  if (version != root.end()) {
    if (!version->is_number_unsigned() || version->get<uint64_t>() != 2) {
      return make_error(ErrorKind::kInvalidArgument, "config version must be 2, got {}",
                        version->dump());
    }
    parsed = parse_v2(root);
  } else {
    parsed = parse_v1(root);
  }
  if (!parsed.ok()) return std::move(parsed).error().wrap("invalid config");
  redact(root);
  parsed->redacted = std::move(root);
  return parsed;
}

Status check_fs_config_paths(const FsConfig& config) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto& backend = config.storage.backend;
  if (backend.dir) {
    if (!fs::is_directory(*backend.dir, ec)) {
      return make_error(ErrorKind::kNotFound, "localfs backend dir {} does not exist or is not a directory",
                        *backend.dir);
    }
  }
  if (backend.blob_file) {
    if (!fs::is_regular_file(*backend.blob_file, ec)) {
      return make_error(ErrorKind::kNotFound, "localfs blob_file {} does not exist or is not a file",
                        *backend.blob_file);
    }
  }
  const auto& work_dir = config.storage.cache.work_dir;
  if (!config.storage.cache.type.empty()) {
    fs::path dir(work_dir);
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
      return make_error(ErrorKind::kInvalidArgument, "cache work_dir {} is not a directory", work_dir);
    }
  }
  return ok_status();
}

Result<FsConfig> load_fs_config_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Error::from_errno(errno, "config file " + path);
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "config file {} is not a regular file", path);
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigFileSize) {
    return make_error(ErrorKind::kTooLarge, "config file {} is larger than {} bytes", path,
                      kMaxConfigFileSize);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::kIo, "cannot read config file {}", path);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = parse_fs_config(text.str());
  if (!parsed.ok()) return std::move(parsed).error().wrap(path);
  return parsed;
}

Status validate_prefetch_files(const std::vector<std::string>& files) {
  for (const auto& file : files) {
    if (file.empty() || file[0] != '/') {
      return make_error(ErrorKind::kInvalidArgument, "prefetch file \"{}\" is not an absolute path",
                        file);
    }
  }
  return ok_status();
}

Result<std::vector<std::string>> load_prefetch_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorKind::kNotFound, "cannot read prefetch list {}", path);
  std::vector<std::string> files;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.pop_back();
    }
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    files.push_back(line.substr(start));
  }
  NYDUS_TRY(validate_prefetch_files(files));
  return files;
}

}  // namespace nydus::daemon
