#include "nydusd/daemon/api.h"

#include <spdlog/spdlog.h>

#include "common/log.h"
#include "nydusd/fscache/blob_entry.h"

namespace nydus::daemon {

namespace {

using nlohmann::json;

Status require_no_body(const HttpRequest& request) {
  if (!request.body.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "{} {} takes no request body", request.method,
                      request.path);
  }
  return ok_status();
}

Result<std::string> require_query(const HttpRequest& request, const char* key) {
  auto it = request.query.find(key);
  if (it == request.query.end() || it->second.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "query parameter \"{}\" is required", key);
  }
  return it->second;
}

std::optional<std::string> optional_query(const HttpRequest& request, const char* key) {
  auto it = request.query.find(key);
  if (it == request.query.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

HttpResponse status_response(const Status& status) {
  return status.ok() ? no_content() : error_response(status.error());
}

HttpResponse json_or_error(const Result<json>& result) {
  return result.ok() ? json_response(200, *result) : error_response(result.error());
}

// {"source","fs_type","config","prefetch_files"?} + ?mountpoint=
Result<MountRequest> parse_mount_request(const HttpRequest& request) {
  MountRequest out;
  NYDUS_ASSIGN_OR_RETURN(out.mountpoint, require_query(request, "mountpoint"));
  NYDUS_ASSIGN_OR_RETURN(json body, parse_json_body(request));
  if (!body.is_object()) return make_error(ErrorKind::kInvalidArgument, "mount body must be a JSON object");
  auto string_field = [&](const char* key, bool required, std::string* dst) -> Status {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) {
      if (required) return make_error(ErrorKind::kInvalidArgument, "mount body needs \"{}\"", key);
      return ok_status();
    }
    if (!it->is_string()) return make_error(ErrorKind::kInvalidArgument, "\"{}\" must be a string", key);
    *dst = it->get<std::string>();
    return ok_status();
  };
  NYDUS_TRY(string_field("source", true, &out.source));
  NYDUS_TRY(string_field("fs_type", true, &out.fs_type));
  NYDUS_TRY(string_field("config", true, &out.config_text));
  if (auto it = body.find("prefetch_files"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) {
      return make_error(ErrorKind::kInvalidArgument, "\"prefetch_files\" must be an array of strings");
    }
    for (const auto& item : *it) {
      if (!item.is_string()) {
        return make_error(ErrorKind::kInvalidArgument, "\"prefetch_files\" must be an array of strings");
      }
      out.prefetch_files.push_back(item.get<std::string>());
    }
  }
  return out;
}

HttpResponse set_log_level(const HttpRequest& request) {
  auto body = parse_json_body(request);
  if (!body.ok()) return error_response(body.error());
  auto it = body->is_object() ? body->find("log_level") : body->end();
  if (!body->is_object() || it == body->end() || !it->is_string()) {
    return error_response(make_error(ErrorKind::kInvalidArgument, "body needs \"log_level\": string"));
  }
  auto level = parse_log_level(it->get<std::string>());
  if (!level.ok()) return error_response(level.error());
  spdlog::set_level(*level);
  spdlog::info("log level set to {}", it->get<std::string>());
  return no_content();
}

// The reference answers the mount API of a singleton daemon with 501, before
// looking at the request.
constexpr const char* kNoMountsInSingleton = "singleton (fscache) mode has no FUSE mounts: use /api/v2/blobs";

HttpResponse unsupported(std::string what) {
  return error_response(Error(ErrorKind::kUnsupported, std::move(what)));
}

}  // namespace

