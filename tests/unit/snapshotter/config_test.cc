#include "snapshotter/config.h"

#include <fstream>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using namespace nydus::snapshotter;
using nydus::ErrorKind;

namespace {

// Parses TOML and expects an InvalidArgument error containing every needle.
void expect_toml_error(const std::string& toml, std::initializer_list<std::string> needles) {
  auto r = parse_config_toml(toml, "test.toml");
  INFO(toml);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kInvalidArgument);
  for (const auto& n : needles) {
    INFO("message: " << r.error().message() << "\nexpected to contain: " << n);
    CHECK(r.error().message().find(n) != std::string::npos);
  }
}

Config parse_ok(const std::string& toml) {
  auto r = parse_config_toml(toml, "test.toml");
  INFO(toml);
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}

nydus::Result<CommandLine> parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "containerd-nydus-grpc");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

}  // namespace

TEST_CASE("defaults are the reference's") {
  Config c;
  CHECK(c.version == 1);
  CHECK(c.root == "/var/lib/containerd/io.containerd.snapshotter.v1.nydus");
  CHECK(c.address == "/run/containerd-nydus/containerd-nydus-grpc.sock");
  CHECK(c.daemon_mode == DaemonMode::kDedicated);
  CHECK(c.daemon.recover_policy == RecoverPolicy::kRestart);
  CHECK(c.daemon.fs_driver == FsDriver::kFusedev);
  CHECK(c.daemon.failover_policy == FailoverPolicy::kResend);
  CHECK(c.daemon.threads_number == 0);
  CHECK(c.daemon.nydusd_config == "/etc/nydus/nydusd-config.json");
  CHECK(c.system.address == "/run/containerd-nydus/system.sock");
  CHECK_FALSE(c.system.enable);
  CHECK(c.log.level == "info");
  CHECK(c.log_dir() == c.root + "/logs");
  CHECK(c.cache_dir() == c.root + "/cache");
  CHECK_FALSE(c.snapshot.sync_remove);
  CHECK_FALSE(c.snapshot.enable_overlayfs_volatile);
  CHECK_FALSE(c.snapshot.enable_nydus_overlayfs);
  CHECK(validate_config(c).ok());
}

TEST_CASE("the reference sample config parses") {
  Config c = parse_ok(R"(
version = 1
root = "/var/lib/containerd-nydus"
address = "/run/containerd-nydus/containerd-nydus-grpc.sock"
daemon_mode = "dedicated"
cleanup_on_close = false

[system]
enable = true
address = "/run/containerd-nydus/system.sock"
[system.debug]
daemon_cpu_profile_duration_secs = 5
pprof_address = ""

[daemon]
nydusd_config = "/etc/nydus/nydusd-config.fusedev.json"
nydusd_path = "/usr/local/bin/nydusd"
nydusimage_path = "/usr/local/bin/nydus-image"
fs_driver = "fusedev"
recover_policy = "failover"
threads_number = 4
log_rotation_size = 100
failover_policy = "flush"

[cgroup]
enable = true
memory_limit = ""

[log]
log_to_stdout = false
level = "debug"
log_rotation_compress = true
log_rotation_local_time = true
log_rotation_max_age = 7
log_rotation_max_backups = 5
log_rotation_max_size = 100

[metrics]
address = ":9110"

[remote]
convert_vpc_registry = false
[remote.mirrors_config]
dir = ""
[remote.auth]
enable_kubeconfig_keychain = false

[snapshot]
enable_nydus_overlayfs = false
nydus_overlayfs_path = "nydus-overlayfs"
enable_kata_volume = false
sync_remove = true
enable_overlayfs_volatile = true

[cache_manager]
disable = false
gc_period = "24h"
cache_dir = ""

[image]
public_key_file = ""
validate_signature = false

[experimental]
enable_stargz = false
)");
  CHECK(c.root == "/var/lib/containerd-nydus");
  CHECK(c.system.enable);
  CHECK(c.daemon.nydusd_config == "/etc/nydus/nydusd-config.fusedev.json");
  CHECK(c.daemon.nydusd_path == "/usr/local/bin/nydusd");
  CHECK(c.daemon.recover_policy == RecoverPolicy::kFailover);
  CHECK(c.daemon.threads_number == 4);
  CHECK(c.daemon.failover_policy == FailoverPolicy::kFlush);
  CHECK(c.log.level == "debug");
  CHECK(c.snapshot.sync_remove);
  CHECK(c.snapshot.enable_overlayfs_volatile);
  CHECK(c.snapshot.nydus_overlayfs_path == "nydus-overlayfs");
  // Every key above belongs to the reference: nothing to warn about.
  CHECK(c.notes.empty());
  CHECK(validate_config(c).ok());
}

