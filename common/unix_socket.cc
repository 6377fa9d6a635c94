#include "common/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace nydus {

namespace {

using Clock = std::chrono::steady_clock;

// Backoff between connect attempts in wait_connect_unix().
constexpr std::chrono::milliseconds kConnectRetryInitial{1};
constexpr std::chrono::milliseconds kConnectRetryMax{50};

Result<sockaddr_un> make_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return make_error(ErrorKind::kInvalidArgument,
                      "unix socket path '{}' must be 1..{} bytes long", path,
                      sizeof(addr.sun_path) - 1);
  }
  if (path.find('\0') != std::string::npos) {
    return make_error(ErrorKind::kInvalidArgument, "unix socket path contains a NUL byte");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Milliseconds left until `deadline`, rounded up so that a poll never spins
// with a zero timeout while time remains; 0 once the deadline has passed.
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX));
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  // A zero SO_SNDTIMEO means "block forever"; the smallest real bound is 1 us.
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  return tv;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::string& path, mode_t mode, int backlog) {
  NYDUS_ASSIGN_OR_RETURN(sockaddr_un addr, make_address(path));

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(ErrorKind::kAlreadyExists,
                        "listen on {}: a file that is not a socket is in the way", path);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Error::from_errno(errno, fmt::format("unlink stale socket {}", path));
    }
  } else if (errno != ENOENT) {
    return Error::from_errno(errno, fmt::format("stat {}", path));
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::from_errno(errno, "socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::from_errno(errno, fmt::format("bind {}", path));
  }
  if (::chmod(path.c_str(), mode) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return Error::from_errno(err, fmt::format("chmod {}", path));
  }
  if (::listen(fd.get(), backlog) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return Error::from_errno(err, fmt::format("listen {}", path));
  }
  return fd;
}

Result<UniqueFd> connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
  NYDUS_ASSIGN_OR_RETURN(sockaddr_un addr, make_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "socket(AF_UNIX)");

  // A unix connect() blocks only while the listener's backlog is full, for at
  // most the socket's send timeout; it then fails with EAGAIN.
  timeval tv = to_timeval(timeout);
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return Error::from_errno(errno, "setsockopt(SO_SNDTIMEO)");
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    std::string what = fmt::format("connect {}", path);
    if (err == EAGAIN) {
      return make_error(ErrorKind::kTimeout, "{}: backlog still full after {} ms", what,
                        timeout.count());
    }
    if (err == ECONNREFUSED) {
      return Error(ErrorKind::kNotReady, fmt::format("{}: {}", what, std::strerror(err)), err);
    }
    return Error::from_errno(err, what);
  }
  timeval zero{};
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero)) != 0) {
    return Error::from_errno(errno, "setsockopt(SO_SNDTIMEO)");
  }
  return fd;
}

Result<UniqueFd> wait_connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto backoff = kConnectRetryInitial;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    auto res = connect_unix(path, std::max(left, std::chrono::milliseconds(1)));
    if (res.ok()) return res;
    ErrorKind kind = res.error().kind();
    if (kind != ErrorKind::kNotFound && kind != ErrorKind::kNotReady) return res;
    auto now = Clock::now();
    if (now >= deadline) {
      return make_error(ErrorKind::kTimeout, "no listener on {} within {} ms (last: {})", path,
                        timeout.count(), res.error().message());
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kConnectRetryMax);
  }
}

Result<UniqueFd> accept_unix(int listen_fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    int err = errno;
    // ECONNABORTED: a queued connection went away; wait for the next one.
    if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED) {
      return Error::from_errno(err, "accept");
    }
    if (err == EINTR) continue;
    int wait_ms = remaining_ms(deadline);
    if (wait_ms == 0) {
      return make_error(ErrorKind::kTimeout, "no connection within {} ms", timeout.count());
    }
    pollfd pfd{listen_fd, POLLIN, 0};
    int rc = ::poll(&pfd, 1, wait_ms);
    if (rc < 0 && errno != EINTR) return Error::from_errno(errno, "poll(listen socket)");
    if (rc > 0 && (pfd.revents & POLLNVAL)) {
      return make_error(ErrorKind::kInvalidArgument, "accept: fd {} is not open", listen_fd);
    }
    // For a blocking listener, accept only once poll reported a connection.
    if (rc == 0) {
      return make_error(ErrorKind::kTimeout, "no connection within {} ms", timeout.count());
    }
  }
}

Result<std::pair<UniqueFd, UniqueFd>> unix_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::from_errno(errno, "socketpair(AF_UNIX)");
  }
  return std::make_pair(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

Result<PeerCredentials> peer_credentials(int sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::from_errno(errno, "getsockopt(SO_PEERCRED)");
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

}  // namespace nydus
