#include "nydusd/daemon/daemon.h"

#include <algorithm>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
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

// The fscache read-delay test hook (kFscacheReadDelayEnv): a data blob whose
// every READ first sleeps, so tests can act while READs are in flight.
class DelayedSource final : public fscache::ObjectSource {
 public:
  DelayedSource(std::shared_ptr<fscache::ObjectSource> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  uint64_t size() const override { return inner_->size(); }
  Status read(uint64_t offset, std::span<uint8_t> out) override {
    std::this_thread::sleep_for(delay_);
    return inner_->read(offset, out);
  }
  std::string describe() const override { return inner_->describe() + " (test read delay)"; }

 private:
  std::shared_ptr<fscache::ObjectSource> inner_;
  std::chrono::milliseconds delay_;
};

fscache::DataBlobFactory data_blob_factory() {
  fscache::DataBlobFactory factory = fscache::default_data_blob_factory();
  const char* env = std::getenv(kFscacheReadDelayEnv);
  if (!env || !*env) return factory;
  char* end = nullptr;
  unsigned long ms = std::strtoul(env, &end, 10);
  if (*end != '\0' || ms == 0 || ms > 60000) {
    spdlog::warn("ignoring {}={}: not a delay in 1..60000 ms", kFscacheReadDelayEnv, env);
    return factory;
  }
  spdlog::warn("TEST HOOK: every fscache data READ is delayed by {} ms ({})", ms, kFscacheReadDelayEnv);
  return [inner = std::move(factory), delay = std::chrono::milliseconds(ms)](
             const fscache::BlobEntry& e, std::shared_ptr<const rafs::Bootstrap> b,
             const rafs::BlobInfo& bi) -> Result<std::shared_ptr<fscache::ObjectSource>> {
    NYDUS_ASSIGN_OR_RETURN(auto src, inner(e, std::move(b), bi));
    return std::shared_ptr<fscache::ObjectSource>(std::make_shared<DelayedSource>(std::move(src), delay));
  };
}

// The fscache open-delay test hook (kFscacheOpenDelayFileEnv); empty when
// unset.
std::function<void()> open_delay_hook() {
  const char* env = std::getenv(kFscacheOpenDelayFileEnv);
  if (!env || !*env) return {};
  spdlog::warn("TEST HOOK: while {} holds a delay in ms, every fscache OPEN waits for it ({})", env,
               kFscacheOpenDelayFileEnv);
  return [path = std::string(env)] {
    std::ifstream in(path);
    unsigned long ms = 0;
    if (!(in >> ms) || ms == 0) return;
    ms = std::min(ms, 60000UL);
    spdlog::warn("TEST HOOK: answering an fscache OPEN in {} ms ({})", ms, path);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  };
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
  // Workers first, then the service (and its anon fds), then the registry
  // the workers read.
  if (fscache_) fscache_->stop();
  fscache_.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::create(DaemonOptions options) {
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(options)));
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::from_errno(errno, "eventfd");
  daemon->exit_fd_.reset(efd);
  daemon->vfs_ = std::make_unique<fuse::Vfs>();
  if (daemon->singleton()) {
    daemon->registry_ = std::make_unique<fscache::BlobRegistry>(data_blob_factory());
    daemon->fscache_dir_ = daemon->options_.fscache.dir;
    daemon->fscache_tag_ = daemon->options_.fscache.tag;
    daemon->fscache_threads_ = daemon->options_.fscache.threads;
    return daemon;
  }
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
  if (!session_) return std::nullopt;
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
  if (singleton()) {
    switch (action) {
      case DaemonAction::kNone:
        return ok_status();
      case DaemonAction::kMount:
        return fscache_mount_locked();
      case DaemonAction::kRestore:
        return action_restore_locked();
      case DaemonAction::kStartService:
        return fscache_start_locked();
      case DaemonAction::kStopService:
      case DaemonAction::kUmount:
        // Between requests; the device stays open (and bound) until the
        // process ends, and the supervisor's dup keeps the mounts alive.
        if (fscache_) fscache_->stop();
        return ok_status();
    }
    return make_error(ErrorKind::kInternal, "unknown action");
  }
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
  mount->stats = std::make_shared<fuse::FsIoStats>(path, config->accounting);

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
  if (singleton()) {
    return make_error(ErrorKind::kUnsupported, "singleton (fscache) mode has no FUSE mounts: use /api/v2/blobs");
  }
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
  if (singleton()) {
    return make_error(ErrorKind::kUnsupported, "singleton (fscache) mode has no FUSE mounts: use /api/v2/blobs");
  }
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
  if (!session_ || !session_->running()) return;
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
  if (singleton()) {
    return make_error(ErrorKind::kUnsupported, "singleton (fscache) mode has no FUSE mounts: use /api/v2/blobs");
  }
  std::lock_guard lock(mu_);
  NYDUS_ASSIGN_OR_RETURN(std::string path, fuse::normalize_vfs_path(mountpoint));
  auto entry = vfs_->find_mount(path);
  if (!entry) return make_error(ErrorKind::kNotFound, "{} is not mounted", path);
  invalidate_locked(*entry);
  NYDUS_ASSIGN_OR_RETURN(auto removed, vfs_->umount(path));
  if (removed.mount->store) removed.mount->store->stop_prefetch();
  // The empty pseudo directories went with it: drop the kernel's entries
  // for them, or a cached lookup would keep showing the path.
  if (session_->running()) {
    for (const auto& [parent, name] : removed.removed_dirs) (void)session_->notify_inval_entry(parent, name);
  }
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
  if (singleton()) return save_singleton_locked();
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
  if (!options_.supervisor) return;
  if (singleton() ? !fscache_ : (!session_->attached() || !session_->init_state())) return;
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
  if (singleton()) return fscache_restore_locked();
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
  if (state.mode != "fuse") {
    return make_error(ErrorKind::kFailedPrecondition,
                      "the saved state is of a {} mode daemon; this one serves FUSE", state.mode);
  }
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
// Singleton (fscache) mode

Status Daemon::fscache_mount_locked() {
  if (fscache_) return make_error(ErrorKind::kFailedPrecondition, "the fscache session is already bound");
  if (fscache_dir_.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "singleton mode needs --fscache DIR to bind a cache");
  }
  // Entries first: a bad --config fails startup before the kernel is touched.
  // An entry bound already (through the API while in INIT) is kept.
  for (const auto& e : options_.fscache.preload) {
    if (Status st = registry_->bind(e); !st.ok() && st.error().kind() != ErrorKind::kAlreadyExists) {
      return std::move(st).error().wrap(fmt::format("--config blob {} (domain \"{}\")", e.id, e.domain_id));
    }
  }
  NYDUS_ASSIGN_OR_RETURN(auto device, fscache::CachefilesDevice::open_and_bind(fscache_dir_, fscache_tag_));
  NYDUS_ASSIGN_OR_RETURN(fscache_, fscache::FscacheService::create(std::move(device), registry_.get(),
                                                                   fscache_threads_));
  std::error_code ec;
  if (auto canonical = std::filesystem::canonical(fscache_dir_, ec); !ec) fscache_dir_ = canonical.string();
  spdlog::info("fscache: bound the cachefiles cache in {} (tag \"{}\") with {} preloaded bootstrap(s)",
               fscache_dir_, fscache_tag_, registry_->bootstrap_count());
  return ok_status();
}

