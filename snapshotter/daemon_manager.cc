#include "snapshotter/daemon_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/file_write.h"
#include "common/mount.h"
#include "snapshotter/daemon_config.h"
#include "snapshotter/supervisor.h"

namespace nydus::snapshotter {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// ---------------------------------------------------------------------------
// Helpers

namespace {

constexpr std::chrono::milliseconds kInitialBackoff{1};
constexpr std::chrono::milliseconds kMaxBackoff{50};
// One probe of a starting daemon; a healthy nydusd answers in microseconds.
constexpr std::chrono::milliseconds kProbeTimeout{2000};
// The settings entry of the last upgrade: {"configured", "path", "version"}.
constexpr std::string_view kUpgradedBinarySetting = "upgraded_nydusd";

Status mkdir_p(const std::string& dir, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error::from_errno(ec.value(), fmt::format("creating directory {}", dir));
  if (::chmod(dir.c_str(), mode) != 0) return Error::from_errno(errno, fmt::format("chmod {}", dir));
  return ok_status();
}

void remove_quietly(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) spdlog::warn("removing {}: {}", path, ec.message());
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, INT32_MAX));
}

// True once `pidfd` (or -1: never) is readable, waiting at most `timeout_ms`
// and also waking when `other_fd` (or -1) is readable.
bool wait_readable(int pidfd, int other_fd, int timeout_ms) {
  pollfd fds[2];
  nfds_t n = 0;
  int pid_index = -1;
  if (pidfd >= 0) {
    pid_index = static_cast<int>(n);
    fds[n++] = {pidfd, POLLIN, 0};
  }
  if (other_fd >= 0) fds[n++] = {other_fd, POLLIN, 0};
  if (n == 0) {
    ::poll(nullptr, 0, timeout_ms);
    return false;
  }
  int rc = ::poll(fds, n, timeout_ms);
  if (rc <= 0) return false;
  return pid_index >= 0 && (fds[pid_index].revents & POLLIN);
}

void drain(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof(buf)) > 0) {
  }
}

std::string describe_exit(std::optional<int> status) {
  if (!status) return "exited";
  if (*status == Process::kExitStatusUnknown) return "exited (status unknown: not our child)";
  if (*status < 0) return fmt::format("was killed by signal {}", -*status);
  return fmt::format("exited with status {}", *status);
}

// fscache: the instance's fscache id (the mount's fsid and the binding's
// id) lives in its annotations.
constexpr const char* kFscacheIdAnnotation = "fscache_id";

std::string fscache_id_of(const InstanceRecord& inst) {
  json j = json::parse(inst.annotations_json, nullptr, false);
  if (!j.is_object()) return {};
  auto it = j.find(kFscacheIdAnnotation);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void set_fscache_id(InstanceRecord& inst, const std::string& fscache_id) {
  json j = json::parse(inst.annotations_json, nullptr, false);
  if (!j.is_object()) j = json::object();
  j[kFscacheIdAnnotation] = fscache_id;
  inst.annotations_json = j.dump();
}

// mount -t erofs -o fsid=<id>: the kernel asks nydusd for the bootstrap
// before mount(2) returns.
Result<MountGuard> mount_erofs_fscache(const InstanceRecord& inst) {
  std::string fsid = fscache_id_of(inst);
  if (fsid.empty()) return make_error(ErrorKind::kInternal, "instance {} has no fscache id", inst.snapshot_id);
  NYDUS_TRY(mkdir_p(inst.mountpoint, 0755));
  auto guard = MountGuard::mount("nydus", inst.mountpoint, "erofs", MS_RDONLY, "fsid=" + fsid);
  if (!guard.ok()) {
    return std::move(guard).error().wrap(
        fmt::format("mount -t erofs -o fsid={} {} (image {})", fsid, inst.mountpoint, inst.image_id));
  }
  return guard;
}

std::string with_log(const std::string& message, const std::string& log_file) {
  std::string tail = log_tail(log_file);
  if (tail.empty()) return message;
  return fmt::format("{}; last lines of {}:\n{}", message, log_file, tail);
}

}  // namespace

