#include "snapshotter/snapshotter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include <spdlog/spdlog.h>

#include "snapshotter/fs_util.h"

namespace nydus::snapshotter {

namespace fs = std::filesystem;

std::optional<size_t> find_bootstrap_layer(const SnapshotChain& chain) {
  for (size_t i = 0; i < chain.parents.size(); ++i) {
    std::error_code ec;
    for (auto rel : {kBootstrapPath, kLegacyBootstrapPath}) {
      if (fs::is_regular_file(chain.parents[i].dir / rel, ec)) return i;
    }
  }
  return std::nullopt;
}

Status validate_labels(const Labels& labels) {
  for (const auto& [k, v] : labels) {
    if (k.size() + v.size() > kMaxLabelSize) {
      return make_error(ErrorKind::kInvalidArgument,
                        "label {}: key and value length ({} bytes) greater than maximum size ({} bytes)",
                        k.substr(0, 64), k.size() + v.size(), kMaxLabelSize);
    }
  }
  return ok_status();
}

std::vector<Mount> overlay_mounts(const fs::path& snapshots_dir, const std::string& id, Kind kind,
                                  const std::vector<std::string>& parent_ids, const OverlayOptions& options) {
  auto fs_of = [&](const std::string& sid) { return (snapshots_dir / sid / "fs").string(); };
  if (parent_ids.empty()) {
    // Overlay needs at least one lower dir: a single layer is a bind mount.
    return {Mount{"bind", fs_of(id), "", {kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  std::vector<std::string> opts;
  if (options.index_off) opts.push_back("index=off");
  if (kind == Kind::kActive) {
    if (options.volatile_upper) opts.push_back("volatile");
    opts.push_back("workdir=" + (snapshots_dir / id / "work").string());
    opts.push_back("upperdir=" + fs_of(id));
  } else if (parent_ids.size() == 1) {
    return {Mount{"bind", fs_of(parent_ids[0]), "", {"ro", "rbind"}}};
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < parent_ids.size(); ++i) {
    if (i) lower += ':';
    lower += fs_of(parent_ids[i]);
  }
  opts.push_back(std::move(lower));
  return {Mount{"overlay", "overlay", "", std::move(opts)}};
}

namespace {

Status require_key(std::string_view what, const std::string& key) {
  if (key.empty()) return make_error(ErrorKind::kInvalidArgument, "{} must not be empty", what);
  return ok_status();
}

Info info_of(const SnapshotRecord& r) {
  return Info{r.key, r.parent_key, r.kind, r.labels, r.created, r.updated};
}

// The staged directory of a new snapshot: fs (0755) always, work (0711) for
// an active snapshot, as containerd's overlay snapshotter.
Result<StagedDir> stage_snapshot_dir(const fs::path& snapshots_dir, Kind kind) {
  NYDUS_ASSIGN_OR_RETURN(StagedDir staged, StagedDir::create(snapshots_dir));
  if (::mkdir((staged.path() / "fs").c_str(), 0755) != 0) {
    return Error::from_errno(errno, fmt::format("creating {}/fs", staged.path().string()));
  }
  if (kind == Kind::kActive && ::mkdir((staged.path() / "work").c_str(), 0711) != 0) {
    return Error::from_errno(errno, fmt::format("creating {}/work", staged.path().string()));
  }
  return staged;
}

// A child's upper dir starts owned like its parent's root directory.
Status copy_owner(const fs::path& from, const fs::path& to) {
  struct stat st;
  if (::lstat(from.c_str(), &st) != 0) return Error::from_errno(errno, fmt::format("stat {}", from.string()));
  if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) {
    return Error::from_errno(errno, fmt::format("chown {}", to.string()));
  }
  return ok_status();
}

// A directory named after an id this transaction just allocated can only be
// left by a process that died between rename and commit: the insert was
// rolled back, so SQLite hands the id out again (AUTOINCREMENT never reuses
// a committed id). Remove it, or the rename would fail until a Cleanup.
Status clear_leftover(const fs::path& target) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(target, ec))) return ok_status();
  spdlog::warn("removing {}: left by an interrupted snapshot creation", target.string());
  return remove_tree(target);
}

bool is_snapshot_id(std::string_view name) {
  if (name.empty() || name.size() > 19) return false;
  for (char c : name) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

Snapshotter::Snapshotter(const SnapshotterOptions& options, MetaStore& store, RemoteMounter& remote)
    : snapshots_dir_(options.root / "snapshots"), store_(store), remote_(remote) {
  overlay_.index_off = options.overlay_index_off.value_or(overlay_index_enabled_by_default());
  overlay_.volatile_upper = options.overlay_volatile;
}

Result<std::unique_ptr<Snapshotter>> Snapshotter::open(const SnapshotterOptions& options, MetaStore& store,
                                                       RemoteMounter& remote) {
  std::unique_ptr<Snapshotter> s(new Snapshotter(options, store, remote));
  if (::mkdir(s->snapshots_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::from_errno(errno, fmt::format("creating {}", s->snapshots_dir_.string()));
  }
  // Nothing runs yet, so a staged directory is a leftover of a process that
  // died between mkdtemp and rename.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(s->snapshots_dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kStagingPrefix, 0) == 0) {
      spdlog::info("removing staging leftover {}", entry.path().string());
      auto st = remove_tree(entry.path());
      if (!st.ok()) spdlog::warn("{}", st.error().message());
    }
  }
  if (ec) return Error::from_errno(ec.value(), fmt::format("reading {}", s->snapshots_dir_.string()));
  return s;
}

SnapshotRef Snapshotter::ref_of(const SnapshotRecord& r) const {
  return SnapshotRef{r.id_string(), r.key, r.kind, r.labels, snapshot_dir(r.id)};
}

Result<SnapshotChain> Snapshotter::chain_of(Transaction& tx, const SnapshotRecord& record) {
  SnapshotChain chain;
  chain.snapshot = ref_of(record);
  NYDUS_ASSIGN_OR_RETURN(auto parents, store_.parent_chain(tx, record));
  for (const auto& p : parents) chain.parents.push_back(ref_of(p));
  return chain;
}

Result<std::vector<Mount>> Snapshotter::mounts_of(const SnapshotChain& chain) {
  NYDUS_ASSIGN_OR_RETURN(auto remote, remote_.mounts_for(chain));
  if (remote) return std::move(*remote);
  std::vector<std::string> parent_ids;
  for (const auto& p : chain.parents) parent_ids.push_back(p.id);
  return overlay_mounts(snapshots_dir_, chain.snapshot.id, chain.snapshot.kind, parent_ids, overlay_);
}

Result<std::vector<Mount>> Snapshotter::prepare(const std::string& key, const std::string& parent,
                                                const Labels& labels) {
  return create(Kind::kActive, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::view(const std::string& key, const std::string& parent,
                                             const Labels& labels) {
  return create(Kind::kView, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::create(Kind kind, const std::string& key, const std::string& parent,
                                               const Labels& labels) {
  NYDUS_TRY(require_key("snapshot key", key));
  NYDUS_TRY(validate_labels(labels));

  if (kind == Kind::kActive) {
    NYDUS_ASSIGN_OR_RETURN(bool skip, remote_.skip_unpack(key, parent, labels));
    auto target = labels.find(std::string(kLabelTargetSnapshotRef));
    if (skip && target != labels.end() && !target->second.empty()) {
      NYDUS_TRY(create_committed_for_remote(key, target->second, parent, labels));
      return make_error(ErrorKind::kAlreadyExists, "target snapshot {} already exists (served remotely)",
                        target->second);
    }
  }

  SnapshotChain chain;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    SnapshotRecord record;
    record.key = key;
    record.kind = kind;
    record.labels = labels;
    record.created = record.updated = now_ns();
    std::optional<SnapshotRecord> parent_record;
    if (!parent.empty()) {
      NYDUS_ASSIGN_OR_RETURN(parent_record, store_.find_snapshot(tx, parent));
      if (!parent_record) return make_error(ErrorKind::kNotFound, "parent snapshot {} does not exist", parent);
      if (parent_record->kind != Kind::kCommitted) {
        return make_error(ErrorKind::kInvalidArgument, "parent snapshot {} is {}, not committed", parent,
                          to_string(parent_record->kind));
      }
      record.parent_id = parent_record->id;
    }
    NYDUS_ASSIGN_OR_RETURN(auto existing, store_.find_snapshot(tx, key));
    if (existing) return make_error(ErrorKind::kAlreadyExists, "snapshot {} already exists", key);

    NYDUS_ASSIGN_OR_RETURN(StagedDir staged, stage_snapshot_dir(snapshots_dir_, kind));
    NYDUS_TRY(store_.insert_snapshot(tx, record));
    if (parent_record) NYDUS_TRY(copy_owner(snapshot_dir(parent_record->id) / "fs", staged.path() / "fs"));
    record.parent_key = parent;
    NYDUS_ASSIGN_OR_RETURN(chain, chain_of(tx, record));
    NYDUS_TRY(clear_leftover(snapshot_dir(record.id)));
    NYDUS_TRY(staged.rename_to(snapshot_dir(record.id)));
    // If the commit fails, `staged` removes the renamed directory.
    NYDUS_TRY(tx.commit());
    staged.dismiss();
  }

  auto mounts = mounts_of(chain);
  if (!mounts.ok()) {
    // Leave no snapshot behind that containerd was told failed.
    auto st = remove(key);
    if (!st.ok()) spdlog::warn("removing {} after failed mounts: {}", key, st.error().message());
    return std::move(mounts).error().wrap(fmt::format("mounts of snapshot {}", key));
  }
  return mounts;
}

Status Snapshotter::create_committed_for_remote(const std::string& key, const std::string& target,
                                                const std::string& parent, const Labels& labels) {
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
  SnapshotRecord record;
  record.key = target;
  record.kind = Kind::kCommitted;
  record.labels = labels;
  record.created = record.updated = now_ns();
  if (!parent.empty()) {
    NYDUS_ASSIGN_OR_RETURN(auto p, store_.find_snapshot(tx, parent));
    if (!p) return make_error(ErrorKind::kNotFound, "parent snapshot {} does not exist", parent);
    if (p->kind != Kind::kCommitted) {
      return make_error(ErrorKind::kInvalidArgument, "parent snapshot {} is {}, not committed", parent,
                        to_string(p->kind));
    }
    record.parent_id = p->id;
  }
  NYDUS_ASSIGN_OR_RETURN(auto existing, store_.find_snapshot(tx, target));
  // Already there (another pull won the race): the answer is the same.
  if (existing) return ok_status();
  NYDUS_ASSIGN_OR_RETURN(StagedDir staged, stage_snapshot_dir(snapshots_dir_, Kind::kCommitted));
  NYDUS_TRY(store_.insert_snapshot(tx, record));
  NYDUS_TRY(clear_leftover(snapshot_dir(record.id)));
  NYDUS_TRY(staged.rename_to(snapshot_dir(record.id)));
  NYDUS_TRY(tx.commit());
  staged.dismiss();
  spdlog::info("layer {} (prepare key {}) is served remotely; committed without unpack", target, key);
  return ok_status();
}

Result<std::vector<Mount>> Snapshotter::mounts(const std::string& key) {
  NYDUS_TRY(require_key("snapshot key", key));
  SnapshotChain chain;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
    NYDUS_ASSIGN_OR_RETURN(SnapshotRecord record, store_.get_snapshot(tx, key));
    if (record.kind != Kind::kActive && record.kind != Kind::kView) {
      return make_error(ErrorKind::kFailedPrecondition, "snapshot {} is {}: only active snapshots and views have mounts",
                        key, to_string(record.kind));
    }
    NYDUS_ASSIGN_OR_RETURN(chain, chain_of(tx, record));
  }
  return mounts_of(chain);
}

Status Snapshotter::commit(const std::string& name, const std::string& key, const Labels& labels) {
  NYDUS_TRY(require_key("committed snapshot name", name));
  NYDUS_TRY(require_key("snapshot key", key));
  NYDUS_TRY(validate_labels(labels));
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
  NYDUS_ASSIGN_OR_RETURN(auto taken, store_.find_snapshot(tx, name));
  if (taken) return make_error(ErrorKind::kAlreadyExists, "snapshot {} already exists", name);
  NYDUS_ASSIGN_OR_RETURN(SnapshotRecord record, store_.get_snapshot(tx, key));
  if (record.kind != Kind::kActive) {
    return make_error(ErrorKind::kFailedPrecondition, "snapshot {} is {}, not active", key, to_string(record.kind));
  }
  // Measured inside the transaction, as containerd does, so that the usage
  // belongs to exactly the content being committed.
  NYDUS_ASSIGN_OR_RETURN(record.usage, disk_usage(snapshot_dir(record.id) / "fs"));
  record.key = name;
  record.kind = Kind::kCommitted;
  record.labels = labels;  // replaced, not inherited
  record.created = record.updated = now_ns();
  NYDUS_TRY(store_.update_snapshot(tx, record));
  return tx.commit();
}

Status Snapshotter::remove(const std::string& key) {
  NYDUS_TRY(require_key("snapshot key", key));
  std::string id;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_ASSIGN_OR_RETURN(SnapshotRecord record, store_.get_snapshot(tx, key));
    NYDUS_ASSIGN_OR_RETURN(bool children, store_.has_children(tx, record.id));
    if (children) {
      return make_error(ErrorKind::kFailedPrecondition, "cannot remove snapshot {}: it has children", key);
    }
    NYDUS_TRY(store_.delete_snapshot(tx, record.id));
    NYDUS_TRY(tx.commit());
    id = record.id_string();
  }
  // The key is gone; from here on failures are logged, and Cleanup reclaims
  // whatever is left.
  release_and_remove(id, RemoteMounter::Phase::kRemove);
  return ok_status();
}

void Snapshotter::release_and_remove(const std::string& id, RemoteMounter::Phase phase) {
  fs::path dir = snapshots_dir_ / id;
  auto released = remote_.release(id, dir, phase);
  if (!released.ok()) {
    spdlog::warn("releasing remote state of snapshot {}: {}; left for Cleanup", id, released.error().message());
    return;
  }
  if (!*released) return;
  auto st = remove_tree(dir);
  if (!st.ok()) spdlog::warn("{}; left for Cleanup", st.error().message());
}

Result<Info> Snapshotter::stat(const std::string& key) {
  NYDUS_TRY(require_key("snapshot key", key));
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
  NYDUS_ASSIGN_OR_RETURN(SnapshotRecord record, store_.get_snapshot(tx, key));
  return info_of(record);
}

Result<Info> Snapshotter::update(const Info& info, const std::vector<std::string>& fieldpaths) {
  NYDUS_TRY(require_key("snapshot name", info.name));
  NYDUS_TRY(validate_labels(info.labels));
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
  NYDUS_ASSIGN_OR_RETURN(SnapshotRecord record, store_.get_snapshot(tx, info.name));
  if (fieldpaths.empty()) {
    record.labels = info.labels;
  } else {
    for (const auto& path : fieldpaths) {
      if (path.rfind("labels.", 0) == 0) {
        std::string label = path.substr(7);
        auto it = info.labels.find(label);
        if (it == info.labels.end() || it->second.empty()) {
          record.labels.erase(label);
        } else {
          record.labels[label] = it->second;
        }
      } else if (path == "labels") {
        record.labels = info.labels;
      } else {
        return make_error(ErrorKind::kInvalidArgument, "cannot update field {} of snapshot {}: only labels are mutable",
                          path, info.name);
      }
    }
  }
  // As containerd's metastore: an empty value does not make a label.
  std::erase_if(record.labels, [](const auto& kv) { return kv.second.empty(); });
  record.updated = now_ns();
  NYDUS_TRY(store_.update_snapshot(tx, record));
  NYDUS_TRY(tx.commit());
  return info_of(record);
}

Result<std::vector<Info>> Snapshotter::list(const std::vector<std::string>& filters) {
  NYDUS_ASSIGN_OR_RETURN(Filter filter, Filter::parse(filters));
  std::vector<SnapshotRecord> records;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
    NYDUS_ASSIGN_OR_RETURN(records, store_.list_snapshots(tx));
  }
  std::vector<Info> out;
  for (const auto& r : records) {
    Info info = info_of(r);
    if (filter.match(info)) out.push_back(std::move(info));
  }
  return out;
}

Result<Usage> Snapshotter::usage(const std::string& key) {
  NYDUS_TRY(require_key("snapshot key", key));
  SnapshotRecord record;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
    NYDUS_ASSIGN_OR_RETURN(record, store_.get_snapshot(tx, key));
  }
  if (record.kind != Kind::kActive) return record.usage;
  // Walked outside the transaction: an upper dir can be large. If the
  // snapshot is removed meanwhile, the walk reports NotFound, which is true.
  auto usage = disk_usage(snapshot_dir(record.id) / "fs");
  if (!usage.ok()) return std::move(usage).error().wrap(fmt::format("usage of snapshot {}", key));
  return usage;
}

Status Snapshotter::cleanup() {
  std::vector<std::string> orphans;
  {
    // A write transaction keeps creators out while we compare the directory
    // with the database: a staged directory exists only inside a write
    // transaction, so none is in flight now.
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_ASSIGN_OR_RETURN(auto ids, store_.snapshot_ids(tx));
    std::set<std::string> referenced;
    for (int64_t id : ids) referenced.insert(std::to_string(id));
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(snapshots_dir_, ec)) {
      std::string name = entry.path().filename().string();
      if (!referenced.count(name)) orphans.push_back(name);
    }
    if (ec) return Error::from_errno(ec.value(), fmt::format("reading {}", snapshots_dir_.string()));
  }
  // Ids are never reused and staging names are unique, so nothing can claim
  // these names after the transaction ended.
  for (const auto& name : orphans) {
    if (is_snapshot_id(name)) {
      spdlog::info("cleanup: removing unreferenced snapshot directory {}", name);
      release_and_remove(name, RemoteMounter::Phase::kCleanup);
    } else {
      spdlog::info("cleanup: removing stray entry {}", name);
      auto st = remove_tree(snapshots_dir_ / name);
      if (!st.ok()) spdlog::warn("cleanup: {}", st.error().message());
    }
  }
  return ok_status();
}

}  // namespace nydus::snapshotter