Status Daemon::fscache_restore_locked() {
  if (fscache_) return make_error(ErrorKind::kFailedPrecondition, "an fscache session is already attached");
  auto started = std::chrono::steady_clock::now();
  auto message = connect_and_receive_message(*options_.supervisor, kSupervisorReceiveTimeout, kMaxStateBytes, 16);
  if (!message.ok()) return std::move(message).error().wrap("receive the state from " + *options_.supervisor);
  if (message->fds.empty()) {
    return make_error(ErrorKind::kCorrupt, "the supervisor sent {} bytes of state but no /dev/cachefiles fd",
                      message->bytes.size());
  }
  if (message->fds.size() > 1) spdlog::warn("the supervisor sent {} fds; using the first", message->fds.size());
  NYDUS_ASSIGN_OR_RETURN(SavedState state, decode_state(message->bytes));
  if (state.mode != "singleton") {
    return make_error(ErrorKind::kFailedPrecondition,
                      "the saved state is of a {} mode daemon; this one is singleton (fscache)", state.mode);
  }
  spdlog::info("restoring fscache state format {}.{} written by {} (id {}, dir {}, {} blob entries)",
               state.format_major, state.format_minor, state.writer_version, state.daemon_id,
               state.fscache.cache_dir, state.fscache.blobs.size());
  if (options_.id && !state.daemon_id.empty() && state.daemon_id != *options_.id) {
    spdlog::warn("the saved state belongs to daemon {}, this is {}", state.daemon_id, *options_.id);
  }
  if (!options_.fscache.dir.empty() && !state.fscache.cache_dir.empty()) {
    std::error_code ec;
    if (std::filesystem::canonical(options_.fscache.dir, ec).string() != state.fscache.cache_dir) {
      spdlog::warn("--fscache {} differs from the adopted session's dir {}; serving the adopted one",
                   options_.fscache.dir, state.fscache.cache_dir);
    }
  }
  // Every saved entry must be served again: the kernel re-OPENs what it had
  // open and a refused re-OPEN is retried by it at once, forever, while the
  // readers wait (facts §4.2). So a failed entry fails the takeover (the
  // state stays INIT, the supervisor keeps the fd: retryable), and nothing
  // bound here is kept.
  std::vector<std::pair<std::string, std::string>> bound;
  auto undo = [&] {
    for (auto it = bound.rbegin(); it != bound.rend(); ++it) (void)registry_->unbind(it->first, it->second);
  };
  for (const auto& saved : state.fscache.blobs) {
    auto parsed = nlohmann::json::parse(saved.json, nullptr, false);
    auto entry = parsed.is_discarded()
                     ? Result<fscache::BlobEntry>(make_error(ErrorKind::kCorrupt, "not JSON"))
                     : fscache::blob_entry_from_json(parsed);
    Status st = entry.ok() ? registry_->bind(*entry) : Status(entry.error());
    if (st.ok()) {
      bound.emplace_back(entry->domain_id, entry->id);
    } else if (st.error().kind() != ErrorKind::kAlreadyExists) {
      undo();
      return std::move(st).error().wrap(
          fmt::format("restore fscache blob {} of domain \"{}\"", saved.blob_id, saved.domain_id));
    }
  }
  // The successor's own --config entries too (usually the same ones).
  for (const auto& e : options_.fscache.preload) {
    if (Status st = registry_->bind(e); st.ok()) {
      bound.emplace_back(e.domain_id, e.id);
    } else if (st.error().kind() != ErrorKind::kAlreadyExists) {
      undo();
      return std::move(st).error().wrap(fmt::format("--config blob {} (domain \"{}\")", e.id, e.domain_id));
    }
  }
  auto device = fscache::CachefilesDevice::adopt(std::move(message->fds.front()));
  if (!device.ok()) {
    undo();
    return std::move(device).error().wrap("adopt the /dev/cachefiles fd");
  }
  const unsigned threads = options_.fscache.dir.empty() && state.fscache.threads >= 1 &&
                                   state.fscache.threads <= fscache::kMaxThreads
                               ? state.fscache.threads
                               : options_.fscache.threads;
  auto service = fscache::FscacheService::create(std::move(*device), registry_.get(), threads);
  if (!service.ok()) {
    undo();
    return std::move(service).error();
  }
  fscache_ = std::move(*service);
  fscache_dir_ = state.fscache.cache_dir;
  fscache_tag_ = state.fscache.tag;
  fscache_threads_ = threads;
  restore_pending_ = true;
  takeovers_.fetch_add(1);
  auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  last_restore_duration_ms_ = elapsed.count();
  spdlog::info("took over the cachefiles session of {} with {} bootstrap(s) in {} ms; `restore` is written at Start",
               fscache_dir_, registry_->bootstrap_count(), elapsed.count());
  return ok_status();
}

