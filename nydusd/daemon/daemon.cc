#include "nydusd/daemon/daemon.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <deque>
#include <filesystem>
#include <unordered_set>

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include "common/fd_passing.h"
#include "nydusd/daemon/takeover.h"
#include "nydusd/daemon/version.h"

namespace nydus::daemon {

namespace {

// Upper bound of files one prefetch list may expand to (a directory expands
// to every regular file below it).
constexpr size_t kMaxPrefetchFiles = 1 << 20;

// Expands nids to the regular files they name (a directory expands to every
// file below it), bounded and without repeats.
std::vector<uint64_t> expand_to_files(const rafs::Bootstrap& bootstrap, std::vector<uint64_t> roots) {
  std::vector<uint64_t> nids;
  std::unordered_set<uint64_t> seen;
  std::deque<uint64_t> queue(roots.begin(), roots.end());
  while (!queue.empty() && nids.size() < kMaxPrefetchFiles) {
    uint64_t current = queue.front();
    queue.pop_front();
    if (!seen.insert(current).second) continue;
    auto attr = bootstrap.getattr(current);
    if (!attr.ok()) continue;
    if (S_ISREG(attr->mode)) {
      nids.push_back(current);
    } else if (S_ISDIR(attr->mode)) {
      (void)bootstrap.readdir(current, 0, [&](const rafs::DirEntry& de, uint64_t) {
        if (de.name != "." && de.name != "..") queue.push_back(de.nid);
        return queue.size() < kMaxPrefetchFiles;
      });
    }
  }
  return nids;
}

// Resolves absolute paths of an image to nids. Missing paths are skipped with
// a warning: a prefetch hint must never fail a mount.
std::vector<uint64_t> resolve_paths(const rafs::Bootstrap& bootstrap,
                                    const std::vector<std::string>& paths,
                                    const std::string& mountpoint) {
  std::vector<uint64_t> nids;
  for (const auto& path : paths) {
    uint64_t nid = bootstrap.root_nid();
    bool found = true;
    size_t pos = 0;
    while (found && pos < path.size()) {
      while (pos < path.size() && path[pos] == '/') ++pos;
      size_t end = path.find('/', pos);
      if (end == std::string::npos) end = path.size();
      if (end > pos) {
        auto child = bootstrap.lookup(nid, std::string_view(path).substr(pos, end - pos));
        if (child.ok()) {
          nid = *child;
        } else {
          found = false;
        }
      }
      pos = end;
    }
    if (found) {
      nids.push_back(nid);
    } else {
      spdlog::warn("mount {}: prefetch path {} is not in the image", mountpoint, path);
    }
  }
  return nids;
}

std::string format_time(std::chrono::system_clock::time_point tp) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(tp)));
}

}  // namespace

Result<FailoverPolicy> parse_failover_policy(std::string_view text) {
  if (text == "none") return FailoverPolicy::kNone;
  if (text == "resend") return FailoverPolicy::kResend;
  return make_error(ErrorKind::kInvalidArgument, "failover policy must be none or resend, not \"{}\"",
                    text);
}

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {}

Daemon::~Daemon() {
  // Stop serving without unmounting: whoever wanted the mount gone said so
  // through shutdown().
  if (session_) session_->stop();
}

Result<std::unique_ptr<Daemon>> Daemon::create(DaemonOptions options) {
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(options)));
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::from_errno(errno, "eventfd");
  daemon->exit_fd_.reset(efd);
  daemon->vfs_ = std::make_unique<fuse::Vfs>();
  fuse::FuseSessionOptions session_options;
  session_options.mountpoint = daemon->options_.mountpoint;
  session_options.threads = daemon->options_.threads;
  NYDUS_ASSIGN_OR_RETURN(daemon->session_, fuse::FuseSession::create(*daemon->vfs_, session_options));
  Daemon* raw = daemon.get();
  daemon->session_->set_on_connection_lost([raw] { raw->request_exit(ExitReason::kConnectionLost); });
  return daemon;
}

DaemonState Daemon::state() const { return state_.load(); }

ExitReason Daemon::exit_reason() const { return exit_reason_.load(); }

void Daemon::request_exit(ExitReason reason) {
  ExitReason expected = ExitReason::kNone;
  exit_reason_.compare_exchange_strong(expected, reason);
  uint64_t one = 1;
  if (::write(exit_fd_.get(), &one, sizeof(one)) < 0) {
    spdlog::error("cannot wake the main loop: {}", std::strerror(errno));
  }
}