std::string log_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  auto size = static_cast<size_t>(std::max<std::streamoff>(in.tellg(), 0));
  size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (start > 0) {
    size_t nl = text.find('\n');
    if (nl != std::string::npos && nl + 1 < text.size()) text = text.substr(nl + 1);
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

Result<DaemonInfo> wait_for_running(int pidfd, DaemonClient& client, const std::string& log_file,
                                    std::chrono::milliseconds timeout) {
  return wait_for_state(pidfd, client, log_file, kStateRunning, timeout);
}

Result<DaemonInfo> wait_for_state(int pidfd, DaemonClient& client, const std::string& log_file,
                                  std::string_view state, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  // The socket appears when nydusd binds it: an inotify event on its
  // directory wakes us at once instead of a polling interval.
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (inotify) {
    std::string dir = fs::path(client.api_socket()).parent_path().string();
    if (::inotify_add_watch(inotify.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_ATTRIB) < 0) inotify.reset();
  }
  auto backoff = kInitialBackoff;
  std::string last = "no answer yet";
  while (true) {
    if (wait_readable(pidfd, -1, 0)) {
      return make_error(ErrorKind::kIo, "{}",
                        with_log(fmt::format("nydusd ({}) exited before it served", client.api_socket()), log_file));
    }
    int left = remaining_ms(deadline);
    if (left == 0) {
      return make_error(ErrorKind::kTimeout, "{}",
                        with_log(fmt::format("nydusd ({}) not {} after {} ms: {}", client.api_socket(), state,
                                             timeout.count(), last),
                                 log_file));
    }
    auto info = client.get_info(std::min<std::chrono::milliseconds>(kProbeTimeout, std::chrono::milliseconds(left)));
    if (info.ok()) {
      if (info->state == state) return info;
      last = fmt::format("state {}", info->state);
    } else if (info.error().kind() == ErrorKind::kNotReady || info.error().kind() == ErrorKind::kTimeout) {
      // Not bound or not listening yet (or a slow probe): wait for the
      // socket to appear, the process to die, or the back-off.
      last = info.error().message();
    } else {
      return std::move(info).error();
    }
    int wait = std::min(remaining_ms(deadline), static_cast<int>(backoff.count()));
    wait_readable(pidfd, inotify ? inotify.get() : -1, wait);
    if (inotify) drain(inotify.get());
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// ---------------------------------------------------------------------------
// Per-key locks: one mutex per instance key, alive while someone holds or
// waits for it.

class DaemonManager::KeyedLocks {
 public:
  class Guard {
   public:
    Guard(KeyedLocks& owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { owner_.unlock(key_); }

   private:
    KeyedLocks& owner_;
    std::string key_;
  };

  std::unique_ptr<Guard> lock(const std::string& key) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return held_.count(key) == 0; });
    held_.insert(key);
    return std::make_unique<Guard>(*this, key);
  }

 private:
  void unlock(const std::string& key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_.erase(key);
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> held_;
};

// ---------------------------------------------------------------------------
// Construction, recovery

DaemonManager::DaemonManager(DaemonManagerOptions options, MetaStore& store, DaemonLauncher& launcher,
                             DaemonClientFactory& clients)
    : options_(std::move(options)),
      store_(store),
      launcher_(launcher),
      clients_(clients),
      instance_locks_(std::make_unique<KeyedLocks>()) {}

DaemonManager::~DaemonManager() {
  if (monitor_) monitor_->stop();
}

Result<std::unique_ptr<DaemonManager>> DaemonManager::open(DaemonManagerOptions options, MetaStore& store,
                                                           DaemonLauncher& launcher, DaemonClientFactory& clients) {
  if (options.mode == DaemonMode::kNone) {
    return make_error(ErrorKind::kInvalidArgument, "the daemon manager needs daemon_mode dedicated or shared");
  }
  std::unique_ptr<DaemonManager> m(new DaemonManager(std::move(options), store, launcher, clients));
  const auto& o = m->options_;
  for (const auto& [dir, mode] : std::vector<std::pair<std::string, mode_t>>{
           {o.root + "/config", 0700}, {o.root + "/socket", 0755}, {o.cache_dir, 0755}, {o.log_dir, 0755}}) {
    NYDUS_TRY(mkdir_p(dir, mode));
  }
  if (o.fs_driver == FsDriver::kFscache) {
    if (o.mode != DaemonMode::kShared) {
      return make_error(ErrorKind::kInvalidArgument, "fs_driver fscache needs daemon_mode shared");
    }
    if (o.fscache_dir.empty()) return make_error(ErrorKind::kInvalidArgument, "fs_driver fscache needs a cache dir");
    NYDUS_TRY(mkdir_p(o.fscache_dir, 0700));
  }
  auto version = launcher.version(o.nydusd_path);
  if (!version.ok()) return std::move(version).error().wrap("asking nydusd for its version");
  m->binary_version_ = version->display();
  m->nydusd_path_ = o.nydusd_path;
  m->restore_upgraded_binary();
  spdlog::info("daemon manager: nydusd {} ({}), daemon_mode {}, fs_driver {}", o.nydusd_path, m->binary_version_,
               to_string(o.mode), to_string(o.fs_driver));

  // Watch before recovering, so re-adopted daemons are watched as soon as
  // they are known.
  NYDUS_ASSIGN_OR_RETURN(m->monitor_,
                         LivenessMonitor::create([raw = m.get()](const LivenessEvent& e) { raw->on_liveness_event(e); }));
  NYDUS_TRY(m->recover());
  return m;
}

Status DaemonManager::recover() {
  std::vector<DaemonRecord> records;
  std::vector<InstanceRecord> instances;
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
    NYDUS_ASSIGN_OR_RETURN(records, store_.list_daemons(tx));
    NYDUS_ASSIGN_OR_RETURN(instances, store_.list_instances(tx));
  }
  std::map<std::string, std::vector<InstanceRecord>> by_daemon;
  for (auto& inst : instances) by_daemon[inst.daemon_id].push_back(inst);  // already in seq order
  // Sequential: a daemon either answers within kAdoptProbeTimeout or is
  // dead, and the gRPC socket opens only after this (the reference, #791).
  for (const auto& record : records) {
    auto st = recover_daemon(record, by_daemon[record.id]);
    if (!st.ok()) spdlog::error("recovering daemon {}: {}", record.id, st.error().message());
  }
  return ok_status();
}

Status DaemonManager::recover_daemon(const DaemonRecord& record, const std::vector<InstanceRecord>& instances) {
  if (record.daemon_mode != kModeShared && instances.empty()) {
    // A dedicated daemon always serves exactly one instance; without one it
    // is the leftover of a start or stop that was interrupted.
    reclaim_leftover(record);
    return ok_status();
  }
  auto daemon = std::make_shared<Daemon>(record, clients_.make(record.api_socket));
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  for (const auto& inst : instances) daemon->add_instance(inst.snapshot_id);
  if (options_.supervisors && !record.supervisor_path.empty()) {
    // A fresh, empty store entry at the same path: the daemon's next save
    // (asked for below once it is adopted) fills it again.
    auto added = options_.supervisors->add(record.id);
    if (!added.ok()) spdlog::error("nydusd {}: supervisor socket: {}", record.id, added.error().message());
  } else if (options_.supervisors) {
    spdlog::warn("nydusd {} was started without a supervisor (recover_policy was not failover); it cannot fail "
                 "over until it is restarted",
                 record.id);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    daemons_[record.id] = daemon;
    for (const auto& inst : instances) instances_[inst.snapshot_id] = inst;
    if (daemon->shared() && options_.mode == DaemonMode::kShared && shared_daemon_id_.empty() &&
        daemon->fscache() == (options_.fs_driver == FsDriver::kFscache)) {
      shared_daemon_id_ = record.id;
    }
  }
  if (try_adopt(*daemon) == Adoption::kLive) {
    spdlog::info("re-adopted nydusd {} (pid {}, {} instance(s), {})", record.id, daemon->pid(), instances.size(),
                 record.daemon_mode);
    return ok_status();
  }
  spdlog::warn("nydusd {} (pid {}) is not serving; restarting it (plain restart: containers on its old mount "
               "keep failing, new ones get the new mount)",
               record.id, record.pid);
  auto st = restart(*daemon, instances);
  if (!st.ok()) {
    daemon->set_state(kStateDied);
    auto p = persist(*daemon);
    if (!p.ok()) spdlog::warn("recording daemon {} as dead: {}", record.id, p.error().message());
    return st;
  }
  return ok_status();
}

DaemonManager::Adoption DaemonManager::try_adopt(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  if (r.pid <= 0) return Adoption::kDead;
  auto process = launcher_.adopt(static_cast<pid_t>(r.pid));
  if (!process.ok()) {
    spdlog::info("nydusd {}: pid {} is gone", r.id, r.pid);
    return Adoption::kDead;
  }
  // Identity: the pid must still be the nydusd serving this api socket. A
  // recycled pid belongs to somebody else and is never signalled.
  auto cmdline = launcher_.cmdline(static_cast<pid_t>(r.pid));
  if (!cmdline.ok() || !cmdline_serves_api_socket(*cmdline, r.api_socket)) {
    spdlog::warn("nydusd {}: pid {} is another process now (no --apisock {}); not touching it", r.id, r.pid,
                 r.api_socket);
    return Adoption::kDead;
  }
  daemon.set_process(std::move(process).value());
  if (options_.supervisors && !r.supervisor_path.empty()) options_.supervisors->set_owner(r.id, daemon.pid());
  auto info = daemon.client().get_info(kAdoptProbeTimeout);
  if (info.ok() && info->state != kStateRunning) {
    // Caught in the middle of its start (we died while waiting for it).
    info = wait_for_running(daemon.pidfd(), daemon.client(), r.log_file, options_.start_timeout);
  }
  if (!info.ok()) {
    spdlog::warn("nydusd {} (pid {}) is alive but does not serve its API: {}; killing it", r.id, r.pid,
                 info.error().message());
    stop_process(daemon);
    return Adoption::kDead;
  }
  daemon.set_state(kStateRunning);
  auto w = watch(daemon);
  if (!w.ok()) spdlog::warn("nydusd {}: {}", r.id, w.error().message());
  auto p = persist(daemon);
  if (!p.ok()) spdlog::warn("nydusd {}: {}", r.id, p.error().message());
  notify_running(daemon);
  return Adoption::kLive;
}

Status DaemonManager::restart(Daemon& daemon, const std::vector<InstanceRecord>& instances) {
  DaemonRecord r = daemon.record();
  monitor_->unwatch(r.id);
  // Vestiges (#142/#145/#148): a stale FUSE mount and api socket would make
  // nydusd believe it is taking over a live session.
  if (!r.mountpoint.empty() && is_mountpoint(r.mountpoint)) {
    auto st = unmount(r.mountpoint);
    if (!st.ok()) spdlog::warn("nydusd {}: unmounting stale {}: {}", r.id, r.mountpoint, st.error().message());
  }
  ::unlink(r.api_socket.c_str());
  NYDUS_TRY(mkdir_p(fs::path(r.api_socket).parent_path().string(), 0755));
  if (!r.log_file.empty()) NYDUS_TRY(mkdir_p(fs::path(r.log_file).parent_path().string(), 0755));
  std::optional<InstanceRecord> dedicated;
  if (!daemon.shared()) {
    dedicated = instances.front();
    if (!fs::exists(dedicated->bootstrap)) {
      return make_error(ErrorKind::kNotFound, "bootstrap {} of instance {} is gone", dedicated->bootstrap,
                        dedicated->snapshot_id);
    }
    NYDUS_TRY(mkdir_p(r.mountpoint, 0755));
  } else if (!r.mountpoint.empty()) {
    NYDUS_TRY(mkdir_p(r.mountpoint, 0755));
  }
  // The config file normally survives; write it again if it does not.
  if (!r.config_path.empty() && !fs::exists(r.config_path)) {
    NYDUS_TRY(mkdir_p(fs::path(r.config_path).parent_path().string(), 0700));
    json config = dedicated ? instance_config(options_.config_template, dedicated->snapshot_id, options_.cache_dir)
                            : options_.config_template;
    NYDUS_TRY(write_file_atomic(r.config_path, config.dump(2), 0600, Durability::kDurable));
  }
  daemon.set_state(kStateStarting);
  daemon.set_stopping(false);
  NYDUS_TRY(spawn_daemon(daemon, dedicated));
  auto ready = wait_until_running(daemon);
  if (!ready.ok()) {
    stop_process(daemon);
    return ready;
  }
  if (daemon.fscache()) {
    rebind_fscache_instances(daemon, instances);
  } else if (daemon.shared()) {
    // Re-attach every instance in the order they were first mounted.
    for (const auto& inst : instances) {
      json config = instance_config(options_.config_template, inst.snapshot_id, options_.cache_dir);
      auto st = daemon.client().mount("/" + inst.snapshot_id, inst.bootstrap, config.dump());
      if (!st.ok()) spdlog::error("nydusd {}: re-mounting instance {}: {}", r.id, inst.snapshot_id, st.error().message());
    }
  }
  NYDUS_TRY(watch(daemon));
  NYDUS_TRY(persist(daemon));
  spdlog::info("restarted nydusd {} as pid {}", r.id, daemon.pid());
  notify_running(daemon);
  return ok_status();
}

void DaemonManager::reclaim_leftover(const DaemonRecord& record) {
  spdlog::info("reclaiming nydusd {} (pid {}): it serves no instance", record.id, record.pid);
  Daemon daemon(record, clients_.make(record.api_socket));
  if (record.pid > 0) {
    auto process = launcher_.adopt(static_cast<pid_t>(record.pid));
    auto cmdline = launcher_.cmdline(static_cast<pid_t>(record.pid));
    if (process.ok() && cmdline.ok() && cmdline_serves_api_socket(*cmdline, record.api_socket)) {
      daemon.set_process(std::move(process).value());
      stop_process(daemon);
    }
  }
  if (!record.mountpoint.empty() && is_mountpoint(record.mountpoint)) {
    auto st = unmount(record.mountpoint);
    if (!st.ok()) spdlog::warn("unmounting {}: {}", record.mountpoint, st.error().message());
  }
  auto deleted = [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.delete_daemon(tx, record.id));
    return tx.commit();
  }();
  if (!deleted.ok()) spdlog::warn("deleting record of daemon {}: {}", record.id, deleted.error().message());
  if (options_.supervisors) options_.supervisors->remove(record.id);
  remove_daemon_files(record, true);
}