Status Daemon::fscache_start_locked() {
  if (!fscache_) return make_error(ErrorKind::kFailedPrecondition, "no fscache session to serve");
  if (restore_pending_) {
    // The predecessor has exited by now (failover: it died; hot upgrade: the
    // supervisor starts us only after it exited), so its anon fds are closed:
    // `restore` makes the kernel deliver again what it had read and never
    // completed, and re-OPEN its objects to us (facts §4, §7.4).
    NYDUS_TRY(fscache_->restore());
    spdlog::info("fscache: wrote `restore`: requests the predecessor held are delivered again");
  }
  fscache_->handler().set_before_open(open_delay_hook());
  NYDUS_TRY(fscache_->start());
  restore_pending_ = false;
  // The supervisor must hold a reference to the device from now on (facts
  // §7.1); a failure is logged: serving matters more than the copy.
  if (options_.supervisor) {
    if (auto st = save_singleton_locked(); !st.ok()) {
      spdlog::warn("saving the fscache state to the supervisor failed (serving anyway): {}", st.error().message());
    }
  }
  return ok_status();
}

Status Daemon::save_singleton_locked() {
  if (!fscache_) return make_error(ErrorKind::kNotReady, "the fscache session is not bound yet: nothing to save");
  SavedState state;
  state.mode = "singleton";
  state.writer_version = fmt::format("{} ({})", build_info().package_ver, build_info().git_commit);
  state.daemon_id = options_.id.value_or("");
  state.fscache.cache_dir = fscache_dir_;
  state.fscache.tag = fscache_tag_;
  state.fscache.threads = fscache_threads_;
  for (const auto& e : registry_->list()) state.fscache.blobs.push_back({e.domain_id, e.id, e.json.dump()});
  std::vector<uint8_t> bytes = encode_state(state);
  NYDUS_ASSIGN_OR_RETURN(UniqueFd dup, fscache_->device().dup_fd());
  int fds[] = {dup.get()};
  auto status = connect_and_send_message(*options_.supervisor, bytes, fds, kSupervisorSendTimeout);
  if (!status.ok()) return std::move(status).error().wrap("save to supervisor " + *options_.supervisor);
  saves_.fetch_add(1);
  spdlog::info("saved fscache state ({} bytes, {} blob entries) and the /dev/cachefiles fd to {}", bytes.size(),
               state.fscache.blobs.size(), *options_.supervisor);
  return ok_status();
}

