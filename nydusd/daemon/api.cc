#include "nydusd/daemon/api.h"

#include <spdlog/spdlog.h>

#include "common/log.h"

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
    auto request = parse_mount_request(r);
    if (!request.ok()) return error_response(request.error());
    return status_response(d.mount(*request));
  });
  router.add("PUT", "/api/v1/mount", [&d](const HttpRequest& r) {
    auto request = parse_mount_request(r);
    if (!request.ok()) return error_response(request.error());
    return status_response(d.remount(*request));
  });
  router.add("DELETE", "/api/v1/mount", [&d](const HttpRequest& r) {
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

  auto no_blobs = [](const HttpRequest&) {
    return unsupported("/api/v2/blobs serves fscache (singleton) mode, not fuse mode");
  };
  router.add("GET", "/api/v2/blobs", no_blobs);
  router.add("PUT", "/api/v2/blobs", no_blobs);
  router.add("DELETE", "/api/v2/blobs", no_blobs);
  return router;
}

}  // namespace nydus::daemon