std::optional<fuse::FuseInitState> Daemon::fuse_init_state() const {
  return session_->init_state();
}

// ---------------------------------------------------------------------------
// State machine

Status Daemon::fire(DaemonEvent event) {
  std::lock_guard lock(mu_);
  return fire_locked(event);
}

Status Daemon::fire_locked(DaemonEvent event) {
  DaemonState from = state_.load();
  NYDUS_ASSIGN_OR_RETURN(Transition transition, plan_transition(from, event));
  Status status = run_action_locked(transition.action);
  if (!status.ok()) {
    spdlog::error("event {} in state {}: action {} failed, state stays {}: {}", event_name(event),
                  state_name(from), action_name(transition.action), state_name(from),
                  status.error().message());
    return status;
  }
  state_ = transition.to;
  spdlog::info("state {} -> {} (event {})", state_name(from), state_name(transition.to),
               event_name(event));
  return ok_status();
}

Status Daemon::run_action_locked(DaemonAction action) {
  switch (action) {
    case DaemonAction::kNone:
      return ok_status();
    case DaemonAction::kMount:
      return action_mount_locked();
    case DaemonAction::kRestore:
      return action_restore_locked();
    case DaemonAction::kStartService:
      return action_start_locked();
    case DaemonAction::kStopService:
      session_->stop();
      return ok_status();
    case DaemonAction::kUmount:
      return session_->unmount();
  }
  return make_error(ErrorKind::kInternal, "unknown action");
}

// Mount: the initial image into the VFS first (a bad image fails before the
// kernel is touched), then the kernel mount. Undone on failure.
Status Daemon::action_mount_locked() {
  std::optional<std::string> mounted_path;
  if (options_.initial_mount) {
    const MountRequest& request = *options_.initial_mount;
    FsConfig config;
    NYDUS_ASSIGN_OR_RETURN(auto mount, build_mount(request, &config));
    NYDUS_ASSIGN_OR_RETURN(auto entry, vfs_->mount(mount));
    records_[mount->mountpoint] = MountRecord{request, std::move(config),
                                              std::chrono::system_clock::now()};
    mounted_path = mount->mountpoint;
    (void)entry;
  }
  Status status = session_->mount();
  if (!status.ok() && mounted_path) {
    if (auto removed = vfs_->umount(*mounted_path); removed.ok() && removed->mount->store) {
      removed->mount->store->stop_prefetch();
    }
    records_.erase(*mounted_path);
  }
  return status;
}

Status Daemon::start_serving() {
  std::lock_guard lock(mu_);
  NYDUS_TRY(fire_locked(DaemonEvent::kMount));
  Status status = fire_locked(DaemonEvent::kStart);
  if (!status.ok()) {
    // READY with nothing serving: take the mount down again.
    (void)fire_locked(DaemonEvent::kStop);
    return status;
  }
  return ok_status();
}

Status Daemon::exit_for_upgrade() {
  {
    std::lock_guard lock(mu_);
    switch (state_.load()) {
      case DaemonState::kRunning:
        NYDUS_TRY(fire_locked(DaemonEvent::kStop));
        NYDUS_TRY(fire_locked(DaemonEvent::kExit));
        break;
      case DaemonState::kReady:
        NYDUS_TRY(fire_locked(DaemonEvent::kExit));
        break;
      case DaemonState::kInit:
        NYDUS_TRY(fire_locked(DaemonEvent::kStop));
        break;
      case DaemonState::kStopped:
        break;
    }
  }
  request_exit(ExitReason::kExitForUpgrade);
  return ok_status();
}

Status Daemon::shutdown() {
  Status status;
  {
    std::lock_guard lock(mu_);
    if (state_.load() == DaemonState::kRunning) status = fire_locked(DaemonEvent::kStop);
    if (status.ok() && state_.load() != DaemonState::kStopped) status = fire_locked(DaemonEvent::kStop);
    for (const auto& entry : vfs_->mounts()) {
      if (entry.mount->store) entry.mount->store->stop_prefetch();
    }
  }
  request_exit(ExitReason::kShutdown);
  return status;
}

// ---------------------------------------------------------------------------
// Mounts