// ---------------------------------------------------------------------------
// Process control

Status DaemonManager::spawn_daemon(Daemon& daemon, const std::optional<InstanceRecord>& dedicated_instance) {
  // A (re)start runs the configured binary, which may differ from the one
  // recorded (the operator replaced it while the daemon was down).
  daemon.set_binary(nydusd_path(), binary_version());
  DaemonRecord r = daemon.record();
  DaemonLaunchSettings launch = options_.launch;
  launch.supervisor = r.supervisor_path;
  launch.upgrade = false;
  DaemonPaths paths = daemon_paths(options_.root, options_.log_dir, r.id);
  paths.api_socket = r.api_socket;
  paths.config_file = r.config_path;
  if (!r.log_file.empty()) paths.log_file = r.log_file;
  std::vector<std::string> args =
      daemon_args(command_for(r, paths, launch, dedicated_instance ? dedicated_instance->bootstrap : ""));
  spdlog::info("starting nydusd {}: {} {}", r.id, r.binary_path, fmt::join(args, " "));
  auto process = launcher_.spawn(r.binary_path, args, options_.launch.log_to_stdout ? "" : paths.log_file);
  if (!process.ok()) return std::move(process).error().wrap(fmt::format("starting nydusd {}", r.id));
  daemon.set_process(std::move(process).value());
  if (options_.supervisors && !r.supervisor_path.empty()) options_.supervisors->set_owner(r.id, daemon.pid());
  return persist(daemon);
}

