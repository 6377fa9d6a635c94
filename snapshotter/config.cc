#include "snapshotter/config.h"

#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include "common/log.h"

namespace nydus::snapshotter {

std::string_view to_string(DaemonMode mode) {
  switch (mode) {
    case DaemonMode::kDedicated: return "dedicated";
    case DaemonMode::kShared: return "shared";
    case DaemonMode::kNone: return "none";
  }
  return "?";
}

std::string_view to_string(RecoverPolicy policy) {
  switch (policy) {
    case RecoverPolicy::kNone: return "none";
    case RecoverPolicy::kRestart: return "restart";
    case RecoverPolicy::kFailover: return "failover";
  }
  return "?";
}

std::string_view to_string(FsDriver driver) {
  switch (driver) {
    case FsDriver::kFusedev: return "fusedev";
    case FsDriver::kFscache: return "fscache";
  }
  return "?";
}

std::string_view to_string(FailoverPolicy policy) {
  switch (policy) {
    case FailoverPolicy::kNone: return "none";
    case FailoverPolicy::kResend: return "resend";
    case FailoverPolicy::kFlush: return "flush";
  }
  return "?";
}

std::string Config::log_dir() const { return log.dir.empty() ? root + "/logs" : log.dir; }
std::string Config::cache_dir() const {
  return cache_manager.cache_dir.empty() ? root + "/cache" : cache_manager.cache_dir;
}
std::string Config::snapshots_dir() const { return root + "/snapshots"; }
std::string Config::database_path() const { return root + "/snapshotter.db"; }

std::string daemon_api_socket_path(std::string_view root, std::string_view daemon_id) {
  return fmt::format("{}/socket/{}/api.sock", root, daemon_id);
}

namespace {

// ---------------------------------------------------------------------------
// Enum parsing, shared by TOML and flags. `key` names the setting in errors.

Result<DaemonMode> parse_daemon_mode(std::string_view key, std::string_view v) {
  if (v == "dedicated" || v == "multiple") return DaemonMode::kDedicated;
  if (v == "shared") return DaemonMode::kShared;
  if (v == "none") return DaemonMode::kNone;
  return make_error(ErrorKind::kInvalidArgument,
                    "{} = \"{}\": expected \"dedicated\" (alias \"multiple\"), \"shared\" or \"none\"",
                    key, v);
}

Result<RecoverPolicy> parse_recover_policy(std::string_view key, std::string_view v) {
  if (v == "none") return RecoverPolicy::kNone;
  if (v == "restart") return RecoverPolicy::kRestart;
  if (v == "failover") return RecoverPolicy::kFailover;
  return make_error(ErrorKind::kInvalidArgument,
                    "{} = \"{}\": expected \"none\", \"restart\" or \"failover\"", key, v);
}

Result<FsDriver> parse_fs_driver(std::string_view key, std::string_view v) {
  if (v == "fusedev") return FsDriver::kFusedev;
  if (v == "fscache") return FsDriver::kFscache;
  if (v == "blockdev" || v == "proxy" || v == "nodev") {
    return make_error(ErrorKind::kInvalidArgument,
                      "{} = \"{}\": this driver of the Go snapshotter is not supported here; "
                      "expected \"fusedev\" or \"fscache\"",
                      key, v);
  }
  return make_error(ErrorKind::kInvalidArgument, "{} = \"{}\": expected \"fusedev\" or \"fscache\"",
                    key, v);
}

Result<FailoverPolicy> parse_failover_policy(std::string_view key, std::string_view v) {
  if (v == "none") return FailoverPolicy::kNone;
  if (v == "resend") return FailoverPolicy::kResend;
  if (v == "flush") return FailoverPolicy::kFlush;
  return make_error(ErrorKind::kInvalidArgument,
                    "{} = \"{}\": expected \"none\", \"resend\" or \"flush\"", key, v);
}

// ---------------------------------------------------------------------------
// TOML reading with typed, named errors.

std::string describe(const toml::node& node) {
  if (auto s = node.as_string()) return fmt::format("\"{}\"", s->get());
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  std::ostringstream out;
  node.visit([&](const auto& v) { out << v; });
  return out.str();
}

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date or time";
  }
}

// One section of the file: reads typed keys and remembers which ones it knew,
// so that the rest can be reported.
class Section {
 public:
  // `prefix` is "" for the top level, "daemon." for [daemon], ...
  Section(const toml::table& table, std::string prefix) : table_(table), prefix_(std::move(prefix)) {}

  std::string path(std::string_view key) const { return prefix_ + std::string(key); }

