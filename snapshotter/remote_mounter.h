// The seam between the Snapshotter core (containerd overlay semantics) and
// whatever serves image layers remotely: the nydusd daemon manager plugs in
// here. The core owns metadata and directories; a RemoteMounter owns what it
// mounts below a snapshot's directory and the daemons behind it.
//
// Calls arrive on gRPC worker threads, concurrently, and never while the
// metadata transaction is held: implementations are thread-safe and may
// block (start a daemon, wait for it) without stalling other requests.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "snapshotter/snapshot_types.h"

namespace nydus::snapshotter {

// A snapshot as a RemoteMounter sees it.
struct SnapshotRef {
  std::string id;              // directory name under <root>/snapshots
  std::string key;             // containerd's key (name)
  Kind kind = Kind::kUnknown;
  Labels labels;
  std::filesystem::path dir;   // <root>/snapshots/<id>; the layer content is dir/fs
};

// An active snapshot or view together with its ancestors.
struct SnapshotChain {
  SnapshotRef snapshot;
  std::vector<SnapshotRef> parents;  // nearest first
};

// Label containerd sets while unpacking a layer: the name the layer will be
// committed under (its chain id).
inline constexpr std::string_view kLabelTargetSnapshotRef = "containerd.io/snapshot.ref";
// Layer annotations nydusify sets and containerd forwards as labels.
inline constexpr std::string_view kLabelNydusBootstrap = "containerd.io/snapshot/nydus-bootstrap";
inline constexpr std::string_view kLabelNydusBlob = "containerd.io/snapshot/nydus-blob";

// Where a committed nydus meta layer keeps its bootstrap, relative to the
// snapshot directory (the reference also accepts the legacy fs/image.boot).
inline constexpr std::string_view kBootstrapPath = "fs/image/image.boot";
inline constexpr std::string_view kLegacyBootstrapPath = "fs/image.boot";

// The nearest parent (index into chain.parents) whose directory holds a
// nydus bootstrap, if any.
std::optional<size_t> find_bootstrap_layer(const SnapshotChain& chain);

class RemoteMounter {
 public:
  enum class Phase {
    kRemove,   // Remove committed the metadata delete
    kCleanup,  // Cleanup found the directory unreferenced
  };

  virtual ~RemoteMounter() = default;

  // Prepare of an active snapshot, before anything is created. true means
  // the layer is served remotely and needs no unpack: the core then records
  // it committed under the name in label containerd.io/snapshot.ref and
  // answers AlreadyExists, which is how containerd learns that a remote
  // snapshotter skipped the download (lazy pull).
  virtual Result<bool> skip_unpack(std::string_view key, std::string_view parent, const Labels& labels) = 0;

  // Mounts for an active snapshot or a view (Prepare, View, Mounts), after
  // its metadata is committed. nullopt: use the native overlay mounts. On an
  // error from Prepare or View, the core removes the new snapshot again.
  virtual Result<std::optional<std::vector<Mount>>> mounts_for(const SnapshotChain& chain) = 0;

  // The snapshot directory `id` lost its metadata. Tear down remote state
  // below `dir`. Returns true when the directory may be removed now; false
  // (allowed in kRemove only) leaves it for a later Cleanup, e.g. when
  // snapshot.sync_remove is off and unmounting is deferred.
  virtual Result<bool> release(const std::string& id, const std::filesystem::path& dir, Phase phase) = 0;
};

// Serves nothing remotely: plain overlay snapshots.
class NoopRemoteMounter final : public RemoteMounter {
 public:
  Result<bool> skip_unpack(std::string_view, std::string_view, const Labels&) override { return false; }
  Result<std::optional<std::vector<Mount>>> mounts_for(const SnapshotChain&) override {
    return std::optional<std::vector<Mount>>();
  }
  Result<bool> release(const std::string&, const std::filesystem::path&, Phase) override { return true; }
};

}  // namespace nydus::snapshotter