Result<Process> DaemonManager::spawn_successor(Daemon& daemon, const std::string& binary,
                                               const std::string& api_socket) {
  DaemonRecord r = daemon.record();
  if (r.supervisor_path.empty()) {
    return make_error(ErrorKind::kFailedPrecondition, "nydusd {} has no supervisor: it cannot be taken over", r.id);
  }
  DaemonPaths paths = daemon_paths(options_.root, options_.log_dir, r.id);
  paths.api_socket = api_socket;
  paths.config_file = r.config_path;
  if (!r.log_file.empty()) paths.log_file = r.log_file;
  DaemonLaunchSettings launch = options_.launch;
  launch.supervisor = r.supervisor_path;
  launch.upgrade = true;
  // --upgrade: mount nothing, wait in INIT for the takeover. The bootstrap
  // and config come from the saved state, not the command line.
  std::vector<std::string> args = daemon_args(command_for(r, paths, launch, ""));
  ::unlink(api_socket.c_str());
  spdlog::info("starting successor of nydusd {}: {} {}", r.id, binary, fmt::join(args, " "));
  std::string output = options_.launch.log_to_stdout ? "" : paths.log_file;
  auto process = launcher_.spawn(binary, args, output);
  if (!process.ok()) return std::move(process).error().wrap(fmt::format("starting a successor of nydusd {}", r.id));
  return process;
}

DaemonCommand DaemonManager::command_for(const DaemonRecord& r, const DaemonPaths& paths,
                                        const DaemonLaunchSettings& launch, const std::string& bootstrap) const {
  if (r.fs_driver == kDriverFscache) return fscache_singleton_command(paths, r.id, options_.fscache_dir, launch);
  if (r.daemon_mode == kModeShared || launch.upgrade) return shared_fuse_command(paths, r.id, r.mountpoint, launch);
  return dedicated_fuse_command(paths, r.id, bootstrap, r.mountpoint, launch);
}

Status DaemonManager::request_save(Daemon& daemon) {
  SupervisorStore* sup = options_.supervisors;
  DaemonRecord r = daemon.record();
  if (!sup || r.supervisor_path.empty()) return ok_status();
  uint64_t before = sup->saves(r.id);
  // Right after RUNNING the kernel's FUSE INIT may still be on its way to the
  // workers: nydusd answers NotReady until it was negotiated (nothing to
  // save yet). Retry that with a short back-off, bounded by kSaveWait.
  const auto deadline = Clock::now() + SupervisorStore::kSaveWait;
  auto backoff = kInitialBackoff;
  while (true) {
    auto sent = daemon.client().send_fd();
    if (sent.ok()) break;
    if (sent.error().kind() != ErrorKind::kNotReady || remaining_ms(deadline) == 0) return sent;
    // A daemon that exited (its refused socket stays) never saves: do not
    // retry it until the deadline (its pidfd stays readable: a busy loop).
    if (wait_readable(daemon.pidfd(), -1, std::min(remaining_ms(deadline), static_cast<int>(backoff.count())))) {
      return make_error(ErrorKind::kIo, "nydusd {} exited before it saved", r.id);
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  if (!sup->wait_save(r.id, before, SupervisorStore::kSaveWait)) {
    return make_error(ErrorKind::kTimeout, "nydusd {}: its save did not reach the supervisor within {} ms", r.id,
                      SupervisorStore::kSaveWait.count());
  }
  return ok_status();
}

Status DaemonManager::restart_daemon(Daemon& daemon) {
  std::vector<InstanceRecord> mine;
  for (const auto& inst : instances()) {
    if (inst.daemon_id == daemon.id()) mine.push_back(inst);
  }
  if (!daemon.shared() && mine.empty()) {
    return make_error(ErrorKind::kNotFound, "nydusd {} serves no instance", daemon.id());
  }
  return restart(daemon, mine);
}

Result<std::vector<DaemonRecord>> DaemonManager::daemon_records() {
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
  return store_.list_daemons(tx);
}

std::string DaemonManager::binary_version() const {
  std::lock_guard<std::mutex> lock(binary_mu_);
  return binary_version_;
}

std::string DaemonManager::nydusd_path() const {
  std::lock_guard<std::mutex> lock(binary_mu_);
  return nydusd_path_;
}

void DaemonManager::set_nydusd_binary(std::string path, std::string version) {
  {
    std::lock_guard<std::mutex> lock(binary_mu_);
    nydusd_path_ = path;
    binary_version_ = version;
  }
  auto recorded = [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    if (path == options_.nydusd_path) {
      NYDUS_TRY(store_.delete_setting(tx, kUpgradedBinarySetting));
    } else {
      json j = {{"configured", options_.nydusd_path}, {"path", path}, {"version", version}};
      NYDUS_TRY(store_.put_setting(tx, kUpgradedBinarySetting, j.dump()));
    }
    return tx.commit();
  }();
  if (!recorded.ok()) {
    spdlog::warn("the upgrade to {} is not recorded: {} (after a snapshotter restart new daemons run {})", path,
                 recorded.error().message(), options_.nydusd_path);
  }
}

void DaemonManager::restore_upgraded_binary() {
  auto stored = [&]() -> Result<std::optional<std::string>> {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kRead));
    return store_.get_setting(tx, kUpgradedBinarySetting);
  }();
  if (!stored.ok()) {
    spdlog::warn("reading the recorded nydusd upgrade: {}", stored.error().message());
    return;
  }
  if (!*stored) return;
  json j = json::parse(**stored, nullptr, false);
  auto text = [&](const char* key) {
    auto it = j.is_object() ? j.find(key) : j.end();
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string configured = text("configured");
  const std::string path = text("path");
  if (configured != options_.nydusd_path || path.empty()) {
    // The operator changed nydusd_path since: the configuration wins.
    spdlog::info("nydusd_path is {} now ({} when nydusd was upgraded to {}): the configured binary is used",
                 options_.nydusd_path, configured, path);
    auto dropped = [&]() -> Status {
      NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
      NYDUS_TRY(store_.delete_setting(tx, kUpgradedBinarySetting));
      return tx.commit();
    }();
    if (!dropped.ok()) spdlog::warn("forgetting the recorded upgrade: {}", dropped.error().message());
    return;
  }
  auto version = launcher_.version(path);
  if (!version.ok()) {
    spdlog::warn("nydusd was upgraded to {}, which does not answer --version any more ({}); new daemons run the "
                 "configured {}",
                 path, version.error().message(), options_.nydusd_path);
    return;
  }
  nydusd_path_ = path;
  binary_version_ = version->display();
  spdlog::info("new daemons run {} ({}), the binary of the last upgrade (nydusd_path {} is unchanged since)", path,
               binary_version_, configured);
}

DaemonDeathHandler* DaemonManager::handler() const {
  std::lock_guard<std::mutex> lock(mu_);
  return death_handler_;
}

// After RUNNING: the supervisor gets a fresh state (the daemon reached INIT,
// so there is something to save), then the policy may prepare a standby.
void DaemonManager::notify_running(Daemon& daemon) {
  auto st = request_save(daemon);
  if (!st.ok()) {
    spdlog::warn("nydusd {}: saving its state to the supervisor: {} (a crash before the next save cannot fail over)",
                 daemon.id(), st.error().message());
  }
  if (auto* h = handler()) h->on_daemon_running(daemon);
}

Status DaemonManager::wait_until_running(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  auto info = wait_for_running(daemon.pidfd(), daemon.client(), r.log_file, options_.start_timeout);
  if (!info.ok()) return std::move(info).error().wrap(fmt::format("nydusd {} (pid {})", r.id, r.pid));
  daemon.set_state(kStateRunning);
  return ok_status();
}

Status DaemonManager::watch(Daemon& daemon) {
  int pidfd = daemon.pidfd();
  if (pidfd < 0) return make_error(ErrorKind::kFailedPrecondition, "daemon {} has no process to watch", daemon.id());
  auto conn = daemon.client().connect_watch();
  if (!conn.ok()) {
    // The pidfd alone still reports death; only a hung API goes unseen.
    spdlog::warn("nydusd {}: no API connection to watch: {}", daemon.id(), conn.error().message());
    return monitor_->watch(daemon.id(), pidfd, UniqueFd());
  }
  return monitor_->watch(daemon.id(), pidfd, std::move(conn).value());
}

Status DaemonManager::persist(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
  NYDUS_TRY(store_.update_daemon(tx, r));
  return tx.commit();
}

// SIGTERM (nydusd unmounts its FUSE mount and exits), reap, and make sure
// the mountpoint is gone; SIGKILL and a forced unmount when it does not go
// in time. The caller holds the daemon's operation mutex.
void DaemonManager::stop_process(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  daemon.set_stopping(true);
  monitor_->unwatch(r.id);
  if (daemon.has_process() && !daemon.try_wait()) {
    daemon.set_state(kStateStopping);
    auto st = daemon.kill(SIGTERM);
    if (st.ok()) {
      const auto deadline = Clock::now() + kDaemonStopTimeout;
      while (!daemon.try_wait() && remaining_ms(deadline) > 0) {
        wait_readable(daemon.pidfd(), -1, remaining_ms(deadline));
      }
      if (!daemon.try_wait()) {
        spdlog::warn("nydusd {} (pid {}) did not exit {} ms after SIGTERM; killing it", r.id, r.pid,
                     kDaemonStopTimeout.count());
        (void)daemon.kill(SIGKILL);
        const auto kill_deadline = Clock::now() + kDaemonKillTimeout;
        while (!daemon.try_wait() && remaining_ms(kill_deadline) > 0) {
          wait_readable(daemon.pidfd(), -1, remaining_ms(kill_deadline));
        }
      }
    }
  }
  // A daemon that was killed or died cannot unmount: do it for it (lazily if
  // a container still holds the dead mount).
  if (!r.mountpoint.empty() && is_mountpoint(r.mountpoint)) {
    auto st = unmount(r.mountpoint);
    if (!st.ok()) spdlog::warn("nydusd {}: unmounting {}: {}", r.id, r.mountpoint, st.error().message());
  }
  daemon.set_state(kStateDied);
}

void DaemonManager::abort_start(Daemon& daemon) {
  DaemonRecord r = daemon.record();
  stop_process(daemon);
  auto deleted = [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.delete_daemon(tx, r.id));
    return tx.commit();
  }();
  if (!deleted.ok()) spdlog::warn("deleting record of daemon {}: {}", r.id, deleted.error().message());
  if (options_.supervisors) options_.supervisors->remove(r.id);
  // The log stays: it explains the failure.
  remove_daemon_files(r, false);
  std::lock_guard<std::mutex> lock(mu_);
  daemons_.erase(r.id);
  if (shared_daemon_id_ == r.id) shared_daemon_id_.clear();
}

