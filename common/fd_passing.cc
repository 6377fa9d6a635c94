#include "common/fd_passing.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common/unix_socket.h"

namespace nydus {

namespace {

using Clock = std::chrono::steady_clock;

// Bytes asked for per recvmsg; the buffer grows geometrically up to the limit.
constexpr size_t kReceiveChunk = 256u << 10;

// The control buffer must be aligned for cmsghdr; uint64_t storage is.
using ControlBuffer = std::vector<uint64_t>;

ControlBuffer make_control_buffer(size_t bytes) {
  return ControlBuffer((bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t));
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), std::numeric_limits<int>::max()));
}

// Waits until `sock` is ready for `events` or the deadline passes.
Status wait_ready(SocketOps& ops, int sock, short events, Clock::time_point deadline,
                  std::chrono::milliseconds timeout, const char* what) {
  while (true) {
    int wait_ms = remaining_ms(deadline);
    if (wait_ms == 0) {
      return make_error(ErrorKind::kTimeout, "{}: message not complete within {} ms", what,
                        timeout.count());
    }
    pollfd pfd{sock, events, 0};
    int rc = ops.poll(&pfd, 1, wait_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, fmt::format("{}: poll", what));
    }
    if (rc == 0) continue;  // re-check the deadline
    if (pfd.revents & POLLNVAL) {
      return make_error(ErrorKind::kInvalidArgument, "{}: fd {} is not open", what, sock);
    }
    // Readiness, hang-up or error: the next send/recv reports which.
    return ok_status();
  }
}

// Moves the descriptors of every SCM_RIGHTS control message in `mh` into
// `out`, so that they are owned (and closed on any later error) at once.
void collect_fds(msghdr& mh, std::vector<UniqueFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    if (c->cmsg_len < CMSG_LEN(0)) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      out.emplace_back(fd);
    }
  }
}

}  // namespace

ssize_t SocketOps::sendmsg(int fd, const msghdr* msg, int flags) { return ::sendmsg(fd, msg, flags); }
ssize_t SocketOps::recvmsg(int fd, msghdr* msg, int flags) { return ::recvmsg(fd, msg, flags); }
int SocketOps::poll(pollfd* fds, nfds_t nfds, int timeout_ms) { return ::poll(fds, nfds, timeout_ms); }
int SocketOps::shutdown(int fd, int how) { return ::shutdown(fd, how); }

SocketOps& SocketOps::system() {
  // Stateless: every instance behaves the same, so sharing one is safe.
  static SocketOps ops;
  return ops;
}

Status send_message(int sock, std::span<const uint8_t> bytes, std::span<const int> fds,
                    std::chrono::milliseconds timeout, SocketOps& ops) {
  if (!fds.empty() && bytes.empty()) {
    return make_error(ErrorKind::kInvalidArgument,
                      "send_message: {} fd(s) need at least one payload byte to ride on",
                      fds.size());
  }
  if (fds.size() > kMaxFdsPerMessage) {
    return make_error(ErrorKind::kInvalidArgument, "send_message: {} fds, at most {} allowed",
                      fds.size(), kMaxFdsPerMessage);
  }
  const auto deadline = Clock::now() + timeout;

  ControlBuffer control;
  if (!fds.empty()) {
    control = make_control_buffer(CMSG_SPACE(fds.size() * sizeof(int)));
  }

  size_t sent = 0;
  bool fds_attached = fds.empty();
  while (sent < bytes.size()) {
    iovec iov{const_cast<uint8_t*>(bytes.data()) + sent, bytes.size() - sent};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (!fds_attached) {
      mh.msg_control = control.data();
      mh.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    }
    ssize_t n = ops.sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        NYDUS_TRY(wait_ready(ops, sock, POLLOUT, deadline, timeout, "send_message"));
        continue;
      }
      return Error::from_errno(err, fmt::format("send_message: sendmsg after {} of {} bytes",
                                                sent, bytes.size()));
    }
    if (n == 0) {  // not expected for a non-empty stream send; never spin on it
      return make_error(ErrorKind::kIo, "send_message: sendmsg sent nothing after {} of {} bytes",
                        sent, bytes.size());
    }
    // A positive return means the first chunk, and the fds with it, is queued.
    fds_attached = true;
    sent += static_cast<size_t>(n);
  }

  // End of message = end of stream.
  int rc;
  do {
    rc = ops.shutdown(sock, SHUT_WR);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Error::from_errno(errno, "send_message: shutdown(SHUT_WR)");
  return ok_status();
}