  // Empty strings keep `out` unchanged when empty_is_default, else are errors.
  Status get(std::string_view key, std::string& out, bool empty_is_default) {
    const toml::node* node = find(key);
    if (!node) return ok_status();
    auto s = node->as_string();
    if (!s) return wrong_type(key, *node, "a string");
    if (s->get().empty()) {
      if (empty_is_default) return ok_status();
      return make_error(ErrorKind::kInvalidArgument, "{} = \"\": must not be empty", path(key));
    }
    out = s->get();
    return ok_status();
  }

  Status get(std::string_view key, bool& out) {
    const toml::node* node = find(key);
    if (!node) return ok_status();
    auto b = node->as_boolean();
    if (!b) return wrong_type(key, *node, "a boolean (true or false)");
    out = b->get();
    return ok_status();
  }

  Status get(std::string_view key, int64_t& out) {
    const toml::node* node = find(key);
    if (!node) return ok_status();
    auto i = node->as_integer();
    if (!i) return wrong_type(key, *node, "an integer");
    out = i->get();
    return ok_status();
  }

  Status get(std::string_view key, int& out, int64_t min, int64_t max) {
    int64_t v = out;
    const toml::node* node = find(key);
    if (!node) return ok_status();
    NYDUS_TRY(get(key, v));
    if (v < min || v > max) {
      return make_error(ErrorKind::kInvalidArgument, "{} = {}: must be between {} and {}", path(key), v,
                        min, max);
    }
    out = static_cast<int>(v);
    return ok_status();
  }

  // An enum given as a string; empty means the default (as in the reference).
  template <typename E, typename Parse>
  Status get_enum(std::string_view key, E& out, Parse parse) {
    std::string v;
    NYDUS_TRY(get(key, v, /*empty_is_default=*/true));
    if (v.empty()) return ok_status();
    NYDUS_ASSIGN_OR_RETURN(out, parse(path(key), v));
    return ok_status();
  }

  // A sub-table, or nullptr when absent; a non-table is an error.
  Result<const toml::table*> table(std::string_view key) {
    const toml::node* node = find(key);
    if (!node) return static_cast<const toml::table*>(nullptr);
    if (!node->is_table()) return wrong_type(key, *node, "a table");
    return node->as_table();
  }

  // Keys this implementation accepts but does not use (reference features
  // still to come); they are not reported.
  void accept(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) known_.insert(std::string(k));
  }

  // One note per key nobody asked for.
  void report_unknown(std::vector<std::string>& notes) const {
    for (const auto& [k, v] : table_) {
      if (!known_.count(std::string(k.str()))) {
        notes.push_back(fmt::format("unknown configuration key {} ignored", path(k.str())));
      }
    }
  }

 private:
  const toml::node* find(std::string_view key) {
    known_.insert(std::string(key));
    return table_.get(key);
  }

  Error wrong_type(std::string_view key, const toml::node& node, std::string_view expected) {
    return make_error(ErrorKind::kInvalidArgument, "{} = {}: expected {}, got {}", path(key),
                      describe(node), expected, type_name(node));
  }

  const toml::table& table_;
  std::string prefix_;
  std::set<std::string> known_;
};

Status read_daemon(Section& s, DaemonConfig& d) {
  NYDUS_TRY(s.get("nydusd_path", d.nydusd_path, true));
  NYDUS_TRY(s.get("nydusd_config", d.nydusd_config, true));
  NYDUS_TRY(s.get("nydusimage_path", d.nydusimage_path, true));
  NYDUS_TRY(s.get_enum("recover_policy", d.recover_policy, parse_recover_policy));
  NYDUS_TRY(s.get_enum("fs_driver", d.fs_driver, parse_fs_driver));
  NYDUS_TRY(s.get("threads_number", d.threads_number, 0, kMaxThreadsNumber));
  NYDUS_TRY(s.get("log_rotation_size", d.log_rotation_size, 0, 1 << 20));
  NYDUS_TRY(s.get_enum("failover_policy", d.failover_policy, parse_failover_policy));
  NYDUS_TRY(s.get("hot_standby", d.hot_standby));
  NYDUS_TRY(s.get("crash_loop_limit", d.crash_loop_limit, 1, 1000));
  NYDUS_TRY(s.get("crash_loop_window_secs", d.crash_loop_window_secs, 1, 86400));
  NYDUS_TRY(s.get("recover_backoff_ms", d.recover_backoff_ms, 0, 600000));
  NYDUS_TRY(s.get("recover_backoff_max_ms", d.recover_backoff_max_ms, 0, 600000));
  NYDUS_TRY(s.get("failed_abort_connection", d.failed_abort_connection));
  return ok_status();
}

