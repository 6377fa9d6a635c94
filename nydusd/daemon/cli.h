// nydusd's command line (docs/reference-nydusd.md §1, the fuse mode):
//
//   nydusd [fuse] --mountpoint M [--apisock A] [--config C | --localfs-dir D]
//          [--bootstrap B [--prefetch-files LIST] [--virtual-mountpoint P]]
//          [--thread-num N] [--id ID --supervisor S] [--upgrade]
//          [--failover-policy none|resend] [--log-level L] [--log-file F]
//          [--rlimit-nofile N]
//   nydusd singleton --fscache DIR [--fscache-tag T] [--fscache-threads N]
//          [--apisock A] [--config {"blobs":[...]} FILE] [--id ID --supervisor S]
//          [--upgrade] [--log-level L] [--log-file F] [--rlimit-nofile N]
//   nydusd --version | --help
//
// Everything is checked here, before the daemon touches the kernel: a
// malformed or unsupported config, a missing backend directory or a bad flag
// is a startup error with a message and a non-zero exit.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

#include "nydusd/daemon/daemon.h"

namespace nydus::daemon {

struct CliOptions {
  DaemonOptions daemon;
  std::optional<std::string> apisock;
  std::string log_level = "info";
  std::optional<std::string> log_file;
  uint64_t rlimit_nofile = 1000000;
};

struct CliOutcome {
  std::optional<CliOptions> options;  // set when the daemon should run
  int exit_code = 0;                  // otherwise: exit with this (help, version, error)
};

// Parses the command line; help, version and errors are printed to `out`/`err`.
CliOutcome parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// Raises RLIMIT_NOFILE to min(limit, fs.file-max - 16384, 1000000); 0 leaves it.
Status apply_rlimit_nofile(uint64_t limit);

}  // namespace nydus::daemon