Result<ReceivedMessage> receive_message(int sock, std::chrono::milliseconds timeout,
                                        size_t max_bytes, size_t max_fds, SocketOps& ops) {
  const auto deadline = Clock::now() + timeout;
  // One byte past the limit is asked for, so that an oversized message is
  // seen as such rather than cut off silently.
  const size_t read_limit =
      max_bytes == std::numeric_limits<size_t>::max() ? max_bytes : max_bytes + 1;

  ReceivedMessage msg;
  size_t received = 0;
  ControlBuffer control;
  while (true) {
    size_t want = std::min(kReceiveChunk, read_limit - received);
    if (msg.bytes.size() < received + want) msg.bytes.resize(received + want);

    // Room for the fds still allowed (an oversize count is caught below, and
    // beyond the room the kernel drops them and sets MSG_CTRUNC), plus room
    // for SCM_CREDENTIALS in case the socket has SO_PASSCRED set.
    size_t fd_room = std::min(max_fds - std::min(max_fds, msg.fds.size()), kMaxFdsPerMessage);
    size_t control_len = (fd_room ? CMSG_SPACE(fd_room * sizeof(int)) : 0) +
                         CMSG_SPACE(sizeof(ucred));
    if (control.size() * sizeof(uint64_t) < control_len) control = make_control_buffer(control_len);

    iovec iov{msg.bytes.data() + received, want};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.data();
    mh.msg_controllen = control_len;
    ssize_t n = ops.recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        NYDUS_TRY(wait_ready(ops, sock, POLLIN, deadline, timeout, "receive_message"));
        continue;
      }
      return Error::from_errno(err, fmt::format("receive_message: recvmsg after {} bytes",
                                                received));
    }
    collect_fds(mh, msg.fds);
    if (mh.msg_flags & MSG_CTRUNC) {
      return make_error(ErrorKind::kTooLarge,
                        "receive_message: control data truncated (more than {} fds, or "
                        "unexpected control messages)",
                        max_fds);
    }
    if (msg.fds.size() > max_fds) {
      return make_error(ErrorKind::kTooLarge, "receive_message: more than {} fds", max_fds);
    }
    if (n == 0) break;  // EOF: end of message
    received += static_cast<size_t>(n);
    if (received > max_bytes) {
      return make_error(ErrorKind::kTooLarge, "receive_message: more than {} bytes", max_bytes);
    }
  }
  msg.bytes.resize(received);
  return msg;
}

Status connect_and_send_message(const std::string& path, std::span<const uint8_t> bytes,
                                std::span<const int> fds, std::chrono::milliseconds timeout) {
  NYDUS_ASSIGN_OR_RETURN(UniqueFd sock, connect_unix(path, timeout));
  Status st = send_message(sock.get(), bytes, fds, timeout);
  if (!st.ok()) return std::move(st).error().wrap(fmt::format("send to {}", path));
  return ok_status();
}

Result<ReceivedMessage> connect_and_receive_message(const std::string& path,
                                                    std::chrono::milliseconds timeout,
                                                    size_t max_bytes, size_t max_fds) {
  NYDUS_ASSIGN_OR_RETURN(UniqueFd sock, connect_unix(path, timeout));
  auto res = receive_message(sock.get(), timeout, max_bytes, max_fds);
  if (!res.ok()) return std::move(res).error().wrap(fmt::format("receive from {}", path));
  return res;
}

}  // namespace nydus
