#include "snapshotter/snapshots_service.h"

#include <exception>

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {

namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;

void to_timestamp(TimestampNs ns, google::protobuf::Timestamp* out) {
  int64_t seconds = ns / kNanosPerSecond;
  int64_t nanos = ns % kNanosPerSecond;
  if (nanos < 0) {
    nanos += kNanosPerSecond;
    seconds -= 1;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

TimestampNs from_timestamp(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * kNanosPerSecond + ts.nanos();
}

Labels labels_of(const google::protobuf::Map<std::string, std::string>& map) {
  return Labels(map.begin(), map.end());
}

template <typename Response>
void add_mounts(const std::vector<Mount>& mounts, Response* response) {
  for (const auto& m : mounts) to_proto(m, response->add_mounts());
}

// Runs one handler: logs and maps errors, converts any exception to INTERNAL.
template <typename Fn>
grpc::Status serve(std::string_view method, std::string_view key, Fn&& fn) {
  try {
    Status st = fn();
    if (st.ok()) {
      spdlog::debug("{} {}: ok", method, key);
      return grpc::Status::OK;
    }
    const Error& e = st.error();
    // Client-side conditions (NotFound, AlreadyExists, ...) are routine for
    // containerd; only unexpected failures deserve a warning.
    bool routine = e.kind() == ErrorKind::kNotFound || e.kind() == ErrorKind::kAlreadyExists ||
                   e.kind() == ErrorKind::kFailedPrecondition || e.kind() == ErrorKind::kInvalidArgument;
    if (routine) {
      spdlog::debug("{} {}: {}", method, key, e.message());
    } else {
      spdlog::warn("{} {}: {}", method, key, e.message());
    }
    return to_grpc_status(e);
  } catch (const std::exception& ex) {
    spdlog::error("{} {}: unexpected exception: {}", method, key, ex.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("{}: internal error: {}", method, ex.what()));
  } catch (...) {
    spdlog::error("{} {}: unexpected exception", method, key);
    return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("{}: internal error", method));
  }
}

}  // namespace

grpc::Status to_grpc_status(const Error& error) {
  return grpc::Status(static_cast<grpc::StatusCode>(error.grpc_code()), error.message());
}

void to_proto(const Info& info, snapshots_v1::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<snapshots_v1::Kind>(info.kind));
  to_timestamp(info.created, out->mutable_created_at());
  to_timestamp(info.updated, out->mutable_updated_at());
  auto* labels = out->mutable_labels();
  for (const auto& [k, v] : info.labels) (*labels)[k] = v;
}

Info from_proto(const snapshots_v1::Info& in) {
  Info info;
  info.name = in.name();
  info.parent = in.parent();
  info.kind = static_cast<Kind>(in.kind());
  info.labels = labels_of(in.labels());
  info.created = from_timestamp(in.created_at());
  info.updated = from_timestamp(in.updated_at());
  return info;
}

void to_proto(const Mount& mount, ::containerd::types::Mount* out) {
  out->set_type(mount.type);
  out->set_source(mount.source);
  out->set_target(mount.target);
  for (const auto& o : mount.options) out->add_options(o);
}

grpc::Status SnapshotsService::Prepare(grpc::ServerContext*, const snapshots_v1::PrepareSnapshotRequest* req,
                                       snapshots_v1::PrepareSnapshotResponse* resp) {
  return serve("Prepare", req->key(), [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(auto mounts, snapshotter_.prepare(req->key(), req->parent(), labels_of(req->labels())));
    add_mounts(mounts, resp);
    return ok_status();
  });
}

grpc::Status SnapshotsService::View(grpc::ServerContext*, const snapshots_v1::ViewSnapshotRequest* req,
                                    snapshots_v1::ViewSnapshotResponse* resp) {
  return serve("View", req->key(), [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(auto mounts, snapshotter_.view(req->key(), req->parent(), labels_of(req->labels())));
    add_mounts(mounts, resp);
    return ok_status();
  });
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext*, const snapshots_v1::MountsRequest* req,
                                      snapshots_v1::MountsResponse* resp) {
  return serve("Mounts", req->key(), [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(auto mounts, snapshotter_.mounts(req->key()));
    add_mounts(mounts, resp);
    return ok_status();
  });
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext*, const snapshots_v1::CommitSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  return serve("Commit", req->key(), [&]() -> Status {
    return snapshotter_.commit(req->name(), req->key(), labels_of(req->labels()));
  });
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext*, const snapshots_v1::RemoveSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  return serve("Remove", req->key(), [&]() -> Status { return snapshotter_.remove(req->key()); });
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext*, const snapshots_v1::StatSnapshotRequest* req,
                                    snapshots_v1::StatSnapshotResponse* resp) {
  return serve("Stat", req->key(), [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Info info, snapshotter_.stat(req->key()));
    to_proto(info, resp->mutable_info());
    return ok_status();
  });
}

grpc::Status SnapshotsService::Update(grpc::ServerContext*, const snapshots_v1::UpdateSnapshotRequest* req,
                                      snapshots_v1::UpdateSnapshotResponse* resp) {
  return serve("Update", req->info().name(), [&]() -> Status {
    std::vector<std::string> paths(req->update_mask().paths().begin(), req->update_mask().paths().end());
    NYDUS_ASSIGN_OR_RETURN(Info info, snapshotter_.update(from_proto(req->info()), paths));
    to_proto(info, resp->mutable_info());
    return ok_status();
  });
}

grpc::Status SnapshotsService::List(grpc::ServerContext* ctx, const snapshots_v1::ListSnapshotsRequest* req,
                                    grpc::ServerWriter<snapshots_v1::ListSnapshotsResponse>* writer) {
  return serve("List", "", [&]() -> Status {
    std::vector<std::string> filters(req->filters().begin(), req->filters().end());
    NYDUS_ASSIGN_OR_RETURN(auto infos, snapshotter_.list(filters));
    snapshots_v1::ListSnapshotsResponse batch;
    auto flush = [&]() -> Status {
      if (batch.info_size() == 0) return ok_status();
      if (!writer->Write(batch)) {
        return make_error(ErrorKind::kNotReady, "List: the client went away after a partial answer");
      }
      batch.Clear();
      return ok_status();
    };
    for (const auto& info : infos) {
      if (ctx->IsCancelled()) return make_error(ErrorKind::kTimeout, "List: cancelled by the client");
      to_proto(info, batch.add_info());
      if (batch.info_size() >= kListBatchSize || batch.ByteSizeLong() >= kListBatchBytes) NYDUS_TRY(flush());
    }
    return flush();
  });
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext*, const snapshots_v1::UsageRequest* req,
                                     snapshots_v1::UsageResponse* resp) {
  return serve("Usage", req->key(), [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(auto usage, snapshotter_.usage(req->key()));
    resp->set_size(usage.size);
    resp->set_inodes(usage.inodes);
    return ok_status();
  });
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext*, const snapshots_v1::CleanupRequest*,
                                       google::protobuf::Empty*) {
  return serve("Cleanup", "", [&]() -> Status { return snapshotter_.cleanup(); });
}

}  // namespace nydus::snapshotter
