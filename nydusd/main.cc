// nydusd: the data plane. Serves RAFS v6 images through FUSE, or (`nydusd
// singleton --fscache DIR`) to the kernel's EROFS over /dev/cachefiles; its
// control API lets a supervisor mount or bind images, stop it at a request
// boundary and hand its FUSE or cachefiles connection to a successor.
//
// Startup order (docs/reference-nydusd.md §1, §4.3):
//   normal:   Mount (image into the VFS, kernel mount) -> Start -> API socket
//   upgrade:  API socket only, state INIT, waiting for a takeover
// Shutdown: SIGTERM/SIGINT unmount and exit; PUT /api/v1/daemon/exit exits
// without unmounting (the mount belongs to the successor).
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <memory>

#include <spdlog/spdlog.h>

#include "common/http.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "nydusd/daemon/api.h"
#include "nydusd/daemon/cli.h"
#include "nydusd/daemon/daemon.h"
#include "nydusd/daemon/version.h"

namespace {

using nydus::daemon::Daemon;
using nydus::daemon::ExitReason;

// Signals are taken synchronously through a signalfd; block them in every
// thread (threads inherit the mask, so this runs before any is created).
nydus::Result<nydus::UniqueFd> block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    return nydus::Error::from_errno(errno, "pthread_sigmask");
  }
  ::signal(SIGPIPE, SIG_IGN);  // a peer closing a socket is an error code, not a death
  int fd = ::signalfd(-1, &set, SFD_CLOEXEC);
  if (fd < 0) return nydus::Error::from_errno(errno, "signalfd");
  return nydus::UniqueFd(fd);
}

// Waits for a signal or the daemon's own request to end. Returns the reason.
ExitReason wait_for_exit(Daemon& daemon, int signal_fd) {
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {daemon.exit_fd(), POLLIN, 0}};
  while (true) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", std::strerror(errno));
      return ExitReason::kShutdown;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
        spdlog::info("received signal {}, shutting down", strsignal(static_cast<int>(info.ssi_signo)));
      }
      return ExitReason::kShutdown;
    }
    if (fds[1].revents & POLLIN) return daemon.exit_reason();
  }
}

int run(const nydus::daemon::CliOptions& cli) {
  auto level = nydus::parse_log_level(cli.log_level);
  if (auto s = nydus::init_logging("nydusd", level.ok() ? *level : spdlog::level::info, cli.log_file);
      !s.ok()) {
    std::cerr << "nydusd: " << s.error().message() << "\n";
    return 1;
  }
  spdlog::info("nydusd {} ({}) starting", nydus::daemon::build_info().package_ver,
               nydus::daemon::build_info().git_commit);
  if (auto s = nydus::daemon::apply_rlimit_nofile(cli.rlimit_nofile); !s.ok()) {
    spdlog::warn("cannot raise the open file limit: {}", s.error().message());
  }
  auto signal_fd = block_signals();
  if (!signal_fd.ok()) {
    spdlog::error("{}", signal_fd.error().message());
    return 1;
  }

  auto daemon = Daemon::create(cli.daemon);
  if (!daemon.ok()) {
    spdlog::error("cannot create the daemon: {}", daemon.error().message());
    return 1;
  }
  Daemon& d = **daemon;
  // Errors logged from here on also feed GET /api/v1/daemon/events.
  spdlog::default_logger()->sinks().push_back(nydus::daemon::ErrorEvents::make_sink(d.error_events()));

  std::unique_ptr<nydus::HttpServerThread> api;
  auto start_api = [&]() -> nydus::Status {
    if (!cli.apisock) return nydus::ok_status();
    nydus::HttpServerOptions options;
    options.socket_mode = 0600;
    options.body_limit = nydus::daemon::kApiBodyLimit;
    api = std::make_unique<nydus::HttpServerThread>(*cli.apisock,
                                                    nydus::daemon::build_api_router(d), options);
    NYDUS_TRY(api->start());
    spdlog::info("control API listening on {}", *cli.apisock);
    return nydus::ok_status();
  };

  if (!cli.daemon.upgrade) {
    if (auto s = d.start_serving(); !s.ok()) {
      spdlog::error("cannot start serving {}: {}",
                    d.singleton() ? "fscache dir " + cli.daemon.fscache.dir : cli.daemon.mountpoint,
                    s.error().message());
      return 1;
    }
  }
  if (auto s = start_api(); !s.ok()) {
    spdlog::error("cannot start the control API: {}", s.error().message());
    (void)d.shutdown();
    return 1;
  }

  ExitReason reason = wait_for_exit(d, signal_fd->get());
  int code = 0;
  if (reason == ExitReason::kShutdown || reason == ExitReason::kConnectionLost) {
    if (auto s = d.shutdown(); !s.ok()) {
      spdlog::error("shutdown: {}", s.error().message());
      code = 1;
    }
  }
  if (api) api->stop();
  spdlog::info("nydusd exits ({})", reason == ExitReason::kExitForUpgrade
                                         ? "exit requested: the mount is left in place"
                                         : "shut down");
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  auto outcome = nydus::daemon::parse_cli(argc, argv, std::cout, std::cerr);
  if (!outcome.options) return outcome.exit_code;
  try {
    return run(*outcome.options);
  } catch (const std::exception& e) {
    spdlog::critical("nydusd: unexpected error: {}", e.what());
    return 1;
  }
}