void DaemonManager::remove_daemon_files(const DaemonRecord& r, bool logs) {
  DaemonPaths paths = daemon_paths(options_.root, options_.log_dir, r.id);
  remove_quietly(paths.config_dir);
  remove_quietly(paths.socket_dir);
  if (logs) remove_quietly(paths.log_dir);
}

std::string DaemonManager::instance_config_path(const Daemon& daemon, const std::string& snapshot_id) const {
  return fmt::format("{}/config/{}/{}/config.json", options_.root, daemon.id(), snapshot_id);
}

std::string DaemonManager::shared_mountpoint() const { return options_.root + "/mnt"; }

// ---------------------------------------------------------------------------
// Mount and umount

Result<std::shared_ptr<Daemon>> DaemonManager::create_daemon(DaemonMode mode,
                                                             const std::optional<RafsMountRequest>& request,
                                                             const std::string& mountpoint) {
  DaemonRecord r;
  r.id = new_daemon_id();
  DaemonPaths paths = daemon_paths(options_.root, options_.log_dir, r.id);
  r.api_socket = paths.api_socket;
  r.mountpoint = mountpoint;
  r.daemon_mode = std::string(mode == DaemonMode::kShared ? kModeShared : kModeDedicated);
  r.fs_driver = std::string(options_.fs_driver == FsDriver::kFscache ? kDriverFscache : kDriverFusedev);
  r.state = std::string(kStateStarting);
  r.config_path = paths.config_file;
  r.log_file = options_.launch.log_to_stdout ? "" : paths.log_file;
  r.binary_path = nydusd_path();
  r.version = binary_version();
  if (options_.supervisors) {
    NYDUS_ASSIGN_OR_RETURN(r.supervisor_path, options_.supervisors->add(r.id));
  }

  NYDUS_TRY(mkdir_p(paths.config_dir, 0700));
  NYDUS_TRY(mkdir_p(paths.socket_dir, 0755));
  if (!options_.launch.log_to_stdout) NYDUS_TRY(mkdir_p(paths.log_dir, 0755));
  if (!mountpoint.empty()) NYDUS_TRY(mkdir_p(mountpoint, 0755));
  if (!mountpoint.empty() && is_mountpoint(mountpoint)) {
    // Left by a daemon that died with no record (a crash between spawn and
    // the record update): nydusd must find an empty directory.
    auto st = unmount(mountpoint);
    if (!st.ok()) return std::move(st).error().wrap("clearing a stale mount");
  }
  // Dedicated: the instance's full config. Shared: the template (the
  // reference dumps it too; instances get their own files).
  json config = request ? instance_config(options_.config_template, request->snapshot_id, options_.cache_dir)
                        : options_.config_template;
  NYDUS_TRY(write_file_atomic(paths.config_file, config.dump(2), 0600, Durability::kDurable));
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.insert_daemon(tx, r));
    NYDUS_TRY(tx.commit());
  }
  auto daemon = std::make_shared<Daemon>(r, clients_.make(r.api_socket));
  return daemon;
}

