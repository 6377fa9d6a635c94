#include "snapshotter/daemon_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/unique_fd.h"

namespace nydus::snapshotter {

using nlohmann::json;

Result<json> parse_nydusd_config_template(std::string_view text, std::string_view source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return make_error(ErrorKind::kInvalidArgument, "nydusd config template {}: invalid JSON: {}", source, e.what());
  }
  if (!doc.is_object()) {
    return make_error(ErrorKind::kInvalidArgument, "nydusd config template {}: not a JSON object", source);
  }
  bool v1 = doc.contains("device") && doc["device"].is_object();
  bool v2 = doc.value("version", 0) == 2 && doc.contains("backend") && doc["backend"].is_object();
  if (!v1 && !v2) {
    return make_error(ErrorKind::kInvalidArgument,
                      "nydusd config template {}: expected a fusedev config (a \"device\" object, or "
                      "\"version\": 2 with a \"backend\" object)",
                      source);
  }
  return doc;
}

Result<json> load_nydusd_config_template(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::from_errno(errno, fmt::format("reading nydusd config template {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_nydusd_config_template(text.str(), path);
}

json instance_config(const json& tmpl, const std::string& rafs_key, const std::string& cache_dir) {
  json c = tmpl;
  if (c.contains("device")) {
    json& device = c["device"];
    // The reference's fix for shared-daemon metrics (#712): one id per instance.
    device["id"] = "/" + rafs_key;
    json& cache = device["cache"];
    if (!cache.is_object()) cache = json::object();
    if (!cache.contains("type")) cache["type"] = "blobcache";
    cache["config"]["work_dir"] = cache_dir;
    return c;
  }
  // v2: the cache settings sit under cache.<type>.
  c["id"] = "/" + rafs_key;
  json& cache = c["cache"];
  if (!cache.is_object()) cache = json::object();
  std::string type = cache.value("type", "");
  if (type.empty() || type == "blobcache") type = "filecache";
  cache[type]["work_dir"] = cache_dir;
  return c;
}

json fscache_blob_entry(const json& tmpl, const std::string& fsid, const std::string& bootstrap,
                        const std::string& cache_dir) {
  json backend;
  bool validate = false;
  if (tmpl.contains("device")) {
    const json& device = tmpl["device"];
    const json b = device.value("backend", json::object());
    std::string type = b.value("type", "");
    backend = {{"type", type}, {type, b.value("config", json::object())}};
    validate = tmpl.value("digest_validate", false);
  } else {
    backend = tmpl.value("backend", json::object());
    const json cache = tmpl.value("cache", json::object());
    validate = cache.is_object() && cache.value("validate", false);
  }
  json config = {{"version", 2},
                 {"id", fsid},
                 {"backend", std::move(backend)},
                 {"cache", {{"type", "fscache"}, {"fscache", {{"work_dir", cache_dir}}}, {"validate", validate}}},
                 {"metadata_path", bootstrap}};
  return {{"type", "bootstrap"}, {"id", fsid}, {"domain_id", ""}, {"config_v2", std::move(config)}};
}

}  // namespace nydus::snapshotter
