// Configuration of containerd-nydus-grpc: the TOML file of the Go
// nydus-snapshotter (version = 1) plus its command-line flags.
//
// Precedence is flag > TOML > default, as in the reference. Unlike the
// reference (which fills every zero value with the default afterwards), a key
// present in the file is taken as written: `false` stays false. An empty
// string means "use the default" only for optional paths (nydusd_path,
// nydusd_config, log.dir, ...); an empty root, address or enum value is an
// error. Keys of reference sections this implementation does not use yet
// (remote, metrics, cgroup, ...) are accepted and ignored; keys nobody knows
// are reported as warnings, so a typo does not pass silently.
//
// Every violation is one startup error that names the key, the value and
// what is allowed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nydus::snapshotter {

inline constexpr std::string_view kDefaultRoot = "/var/lib/containerd/io.containerd.snapshotter.v1.nydus";
inline constexpr std::string_view kDefaultAddress = "/run/containerd-nydus/containerd-nydus-grpc.sock";
inline constexpr std::string_view kDefaultSystemAddress = "/run/containerd-nydus/system.sock";
inline constexpr std::string_view kDefaultNydusdConfig = "/etc/nydus/nydusd-config.json";
// The reference's limit: keeps <root>/socket/<20-char id>/api.sock inside sun_path.
inline constexpr size_t kMaxRootLength = 70;
// sizeof(sockaddr_un::sun_path) minus the terminating NUL.
inline constexpr size_t kMaxSocketPathLength = 107;
inline constexpr int kMaxThreadsNumber = 1024;
// Daemon ids are 20-character xids, as in the reference.
inline constexpr size_t kDaemonIdLength = 20;

// `multiple` is the reference's name for one nydusd per image; `dedicated`
// is its alias and is what we print.
enum class DaemonMode { kDedicated, kShared, kNone };
enum class RecoverPolicy { kNone, kRestart, kFailover };
enum class FsDriver { kFusedev, kFscache };
enum class FailoverPolicy { kNone, kResend, kFlush };

std::string_view to_string(DaemonMode mode);
std::string_view to_string(RecoverPolicy policy);
std::string_view to_string(FsDriver driver);
std::string_view to_string(FailoverPolicy policy);

struct DaemonConfig {
  // Empty until resolved: main looks `nydusd` up in $PATH.
  std::string nydusd_path;
  std::string nydusd_config{kDefaultNydusdConfig};
  std::string nydusimage_path;
  RecoverPolicy recover_policy = RecoverPolicy::kRestart;
  FsDriver fs_driver = FsDriver::kFusedev;
  // 0: nydusd's default.
  int threads_number = 0;
  // MiB; 0 disables nydusd log rotation.
  int log_rotation_size = 100;
  FailoverPolicy failover_policy = FailoverPolicy::kResend;
  // Keep a pre-spawned standby nydusd per daemon so a crash is taken over at
  // once (failover only). Our extension; the reference has no such key.
  bool hot_standby = false;
  // Crash-loop handling (failover and restart; our extension). A daemon that
  // died `crash_loop_limit` times within `crash_loop_window_secs` is marked
  // FAILED and not recovered again until an upgrade (or a snapshotter
  // restart). Between attempts the recovery waits, doubling from
  // `recover_backoff_ms` up to `recover_backoff_max_ms`; the first recovery
  // after a quiet period starts at once.
  int crash_loop_limit = 5;
  int crash_loop_window_secs = 60;
  int recover_backoff_ms = 100;
  int recover_backoff_max_ms = 5000;
  // What a FAILED daemon's FUSE connection does. false (default): the
  // supervisor keeps holding its fd, so readers wait (they do not fail) and
  // a later upgrade to a good binary takes over. true: the connection is
  // aborted, so readers fail fast with ENOTCONN/ECONNABORTED.
  bool failed_abort_connection = false;
};

struct SystemConfig {
  bool enable = false;
  std::string address{kDefaultSystemAddress};
};

struct LogConfig {
  std::string level = "info";
  // Empty: <root>/logs.
  std::string dir;
  bool log_to_stdout = false;
};

struct SnapshotConfig {
  bool enable_nydus_overlayfs = false;
  std::string nydus_overlayfs_path;
  bool enable_kata_volume = false;
  // Tear down a removed snapshot's nydus mount in Remove instead of Cleanup.
  bool sync_remove = false;
  bool enable_overlayfs_volatile = false;
};

struct CacheManagerConfig {
  bool disable = false;
  // Empty: <root>/cache.
  std::string cache_dir;
  // Duration string as written ("24h"); only stored for now.
  std::string gc_period = "24h";
};

struct Config {
  int64_t version = 1;
  std::string root{kDefaultRoot};
  std::string address{kDefaultAddress};
  // Owner of the gRPC socket (chown after listen); 0 leaves it to root.
  int uid = 0;
  int gid = 0;
  DaemonMode daemon_mode = DaemonMode::kDedicated;
  bool cleanup_on_close = false;
  DaemonConfig daemon;
  SystemConfig system;
  LogConfig log;
  SnapshotConfig snapshot;
  CacheManagerConfig cache_manager;

  // Things worth one log line once logging is up (unknown keys, forced
  // modes). Not errors.
  std::vector<std::string> notes;

  // Derived paths.
  std::string log_dir() const;
  std::string cache_dir() const;
  std::string snapshots_dir() const;
  std::string database_path() const;
};

// Values given on the command line; unset means "not given".
struct FlagOverrides {
  std::optional<std::string> config_path;
  std::optional<std::string> root;
  std::optional<std::string> address;
  std::optional<std::string> log_level;
  std::optional<std::string> nydusd_path;
  std::optional<std::string> nydusd_config;
  std::optional<std::string> nydusimage_path;
  std::optional<std::string> daemon_mode;
  std::optional<std::string> fs_driver;
  std::optional<std::string> nydus_overlayfs_path;
  bool log_to_stdout = false;
};

// What the command line asked for.
struct CommandLine {
  enum class Action { kRun, kVersion, kHelp };
  Action action = Action::kRun;
  FlagOverrides flags;
  std::string help_text;  // filled for kHelp
};

// Parses argv. A bad flag is an InvalidArgument error whose message is the
// usage error.
Result<CommandLine> parse_command_line(int argc, const char* const* argv);

// Parses TOML text (`source` names it in errors) on top of the defaults.
Result<Config> parse_config_toml(std::string_view text, std::string_view source);

// Reads and parses a TOML file.
Result<Config> load_config_file(const std::string& path);

// Builds the effective config: defaults, then the file (if --config), then
// the flags, then derivations (fs_driver=fscache forces daemon_mode=shared),
// then validation.
Result<Config> load_config(const FlagOverrides& flags);

// Applies the flags onto `config` (no validation).
Status apply_flags(Config& config, const FlagOverrides& flags);

// All the checks of the reference: root non-empty and at most 70 bytes,
// absolute paths, every socket path within sun_path, threads_number in
// [0, 1024], log level known.
Status validate_config(const Config& config);

// The api socket path a daemon would get under `root` (the longest socket the
// snapshotter creates under root), for the sun_path check.
std::string daemon_api_socket_path(std::string_view root, std::string_view daemon_id);

}  // namespace nydus::snapshotter