Result<std::string> DaemonManager::mount(const RafsMountRequest& request) {
  if (request.snapshot_id.empty() || request.bootstrap.empty()) {
    return make_error(ErrorKind::kInvalidArgument, "mount: snapshot id and bootstrap are required");
  }
  auto key_lock = instance_locks_->lock(request.snapshot_id);
  std::shared_ptr<Daemon> existing;
  std::string mountpoint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return make_error(ErrorKind::kNotReady, "the daemon manager is shutting down");
    auto it = instances_.find(request.snapshot_id);
    if (it != instances_.end()) {
      mountpoint = it->second.mountpoint;
      auto d = daemons_.find(it->second.daemon_id);
      if (d != daemons_.end()) existing = d->second;
    }
  }
  if (!mountpoint.empty()) {
    if (existing && existing->state() == kStateRunning) return mountpoint;
    return make_error(ErrorKind::kNotReady, "RAFS instance {} is served by nydusd {}, which is {}",
                      request.snapshot_id, existing ? existing->id() : "?",
                      existing ? existing->state() : std::string("gone"));
  }
  if (options_.mode != DaemonMode::kShared) return mount_dedicated(request);
  return options_.fs_driver == FsDriver::kFscache ? mount_fscache(request) : mount_shared(request);
}

Result<std::string> DaemonManager::mount_dedicated(const RafsMountRequest& request) {
  std::string mountpoint = fmt::format("{}/snapshots/{}/mnt", options_.root, request.snapshot_id);
  NYDUS_ASSIGN_OR_RETURN(auto daemon, create_daemon(DaemonMode::kDedicated, request, mountpoint));
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  {
    // Visible to observers (and to the death handler) from now on.
    std::lock_guard<std::mutex> lock(mu_);
    daemons_[daemon->id()] = daemon;
  }
  InstanceRecord inst;
  inst.snapshot_id = request.snapshot_id;
  inst.daemon_id = daemon->id();
  inst.image_id = request.image_id;
  inst.mountpoint = mountpoint;
  inst.bootstrap = request.bootstrap;
  auto started = [&]() -> Status {
    NYDUS_TRY(spawn_daemon(*daemon, inst));
    NYDUS_TRY(wait_until_running(*daemon));
    NYDUS_TRY(watch(*daemon));
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    DaemonRecord r = daemon->record();
    NYDUS_TRY(store_.update_daemon(tx, r));
    NYDUS_TRY(store_.insert_instance(tx, inst));
    return tx.commit();
  }();
  if (!started.ok()) {
    abort_start(*daemon);
    return std::move(started).error().wrap(fmt::format("serving image {} (snapshot {})", request.image_id,
                                                       request.snapshot_id));
  }
  daemon->add_instance(inst.snapshot_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    instances_[inst.snapshot_id] = inst;
  }
  spdlog::info("nydusd {} (pid {}) serves snapshot {} ({}) at {}", daemon->id(), daemon->pid(), inst.snapshot_id,
               inst.image_id, mountpoint);
  notify_running(*daemon);
  return mountpoint;
}

Result<std::shared_ptr<Daemon>> DaemonManager::ensure_shared_daemon() {
  std::lock_guard<std::mutex> shared(shared_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shared_daemon_id_.empty()) {
      auto it = daemons_.find(shared_daemon_id_);
      if (it != daemons_.end()) return it->second;
    }
  }
  // An fscache daemon has no mountpoint: the snapshotter mounts each image.
  std::string mountpoint = options_.fs_driver == FsDriver::kFscache ? std::string() : shared_mountpoint();
  NYDUS_ASSIGN_OR_RETURN(auto daemon, create_daemon(DaemonMode::kShared, std::nullopt, mountpoint));
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  {
    std::lock_guard<std::mutex> lock(mu_);
    daemons_[daemon->id()] = daemon;
    shared_daemon_id_ = daemon->id();
  }
  auto started = [&]() -> Status {
    NYDUS_TRY(spawn_daemon(*daemon, std::nullopt));
    NYDUS_TRY(wait_until_running(*daemon));
    NYDUS_TRY(watch(*daemon));
    return persist(*daemon);
  }();
  if (!started.ok()) {
    abort_start(*daemon);
    return std::move(started).error().wrap("starting the shared nydusd");
  }
  spdlog::info("shared nydusd {} (pid {}) serves {}", daemon->id(), daemon->pid(),
               mountpoint.empty() ? "fscache " + options_.fscache_dir : mountpoint);
  notify_running(*daemon);
  return daemon;
}

Result<std::string> DaemonManager::mount_shared(const RafsMountRequest& request) {
  NYDUS_ASSIGN_OR_RETURN(auto daemon, ensure_shared_daemon());
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  if (daemon->state() != kStateRunning) {
    return make_error(ErrorKind::kNotReady, "the shared nydusd {} is {}", daemon->id(), daemon->state());
  }
  InstanceRecord inst;
  inst.snapshot_id = request.snapshot_id;
  inst.daemon_id = daemon->id();
  inst.image_id = request.image_id;
  inst.mountpoint = shared_mountpoint() + "/" + request.snapshot_id;
  inst.bootstrap = request.bootstrap;
  std::string config_path = instance_config_path(*daemon, request.snapshot_id);
  json config = instance_config(options_.config_template, request.snapshot_id, options_.cache_dir);
  std::string vpath = "/" + request.snapshot_id;
  std::string config_dir = fs::path(config_path).parent_path().string();
  auto mounted = [&]() -> Status {
    NYDUS_TRY(mkdir_p(config_dir, 0700));
    NYDUS_TRY(write_file_atomic(config_path, config.dump(2), 0600, Durability::kDurable));
    return daemon->client().mount(vpath, request.bootstrap, config.dump());
  }();
  if (!mounted.ok()) {
    remove_quietly(config_dir);
    return std::move(mounted).error().wrap(fmt::format("serving image {} (snapshot {})", request.image_id,
                                                       request.snapshot_id));
  }
  auto recorded = [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.insert_instance(tx, inst));
    return tx.commit();
  }();
  if (!recorded.ok()) {
    auto undo = daemon->client().umount(vpath);
    if (!undo.ok()) spdlog::warn("undoing mount {}: {}", vpath, undo.error().message());
    remove_quietly(config_dir);
    return std::move(recorded).error();
  }
  daemon->add_instance(inst.snapshot_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    instances_[inst.snapshot_id] = inst;
  }
  spdlog::info("shared nydusd {} serves snapshot {} ({}) at {}", daemon->id(), inst.snapshot_id, inst.image_id,
               inst.mountpoint);
  // The supervisor's state must carry the new mount before a crash.
  if (auto st = request_save(*daemon); !st.ok()) {
    spdlog::warn("shared nydusd {}: saving after mounting {}: {}", daemon->id(), inst.snapshot_id,
                 st.error().message());
  }
  return inst.mountpoint;
}

Status DaemonManager::bind_fscache(Daemon& daemon, const InstanceRecord& inst) {
  json entry = fscache_blob_entry(options_.config_template, fscache_id_of(inst), inst.bootstrap, options_.cache_dir);
  NYDUS_TRY(daemon.client().bind_blob(entry));
  // The supervisor's state must carry the binding before the kernel relies
  // on it: a successor serves only what was saved.
  if (auto st = request_save(daemon); !st.ok()) {
    spdlog::warn("nydusd {}: saving after binding {}: {}", daemon.id(), inst.snapshot_id, st.error().message());
  }
  return ok_status();
}

