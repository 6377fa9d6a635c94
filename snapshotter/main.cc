// containerd-nydus-grpc: the containerd proxy snapshotter for nydus images.
//
// Start-up: flags and config (config.h), root created 0700 and
// canonicalized, logging, an exclusive lock on <root>/snapshotter.lock (one
// process per root), the SQLite store, the Snapshotter core, then the gRPC
// snapshots service on the unix socket `address`. The socket is created
// last, so containerd only connects to a snapshotter that is ready. A stale
// socket file is removed first, but never one a live process still
// accepts on.
//
// Between the store and the gRPC socket, the nydusd daemon manager opens and
// re-adopts (or restarts) the daemons recorded by a previous process, so
// containerd only reaches a snapshotter whose nydus mounts are served.
//
// Signals: the first SIGINT or SIGTERM stops accepting, lets running calls
// finish for at most kShutdownGrace, removes the socket and exits 0; a second
// one exits 1 at once. nydusd daemons are never stopped by a snapshotter exit
// (KillMode=process semantics: they run detached in their own sessions and
// are re-adopted by the next snapshotter), except an idle shared daemon, and
// all of them with cleanup_on_close.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "common/unique_fd.h"
#include "common/version.h"
#include "snapshotter/config.h"
#include "snapshotter/daemon_config.h"
#include "snapshotter/daemon_manager.h"
#include "snapshotter/fs_util.h"
#include "snapshotter/nydus_mounter.h"
#include "snapshotter/recovery.h"
#include "snapshotter/snapshots_service.h"
#include "snapshotter/snapshotter.h"
#include "snapshotter/store.h"
#include "snapshotter/supervisor.h"
#include "snapshotter/system_api.h"

namespace nydus::snapshotter {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kShutdownGrace{10};
constexpr const char* kProgram = "containerd-nydus-grpc";
constexpr const char* kLogFileName = "nydus-snapshotter.log";

Status mkdir_all(const fs::path& dir, mode_t mode) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return ok_status();
  if (dir.has_parent_path() && dir.parent_path() != dir) NYDUS_TRY(mkdir_all(dir.parent_path(), mode));
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return Error::from_errno(errno, fmt::format("creating directory {}", dir.string()));
  }
  return ok_status();
}

// The reference's SetUpEnvironment: mkdir -p root 0700, then use its
// canonical path (symlinks resolved), which must still pass validation.
Status set_up_root(Config& config) {
  NYDUS_TRY(mkdir_all(config.root, 0700));
  std::error_code ec;
  fs::path canonical = fs::canonical(config.root, ec);
  if (ec) return Error::from_errno(ec.value(), fmt::format("resolving root {}", config.root));
  if (canonical.string() != config.root) {
    config.notes.push_back(fmt::format("root {} resolves to {}", config.root, canonical.string()));
    config.root = canonical.string();
    NYDUS_TRY(validate_config(config));
  }
  return ok_status();
}

// Holds an exclusive flock on <root>/snapshotter.lock for the process's life.
Result<UniqueFd> lock_root(const std::string& root) {
  std::string path = root + "/snapshotter.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Error::from_errno(errno, fmt::format("opening {}", path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return make_error(ErrorKind::kAlreadyExists, "another {} is running with root {} (it holds {})", kProgram,
                        root, path);
    }
    return Error::from_errno(errno, fmt::format("locking {}", path));
  }
  return fd;
}