Router build_api_router(Daemon& daemon) {
  Router router(400);
  auto& d = daemon;

  router.add("GET", "/api/v1/daemon", [&d](const HttpRequest&) {
    return json_response(200, d.info(false));
  });
  router.add("PUT", "/api/v1/daemon", [](const HttpRequest& r) { return set_log_level(r); });
  router.add("GET", "/api/v2/daemon", [&d](const HttpRequest&) {
    return json_response(200, d.info(true));
  });
  router.add("PUT", "/api/v2/daemon", [](const HttpRequest& r) { return set_log_level(r); });

  router.add("PUT", "/api/v1/daemon/start", [&d](const HttpRequest& r) {
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    return status_response(d.fire(DaemonEvent::kStart));
  });
  router.add("PUT", "/api/v1/daemon/exit", [&d](const HttpRequest& r) {
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    return status_response(d.exit_for_upgrade());
  });
  router.add("PUT", "/api/v1/daemon/fuse/sendfd", [&d](const HttpRequest& r) {
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    return status_response(d.save_state());
  });
  router.add("PUT", "/api/v1/daemon/fuse/takeover", [&d](const HttpRequest& r) {
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    return status_response(d.fire(DaemonEvent::kTakeover));
  });

  router.add("POST", "/api/v1/mount", [&d](const HttpRequest& r) {
    if (d.singleton()) return unsupported(kNoMountsInSingleton);
    auto request = parse_mount_request(r);
    if (!request.ok()) return error_response(request.error());
    return status_response(d.mount(*request));
  });
  router.add("PUT", "/api/v1/mount", [&d](const HttpRequest& r) {
    if (d.singleton()) return unsupported(kNoMountsInSingleton);
    auto request = parse_mount_request(r);
    if (!request.ok()) return error_response(request.error());
    return status_response(d.remount(*request));
  });
  router.add("DELETE", "/api/v1/mount", [&d](const HttpRequest& r) {
    if (d.singleton()) return unsupported(kNoMountsInSingleton);
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    auto mountpoint = require_query(r, "mountpoint");
    if (!mountpoint.ok()) return error_response(mountpoint.error());
    return status_response(d.umount(*mountpoint));
  });

  router.add("GET", "/api/v1/daemon/backend", [&d](const HttpRequest& r) {
    auto mountpoint = require_query(r, "mountpoint");
    if (!mountpoint.ok()) return error_response(mountpoint.error());
    auto entry = d.vfs().find_mount(*mountpoint);
    if (!entry) {
      return error_response(make_error(ErrorKind::kNotFound, "{} is not mounted", *mountpoint));
    }
    const auto& super = entry->mount->bootstrap->super();
    json blobs = json::array();
    for (const auto& blob : entry->mount->bootstrap->blobs()) {
      blobs.push_back({{"blob_id", blob.blob_id},
                       {"chunk_size", blob.chunk_size},
                       {"chunk_count", blob.chunk_count},
                       {"compressed_size", blob.compressed_size},
                       {"uncompressed_size", blob.uncompressed_size}});
    }
    return json_response(200, {{"version", 0x600},
                               {"source", entry->mount->source},
                               {"block_size", super.block_size},
                               {"chunk_size", super.chunk_size},
                               {"root_inode", super.root_nid},
                               {"inodes_count", super.inodes},
                               {"flags", super.flags},
                               {"explicit_uidgid", super.explicit_uid_gid},
                               {"blobs", blobs}});
  });

  router.add("GET", "/api/v1/metrics", [&d](const HttpRequest& r) {
    return json_or_error(d.fs_metrics(optional_query(r, "id")));
  });
  router.add("GET", "/api/v1/metrics/backend", [&d](const HttpRequest& r) {
    return json_or_error(d.backend_metrics(optional_query(r, "id")));
  });
  router.add("GET", "/api/v1/metrics/blobcache", [&d](const HttpRequest& r) {
    return json_or_error(d.blobcache_metrics(optional_query(r, "id")));
  });
  router.add("GET", "/api/v1/metrics/inflight", [&d](const HttpRequest&) {
    json inflight = d.inflight();
    return inflight.empty() ? no_content() : json_response(200, inflight);
  });
  router.add("GET", "/api/v1/metrics/files", [&d](const HttpRequest& r) {
    auto latest = optional_query(r, "latest");
    if (latest && *latest != "true" && *latest != "false") {
      return error_response(make_error(ErrorKind::kInvalidArgument, "latest must be true or false"));
    }
    return json_or_error(d.file_metrics(optional_query(r, "id"), latest == "true"));
  });
  router.add("GET", "/api/v1/metrics/pattern", [&d](const HttpRequest& r) {
    return json_or_error(d.access_patterns(optional_query(r, "id")));
  });
  router.add("GET", "/api/v1/daemon/events", [&d](const HttpRequest&) {
    return json_response(200, d.error_events()->to_json());
  });
  router.add("GET", "/api/v1/config", [&d](const HttpRequest& r) {
    auto id = require_query(r, "id");
    if (!id.ok()) return error_response(id.error());
    return json_or_error(d.hot_config(*id));
  });
  router.add("PUT", "/api/v1/config", [&d](const HttpRequest& r) {
    auto id = require_query(r, "id");
    if (!id.ok()) return error_response(id.error());
    auto body = parse_json_body(r);
    if (!body.ok()) return error_response(body.error());
    return status_response(d.set_hot_config(*id, *body));
  });

  // fscache (singleton mode). In fuse mode the daemon answers 501.
  router.add("PUT", "/api/v2/blobs", [&d](const HttpRequest& r) {
    if (r.body.empty()) {
      return error_response(make_error(ErrorKind::kInvalidArgument, "PUT /api/v2/blobs needs a BlobCacheEntry body"));
    }
    if (!d.singleton()) return unsupported("/api/v2/blobs serves fscache (singleton) mode, not fuse mode");
    auto entry = fscache::parse_blob_entry(r.body);
    if (!entry.ok()) return error_response(entry.error());
    return status_response(d.bind_blob(*entry));
  });
  router.add("DELETE", "/api/v2/blobs", [&d](const HttpRequest& r) {
    if (auto s = require_no_body(r); !s.ok()) return error_response(s.error());
    auto domain = optional_query(r, "domain_id");
    auto blob = optional_query(r, "blob_id");
    if (!domain && blob) {
      // The reference's cull of a cache file (`inuse`/`cull` commands).
      return unsupported("DELETE /api/v2/blobs?blob_id= (cull) is not implemented; name the domain_id");
    }
    if (!domain) {
      return error_response(make_error(ErrorKind::kInvalidArgument, "query parameter \"domain_id\" is required"));
    }
    for (const auto* id : {&*domain, blob ? &*blob : nullptr}) {
      if (!id) continue;
      if (auto s = fscache::check_id("id", *id, false); !s.ok()) return error_response(s.error());
    }
    std::optional<std::string_view> blob_view;
    if (blob) blob_view = *blob;
    return status_response(d.unbind_blob(*domain, blob_view));
  });
  router.add("GET", "/api/v2/blobs", [&d](const HttpRequest& r) {
    // The reference panics here (todo!()); this lists the bound entries.
    return json_or_error(d.list_blobs(optional_query(r, "domain_id")));
  });
  return router;
}

}  // namespace nydus::daemon
