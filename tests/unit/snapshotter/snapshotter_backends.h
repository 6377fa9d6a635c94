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
#include "tests/support/snapshots_grpc_client.h"

namespace nydus::snapshotter::testing {

namespace fs = std::filesystem;

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
