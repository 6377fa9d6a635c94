// Messages of bytes plus file descriptors over a unix stream socket: the
// framing of the nydusd supervisor socket (reference-nydusd.md §5.1).
//
// ---------------------------------------------------------------------------
// Wire format (fixed by the reference; nydusd and nydus-snapshotter speak it)
// ---------------------------------------------------------------------------
// A message is a byte string plus a list of file descriptors. There is no
// header, no length prefix, no type, no version and no acknowledgement:
//
//   * The sender holds a connected socket (nydusd connects to the supervisor
//     path in both directions; the supervisor listens). Its first sendmsg(2)
//     carries the first bytes of the payload and ALL the fds, as one
//     SCM_RIGHTS control message. Later sendmsg calls carry the rest of the
//     bytes without control data, looping over partial sends, so a message
//     may be far larger than one socket buffer (tests use 8 MiB).
//   * End of message = end of stream. send_message() shuts down the write
//     side (shutdown(SHUT_WR)) when everything was sent; the receiver reads
//     until recv returns 0. The socket stays open for reading, so one
//     connection can carry one message in each direction (half-close).
//   * The receiver loops over recvmsg(2) until EOF, appending bytes and
//     collecting the fds of every SCM_RIGHTS control message it sees (the
//     reference sends one; collecting all costs nothing and leaks nothing).
//     The reference receiver keeps the first fd; callers decide.
//
// Who initiates: whoever connects. Replies do not exist; a "request" for the
// saved state is simply connecting to a supervisor that sends.
//
// Choices made here, beyond the reference:
//   * Zero-length payload with fds: refused (kInvalidArgument). A unix stream
//     socket cannot carry ancillary data on a zero-length send (the kernel
//     queues nothing and the fds would be silently dropped), and inventing a
//     padding byte would change the payload, since the framing has no header.
//     The reference always sends state bytes with its fd. A zero-length
//     payload without fds is valid: the receiver gets an empty message.
//   * More than kMaxFdsPerMessage (253, the kernel's SCM_MAX_FD) fds in one
//     message is kInvalidArgument on send.
//   * Bounds on receive: more than `max_bytes` bytes or more than `max_fds`
//     fds is kTooLarge; a control message the kernel had to truncate
//     (MSG_CTRUNC: more fds than room) is kTooLarge as well. The whole message,
//     from the first read to EOF, must arrive within `timeout` (kTimeout). On
//     every error path each fd received so far is closed before returning.
//   * Send is bounded too (`timeout`, kTimeout) so a peer that never reads
//     cannot hang the sender forever. MSG_NOSIGNAL: a vanished peer is EPIPE,
//     never SIGPIPE.
//   * Received fds are close-on-exec (MSG_CMSG_CLOEXEC).
//
// Known limit of the framing: a sender that fails halfway closes the
// connection like one that finished, so the receiver cannot tell a truncated
// message from a complete one. The payload must validate itself (the saved
// state is a protobuf message with a version; the reference's blob ends in a
// CRC).
//
// The socket may be blocking or not: every call uses MSG_DONTWAIT and waits
// in poll(2), so the timeouts hold either way.
//
// System calls go through a SocketOps seam so tests can fail the Nth call
// (tests/unit/common/fd_passing_test.cc drives a fail-at-N loop).
//
// Thread safety: free functions; a SocketOps implementation is used by one
// call at a time unless it says otherwise.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus {

inline constexpr size_t kDefaultMaxMessageBytes = 64u << 20;  // 64 MiB
inline constexpr size_t kDefaultMaxMessageFds = 64;
// The kernel's SCM_MAX_FD: fds one sendmsg can carry.
inline constexpr size_t kMaxFdsPerMessage = 253;
// How long a send may wait for the peer to drain its receive buffer.
inline constexpr std::chrono::milliseconds kDefaultSendTimeout{10000};

// The system calls fd passing makes. The defaults call the kernel; a test
// subclass overrides them to fail on demand. Each returns what the system call
// returns and sets errno like it.
class SocketOps {
 public:
  virtual ~SocketOps() = default;
  virtual ssize_t sendmsg(int fd, const msghdr* msg, int flags);
  virtual ssize_t recvmsg(int fd, msghdr* msg, int flags);
  virtual int poll(pollfd* fds, nfds_t nfds, int timeout_ms);
  virtual int shutdown(int fd, int how);

  // The stateless instance that calls the kernel.
  static SocketOps& system();
};

// Sends one message on the connected socket `sock` (not owned; the caller
// closes it) and then shuts its write side down, which ends the message.
// `fds` stay owned by the caller (the kernel duplicates them into the
// message). Errors: kInvalidArgument (fds with an empty payload, too many
// fds), kTimeout, kIo/... from the system calls.
Status send_message(int sock, std::span<const uint8_t> bytes, std::span<const int> fds,
                    std::chrono::milliseconds timeout = kDefaultSendTimeout,
                    SocketOps& ops = SocketOps::system());

struct ReceivedMessage {
  std::vector<uint8_t> bytes;
  std::vector<UniqueFd> fds;  // in arrival order; close-on-exec
};

// Reads one message from `sock` (not owned) until EOF. See the framing above.
Result<ReceivedMessage> receive_message(int sock, std::chrono::milliseconds timeout,
                                        size_t max_bytes = kDefaultMaxMessageBytes,
                                        size_t max_fds = kDefaultMaxMessageFds,
                                        SocketOps& ops = SocketOps::system());

// The nydusd side of the supervisor protocol in one call each: connect to the
// supervisor socket at `path` (one attempt, see connect_unix), send or
// receive one message, close.
Status connect_and_send_message(const std::string& path, std::span<const uint8_t> bytes,
                                std::span<const int> fds,
                                std::chrono::milliseconds timeout = kDefaultSendTimeout);
Result<ReceivedMessage> connect_and_receive_message(const std::string& path,
                                                    std::chrono::milliseconds timeout,
                                                    size_t max_bytes = kDefaultMaxMessageBytes,
                                                    size_t max_fds = kDefaultMaxMessageFds);

}  // namespace nydus