Status read_system(Section& s, SystemConfig& c) {
  NYDUS_TRY(s.get("enable", c.enable));
  NYDUS_TRY(s.get("address", c.address, false));
  s.accept({"uid", "gid", "debug"});
  return ok_status();
}

Status read_log(Section& s, LogConfig& c) {
  NYDUS_TRY(s.get("level", c.level, true));
  NYDUS_TRY(s.get("dir", c.dir, true));
  NYDUS_TRY(s.get("log_to_stdout", c.log_to_stdout));
  s.accept({"log_rotation_max_size", "log_rotation_max_backups", "log_rotation_max_age",
            "log_rotation_local_time", "log_rotation_compress"});
  return ok_status();
}

Status read_snapshot(Section& s, SnapshotConfig& c) {
  NYDUS_TRY(s.get("enable_nydus_overlayfs", c.enable_nydus_overlayfs));
  NYDUS_TRY(s.get("nydus_overlayfs_path", c.nydus_overlayfs_path, true));
  NYDUS_TRY(s.get("enable_kata_volume", c.enable_kata_volume));
  NYDUS_TRY(s.get("sync_remove", c.sync_remove));
  NYDUS_TRY(s.get("enable_overlayfs_volatile", c.enable_overlayfs_volatile));
  return ok_status();
}

Status read_cache_manager(Section& s, CacheManagerConfig& c) {
  NYDUS_TRY(s.get("disable", c.disable));
  NYDUS_TRY(s.get("cache_dir", c.cache_dir, true));
  NYDUS_TRY(s.get("gc_period", c.gc_period, true));
  return ok_status();
}

template <typename Reader, typename Target>
Status read_section(Section& top, std::string_view name, Reader reader, Target& target,
                    std::vector<std::string>& notes) {
  NYDUS_ASSIGN_OR_RETURN(const toml::table* t, top.table(name));
  if (!t) return ok_status();
  Section s(*t, std::string(name) + ".");
  NYDUS_TRY(reader(s, target));
  s.report_unknown(notes);
  return ok_status();
}

Status check_socket_path(std::string_view key, std::string_view path) {
  if (path.empty()) return make_error(ErrorKind::kInvalidArgument, "{} must not be empty", key);
  if (path.front() != '/') {
    return make_error(ErrorKind::kInvalidArgument, "{} = \"{}\": must be an absolute path", key, path);
  }
  if (path.size() > kMaxSocketPathLength) {
    return make_error(ErrorKind::kInvalidArgument,
                      "{} = \"{}\": {} bytes do not fit a unix socket address (at most {})", key, path,
                      path.size(), kMaxSocketPathLength);
  }
  return ok_status();
}

// Accepts "unix:///path" and "unix:/path" as spellings of "/path".
std::string strip_unix_scheme(std::string address) {
  for (std::string_view scheme : {"unix://", "unix:"}) {
    if (address.rfind(scheme, 0) == 0) return address.substr(scheme.size());
  }
  return address;
}

}  // namespace

Result<Config> parse_config_toml(std::string_view text, std::string_view source) {
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return make_error(ErrorKind::kInvalidArgument, "{}:{}:{}: invalid TOML: {}", source, where.line,
                      where.column, e.description());
  }

  Config config;
  Section top(doc, "");
  // `version` is required and must be 1, as in the reference.
  if (!doc.contains("version")) {
    return make_error(ErrorKind::kInvalidArgument, "{}: version is missing (expected version = 1)", source);
  }
  NYDUS_TRY(top.get("version", config.version));
  if (config.version != 1) {
    return make_error(ErrorKind::kInvalidArgument, "{}: version = {}: only version 1 is supported", source,
                      config.version);
  }
  auto read_top = [&]() -> Status {
    NYDUS_TRY(top.get("root", config.root, false));
    NYDUS_TRY(top.get("address", config.address, false));
    config.address = strip_unix_scheme(config.address);
    NYDUS_TRY(top.get("uid", config.uid, 0, INT32_MAX));
    NYDUS_TRY(top.get("gid", config.gid, 0, INT32_MAX));
    NYDUS_TRY(top.get_enum("daemon_mode", config.daemon_mode, parse_daemon_mode));
    NYDUS_TRY(top.get("cleanup_on_close", config.cleanup_on_close));
    NYDUS_TRY(read_section(top, "daemon", read_daemon, config.daemon, config.notes));
    NYDUS_TRY(read_section(top, "system", read_system, config.system, config.notes));
    NYDUS_TRY(read_section(top, "log", read_log, config.log, config.notes));
    NYDUS_TRY(read_section(top, "snapshot", read_snapshot, config.snapshot, config.notes));
    NYDUS_TRY(read_section(top, "cache_manager", read_cache_manager, config.cache_manager, config.notes));
    // Reference sections and keys for features that come later.
    top.accept({"remote", "metrics", "cgroup", "image", "experimental"});
    top.report_unknown(config.notes);
    return ok_status();
  };
  auto st = read_top();
  if (!st.ok()) return std::move(st).error().wrap(source);
  return config;
}