Result<std::shared_ptr<fuse::RafsMount>> Daemon::build_mount(const MountRequest& request,
                                                             FsConfig* config) const {
  if (request.fs_type != "rafs") {
    if (request.fs_type == "passthrough" || request.fs_type == "passthroughfs" ||
        request.fs_type == "passthrough_fs") {
      return make_error(ErrorKind::kUnsupported, "fs_type {} is not supported", request.fs_type);
    }
    return make_error(ErrorKind::kInvalidArgument, "unknown fs_type \"{}\"", request.fs_type);
  }
  if (request.source.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "mount needs a source (the bootstrap file)");
  }
  NYDUS_ASSIGN_OR_RETURN(std::string path, fuse::normalize_vfs_path(request.mountpoint));
  NYDUS_ASSIGN_OR_RETURN(*config, parse_fs_config(request.config_text));
  NYDUS_TRY(check_fs_config_paths(*config));
  NYDUS_TRY(validate_prefetch_files(request.prefetch_files));

  auto bootstrap = rafs::Bootstrap::open(request.source);
  if (!bootstrap.ok()) return std::move(bootstrap).error().wrap("bootstrap " + request.source);
  auto store = storage::BlobStore::open(config->storage, *bootstrap);
  if (!store.ok()) return std::move(store).error().wrap("blob store for " + request.source);

  auto mount = std::make_shared<fuse::RafsMount>();
  mount->mountpoint = path;
  mount->source = request.source;
  mount->bootstrap = *bootstrap;
  mount->store = *store;
  mount->options.entry_timeout = config->entry_timeout;
  mount->options.attr_timeout = config->attr_timeout;
  mount->options.enable_xattr = config->enable_xattr;
  mount->stats = std::make_shared<fuse::FsIoStats>(path);

  // Prefetch: listed files (request, then config), else the image's own
  // prefetch table when prefetch is enabled.
  std::vector<std::string> files = request.prefetch_files;
  files.insert(files.end(), config->prefetch_files.begin(), config->prefetch_files.end());
  std::vector<uint64_t> nids;
  if (!files.empty()) {
    nids = expand_to_files(**bootstrap, resolve_paths(**bootstrap, files, path));
  } else if (config->storage.prefetch.enable) {
    auto table = (*bootstrap)->prefetch_nids();
    if (table.ok()) {
      nids = expand_to_files(**bootstrap, std::move(*table));
    } else {
      spdlog::warn("mount {}: cannot read the prefetch table: {}", path, table.error().message());
    }
  }
  if (!nids.empty() || config->storage.prefetch.enable) {
    mount->store->start_prefetch(std::move(nids));
  }
  return mount;
}

Status Daemon::mount(const MountRequest& request) {
  std::lock_guard lock(mu_);
  if (state_.load() == DaemonState::kStopped) {
    return make_error(ErrorKind::kFailedPrecondition, "the daemon is stopped");
  }
  NYDUS_ASSIGN_OR_RETURN(std::string path, fuse::normalize_vfs_path(request.mountpoint));
  if (vfs_->find_mount(path)) return make_error(ErrorKind::kAlreadyExists, "{} is already mounted", path);
  FsConfig config;
  NYDUS_ASSIGN_OR_RETURN(auto mount, build_mount(request, &config));
  auto entry = vfs_->mount(mount);
  if (!entry.ok()) {
    mount->store->stop_prefetch();
    return std::move(entry).error();
  }
  // The kernel may have cached a negative or pseudo-dir entry for the path.
  if (entry->parent_node != 0) session_->notify_inval_entry(entry->parent_node, entry->name);
  records_[path] = MountRecord{request, std::move(config), std::chrono::system_clock::now()};
  records_[path].request.mountpoint = path;
  spdlog::info("mounted image {} at {} (index {})", request.source, path, entry->index);
  resave_after_mount_change_locked();
  return ok_status();
}

Status Daemon::remount(const MountRequest& request) {
  std::lock_guard lock(mu_);
  NYDUS_ASSIGN_OR_RETURN(std::string path, fuse::normalize_vfs_path(request.mountpoint));
  auto existing = vfs_->find_mount(path);
  if (!existing) return make_error(ErrorKind::kNotFound, "{} is not mounted", path);
  FsConfig config;
  NYDUS_ASSIGN_OR_RETURN(auto mount, build_mount(request, &config));
  mount->stats = existing->mount->stats;  // statistics survive a remount
  auto old = vfs_->remount(mount);
  if (!old.ok()) {
    mount->store->stop_prefetch();
    return std::move(old).error();
  }
  // Node ids of the old image may now name other inodes: drop what the
  // kernel cached of it.
  invalidate_locked(*old);
  if (old->mount->store) old->mount->store->stop_prefetch();
  records_[path] = MountRecord{request, std::move(config), std::chrono::system_clock::now()};
  records_[path].request.mountpoint = path;
  spdlog::info("remounted image {} at {} (index {})", request.source, path, old->index);
  resave_after_mount_change_locked();
  return ok_status();
}

