// Unix-domain stream sockets: listen, connect, accept, peer credentials.
//
// Every descriptor returned here is close-on-exec and owned by a UniqueFd.
// Paths are filesystem paths (no abstract namespace) of at most 107 bytes,
// the size of sockaddr_un::sun_path minus its terminating NUL; a longer path
// is kInvalidArgument.
//
// Blocking modes: a listening socket from listen_unix() is O_NONBLOCK, so
// accept_unix() never blocks past its poll even when another acceptor took
// the connection first. Connected sockets (connect_unix, accept_unix,
// unix_socketpair) are blocking; the message functions in fd_passing.h bound
// every wait themselves, whatever the socket's mode.
//
// Thread safety: free functions, no shared state.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus {

// How long connect_unix() waits when the listener's backlog is full.
inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{5000};

// Creates a listening socket at `path`. A stale socket file at `path` (left by
// a process that died) is unlinked first; any other kind of file there is
// kAlreadyExists, never removed. The socket file gets `mode` (chmod after
// bind; nobody can connect before listen(), which comes after the chmod).
Result<UniqueFd> listen_unix(const std::string& path, mode_t mode = 0600, int backlog = 16);

// One connect attempt, no retry: a missing socket file is kNotFound, a file
// nobody listens on is kNotReady (ECONNREFUSED). `timeout` bounds only the
// wait for room in a full backlog (kTimeout when it expires).
Result<UniqueFd> connect_unix(const std::string& path,
                              std::chrono::milliseconds timeout = kDefaultConnectTimeout);

// Retries connect_unix() while the socket is missing or refused (the server
// is still starting), backing off from 1 ms to 50 ms, until `timeout` has
// passed: then kTimeout naming the last failure. Other errors return at once.
Result<UniqueFd> wait_connect_unix(const std::string& path, std::chrono::milliseconds timeout);

// Waits up to `timeout` for a connection on `listen_fd` and accepts it
// (kTimeout when none arrives). The accepted socket is blocking.
Result<UniqueFd> accept_unix(int listen_fd, std::chrono::milliseconds timeout);

// A connected pair of unix stream sockets (socketpair(2)), both blocking.
Result<std::pair<UniqueFd, UniqueFd>> unix_socketpair();

// The credentials of the process on the other end of a connected unix socket,
// as the kernel recorded them at connect() (or socketpair()) time: SO_PEERCRED.
struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};
Result<PeerCredentials> peer_credentials(int sock);

}  // namespace nydus