TEST_CASE("version = 1 is required") {
  expect_toml_error("root = \"/x\"\n", {"version is missing"});
  expect_toml_error("version = 2\n", {"version = 2", "only version 1"});
  expect_toml_error("version = \"1\"\n", {"version = \"1\"", "expected an integer", "got a string"});
}

TEST_CASE("enums accept the reference values and name key and value otherwise") {
  CHECK(parse_ok("version = 1\ndaemon_mode = \"multiple\"").daemon_mode == DaemonMode::kDedicated);
  CHECK(parse_ok("version = 1\ndaemon_mode = \"shared\"").daemon_mode == DaemonMode::kShared);
  CHECK(parse_ok("version = 1\ndaemon_mode = \"none\"").daemon_mode == DaemonMode::kNone);
  // An empty string means the default, as in the reference.
  CHECK(parse_ok("version = 1\ndaemon_mode = \"\"").daemon_mode == DaemonMode::kDedicated);
  CHECK(parse_ok("version = 1\n[daemon]\nrecover_policy = \"none\"").daemon.recover_policy == RecoverPolicy::kNone);
  CHECK(parse_ok("version = 1\n[daemon]\nfs_driver = \"fscache\"").daemon.fs_driver == FsDriver::kFscache);
  CHECK(parse_ok("version = 1\n[daemon]\nfailover_policy = \"none\"").daemon.failover_policy ==
        FailoverPolicy::kNone);

  expect_toml_error("version = 1\ndaemon_mode = \"single\"", {"daemon_mode = \"single\"", "dedicated"});
  expect_toml_error("version = 1\n[daemon]\nrecover_policy = \"retry\"",
                    {"daemon.recover_policy = \"retry\"", "failover"});
  expect_toml_error("version = 1\n[daemon]\nfs_driver = \"blockdev\"",
                    {"daemon.fs_driver = \"blockdev\"", "not supported"});
  expect_toml_error("version = 1\n[daemon]\nfs_driver = \"ext4\"", {"daemon.fs_driver = \"ext4\"", "fusedev"});
  expect_toml_error("version = 1\n[daemon]\nfailover_policy = \"drop\"",
                    {"daemon.failover_policy = \"drop\"", "resend"});
}

TEST_CASE("types and ranges are checked per key") {
  expect_toml_error("version = 1\n[daemon]\nthreads_number = 1025", {"daemon.threads_number = 1025", "1024"});
  expect_toml_error("version = 1\n[daemon]\nthreads_number = -1", {"daemon.threads_number = -1"});
  expect_toml_error("version = 1\n[daemon]\nthreads_number = \"4\"",
                    {"daemon.threads_number = \"4\"", "expected an integer"});
  CHECK(parse_ok("version = 1\n[daemon]\nthreads_number = 1024").daemon.threads_number == 1024);
  expect_toml_error("version = 1\n[snapshot]\nsync_remove = \"yes\"",
                    {"snapshot.sync_remove = \"yes\"", "expected a boolean"});
  expect_toml_error("version = 1\nroot = 5", {"root = 5", "expected a string"});
  expect_toml_error("version = 1\nroot = \"\"", {"root = \"\"", "must not be empty"});
  expect_toml_error("version = 1\ndaemon = 3", {"daemon = 3", "expected a table"});
  expect_toml_error("version = 1\n[system]\naddress = \"\"", {"system.address", "must not be empty"});
}

TEST_CASE("uid and gid own the gRPC socket") {
  Config c = parse_ok("version = 1\nuid = 1000\ngid = 1001\n");
  CHECK(c.uid == 1000);
  CHECK(c.gid == 1001);
  CHECK(parse_ok("version = 1").uid == 0);
  expect_toml_error("version = 1\nuid = -1", {"uid = -1"});
}

TEST_CASE("a present false stays false and absent keys keep their defaults") {
  Config c = parse_ok("version = 1\n[system]\nenable = false\n[snapshot]\nsync_remove = false\n");
  CHECK_FALSE(c.system.enable);
  CHECK_FALSE(c.snapshot.sync_remove);
  CHECK(c.root == std::string(kDefaultRoot));
  CHECK(c.daemon.recover_policy == RecoverPolicy::kRestart);
}

TEST_CASE("syntax errors carry line and column") {
  expect_toml_error("version = 1\nroot = \"unterminated\n", {"test.toml:2:", "invalid TOML"});
}

TEST_CASE("unknown keys become notes, not errors") {
  Config c = parse_ok("version = 1\nrot = \"/x\"\n[daemon]\nthread_number = 3\n");
  REQUIRE(c.notes.size() == 2);
  std::string all = c.notes[0] + "\n" + c.notes[1];
  CHECK(all.find("key rot ignored") != std::string::npos);
  CHECK(all.find("key daemon.thread_number ignored") != std::string::npos);
}