void Daemon::invalidate_locked(const fuse::Vfs::MountEntry& entry) {
  if (!session_->running()) return;
  size_t inodes = 0, entries = 0;
  vfs_->walk_for_invalidation(
      entry,
      [&](uint64_t node) {
        ++inodes;
        return session_->notify_inval_inode(node);
      },
      [&](uint64_t parent, const std::string& name) {
        ++entries;
        return session_->notify_inval_entry(parent, name);
      });
  spdlog::info("invalidated {} inodes and {} entries of {}", inodes, entries, entry.mount->mountpoint);
}

Status Daemon::umount(std::string_view mountpoint) {
  std::lock_guard lock(mu_);
  NYDUS_ASSIGN_OR_RETURN(std::string path, fuse::normalize_vfs_path(mountpoint));
  auto entry = vfs_->find_mount(path);
  if (!entry) return make_error(ErrorKind::kNotFound, "{} is not mounted", path);
  invalidate_locked(*entry);
  NYDUS_ASSIGN_OR_RETURN(auto removed, vfs_->umount(path));
  if (removed.mount->store) removed.mount->store->stop_prefetch();
  records_.erase(path);
  spdlog::info("unmounted image at {}", path);
  resave_after_mount_change_locked();
  return ok_status();
}

// ---------------------------------------------------------------------------
// Failover: save, restore, start after a takeover (takeover.h has the wire).

Status Daemon::save_state() {
  std::lock_guard lock(mu_);
  return save_locked();
}

Status Daemon::save_locked() {
  if (!options_.supervisor) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "no supervisor is configured (start nydusd with --supervisor and --id)");
  }
  auto init = session_->init_state();
  if (!session_->attached() || !init) {
    return make_error(ErrorKind::kNotReady, "FUSE INIT has not completed yet: nothing to save");
  }
  SavedState state;
  state.writer_version = fmt::format("{} ({})", build_info().package_ver, build_info().git_commit);
  state.daemon_id = options_.id.value_or("");
  state.mountpoint = session_->mountpoint();
  state.fuse = *init;
  for (const auto& entry : vfs_->mounts()) {
    SavedMount m;
    m.index = entry.index;
    m.mountpoint = entry.mount->mountpoint;
    m.bootstrap = entry.mount->source;
    if (auto it = records_.find(entry.mount->mountpoint); it != records_.end()) {
      m.fs_type = it->second.request.fs_type;
      m.bootstrap = it->second.request.source;
      m.config = it->second.request.config_text;
      m.prefetch_files = it->second.request.prefetch_files;
    }
    state.mounts.push_back(std::move(m));
  }
  state.next_mount_index = vfs_->next_index();
  for (const auto& p : vfs_->pseudo_entries()) state.pseudo_dirs.push_back({p.ino, p.parent, p.name});
  state.failover_policy = options_.failover_policy == FailoverPolicy::kResend ? "resend" : "none";
  state.thread_num = options_.threads;
  struct stat st {};
  if (::stat(session_->mountpoint().c_str(), &st) == 0) {
    state.fuse_conn_id = (static_cast<uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev);
  }
  std::vector<uint8_t> bytes = encode_state(state);
  UniqueFd dup(::fcntl(session_->connection_fd(), F_DUPFD_CLOEXEC, 3));
  if (!dup) return Error::from_errno(errno, "dup the FUSE fd");
  int fds[] = {dup.get()};
  auto status = connect_and_send_message(*options_.supervisor, bytes, fds, kSupervisorSendTimeout);
  if (!status.ok()) return std::move(status).error().wrap("save to supervisor " + *options_.supervisor);
  saves_.fetch_add(1);
  spdlog::info("saved state ({} bytes, {} mounts) and the FUSE fd to {}", bytes.size(),
               state.mounts.size(), *options_.supervisor);
  return ok_status();
}

void Daemon::resave_after_mount_change_locked() {
  if (!options_.supervisor || !session_->attached() || !session_->init_state()) return;
  if (auto status = save_locked(); !status.ok()) {
    spdlog::warn("saving the state after a mount change failed (the change stands): {}",
                 status.error().message());
  }
}

