// The gRPC shell of the snapshots service: containerd's
// containerd.services.snapshots.v1.Snapshots on a unix socket. It only
// converts between protobuf and the Snapshotter core's values and maps
// errors (Error::grpc_code) to gRPC status codes; every decision lives in
// the core (snapshotter.h).
//
// Each handler catches everything: no exception leaves a gRPC method (an
// unexpected one becomes INTERNAL with a log line). List streams the matching
// snapshots in batches of at most kListBatchSize Info messages (as
// containerd's own service does) and about kListBatchBytes (far below gRPC's
// 4 MiB message limit, even with many large labels), after the core released
// its transaction, so a slow reader never holds the database.
#pragma once

#include <grpcpp/grpcpp.h>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/snapshotter.h"

namespace nydus::snapshotter {

inline constexpr int kListBatchSize = 100;
inline constexpr size_t kListBatchBytes = 1 << 20;

namespace snapshots_v1 = ::containerd::services::snapshots::v1;

class SnapshotsService final : public snapshots_v1::Snapshots::Service {
 public:
  explicit SnapshotsService(Snapshotter& snapshotter) : snapshotter_(snapshotter) {}

  grpc::Status Prepare(grpc::ServerContext*, const snapshots_v1::PrepareSnapshotRequest*,
                       snapshots_v1::PrepareSnapshotResponse*) override;
  grpc::Status View(grpc::ServerContext*, const snapshots_v1::ViewSnapshotRequest*,
                    snapshots_v1::ViewSnapshotResponse*) override;
  grpc::Status Mounts(grpc::ServerContext*, const snapshots_v1::MountsRequest*,
                      snapshots_v1::MountsResponse*) override;
  grpc::Status Commit(grpc::ServerContext*, const snapshots_v1::CommitSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Remove(grpc::ServerContext*, const snapshots_v1::RemoveSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Stat(grpc::ServerContext*, const snapshots_v1::StatSnapshotRequest*,
                    snapshots_v1::StatSnapshotResponse*) override;
  grpc::Status Update(grpc::ServerContext*, const snapshots_v1::UpdateSnapshotRequest*,
                      snapshots_v1::UpdateSnapshotResponse*) override;
  grpc::Status List(grpc::ServerContext*, const snapshots_v1::ListSnapshotsRequest*,
                    grpc::ServerWriter<snapshots_v1::ListSnapshotsResponse>*) override;
  grpc::Status Usage(grpc::ServerContext*, const snapshots_v1::UsageRequest*,
                     snapshots_v1::UsageResponse*) override;
  grpc::Status Cleanup(grpc::ServerContext*, const snapshots_v1::CleanupRequest*,
                       google::protobuf::Empty*) override;

 private:
  Snapshotter& snapshotter_;
};

// Conversions, exposed for tests.
grpc::Status to_grpc_status(const Error& error);
void to_proto(const Info& info, snapshots_v1::Info* out);
Info from_proto(const snapshots_v1::Info& in);
void to_proto(const Mount& mount, ::containerd::types::Mount* out);

}  // namespace nydus::snapshotter