Status Daemon::bind_blob(const fscache::BlobEntry& entry) {
  if (!singleton()) return make_error(ErrorKind::kUnsupported, "/api/v2/blobs serves singleton (fscache) mode only");
  if (state_.load() == DaemonState::kStopped) return make_error(ErrorKind::kFailedPrecondition, "the daemon is stopped");
  // The registry does the I/O under its own lock; mu_ is only for the save.
  NYDUS_TRY(registry_->bind(entry));
  spdlog::info("fscache: bound bootstrap {} in domain {}", entry.id, entry.effective_domain());
  std::lock_guard lock(mu_);
  resave_after_mount_change_locked();
  return ok_status();
}

Status Daemon::unbind_blob(std::string_view domain_id, std::optional<std::string_view> blob_id) {
  if (!singleton()) return make_error(ErrorKind::kUnsupported, "/api/v2/blobs serves singleton (fscache) mode only");
  NYDUS_TRY(registry_->unbind(domain_id, blob_id));
  spdlog::info("fscache: unbound {} of domain {}", blob_id ? std::string(*blob_id) : "everything", domain_id);
  std::lock_guard lock(mu_);
  resave_after_mount_change_locked();
  return ok_status();
}

Result<nlohmann::json> Daemon::list_blobs(const std::optional<std::string>& domain_id) const {
  if (!singleton()) return make_error(ErrorKind::kUnsupported, "/api/v2/blobs serves singleton (fscache) mode only");
  auto entries = domain_id ? registry_->list(*domain_id) : registry_->list();
  nlohmann::json blobs = nlohmann::json::array();
  for (const auto& e : entries) blobs.push_back(e.json);
  return nlohmann::json{{"blobs", std::move(blobs)}};
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
  info["saves"] = saves_.load();
  if (singleton()) {
    info["mode"] = "singleton";
    std::lock_guard lock(mu_);
    info["fscache"] = {{"dir", fscache_dir_},
                       {"tag", fscache_tag_},
                       {"threads", fscache_threads_},
                       {"bootstraps", registry_->bootstrap_count()},
                       {"data_blobs", registry_->data_blob_count()},
                       {"objects", fscache_ ? fscache_->handler().object_count() : 0},
                       {"metrics", fscache_ ? fscache::metrics_json(fscache_->handler().metrics())
                                            : nlohmann::json(nullptr)}};
    info["backend_collection"] = v2 ? nlohmann::json(nullptr) : nlohmann::json::object();
    return info;
  }
  info["mode"] = "fuse";
  info["requests_resent"] = session_->resent_requests() - resent_at_takeover_base_.load();
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

Result<nlohmann::json> Daemon::file_metrics(const std::optional<std::string>& id, bool latest) const {
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  auto files = entry.mount->stats->files_json(latest);
  if (!files) {
    return make_error(ErrorKind::kFailedPrecondition, "{} is off for {}: enable it in the mount's config",
                      latest ? "latest_read_files" : "iostats_files", entry.mount->mountpoint);
  }
  return *files;
}

Result<nlohmann::json> Daemon::access_patterns(const std::optional<std::string>& id) const {
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  auto pattern = entry.mount->stats->pattern_json();
  if (!pattern) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "access_pattern is off for {}: enable it in the mount's config", entry.mount->mountpoint);
  }
  return *pattern;
}

