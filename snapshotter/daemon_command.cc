#include "snapshotter/daemon_command.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

#include <fmt/format.h>

namespace nydus::snapshotter {

std::vector<std::string> daemon_args(const DaemonCommand& c) {
  std::vector<std::string> args{c.mode};
  auto text = [&](const char* flag, const std::string& value) {
    if (value.empty()) return;
    args.emplace_back(flag);
    args.push_back(value);
  };
  auto number = [&](const char* flag, int value) {
    if (value == 0) return;
    args.emplace_back(flag);
    args.push_back(std::to_string(value));
  };
  text("--fscache", c.fscache_dir);
  number("--fscache-threads", c.fscache_threads);
  if (c.upgrade) args.emplace_back("--upgrade");
  number("--thread-num", c.thread_num);
  text("--id", c.id);
  text("--config", c.config);
  text("--bootstrap", c.bootstrap);
  text("--mountpoint", c.mountpoint);
  text("--apisock", c.apisock);
  text("--log-level", c.log_level);
  number("--log-rotation-size", c.log_rotation_size);
  text("--supervisor", c.supervisor);
  text("--log-file", c.log_file);
  text("--prefetch-files", c.prefetch_files);
  text("--backend-source", c.backend_source);
  text("--failover-policy", c.failover_policy);
  return args;
}

DaemonPaths daemon_paths(const std::string& root, const std::string& log_dir, const std::string& id) {
  DaemonPaths p;
  p.config_dir = fmt::format("{}/config/{}", root, id);
  p.config_file = p.config_dir + "/config.json";
  p.socket_dir = fmt::format("{}/socket/{}", root, id);
  p.api_socket = daemon_api_socket_path(root, id);
  p.log_dir = fmt::format("{}/{}", log_dir, id);
  p.log_file = p.log_dir + "/nydusd.log";
  return p;
}

namespace {

// The fields every daemon shares, whatever its driver.
DaemonCommand common_base(const DaemonPaths& paths, const std::string& id, const DaemonLaunchSettings& s) {
  DaemonCommand c;
  c.upgrade = s.upgrade;
  if (!s.supervisor.empty()) {
    c.id = id;
    c.supervisor = s.supervisor;
  }
  c.apisock = paths.api_socket;
  // nydusd knows no "off"; the snapshotter's quietest useful level is error.
  c.log_level = s.log_level == "off" ? "error" : s.log_level;
  // With log_to_stdout nydusd logs to the stream it inherited, as in the
  // reference.
  if (!s.log_to_stdout) c.log_file = paths.log_file;
  return c;
}

// The fields every fusedev daemon shares.
DaemonCommand fuse_base(const DaemonPaths& paths, const std::string& id, const std::string& mountpoint,
                        const DaemonLaunchSettings& s) {
  DaemonCommand c = common_base(paths, id, s);
  c.mode = "fuse";
  c.thread_num = s.thread_num;
  c.mountpoint = mountpoint;
  // Always passed for fusedev, whatever the recover policy (reference §4.1).
  // The reference's "flush" writes to a fusectl file only vendor kernels
  // have (reference-nydusd.md §5.6); our nydusd knows none|resend, and
  // resend is what recovers in-flight requests on upstream kernels.
  c.failover_policy = std::string(
      to_string(s.failover_policy == FailoverPolicy::kFlush ? FailoverPolicy::kResend : s.failover_policy));
  // --log-rotation-size is not passed: this project's nydusd has no log
  // rotation and rejects the flag.
  return c;
}

}  // namespace

DaemonCommand dedicated_fuse_command(const DaemonPaths& paths, const std::string& id, const std::string& bootstrap,
                                     const std::string& mountpoint, const DaemonLaunchSettings& settings) {
  DaemonCommand c = fuse_base(paths, id, mountpoint, settings);
  c.config = paths.config_file;
  c.bootstrap = bootstrap;
  return c;
}

DaemonCommand shared_fuse_command(const DaemonPaths& paths, const std::string& id, const std::string& mountpoint,
                                  const DaemonLaunchSettings& settings) {
  return fuse_base(paths, id, mountpoint, settings);
}

DaemonCommand fscache_singleton_command(const DaemonPaths& paths, const std::string& id,
                                        const std::string& fscache_dir, const DaemonLaunchSettings& settings) {
  DaemonCommand c = common_base(paths, id, settings);
  c.mode = "singleton";
  if (!settings.upgrade) {
    c.fscache_dir = fscache_dir;
    c.fscache_threads = settings.thread_num;
  }
  return c;
}

std::string new_daemon_id() {
  // xid layout: 4 bytes big-endian seconds, 3 bytes machine id, 2 bytes pid,
  // 3 bytes counter. The machine and pid parts only make ids of different
  // processes differ; 5 random bytes per process serve that purpose better
  // in containers, where pids repeat.
  static const uint64_t process_random = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  static std::atomic<uint32_t> counter{[] {
    std::random_device rd;
    return static_cast<uint32_t>(rd());
  }()};
  uint8_t raw[12];
  auto secs = static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  raw[0] = static_cast<uint8_t>(secs >> 24);
  raw[1] = static_cast<uint8_t>(secs >> 16);
  raw[2] = static_cast<uint8_t>(secs >> 8);
  raw[3] = static_cast<uint8_t>(secs);
  for (int i = 0; i < 5; ++i) raw[4 + i] = static_cast<uint8_t>(process_random >> (8 * i));
  uint32_t n = counter.fetch_add(1);
  raw[9] = static_cast<uint8_t>(n >> 16);
  raw[10] = static_cast<uint8_t>(n >> 8);
  raw[11] = static_cast<uint8_t>(n);

  // base32hex without padding: 96 bits -> 20 characters (the last one
  // carries 1 bit).
  static const char* kAlphabet = "0123456789abcdefghijklmnopqrstuv";
  std::string out;
  out.reserve(20);
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : raw) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

}  // namespace nydus::snapshotter