Result<Config> load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::from_errno(errno, fmt::format("cannot read config file {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error::from_errno(errno, fmt::format("cannot read config file {}", path));
  return parse_config_toml(text.str(), path);
}

Status apply_flags(Config& config, const FlagOverrides& flags) {
  auto non_empty = [](std::string_view flag, const std::string& v) -> Status {
    if (v.empty()) return make_error(ErrorKind::kInvalidArgument, "{} \"\": must not be empty", flag);
    return ok_status();
  };
  if (flags.root) {
    NYDUS_TRY(non_empty("--root", *flags.root));
    config.root = *flags.root;
  }
  if (flags.address) {
    NYDUS_TRY(non_empty("--address", *flags.address));
    config.address = strip_unix_scheme(*flags.address);
  }
  if (flags.log_level) {
    NYDUS_TRY(non_empty("--log-level", *flags.log_level));
    config.log.level = *flags.log_level;
  }
  if (flags.nydusd_path) config.daemon.nydusd_path = *flags.nydusd_path;
  if (flags.nydusd_config) config.daemon.nydusd_config = *flags.nydusd_config;
  if (flags.nydusimage_path) config.daemon.nydusimage_path = *flags.nydusimage_path;
  if (flags.nydus_overlayfs_path) config.snapshot.nydus_overlayfs_path = *flags.nydus_overlayfs_path;
  if (flags.daemon_mode) {
    NYDUS_ASSIGN_OR_RETURN(config.daemon_mode, parse_daemon_mode("--daemon-mode", *flags.daemon_mode));
  }
  if (flags.fs_driver) {
    NYDUS_ASSIGN_OR_RETURN(config.daemon.fs_driver, parse_fs_driver("--fs-driver", *flags.fs_driver));
  }
  if (flags.log_to_stdout) config.log.log_to_stdout = true;
  return ok_status();
}

Status validate_config(const Config& c) {
  if (c.version != 1) {
    return make_error(ErrorKind::kInvalidArgument, "version = {}: only version 1 is supported", c.version);
  }
  if (c.root.empty()) return make_error(ErrorKind::kInvalidArgument, "root must not be empty");
  if (c.root.size() > kMaxRootLength) {
    return make_error(ErrorKind::kInvalidArgument,
                      "root = \"{}\": {} bytes, at most {} are allowed (daemon sockets below it must "
                      "fit a unix socket address)",
                      c.root, c.root.size(), kMaxRootLength);
  }
  std::string longest = daemon_api_socket_path(c.root, std::string(kDaemonIdLength, 'x'));
  if (longest.size() > kMaxSocketPathLength) {
    return make_error(ErrorKind::kInvalidArgument,
                      "root = \"{}\": daemon socket paths such as {} would exceed {} bytes", c.root,
                      longest, kMaxSocketPathLength);
  }
  NYDUS_TRY(check_socket_path("address", c.address));
  if (c.system.enable) NYDUS_TRY(check_socket_path("system.address", c.system.address));
  auto level = parse_log_level(c.log.level);
  if (!level.ok()) return make_error(ErrorKind::kInvalidArgument, "log.level = \"{}\": {}", c.log.level,
                                     level.error().message());
  if (c.daemon.threads_number < 0 || c.daemon.threads_number > kMaxThreadsNumber) {
    return make_error(ErrorKind::kInvalidArgument, "daemon.threads_number = {}: must be between 0 and {}",
                      c.daemon.threads_number, kMaxThreadsNumber);
  }
  if (c.daemon.hot_standby && c.daemon.recover_policy != RecoverPolicy::kFailover) {
    return make_error(ErrorKind::kInvalidArgument,
                      "daemon.hot_standby = true requires daemon.recover_policy = \"failover\" (it is "
                      "\"{}\")",
                      to_string(c.daemon.recover_policy));
  }
  if (c.daemon.recover_backoff_max_ms < c.daemon.recover_backoff_ms) {
    return make_error(ErrorKind::kInvalidArgument,
                      "daemon.recover_backoff_max_ms = {}: must not be below daemon.recover_backoff_ms = {}",
                      c.daemon.recover_backoff_max_ms, c.daemon.recover_backoff_ms);
  }
  for (auto [key, value] : {std::pair<std::string_view, const std::string*>{"log.dir", &c.log.dir},
                            {"cache_manager.cache_dir", &c.cache_manager.cache_dir}}) {
    if (!value->empty() && value->front() != '/') {
      return make_error(ErrorKind::kInvalidArgument, "{} = \"{}\": must be an absolute path", key, *value);
    }
  }
  return ok_status();
}

Result<Config> load_config(const FlagOverrides& flags) {
  Config config;
  if (flags.config_path) {
    NYDUS_ASSIGN_OR_RETURN(config, load_config_file(*flags.config_path));
  }
  NYDUS_TRY(apply_flags(config, flags));
  if (config.daemon.fs_driver == FsDriver::kFscache && config.daemon_mode != DaemonMode::kShared) {
    config.notes.push_back(fmt::format("daemon.fs_driver = \"fscache\" forces daemon_mode = \"shared\" (was \"{}\")",
                                       to_string(config.daemon_mode)));
    config.daemon_mode = DaemonMode::kShared;
  }
  if (config.daemon.failover_policy == FailoverPolicy::kFlush) {
    config.notes.push_back(
        "daemon.failover_policy = \"flush\" needs a fusectl flush file that upstream kernels lack; nydusd runs "
        "with \"resend\", which re-queues the requests a dead daemon had read");
  }
  NYDUS_TRY(validate_config(config));
  return config;
}

Result<CommandLine> parse_command_line(int argc, const char* const* argv) {
  CommandLine cmd;
  CLI::App app{"containerd-nydus-grpc: a containerd proxy snapshotter (gRPC snapshots API on a unix "
               "socket) for nydus images.\nPrecedence of settings: flag > --config file > default.",
               "containerd-nydus-grpc"};
  app.get_formatter()->column_width(34);

  std::map<std::string, std::string> values;
  std::map<std::string, CLI::Option*> options;
  auto option = [&](const std::string& names, const std::string& key, const std::string& help) {
    options[key] = app.add_option(names, values[key], help)->type_name("TEXT");
  };
  option("--config", "config", "TOML configuration file (version = 1)");
  option("--root", "root",
         fmt::format("working directory, at most {} bytes (default {})", kMaxRootLength, kDefaultRoot));
  option("--address", "address", fmt::format("gRPC unix socket for containerd (default {})", kDefaultAddress));
  option("--log-level", "log_level", "log level: trace, debug, info, warn or error (default info)");
  option("--nydusd-path,--nydusd", "nydusd_path", "nydusd binary (default: `nydusd` found in $PATH)");
  option("--nydusd-config,--config-path", "nydusd_config",
         fmt::format("nydusd JSON configuration template (default {})", kDefaultNydusdConfig));
  option("--nydus-image", "nydusimage_path", "nydus-image binary (default: found in $PATH)");
  option("--daemon-mode", "daemon_mode", "dedicated (alias multiple), shared or none (default dedicated)");
  option("--fs-driver", "fs_driver", "fusedev or fscache (default fusedev)");
  option("--nydus-overlayfs-path", "nydus_overlayfs_path", "nydus-overlayfs helper used with enable_nydus_overlayfs");
  bool log_to_stdout = false;
  app.add_flag("--log-to-stdout", log_to_stdout,
               "log to the console (standard error) instead of <log.dir>/nydus-snapshotter.log");
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    cmd.action = CommandLine::Action::kHelp;
    cmd.help_text = app.help();
    return cmd;
  } catch (const CLI::ParseError& e) {
    return make_error(ErrorKind::kInvalidArgument, "{} (see --help)", e.what());
  }
  if (version) {
    cmd.action = CommandLine::Action::kVersion;
    return cmd;
  }
  auto take = [&](const std::string& key, std::optional<std::string>& out) {
    if (options[key]->count() > 0) out = values[key];
  };
  FlagOverrides& f = cmd.flags;
  take("config", f.config_path);
  take("root", f.root);
  take("address", f.address);
  take("log_level", f.log_level);
  take("nydusd_path", f.nydusd_path);
  take("nydusd_config", f.nydusd_config);
  take("nydusimage_path", f.nydusimage_path);
  take("daemon_mode", f.daemon_mode);
  take("fs_driver", f.fs_driver);
  take("nydus_overlayfs_path", f.nydus_overlayfs_path);
  f.log_to_stdout = log_to_stdout;
  return cmd;
}

}  // namespace nydus::snapshotter