Result<std::string> DaemonManager::mount_fscache(const RafsMountRequest& request) {
  NYDUS_ASSIGN_OR_RETURN(auto daemon, ensure_shared_daemon());
  InstanceRecord inst;
  inst.snapshot_id = request.snapshot_id;
  inst.daemon_id = daemon->id();
  inst.image_id = request.image_id;
  inst.mountpoint = fmt::format("{}/snapshots/{}/mnt", options_.root, request.snapshot_id);
  inst.bootstrap = request.bootstrap;
  set_fscache_id(inst, new_daemon_id());
  const std::string fsid = fscache_id_of(inst);
  auto failed = [&](Error e) {
    return std::move(e).wrap(fmt::format("serving image {} (snapshot {})", request.image_id, request.snapshot_id));
  };
  auto unbind = [&] {
    std::lock_guard<std::mutex> op(daemon->operation_mutex());
    if (daemon->state() != kStateRunning) return;
    if (auto st = daemon->client().unbind_blob(fsid, fsid); !st.ok()) {
      spdlog::warn("nydusd {}: undoing binding {}: {}", daemon->id(), fsid, st.error().message());
    }
  };
  {
    std::lock_guard<std::mutex> op(daemon->operation_mutex());
    if (daemon->state() != kStateRunning) {
      return make_error(ErrorKind::kNotReady, "the shared nydusd {} is {}", daemon->id(), daemon->state());
    }
    if (auto st = bind_fscache(*daemon, inst); !st.ok()) return failed(std::move(st).error());
  }
  // Without the operation mutex: mount(2) waits for nydusd to serve the
  // bootstrap, and a crash meanwhile must be failed over (the kernel
  // re-sends the OPEN after `restore`), which takes that mutex.
  auto guard = mount_erofs_fscache(inst);
  if (!guard.ok()) {
    unbind();
    return failed(std::move(guard).error());
  }
  auto recorded = [&]() -> Status {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.insert_instance(tx, inst));
    return tx.commit();
  }();
  if (!recorded.ok()) {
    (void)guard->unmount();
    unbind();
    return failed(std::move(recorded).error());
  }
  guard->dismiss();
  daemon->add_instance(inst.snapshot_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    instances_[inst.snapshot_id] = inst;
  }
  spdlog::info("fscache nydusd {} serves snapshot {} ({}) at {} (fsid {})", daemon->id(), inst.snapshot_id,
               inst.image_id, inst.mountpoint, fsid);
  return inst.mountpoint;
}

Status DaemonManager::umount_fscache(Daemon& daemon, const InstanceRecord& inst) {
  // The mount goes first: the binding must outlive every reader of it.
  // (Outside the operation mutex: unmounting only queues CLOSEs to nydusd.)
  if (auto st = unmount(inst.mountpoint); !st.ok()) return std::move(st).error().wrap("unmounting the image");
  std::lock_guard<std::mutex> op(daemon.operation_mutex());
  const std::string fsid = fscache_id_of(inst);
  if (daemon.state() == kStateRunning) {
    auto st = daemon.client().unbind_blob(fsid, fsid);
    // Not bound (any more) is what we want.
    if (!st.ok() && st.error().kind() != ErrorKind::kNotFound) return st;
  } else {
    spdlog::warn("fscache nydusd {} is {}; dropping instance {} without DELETE", daemon.id(), daemon.state(),
                 inst.snapshot_id);
  }
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.delete_instance(tx, inst.snapshot_id));
    NYDUS_TRY(tx.commit());
  }
  daemon.remove_instance(inst.snapshot_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    instances_.erase(inst.snapshot_id);
  }
  spdlog::info("fscache nydusd {} no longer serves snapshot {} (fsid {})", daemon.id(), inst.snapshot_id, fsid);
  if (daemon.state() == kStateRunning) {
    if (auto st = request_save(daemon); !st.ok()) {
      spdlog::warn("nydusd {}: saving after unbinding {}: {}", daemon.id(), inst.snapshot_id, st.error().message());
    }
  }
  return ok_status();
}