Status Daemon::action_restore_locked() {
  if (!options_.supervisor) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "takeover needs a supervisor (start nydusd with --supervisor and --id)");
  }
  if (session_->attached()) {
    return make_error(ErrorKind::kFailedPrecondition, "a FUSE connection is already attached");
  }
  auto started = std::chrono::steady_clock::now();
  auto message = connect_and_receive_message(*options_.supervisor, kSupervisorReceiveTimeout,
                                             kMaxStateBytes, 16);
  if (!message.ok()) {
    return std::move(message).error().wrap("receive the state from " + *options_.supervisor);
  }
  if (message->fds.empty()) {
    return make_error(ErrorKind::kCorrupt, "the supervisor sent {} bytes of state but no FUSE fd",
                      message->bytes.size());
  }
  if (message->fds.size() > 1) {
    spdlog::warn("the supervisor sent {} fds; using the first", message->fds.size());
  }
  NYDUS_ASSIGN_OR_RETURN(SavedState state, decode_state(message->bytes));
  spdlog::info("restoring state format {}.{} written by {} (id {}, {} mounts, protocol 7.{}, "
               "max_write {}, kernel resend {})",
               state.format_major, state.format_minor, state.writer_version, state.daemon_id,
               state.mounts.size(), state.fuse.proto_minor, state.fuse.max_write,
               state.fuse.has_resend());
  if (options_.id && !state.daemon_id.empty() && state.daemon_id != *options_.id) {
    spdlog::warn("the saved state belongs to daemon {}, this is {}", state.daemon_id, *options_.id);
  }
  if (!state.mountpoint.empty() && state.mountpoint != options_.mountpoint) {
    std::error_code ec;
    if (std::filesystem::canonical(options_.mountpoint, ec) != state.mountpoint) {
      spdlog::warn("the saved mountpoint is {}, --mountpoint is {}", state.mountpoint,
                   options_.mountpoint);
    }
  }

  // Rebuild the mounts under their saved indexes; undo all on any failure.
  std::vector<std::string> restored;
  auto undo = [&] {
    for (const auto& path : restored) {
      if (auto removed = vfs_->umount(path); removed.ok() && removed->mount->store) {
        removed->mount->store->stop_prefetch();
      }
      records_.erase(path);
    }
  };
  std::vector<fuse::Vfs::PseudoEntry> pseudo;
  for (const auto& p : state.pseudo_dirs) pseudo.push_back({p.ino, p.parent, p.name});
  if (!pseudo.empty()) {
    if (auto status = vfs_->restore_pseudo(pseudo); !status.ok()) {
      return std::move(status).error().wrap("restore the VFS pseudo tree");
    }
  }
  for (const auto& saved : state.mounts) {
    MountRequest request;
    request.mountpoint = saved.mountpoint;
    request.fs_type = saved.fs_type;
    request.source = saved.bootstrap;
    request.config_text = saved.config;
    request.prefetch_files = saved.prefetch_files;
    FsConfig config;
    auto mount = build_mount(request, &config);
    if (!mount.ok()) {
      undo();
      return std::move(mount).error().wrap("restore mount " + saved.mountpoint);
    }
    auto entry = vfs_->mount(*mount, saved.index);
    if (!entry.ok()) {
      (*mount)->store->stop_prefetch();
      undo();
      return std::move(entry).error().wrap("restore mount " + saved.mountpoint);
    }
    records_[(*mount)->mountpoint] =
        MountRecord{request, std::move(config), std::chrono::system_clock::now()};
    restored.push_back((*mount)->mountpoint);
  }
  vfs_->set_next_index(state.next_mount_index);

  if (auto status = session_->adopt(std::move(message->fds.front()), state.fuse); !status.ok()) {
    undo();
    return std::move(status).error().wrap("adopt the FUSE connection");
  }
  resend_pending_ = true;
  resent_at_takeover_base_ = session_->resent_requests();
  takeovers_.fetch_add(1);
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  last_restore_duration_ms_ = elapsed.count();
  spdlog::info("took over the FUSE connection of {} with {} mounts in {} ms", options_.mountpoint,
               restored.size(), elapsed.count());
  return ok_status();
}

Status Daemon::action_start_locked() {
  if (resend_pending_) {
    // Before any worker reads: requests the predecessor read and never
    // answered go back to the pending queue (fuse-takeover-facts.md §3).
    auto init = session_->init_state();
    if (options_.failover_policy != FailoverPolicy::kResend) {
      spdlog::info("failover policy none: no FUSE_NOTIFY_RESEND after the takeover");
    } else if (!init || !init->has_resend()) {
      spdlog::warn("the kernel did not offer FUSE_HAS_RESEND: requests the predecessor had read "
                   "cannot be recovered");
    } else if (auto status = session_->resend(); !status.ok()) {
      spdlog::warn("FUSE_NOTIFY_RESEND failed: {}", status.error().message());
    } else {
      spdlog::info("sent FUSE_NOTIFY_RESEND before starting the workers");
    }
  }
  NYDUS_TRY(session_->start());
  resend_pending_ = false;
  return ok_status();
}

