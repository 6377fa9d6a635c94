// NydusMounter: the RemoteMounter that serves nydus images through nydusd
// (reference-snapshotter.md §11).
//
//  * Pull. A data layer (labels containerd.io/snapshot.ref and
//    containerd.io/snapshot/nydus-blob) is committed without unpack: its
//    blob is fetched lazily by nydusd (skip_unpack). The meta layer is
//    unpacked normally, so its tar's image/image.boot lands at
//    <root>/snapshots/<id>/fs/image/image.boot. While containerd unpacks
//    (snapshot.ref on the active snapshot) the native mounts are used.
//  * Run. Prepare or View over a chain whose nearest nydus meta layer (a
//    parent holding fs/image/image.boot, or fs/image.boot, or labelled
//    nydus-bootstrap) makes the DaemonManager serve that image, and returns
//    an overlay whose lowest layer is the RAFS mountpoint:
//      active: overlay workdir=<id>/work, upperdir=<id>/fs,
//              lowerdir=[<fs of layers above the meta layer>:]<rafs mountpoint>
//      view:   a read-only bind of the RAFS mountpoint, or a lower-only
//              overlay when layers sit above the meta layer.
//  * Remove. The meta layer's instance (and a dedicated daemon) is torn down
//    when the meta snapshot itself is released: at Remove with
//    snapshot.sync_remove, else at Cleanup, as in the reference. containerd
//    refuses to remove a layer that still has children, so this happens only
//    after the last snapshot using the image is gone.
//
// Without a usable daemon manager (no nydusd binary, daemon_mode none, the
// fscache driver) plain layers still work and nydus images fail with
// FailedPrecondition naming the reason, instead of being served as the raw
// bootstrap file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "snapshotter/daemon_manager.h"
#include "snapshotter/remote_mounter.h"
#include "snapshotter/snapshotter.h"

namespace nydus::snapshotter {

struct NydusMounterOptions {
  std::filesystem::path snapshots_dir;  // <root>/snapshots
  bool sync_remove = false;
  OverlayOptions overlay;
};

// The mounts of a snapshot on a nydus image (pure). `upper_layer_ids` are the
// ids of the committed layers between the snapshot and the meta layer,
// nearest first.
std::vector<Mount> nydus_overlay_mounts(const std::filesystem::path& snapshots_dir, const std::string& id, Kind kind,
                                        const std::vector<std::string>& upper_layer_ids,
                                        const std::string& rafs_mountpoint, const OverlayOptions& options);

// The nearest parent that is a nydus meta layer, and its bootstrap path.
// A parent labelled nydus-bootstrap without a bootstrap file is kNotFound.
struct MetaLayer {
  size_t index;  // into chain.parents
  std::filesystem::path bootstrap;
};
Result<std::optional<MetaLayer>> find_meta_layer(const SnapshotChain& chain);

class NydusMounter final : public RemoteMounter {
 public:
  // `manager` may be null: then `unavailable_reason` says why nydus images
  // cannot be served.
  NydusMounter(DaemonManager* manager, std::string unavailable_reason, NydusMounterOptions options);

  Result<bool> skip_unpack(std::string_view key, std::string_view parent, const Labels& labels) override;
  Result<std::optional<std::vector<Mount>>> mounts_for(const SnapshotChain& chain) override;
  Result<bool> release(const std::string& id, const std::filesystem::path& dir, Phase phase) override;

 private:
  DaemonManager* manager_;
  std::string unavailable_reason_;
  NydusMounterOptions options_;
};

}  // namespace nydus::snapshotter