TEST_CASE("validation: root length and socket paths") {
  Config c;
  c.root = "/" + std::string(69, 'r');  // 70 bytes: allowed
  CHECK(validate_config(c).ok());
  c.root = "/" + std::string(70, 'r');  // 71 bytes
  auto st = validate_config(c);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("at most 70") != std::string::npos);
  CHECK(st.error().message().find("root = \"/rrr") != std::string::npos);

  c = Config();
  c.root = "";
  CHECK_FALSE(validate_config(c).ok());

  c = Config();
  c.address = "/" + std::string(107, 'a');  // 108 bytes: no room for the NUL
  st = validate_config(c);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("address") != std::string::npos);
  CHECK(st.error().message().find("unix socket") != std::string::npos);
  c.address = "/" + std::string(106, 'a');
  CHECK(validate_config(c).ok());
  c.address = "relative.sock";
  CHECK_FALSE(validate_config(c).ok());

  c = Config();
  c.system.enable = true;
  c.system.address = "/" + std::string(200, 's');
  st = validate_config(c);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("system.address") != std::string::npos);
  c.system.enable = false;  // not used: not checked
  CHECK(validate_config(c).ok());

  c = Config();
  c.log.level = "loud";
  st = validate_config(c);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("log.level = \"loud\"") != std::string::npos);

  c = Config();
  c.daemon.hot_standby = true;
  st = validate_config(c);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("hot_standby") != std::string::npos);
  c.daemon.recover_policy = RecoverPolicy::kFailover;
  CHECK(validate_config(c).ok());

  c = Config();
  c.log.dir = "logs";
  CHECK_FALSE(validate_config(c).ok());

  CHECK(daemon_api_socket_path("/r", "abc") == "/r/socket/abc/api.sock");
}

TEST_CASE("command line flags") {
  auto cmd = parse_args({"--config", "/etc/nydus/config.toml", "--root", "/r", "--address", "/a.sock",
                         "--log-level", "debug", "--nydusd", "/bin/nydusd", "--config-path", "/n.json",
                         "--log-to-stdout"});
  REQUIRE(cmd.ok());
  CHECK(cmd->action == CommandLine::Action::kRun);
  const FlagOverrides& f = cmd->flags;
  CHECK(f.config_path == "/etc/nydus/config.toml");
  CHECK(f.root == "/r");
  CHECK(f.address == "/a.sock");
  CHECK(f.log_level == "debug");
  CHECK(f.nydusd_path == "/bin/nydusd");
  CHECK(f.nydusd_config == "/n.json");
  CHECK(f.log_to_stdout);
  CHECK_FALSE(f.daemon_mode.has_value());

  auto long_names = parse_args({"--nydusd-path", "/x/nydusd", "--nydusd-config", "/y.json"});
  REQUIRE(long_names.ok());
  CHECK(long_names->flags.nydusd_path == "/x/nydusd");
  CHECK(long_names->flags.nydusd_config == "/y.json");

  auto none = parse_args({});
  REQUIRE(none.ok());
  CHECK_FALSE(none->flags.root.has_value());
  CHECK_FALSE(none->flags.log_to_stdout);

  auto version = parse_args({"--version"});
  REQUIRE(version.ok());
  CHECK(version->action == CommandLine::Action::kVersion);

  auto help = parse_args({"--help"});
  REQUIRE(help.ok());
  CHECK(help->action == CommandLine::Action::kHelp);
  for (const char* flag : {"--config", "--root", "--address", "--log-level", "--nydusd-path", "--nydusd",
                           "--nydusd-config", "--version"}) {
    INFO(flag);
    CHECK(help->help_text.find(flag) != std::string::npos);
  }

  auto bad = parse_args({"--no-such-flag"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind() == ErrorKind::kInvalidArgument);
  CHECK(bad.error().message().find("--no-such-flag") != std::string::npos);

  auto missing_value = parse_args({"--root"});
  CHECK_FALSE(missing_value.ok());
}

TEST_CASE("flags override the file, which overrides the defaults") {
  nydus::testing::TempDir dir("nydus-config");
  auto path = dir / "config.toml";
  write_file(path, R"(
version = 1
root = "/from/file"
address = "/from/file.sock"
[daemon]
nydusd_path = "/file/nydusd"
recover_policy = "failover"
[log]
level = "warn"
)");
  FlagOverrides flags;
  flags.config_path = path.string();
  flags.root = "/from/flag";
  flags.log_level = "debug";
  auto c = load_config(flags);
  REQUIRE(c.ok());
  CHECK(c->root == "/from/flag");               // flag wins
  CHECK(c->address == "/from/file.sock");       // file wins over default
  CHECK(c->log.level == "debug");
  CHECK(c->daemon.nydusd_path == "/file/nydusd");
  CHECK(c->daemon.recover_policy == RecoverPolicy::kFailover);
  CHECK(c->daemon_mode == DaemonMode::kDedicated);  // default

  // Without --config only the flags apply.
  FlagOverrides only_flags;
  only_flags.address = "unix:///run/x.sock";
  auto d = load_config(only_flags);
  REQUIRE(d.ok());
  CHECK(d->address == "/run/x.sock");
  CHECK(d->root == std::string(kDefaultRoot));
}

TEST_CASE("load_config reports bad flags and files with the offending value") {
  FlagOverrides flags;
  flags.root = "/" + std::string(80, 'x');
  auto r = load_config(flags);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("root") != std::string::npos);

  FlagOverrides bad_mode;
  bad_mode.daemon_mode = "solo";
  r = load_config(bad_mode);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("--daemon-mode = \"solo\"") != std::string::npos);

  FlagOverrides empty_root;
  empty_root.root = "";
  CHECK_FALSE(load_config(empty_root).ok());

  FlagOverrides bad_level;
  bad_level.log_level = "chatty";
  r = load_config(bad_level);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("chatty") != std::string::npos);

  FlagOverrides missing;
  missing.config_path = "/nonexistent/config.toml";
  r = load_config(missing);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kNotFound);
  CHECK(r.error().message().find("/nonexistent/config.toml") != std::string::npos);
}

