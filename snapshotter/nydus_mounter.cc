#include "snapshotter/nydus_mounter.h"

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {

namespace fs = std::filesystem;

namespace {
// containerd CRI's label with the image reference (the reference's image id).
constexpr std::string_view kLabelCriImageRef = "containerd.io/snapshot/cri.image-ref";
}  // namespace

std::vector<Mount> nydus_overlay_mounts(const fs::path& snapshots_dir, const std::string& id, Kind kind,
                                        const std::vector<std::string>& upper_layer_ids,
                                        const std::string& rafs_mountpoint, const OverlayOptions& options) {
  std::vector<std::string> lowers;
  for (const auto& layer : upper_layer_ids) lowers.push_back((snapshots_dir / layer / "fs").string());
  lowers.push_back(rafs_mountpoint);
  if (kind != Kind::kActive && lowers.size() == 1) {
    return {Mount{"bind", rafs_mountpoint, "", {"ro", "rbind"}}};
  }
  std::vector<std::string> opts;
  if (options.index_off) opts.push_back("index=off");
  if (kind == Kind::kActive) {
    if (options.volatile_upper) opts.push_back("volatile");
    opts.push_back("workdir=" + (snapshots_dir / id / "work").string());
    opts.push_back("upperdir=" + (snapshots_dir / id / "fs").string());
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) {
    if (i) lower += ':';
    lower += lowers[i];
  }
  opts.push_back(std::move(lower));
  return {Mount{"overlay", "overlay", "", std::move(opts)}};
}

Result<std::optional<MetaLayer>> find_meta_layer(const SnapshotChain& chain) {
  for (size_t i = 0; i < chain.parents.size(); ++i) {
    const SnapshotRef& p = chain.parents[i];
    std::error_code ec;
    for (auto rel : {kBootstrapPath, kLegacyBootstrapPath}) {
      fs::path boot = p.dir / rel;
      if (fs::is_regular_file(boot, ec)) return std::optional<MetaLayer>(MetaLayer{i, boot});
    }
    if (p.labels.count(std::string(kLabelNydusBootstrap))) {
      return make_error(ErrorKind::kNotFound, "layer {} is a nydus meta layer (label {}) but holds no {}", p.key,
                        kLabelNydusBootstrap, kBootstrapPath);
    }
  }
  return std::optional<MetaLayer>();
}

NydusMounter::NydusMounter(DaemonManager* manager, std::string unavailable_reason, NydusMounterOptions options)
    : manager_(manager), unavailable_reason_(std::move(unavailable_reason)), options_(std::move(options)) {}

Result<bool> NydusMounter::skip_unpack(std::string_view, std::string_view, const Labels& labels) {
  // A data layer's blob is read by nydusd on demand: no download, no unpack.
  return labels.count(std::string(kLabelTargetSnapshotRef)) > 0 && labels.count(std::string(kLabelNydusBlob)) > 0;
}

Result<std::optional<std::vector<Mount>>> NydusMounter::mounts_for(const SnapshotChain& chain) {
  // containerd is unpacking a layer into this snapshot: it only writes the
  // upper dir, so the native mounts serve, and no daemon starts for a pull.
  if (chain.snapshot.labels.count(std::string(kLabelTargetSnapshotRef))) return std::optional<std::vector<Mount>>();
  NYDUS_ASSIGN_OR_RETURN(auto meta, find_meta_layer(chain));
  if (!meta) return std::optional<std::vector<Mount>>();
  const SnapshotRef& layer = chain.parents[meta->index];
  if (!manager_) {
    return make_error(ErrorKind::kFailedPrecondition, "layer {} is a nydus image, which cannot be served: {}",
                      layer.key, unavailable_reason_);
  }
  RafsMountRequest request;
  request.snapshot_id = layer.id;
  request.bootstrap = meta->bootstrap.string();
  auto ref = chain.snapshot.labels.find(std::string(kLabelCriImageRef));
  request.image_id = ref != chain.snapshot.labels.end() ? ref->second : layer.key;
  NYDUS_ASSIGN_OR_RETURN(std::string mountpoint, manager_->mount(request));
  std::vector<std::string> upper;
  for (size_t i = 0; i < meta->index; ++i) upper.push_back(chain.parents[i].id);
  return std::optional<std::vector<Mount>>(nydus_overlay_mounts(options_.snapshots_dir, chain.snapshot.id,
                                                                chain.snapshot.kind, upper, mountpoint,
                                                                options_.overlay));
}

Result<bool> NydusMounter::release(const std::string& id, const fs::path&, Phase phase) {
  if (!manager_ || !manager_->has_instance(id)) return true;
  // The reference unmounts at Cleanup unless sync_remove: Remove runs inside
  // containerd's garbage collection and should not wait for a daemon.
  if (phase == Phase::kRemove && !options_.sync_remove) return false;
  NYDUS_ASSIGN_OR_RETURN(bool released, manager_->umount(id));
  (void)released;
  return true;
}

}  // namespace nydus::snapshotter