void DaemonManager::rebind_fscache_instances(Daemon& daemon, const std::vector<InstanceRecord>& instances) {
  for (const auto& old : instances) {
    if (is_mountpoint(old.mountpoint)) {
      // Dead with the old /dev/cachefiles fd; a container may still hold it.
      if (auto st = unmount(old.mountpoint); !st.ok()) {
        spdlog::warn("nydusd {}: unmounting the dead {}: {}", daemon.id(), old.mountpoint, st.error().message());
      }
    }
    InstanceRecord inst = old;
    set_fscache_id(inst, new_daemon_id());
    auto st = [&]() -> Status {
      NYDUS_TRY(bind_fscache(daemon, inst));
      NYDUS_ASSIGN_OR_RETURN(MountGuard guard, mount_while_watching(daemon, inst));
      NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
      NYDUS_TRY(store_.update_instance(tx, inst));
      NYDUS_TRY(tx.commit());
      guard.dismiss();
      return ok_status();
    }();
    if (!st.ok()) {
      spdlog::error("nydusd {}: re-mounting instance {}: {}", daemon.id(), inst.snapshot_id, st.error().message());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    instances_[inst.snapshot_id] = inst;
  }
}

Result<MountGuard> DaemonManager::mount_while_watching(Daemon& daemon, const InstanceRecord& inst) {
  // (Why: see the declaration.) The mounting thread signals `done` when
  // mount(2) returned; we poll it and the daemon's pidfd.
  UniqueFd done(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!done) return Error::from_errno(errno, "eventfd");
  std::optional<Result<MountGuard>> mounted;
  std::thread mounter([&] {
    mounted.emplace(mount_erofs_fscache(inst));
    const uint64_t one = 1;
    (void)::write(done.get(), &one, sizeof(one));
  });
  pollfd fds[2] = {{done.get(), POLLIN, 0}, {daemon.pidfd(), POLLIN, 0}};
  const nfds_t n = daemon.pidfd() >= 0 ? 2 : 1;
  while (true) {
    int rc = ::poll(fds, n, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      spdlog::warn("nydusd {}: poll while mounting {}: {}; waiting for the mount unwatched", daemon.id(),
                   inst.mountpoint, std::strerror(errno));
      break;
    }
    if (fds[0].revents != 0) break;  // mounted or failed on its own
    if (n == 2 && fds[1].revents != 0) {
      spdlog::error("nydusd {} (pid {}) exited while mount(2) of instance {} waited for it; letting go of its "
                    "/dev/cachefiles fd so that the mount fails instead of hanging",
                    daemon.id(), daemon.pid(), inst.snapshot_id);
      if (options_.supervisors) options_.supervisors->drop_fd(daemon.id());
      break;
    }
  }
  mounter.join();
  return std::move(*mounted);
}

Result<bool> DaemonManager::umount(const std::string& snapshot_id) {
  auto key_lock = instance_locks_->lock(snapshot_id);
  InstanceRecord inst;
  std::shared_ptr<Daemon> daemon;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(snapshot_id);
    if (it == instances_.end()) return false;
    inst = it->second;
    auto d = daemons_.find(inst.daemon_id);
    if (d != daemons_.end()) daemon = d->second;
  }
  if (!daemon) return make_error(ErrorKind::kInternal, "instance {}: daemon {} unknown", snapshot_id, inst.daemon_id);
  if (daemon->fscache()) {
    NYDUS_TRY(umount_fscache(*daemon, inst));
    return true;
  }
  std::lock_guard<std::mutex> op(daemon->operation_mutex());
  DaemonRecord r = daemon->record();

  if (daemon->shared()) {
    if (daemon->state() == kStateRunning) {
      auto st = daemon->client().umount("/" + snapshot_id);
      // Not mounted (any more) is what we want.
      if (!st.ok() && st.error().kind() != ErrorKind::kNotFound) return std::move(st).error();
    } else {
      spdlog::warn("shared nydusd {} is {}; dropping instance {} without DELETE", r.id, r.state, snapshot_id);
    }
    {
      NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
      NYDUS_TRY(store_.delete_instance(tx, snapshot_id));
      NYDUS_TRY(tx.commit());
    }
    remove_quietly(fs::path(instance_config_path(*daemon, snapshot_id)).parent_path().string());
    daemon->remove_instance(snapshot_id);
    std::lock_guard<std::mutex> lock(mu_);
    instances_.erase(snapshot_id);
    spdlog::info("shared nydusd {} no longer serves snapshot {}", r.id, snapshot_id);
    if (daemon->state() == kStateRunning) {
      if (auto st = request_save(*daemon); !st.ok()) {
        spdlog::warn("shared nydusd {}: saving after unmounting {}: {}", r.id, snapshot_id, st.error().message());
      }
    }
    return true;
  }

  // Dedicated: the process goes first, the records after (see the header).
  if (auto* h = handler()) h->on_daemon_stopping(*daemon);
  stop_process(*daemon);
  if (options_.supervisors) options_.supervisors->remove(r.id);
  {
    NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
    NYDUS_TRY(store_.delete_instance(tx, snapshot_id));
    NYDUS_TRY(store_.delete_daemon(tx, r.id));
    NYDUS_TRY(tx.commit());
  }
  remove_daemon_files(r, true);
  daemon->remove_instance(snapshot_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    instances_.erase(snapshot_id);
    daemons_.erase(r.id);
  }
  spdlog::info("nydusd {} (pid {}) stopped: snapshot {} released", r.id, r.pid, snapshot_id);
  return true;
}

// ---------------------------------------------------------------------------
// Queries

bool DaemonManager::has_instance(const std::string& snapshot_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return instances_.count(snapshot_id) > 0;
}

std::optional<InstanceRecord> DaemonManager::instance(const std::string& snapshot_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = instances_.find(snapshot_id);
  if (it == instances_.end()) return std::nullopt;
  return it->second;
}

std::vector<InstanceRecord> DaemonManager::instances() const {
  std::vector<InstanceRecord> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [_, inst] : instances_) out.push_back(inst);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

std::shared_ptr<Daemon> DaemonManager::daemon(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = daemons_.find(id);
  return it == daemons_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Daemon>> DaemonManager::daemons() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Daemon>> out;
  for (const auto& [_, d] : daemons_) out.push_back(d);
  return out;
}

std::shared_ptr<Daemon> DaemonManager::shared_daemon() const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = daemons_.find(shared_daemon_id_);
  return it == daemons_.end() ? nullptr : it->second;
}

void DaemonManager::set_death_handler(DaemonDeathHandler* handler) {
  std::lock_guard<std::mutex> lock(mu_);
  death_handler_ = handler;
}

// ---------------------------------------------------------------------------
// Liveness and shutdown

void DaemonManager::on_liveness_event(const LivenessEvent& event) {
  auto d = daemon(event.daemon_id);
  if (!d || d->stopping()) return;  // we are stopping it: its exit is expected
  DaemonRecord r = d->record();
  if (event.kind == LivenessEvent::Kind::kApiHangup) {
    // The process still runs (its pidfd stays watched): a crash of its API
    // server or a daemon on its way out. Not a death yet (#774).
    spdlog::warn("nydusd {} (pid {}): its API connection hung up; watching the process", r.id, r.pid);
    return;
  }
  std::optional<int> status = d->try_wait();  // reaps our child: no zombie
  d->set_state(kStateDied);
  spdlog::error("{}", with_log(fmt::format("nydusd {} (pid {}, {} instance(s)) {} unexpectedly", r.id, r.pid,
                                           d->refcount(), describe_exit(status)),
                               r.log_file));
  auto st = persist(*d);
  if (!st.ok()) spdlog::warn("recording the death of nydusd {}: {}", r.id, st.error().message());
  DaemonDeathHandler* handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handler = death_handler_;
  }
  if (handler) {
    handler->on_daemon_death(*d);
  } else {
    spdlog::warn("nydusd {}: no recovery policy is active; its mounts stay dead until their snapshots are "
                 "removed or the snapshotter restarts",
                 r.id);
  }
}

void DaemonManager::close(bool cleanup) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  if (cleanup) {
    for (const auto& inst : instances()) {
      auto st = umount(inst.snapshot_id);
      if (!st.ok()) spdlog::warn("cleanup_on_close: unmounting {}: {}", inst.snapshot_id, st.error().message());
    }
  }
  // The reference's TryStopSharedDaemon: an idle shared daemon serves no
  // container, so stopping it is invisible.
  if (auto shared = shared_daemon(); shared && shared->refcount() == 0) {
    std::lock_guard<std::mutex> op(shared->operation_mutex());
    DaemonRecord r = shared->record();
    if (auto* h = handler()) h->on_daemon_stopping(*shared);
    stop_process(*shared);
    if (options_.supervisors) options_.supervisors->remove(r.id);
    auto deleted = [&]() -> Status {
      NYDUS_ASSIGN_OR_RETURN(Transaction tx, store_.begin(Transaction::Mode::kWrite));
      NYDUS_TRY(store_.delete_daemon(tx, r.id));
      return tx.commit();
    }();
    if (!deleted.ok()) spdlog::warn("deleting record of daemon {}: {}", r.id, deleted.error().message());
    remove_daemon_files(r, true);
    std::lock_guard<std::mutex> lock(mu_);
    daemons_.erase(r.id);
    shared_daemon_id_.clear();
  }
  if (monitor_) monitor_->stop();
  spdlog::info("daemon manager closed; {} nydusd daemon(s) keep running", daemons().size());
}

}  // namespace nydus::snapshotter
