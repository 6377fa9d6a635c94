// The Snapshotter core: containerd's snapshots API with the semantics of
// containerd's overlayfs snapshotter, on the SQLite MetaStore, with no gRPC
// in sight (snapshots_service.h is the shell). One method per API verb.
//
// Layout: <root>/snapshots/<id>/fs is a snapshot's content (the overlay
// upperdir of an active snapshot), <root>/snapshots/<id>/work its overlay
// workdir (active snapshots only). <id> is the store's never-reused row id.
//
// Every state change is one write transaction. A new snapshot's directory is
// staged under a temporary name, renamed to <id> inside the transaction, and
// removed again if anything (including the commit) fails. Remove deletes the
// metadata in a transaction and the directory only after it committed;
// failures there are logged (the key is gone) and Cleanup, which deletes
// every directory the database does not reference, reclaims the rest.
//
// Errors follow containerd's errdefs: NotFound (no such key or parent),
// AlreadyExists (key or name taken), FailedPrecondition (wrong kind for the
// operation, snapshot has children), InvalidArgument (parent not committed,
// empty key, oversized label, unknown update field, bad filter).
//
// Thread-safe: the store serializes transactions; remote hooks run outside
// them.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "snapshotter/filters.h"
#include "snapshotter/remote_mounter.h"
#include "snapshotter/snapshot_types.h"
#include "snapshotter/store.h"

namespace nydus::snapshotter {

struct OverlayOptions {
  bool index_off = false;   // add "index=off" (the overlay module indexes by default)
  bool volatile_upper = false;  // add "volatile" to writable overlays (snapshot.enable_overlayfs_volatile)
};

// containerd overlayfs snapshotter's mounts (pure):
//  - no parents: bind mount of <id>/fs, "rw" for active, "ro" for a view;
//  - a view with exactly one parent: read-only bind mount of the parent's fs;
//  - otherwise overlay: lowerdir=<parent fs>:<grandparent fs>:..., plus
//    upperdir=<id>/fs and workdir=<id>/work for an active snapshot.
std::vector<Mount> overlay_mounts(const std::filesystem::path& snapshots_dir, const std::string& id, Kind kind,
                                  const std::vector<std::string>& parent_ids, const OverlayOptions& options);

struct SnapshotterOptions {
  std::filesystem::path root;
  bool overlay_volatile = false;
  // nullopt: probe the overlay module once (overlay_index_enabled_by_default).
  std::optional<bool> overlay_index_off;
};

class Snapshotter {
 public:
  // Creates <root>/snapshots (0700) and removes staging leftovers of a
  // previous process. `store` and `remote` must outlive the Snapshotter.
  static Result<std::unique_ptr<Snapshotter>> open(const SnapshotterOptions& options, MetaStore& store,
                                                   RemoteMounter& remote);

  Result<std::vector<Mount>> prepare(const std::string& key, const std::string& parent = {},
                                     const Labels& labels = {});
  Result<std::vector<Mount>> view(const std::string& key, const std::string& parent = {},
                                  const Labels& labels = {});
  // Mounts of an active snapshot or view.
  Result<std::vector<Mount>> mounts(const std::string& key);
  // Commits active snapshot `key` as `name` (same directory, usage recorded,
  // labels replaced by `labels`); `key` disappears.
  Status commit(const std::string& name, const std::string& key, const Labels& labels = {});
  Status remove(const std::string& key);
  Result<Info> stat(const std::string& key);
  // Updates the mutable fields of snapshot info.name: fieldpaths "labels"
  // (replace all) and "labels.<key>" (set one; an empty value deletes it);
  // none means "labels".
  Result<Info> update(const Info& info, const std::vector<std::string>& fieldpaths);
  // Snapshots matching any of the containerd filter expressions, by id.
  Result<std::vector<Info>> list(const std::vector<std::string>& filters = {});
  // Active: disk usage of the upper dir now. Committed: recorded at commit.
  // View: zero.
  Result<Usage> usage(const std::string& key);
  // Removes directories no snapshot references.
  Status cleanup();

  const std::filesystem::path& snapshots_dir() const { return snapshots_dir_; }
  std::filesystem::path snapshot_dir(int64_t id) const { return snapshots_dir_ / std::to_string(id); }

 private:
  Snapshotter(const SnapshotterOptions& options, MetaStore& store, RemoteMounter& remote);

  Result<std::vector<Mount>> create(Kind kind, const std::string& key, const std::string& parent,
                                    const Labels& labels);
  Status create_committed_for_remote(const std::string& key, const std::string& target, const std::string& parent,
                                     const Labels& labels);
  Result<SnapshotChain> chain_of(Transaction& tx, const SnapshotRecord& record);
  Result<std::vector<Mount>> mounts_of(const SnapshotChain& chain);
  void release_and_remove(const std::string& id, RemoteMounter::Phase phase);
  SnapshotRef ref_of(const SnapshotRecord& record) const;

  std::filesystem::path snapshots_dir_;
  OverlayOptions overlay_;
  MetaStore& store_;
  RemoteMounter& remote_;
};

// containerd's label validation: InvalidArgument when a key and its value
// together exceed kMaxLabelSize bytes.
Status validate_labels(const Labels& labels);

}  // namespace nydus::snapshotter
