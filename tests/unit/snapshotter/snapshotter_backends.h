// Two ways to reach the same Snapshotter contract, so that one conformance
// suite (snapshotter_suite_test.cc) runs against both:
//  - CoreBackend calls the Snapshotter core directly;
//  - GrpcBackend runs the real SnapshotsService on a unix socket in a temp
//    directory and calls it through a generated gRPC stub, mapping status
//    codes back to error kinds.
// Both own a root directory and can be "restarted" (reopen) on it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/snapshots_service.h"
#include "snapshotter/snapshotter.h"
#include "snapshotter/store.h"

namespace nydus::snapshotter::testing {

namespace fs = std::filesystem;

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

// The store, remote mounter and core on one root.
class CoreStack {
 public:
  explicit CoreStack(const fs::path& root, RemoteMounter* remote = nullptr) : root_(root) {
    fs::create_directories(root);
    if (remote) remote_ = remote;
    open();
  }
  void open() {
    auto store = MetaStore::open(root_ / "snapshotter.db");
    if (!store.ok()) FAIL("opening store: " << store.error().message());
    store_ = std::move(store).value();
    SnapshotterOptions options;
    options.root = root_;
    options.overlay_index_off = false;  // deterministic mounts in tests
    auto sn = Snapshotter::open(options, *store_, *remote_);
    if (!sn.ok()) FAIL("opening snapshotter: " << sn.error().message());
    snapshotter_ = std::move(sn).value();
  }
  void close() {
    snapshotter_.reset();
    store_.reset();
  }
  Snapshotter& snapshotter() { return *snapshotter_; }
  MetaStore& store() { return *store_; }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
  NoopRemoteMounter noop_;
  RemoteMounter* remote_ = &noop_;
  std::unique_ptr<MetaStore> store_;
  std::unique_ptr<Snapshotter> snapshotter_;
};

class CoreBackend {
 public:
  static constexpr const char* kName = "core";
  explicit CoreBackend(const fs::path& root) : core_(root) {}

  Result<std::vector<Mount>> prepare(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    return core_.snapshotter().prepare(key, parent, labels);
  }
  Result<std::vector<Mount>> view(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    return core_.snapshotter().view(key, parent, labels);
  }
  Result<std::vector<Mount>> mounts(const std::string& key) { return core_.snapshotter().mounts(key); }
  Status commit(const std::string& name, const std::string& key, const Labels& labels = {}) {
    return core_.snapshotter().commit(name, key, labels);
  }
  Status remove(const std::string& key) { return core_.snapshotter().remove(key); }
  Result<Info> stat(const std::string& key) { return core_.snapshotter().stat(key); }
  Result<Info> update(const Info& info, const std::vector<std::string>& paths = {}) {
    return core_.snapshotter().update(info, paths);
  }
  Result<std::vector<Info>> list(const std::vector<std::string>& filters = {}) {
    return core_.snapshotter().list(filters);
  }
  Result<Usage> usage(const std::string& key) { return core_.snapshotter().usage(key); }
  Status cleanup() { return core_.snapshotter().cleanup(); }
  void reopen() {
    core_.close();
    core_.open();
  }
  const fs::path& root() const { return core_.root(); }

 private:
  CoreStack core_;
};

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

class GrpcBackend {
 public:
  static constexpr const char* kName = "grpc";
  explicit GrpcBackend(const fs::path& root) : core_(root), socket_(root.parent_path() / "snapshotter.sock") {
    start();
  }
  ~GrpcBackend() { stop(); }

  Result<std::vector<Mount>> prepare(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    return client_->prepare(key, parent, labels);
  }
  Result<std::vector<Mount>> view(const std::string& key, const std::string& parent = "", const Labels& labels = {}) {
    return client_->view(key, parent, labels);
  }
  Result<std::vector<Mount>> mounts(const std::string& key) { return client_->mounts(key); }
  Status commit(const std::string& name, const std::string& key, const Labels& labels = {}) {
    return client_->commit(name, key, labels);
  }
  Status remove(const std::string& key) { return client_->remove(key); }
  Result<Info> stat(const std::string& key) { return client_->stat(key); }
  Result<Info> update(const Info& info, const std::vector<std::string>& paths = {}) {
    return client_->update(info, paths);
  }
  Result<std::vector<Info>> list(const std::vector<std::string>& filters = {}) { return client_->list(filters); }
  Result<Usage> usage(const std::string& key) { return client_->usage(key); }
  Status cleanup() { return client_->cleanup(); }
  void reopen() {
    stop();
    core_.close();
    core_.open();
    start();
  }
  const fs::path& root() const { return core_.root(); }
  int last_list_batches() const { return client_->last_list_batches(); }

 private:
  void start() {
    service_ = std::make_unique<SnapshotsService>(core_.snapshotter());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_.string(), grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    REQUIRE(server_);
    client_ = std::make_unique<GrpcClient>(socket_.string());
  }
  void stop() {
    client_.reset();
    if (server_) {
      server_->Shutdown();
      server_->Wait();
      server_.reset();
    }
    service_.reset();
  }

  CoreStack core_;
  fs::path socket_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<GrpcClient> client_;
};

}  // namespace nydus::snapshotter::testing