namespace {
constexpr const char* kHotConfigKeys[] = {"registry_auth", "proxy_url", "dragonfly_scheduler_endpoint"};
}  // namespace

Result<nlohmann::json> Daemon::hot_config(const std::string& id) const {
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::object();
  if (auto it = hot_config_.find(entry.mount->mountpoint); it != hot_config_.end()) {
    for (const auto& [key, value] : it->second) out[key] = value;
  }
  return out;
}

Status Daemon::set_hot_config(const std::string& id, const nlohmann::json& body) {
  if (!body.is_object() || body.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "config body must be a non-empty JSON object");
  }
  for (const auto& [key, value] : body.items()) {
    if (std::find(std::begin(kHotConfigKeys), std::end(kHotConfigKeys), key) == std::end(kHotConfigKeys)) {
      return make_error(ErrorKind::kInvalidArgument,
                        "\"{}\" is not hot-reloadable (registry_auth, proxy_url, dragonfly_scheduler_endpoint)",
                        key);
    }
    if (!value.is_string()) return make_error(ErrorKind::kInvalidArgument, "\"{}\" must be a string", key);
  }
  NYDUS_ASSIGN_OR_RETURN(auto entry, find_entry(id));
  std::lock_guard lock(mu_);
  auto& keys = hot_config_[entry.mount->mountpoint];
  for (const auto& [key, value] : body.items()) keys[key] = value.get<std::string>();
  return ok_status();
}

nlohmann::json Daemon::inflight() const {
  return session_ ? session_->inflight() : nlohmann::json::array();
}

}  // namespace nydus::daemon