TEST_CASE("fs_driver fscache forces the shared daemon mode") {
  FlagOverrides flags;
  flags.fs_driver = "fscache";
  auto c = load_config(flags);
  REQUIRE(c.ok());
  CHECK(c->daemon_mode == DaemonMode::kShared);
  REQUIRE(c->notes.size() == 1);
  CHECK(c->notes[0].find("fscache") != std::string::npos);
}

TEST_CASE("recovery keys: crash-loop limit and window and back-off and the failed connection") {
  Config d = parse_ok("version = 1");
  CHECK(d.daemon.crash_loop_limit == 5);
  CHECK(d.daemon.crash_loop_window_secs == 60);
  CHECK(d.daemon.recover_backoff_ms == 100);
  CHECK(d.daemon.recover_backoff_max_ms == 5000);
  CHECK_FALSE(d.daemon.failed_abort_connection);

  Config c = parse_ok(
      "version = 1\n[daemon]\nrecover_policy = \"failover\"\nhot_standby = true\ncrash_loop_limit = 3\n"
      "crash_loop_window_secs = 10\nrecover_backoff_ms = 50\nrecover_backoff_max_ms = 400\n"
      "failed_abort_connection = true\n");
  CHECK(c.daemon.hot_standby);
  CHECK(c.daemon.crash_loop_limit == 3);
  CHECK(c.daemon.crash_loop_window_secs == 10);
  CHECK(c.daemon.recover_backoff_ms == 50);
  CHECK(c.daemon.recover_backoff_max_ms == 400);
  CHECK(c.daemon.failed_abort_connection);
  CHECK(c.notes.empty());  // every key is known

  expect_toml_error("version = 1\n[daemon]\ncrash_loop_limit = 0", {"daemon.crash_loop_limit = 0", "between 1"});
  expect_toml_error("version = 1\n[daemon]\ncrash_loop_window_secs = 0", {"daemon.crash_loop_window_secs = 0"});
  expect_toml_error("version = 1\n[daemon]\nrecover_backoff_ms = -1", {"daemon.recover_backoff_ms = -1"});
  expect_toml_error("version = 1\n[daemon]\nfailed_abort_connection = 1",
                    {"daemon.failed_abort_connection = 1", "expected a boolean"});
  // Relations between keys are validate_config's.
  Config inverted = parse_ok("version = 1\n[daemon]\nrecover_backoff_ms = 500\nrecover_backoff_max_ms = 100");
  auto st = validate_config(inverted);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("daemon.recover_backoff_max_ms = 100") != std::string::npos);
}

TEST_CASE("failover_policy flush is accepted as in the reference and noted") {
  nydus::testing::TempDir dir("config-flush");
  write_file(dir / "config.toml", "version = 1\n[daemon]\nfailover_policy = \"flush\"\n");
  FlagOverrides flags;
  flags.config_path = (dir / "config.toml").string();
  auto c = load_config(flags);
  REQUIRE(c.ok());
  CHECK(c->daemon.failover_policy == FailoverPolicy::kFlush);
  REQUIRE(c->notes.size() == 1);
  CHECK(c->notes[0].find("resend") != std::string::npos);
}
