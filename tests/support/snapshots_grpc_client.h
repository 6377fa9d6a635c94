// The client side of containerd's snapshots API for tests: GrpcClient calls
// a snapshotter (ours in-process, or the real containerd-nydus-grpc binary)
// through a generated gRPC stub on a unix socket, mapping status codes back
// to error kinds. No Catch2 here, so plain programs (the in-VM driver of
// tests/vm/snapshotter_fscache_vm_driver.cc) use it as well as the Catch2
// tests (through tests/unit/snapshotter/snapshotter_backends.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/snapshots_service.h"

namespace nydus::snapshotter::testing {

// Every test RPC is bounded: a hung server fails the test instead of
// wedging it.
inline constexpr std::chrono::seconds kRpcTimeout{30};

// An idle C++ client channel reads its socket only from gRPC's backup poller
// (every 5 s by default), so a server's graceful shutdown waits that long for
// the GOAWAY handshake. containerd's Go client reads continuously; make ours
// do nearly the same. Set before the first channel exists; an explicit
// setting in the environment wins.
inline const bool kFastBackupPoller = [] {
  ::setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "20", 0);
  return true;
}();

inline Error from_grpc(const grpc::Status& s) {
  ErrorKind kind = ErrorKind::kInternal;
  switch (s.error_code()) {
    case grpc::StatusCode::NOT_FOUND: kind = ErrorKind::kNotFound; break;
    case grpc::StatusCode::ALREADY_EXISTS: kind = ErrorKind::kAlreadyExists; break;
    case grpc::StatusCode::FAILED_PRECONDITION: kind = ErrorKind::kFailedPrecondition; break;
    case grpc::StatusCode::INVALID_ARGUMENT: kind = ErrorKind::kInvalidArgument; break;
    case grpc::StatusCode::UNAVAILABLE: kind = ErrorKind::kNotReady; break;
    default: break;
  }
  return Error(kind, "grpc " + std::to_string(s.error_code()) + ": " + s.error_message());
}

inline std::vector<Mount> from_proto_mounts(const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& in) {
  std::vector<Mount> out;
  for (const auto& m : in) out.push_back(Mount{m.type(), m.source(), m.target(), {m.options().begin(), m.options().end()}});
  return out;
}

// The client side: every RPC through a generated stub on a channel, with
// status codes mapped back to error kinds.
class GrpcClient {
 public:
  using Stub = snapshots_v1::Snapshots::Stub;
  explicit GrpcClient(const std::string& socket_path)
      : channel_(grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials())),
        stub_(snapshots_v1::Snapshots::NewStub(channel_)) {}

  Result<std::vector<Mount>> prepare(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    snapshots_v1::PrepareSnapshotRequest req;
    req.set_snapshotter("nydus");
    req.set_key(key);
    req.set_parent(parent);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    snapshots_v1::PrepareSnapshotResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Prepare(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return from_proto_mounts(resp.mounts());
  }
  Result<std::vector<Mount>> view(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    snapshots_v1::ViewSnapshotRequest req;
    req.set_key(key);
    req.set_parent(parent);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    snapshots_v1::ViewSnapshotResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->View(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return from_proto_mounts(resp.mounts());
  }
  Result<std::vector<Mount>> mounts(const std::string& key) {
    snapshots_v1::MountsRequest req;
    req.set_key(key);
    snapshots_v1::MountsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Mounts(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return from_proto_mounts(resp.mounts());
  }
  Status commit(const std::string& name, const std::string& key, const Labels& labels = {}) {
    snapshots_v1::CommitSnapshotRequest req;
    req.set_name(name);
    req.set_key(key);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Commit(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return ok_status();
  }
  Status remove(const std::string& key) {
    snapshots_v1::RemoveSnapshotRequest req;
    req.set_key(key);
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Remove(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return ok_status();
  }
  Result<Info> stat(const std::string& key) {
    snapshots_v1::StatSnapshotRequest req;
    req.set_key(key);
    snapshots_v1::StatSnapshotResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Stat(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return from_proto(resp.info());
  }
  Result<Info> update(const Info& info, const std::vector<std::string>& paths = {}) {
    snapshots_v1::UpdateSnapshotRequest req;
    to_proto(info, req.mutable_info());
    for (const auto& p : paths) req.mutable_update_mask()->add_paths(p);
    snapshots_v1::UpdateSnapshotResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Update(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return from_proto(resp.info());
  }
  Result<std::vector<Info>> list(const std::vector<std::string>& filters = {}) {
    snapshots_v1::ListSnapshotsRequest req;
    for (const auto& f : filters) req.add_filters(f);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto reader = stub_->List(&ctx, req);
    std::vector<Info> out;
    snapshots_v1::ListSnapshotsResponse batch;
    batches_ = 0;
    while (reader->Read(&batch)) {
      ++batches_;
      for (const auto& i : batch.info()) out.push_back(from_proto(i));
    }
    auto s = reader->Finish();
    if (!s.ok()) return from_grpc(s);
    return out;
  }
  Result<Usage> usage(const std::string& key) {
    snapshots_v1::UsageRequest req;
    req.set_key(key);
    snapshots_v1::UsageResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Usage(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return Usage{resp.size(), resp.inodes()};
  }
  Status cleanup() {
    snapshots_v1::CleanupRequest req;
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
    auto s = stub_->Cleanup(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s);
    return ok_status();
  }
  int last_list_batches() const { return batches_; }
  Stub& stub() { return *stub_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
  int batches_ = 0;
};

}  // namespace nydus::snapshotter::testing