// Removes a socket file left by a dead process. Refuses to touch a socket a
// live process accepts on, or anything that is not a socket.
Status remove_stale_socket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return ok_status();
    return Error::from_errno(errno, fmt::format("stat {}", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return make_error(ErrorKind::kAlreadyExists, "address {} exists and is not a socket; refusing to replace it",
                      path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return make_error(ErrorKind::kAlreadyExists, "address {} is in use: another process accepts on it", path);
  }
  spdlog::info("removing stale socket {}", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::from_errno(errno, fmt::format("removing stale socket {}", path));
  }
  return ok_status();
}

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::string_view rest(path);
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

void print_version() {
  const auto& b = build_info();
  std::printf("%s\nVersion:    %s\nRevision:   %s\nCompiler:   %s\n", kProgram, b.version.c_str(),
              b.git_commit.c_str(), b.compiler.c_str());
}

int run(const CommandLine& cmd) {
  auto loaded = load_config(cmd.flags);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s: invalid configuration: %s\n", kProgram, loaded.error().message().c_str());
    return 2;
  }
  Config config = std::move(loaded).value();
  if (auto st = set_up_root(config); !st.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, st.error().message().c_str());
    return 1;
  }

  auto level = parse_log_level(config.log.level);  // validated already
  std::optional<std::string> log_file;
  if (!config.log.log_to_stdout) {
    if (auto st = mkdir_all(config.log_dir(), 0755); !st.ok()) {
      std::fprintf(stderr, "%s: %s\n", kProgram, st.error().message().c_str());
      return 1;
    }
    log_file = config.log_dir() + "/" + kLogFileName;
  }
  if (auto st = init_logging(kProgram, *level, log_file); !st.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, st.error().message().c_str());
    return 1;
  }
  spdlog::info("{} {} ({}) starting: root {}, address {}, daemon_mode {}, fs_driver {}, recover_policy {}",
               kProgram, build_info().version, build_info().git_commit, config.root, config.address,
               to_string(config.daemon_mode), to_string(config.daemon.fs_driver),
               to_string(config.daemon.recover_policy));
  for (const auto& note : config.notes) spdlog::warn("config: {}", note);

  auto fail = [](const Error& e) {
    spdlog::critical("{}", e.message());
    std::fprintf(stderr, "%s: %s\n", kProgram, e.message().c_str());
    return 1;
  };

  auto lock = lock_root(config.root);
  if (!lock.ok()) return fail(lock.error());

  if (config.daemon.nydusd_path.empty()) config.daemon.nydusd_path = find_in_path("nydusd");
  if (config.daemon.nydusd_path.empty()) {
    spdlog::info("no nydusd binary configured or in $PATH; only plain (OCI) layers can be served");
  }

  auto store = MetaStore::open(config.database_path());
  if (!store.ok()) return fail(store.error());

  ProcessLauncher launcher;
  HttpDaemonClientFactory clients;
  // Declared in dependency order: destroyed in reverse (system API, recovery,
  // manager, supervisors).
  std::unique_ptr<SupervisorStore> supervisors;
  std::unique_ptr<DaemonManager> manager;
  std::unique_ptr<RecoveryController> recovery;
  std::unique_ptr<SystemApiServer> system_api;
  std::string unavailable;
  if (config.daemon_mode == DaemonMode::kNone) {
    unavailable = "daemon_mode is \"none\" (no nydusd is started)";
  } else if (config.daemon.fs_driver == FsDriver::kFscache && ::access("/dev/cachefiles", F_OK) != 0) {
    unavailable = "fs_driver \"fscache\" needs /dev/cachefiles (the cachefiles module, with on-demand support)";
  } else if (config.daemon.nydusd_path.empty()) {
    unavailable = "no nydusd binary (daemon.nydusd_path, --nydusd-path or $PATH)";
  } else {
    auto tmpl = load_nydusd_config_template(config.daemon.nydusd_config);
    std::error_code ec;
    if (!tmpl.ok() && config.daemon.nydusd_config == kDefaultNydusdConfig &&
        !fs::exists(config.daemon.nydusd_config, ec)) {
      // Nothing configured and nothing installed: plain images still work.
      unavailable = fmt::format("no nydusd config template ({} does not exist; see "
                                "packaging/nydusd-config.fusedev.json)",
                                config.daemon.nydusd_config);
    } else if (!tmpl.ok()) {
      return fail(tmpl.error());
    } else {
      DaemonManagerOptions mo;
      mo.root = config.root;
      mo.nydusd_path = config.daemon.nydusd_path;
      mo.mode = config.daemon_mode;
      mo.config_template = std::move(tmpl).value();
      mo.cache_dir = config.cache_dir();
      mo.fs_driver = config.daemon.fs_driver;
      // cachefiles keeps its cache files here: a disk file system, not tmpfs.
      mo.fscache_dir = config.cache_dir() + "/fscache";
      mo.log_dir = config.log_dir();
      mo.launch.thread_num = config.daemon.threads_number;
      mo.launch.log_level = config.log.level;
      mo.launch.log_to_stdout = config.log.log_to_stdout;
      mo.launch.failover_policy = config.daemon.failover_policy;
      // Every daemon gets a supervisor socket, whatever the policy: hot
      // upgrade needs the held state and fd too. (With none and restart the
      // fd is let go when the daemon dies; see recovery.h.)
      auto sup = SupervisorStore::open(config.root + "/supervisor");
      if (!sup.ok()) return fail(sup.error());
      supervisors = std::move(sup).value();
      mo.supervisors = supervisors.get();
      auto opened = DaemonManager::open(std::move(mo), **store, launcher, clients);
      if (!opened.ok()) return fail(opened.error());
      manager = std::move(opened).value();
      recovery = std::make_unique<RecoveryController>(*manager, RecoveryOptions::from_config(config.daemon));
      spdlog::info("recover_policy {}{}", to_string(config.daemon.recover_policy),
                   config.daemon.hot_standby ? " with hot standby" : "");
    }
  }
  if (!unavailable.empty()) spdlog::warn("nydus images cannot be served: {}; plain OCI layers can", unavailable);

  NydusMounterOptions mounter_options;
  mounter_options.snapshots_dir = config.snapshots_dir();
  mounter_options.sync_remove = config.snapshot.sync_remove;
  mounter_options.overlay.index_off = overlay_index_enabled_by_default();
  mounter_options.overlay.volatile_upper = config.snapshot.enable_overlayfs_volatile;
  NydusMounter remote(manager.get(), unavailable, mounter_options);
  SnapshotterOptions options;
  options.root = config.root;
  options.overlay_volatile = config.snapshot.enable_overlayfs_volatile;
  auto snapshotter = Snapshotter::open(options, **store, remote);
  if (!snapshotter.ok()) return fail(snapshotter.error());

  if (auto st = mkdir_all(fs::path(config.address).parent_path(), 0700); !st.ok()) return fail(st.error());
  if (auto st = remove_stale_socket(config.address); !st.ok()) return fail(st.error());

  SnapshotsService service(**snapshotter);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + config.address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return fail(make_error(ErrorKind::kIo, "cannot serve gRPC on unix:{}", config.address));
  if ((config.uid != 0 || config.gid != 0) && ::chown(config.address.c_str(), config.uid, config.gid) != 0) {
    auto e = Error::from_errno(errno, fmt::format("chown {} to {}:{}", config.address, config.uid, config.gid));
    server->Shutdown();
    return fail(e);
  }
  struct stat socket_stat {};
  if (::lstat(config.address.c_str(), &socket_stat) != 0) {
    server->Shutdown();
    return fail(Error::from_errno(errno, fmt::format("stat {}", config.address)));
  }
  spdlog::info("serving containerd.services.snapshots.v1.Snapshots on unix:{}", config.address);
  if (config.system.enable) {
    if (!recovery) {
      spdlog::warn("system.enable: no system API without nydusd daemons ({})", unavailable);
    } else {
      auto started = start_system_api(config.system.address, *recovery);
      if (!started.ok()) {
        server->Shutdown();
        return fail(started.error());
      }
      system_api = std::move(started).value();
      spdlog::info("system API on unix:{}", config.system.address);
    }
  }

  // The signals are blocked in every thread (see main), so sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}, stopping (at most {} s for running calls; send it again to exit at once)",
               strsignal(sig), kShutdownGrace.count());
  std::thread([stop_signals] {
    int again = 0;
    sigwait(&stop_signals, &again);
    spdlog::warn("received {} again, exiting now", strsignal(again));
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }).detach();

  server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  server->Wait();
  if (system_api) system_api->stop();
  if (recovery) recovery->stop();
  if (manager) manager->close(config.cleanup_on_close);
  // Remove the socket only if it is still the one we created.
  struct stat now {};
  if (::lstat(config.address.c_str(), &now) == 0 && now.st_ino == socket_stat.st_ino &&
      now.st_dev == socket_stat.st_dev) {
    ::unlink(config.address.c_str());
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace nydus::snapshotter

int main(int argc, char** argv) {
  using namespace nydus::snapshotter;
  auto cmd = parse_command_line(argc, argv);
  if (!cmd.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, cmd.error().message().c_str());
    return 2;
  }
  switch (cmd->action) {
    case CommandLine::Action::kHelp: std::fputs(cmd->help_text.c_str(), stdout); return 0;
    case CommandLine::Action::kVersion: print_version(); return 0;
    case CommandLine::Action::kRun: break;
  }
  // Block the stop signals before any thread exists, so every thread gRPC
  // starts inherits the mask and only sigwait receives them. A peer that
  // hangs up must not kill us with SIGPIPE. (Whoever spawns children from
  // here, e.g. nydusd, must reset the mask and SIGPIPE in the child.)
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return run(*cmd);
}