// ---------------------------------------------------------------------------
// Reporting

nlohmann::json Daemon::info(bool v2) const {
  nlohmann::json info = {
      {"version", version_json()},
      {"id", options_.id ? nlohmann::json(*options_.id) : nlohmann::json(nullptr)},
      {"supervisor",
       options_.supervisor ? nlohmann::json(*options_.supervisor) : nlohmann::json(nullptr)},
      {"state", std::string(state_name(state_.load()))},
  };
  info["takeovers"] = takeovers_.load();
  int64_t restore_ms = last_restore_duration_ms_.load();
  info["last_restore_duration_ms"] = restore_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(restore_ms);
  info["requests_resent"] = session_->resent_requests() - resent_at_takeover_base_.load();
  info["saves"] = saves_.load();
  if (v2) {
    info["backend_collection"] = nullptr;
    return info;
  }
  auto collection = nlohmann::json::object();
  std::lock_guard lock(mu_);
  for (const auto& [path, record] : records_) {
    collection[path] = {{"backend_type", "Rafs"},
                        {"mountpoint", path},
                        {"mounted_time", format_time(record.mounted_time)},
                        {"config", record.config.redacted}};
  }
  info["backend_collection"] = std::move(collection);
  return info;
}

Result<fuse::Vfs::MountEntry> Daemon::find_entry(const std::optional<std::string>& id) const {
  if (id) {
    auto entry = vfs_->find_mount(*id);
    if (!entry) return make_error(ErrorKind::kNotFound, "no filesystem with id {}", *id);
    return *entry;
  }
  auto all = vfs_->mounts();
  if (all.size() != 1) {
    return make_error(ErrorKind::kNotFound,
                      "{} filesystems are mounted: name one with ?id=<mountpoint>", all.size());
  }
  return all.front();
}

Result<nlohmann::json> Daemon::fs_metrics(const std::optional<std::string>& id) const {
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  return entry.mount->stats->to_json();
}

Result<nlohmann::json> Daemon::backend_metrics(const std::optional<std::string>& id) const {
  std::lock_guard lock(mu_);
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  if (!entry.mount->store) return make_error(ErrorKind::kNotFound, "no backend for {}", entry.mount->mountpoint);
  const auto& m = entry.mount->store->metrics();
  std::string type = "localfs";
  if (auto it = records_.find(entry.mount->mountpoint); it != records_.end()) {
    type = it->second.config.storage.backend.type;
  }
  return nlohmann::json{{"id", entry.mount->mountpoint},
                        {"backend_type", type},
                        {"read_count", m.backend_read_count.load()},
                        {"read_errors", m.backend_read_errors.load()},
                        {"read_amount_total", m.backend_read_bytes.load()}};
}

Result<nlohmann::json> Daemon::blobcache_metrics(const std::optional<std::string>& id) const {
  std::lock_guard lock(mu_);
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  if (!entry.mount->store) return make_error(ErrorKind::kNotFound, "no cache for {}", entry.mount->mountpoint);
  const auto& store = *entry.mount->store;
  const auto& m = store.metrics();
  std::string work_dir;
  uint32_t workers = 0;
  if (auto it = records_.find(entry.mount->mountpoint); it != records_.end()) {
    work_dir = it->second.config.storage.cache.work_dir;
    workers = it->second.config.storage.prefetch.threads;
  }
  uint64_t hits = m.cache_hits.load(), misses = m.cache_misses.load();
  return nlohmann::json{{"id", entry.mount->mountpoint},
                        {"underlying_files", store.cache_files()},
                        {"store_path", work_dir},
                        {"whole_hits", hits},
                        {"partial_hits", 0},
                        {"total", hits + misses},
                        {"digest_failures", m.digest_failures.load()},
                        {"prefetch_data_amount", m.prefetch_bytes.load()},
                        {"prefetch_requests_count", m.prefetch_chunks.load()},
                        {"prefetch_workers", workers}};
}

nlohmann::json Daemon::inflight() const { return session_->inflight(); }

}  // namespace nydus::daemon
