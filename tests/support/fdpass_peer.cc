// The other process of the fd-passing tests (tests/unit/common/fd_passing_test.cc).
// It runs behind a real fork+exec boundary, so what it receives went through
// the kernel as SCM_RIGHTS, not through shared memory.
//
//   fdpass_peer (--connect PATH | --fd N) --token TOKEN
//
// 1. Gets a connected socket: connects to PATH, or uses inherited fd N.
// 2. Receives one message (supervisor framing: bytes + fds, ends at EOF).
//    fds[0] must be the write end of a pipe.
// 3. Sets O_NONBLOCK on fds[0] with F_SETFL (a file status flag: it lives in
//    the open file description, so the sender sees it on its own copy) and
//    writes TOKEN into it.
// 4. Makes a pipe of its own, writes "back:TOKEN" into it, closes its write
//    end and sends one message back on the same socket:
//    bytes "size=<n> fnv=<hex> fds=<count>" (n, FNV-1a 64 of the received
//    bytes, number of fds received) with the pipe's read end attached.
// Exit status: 0 on success, 2 usage, 3 socket, 4 receive, 5 fd checks,
// 6 send.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "common/fd_passing.h"
#include "common/unix_socket.h"

namespace {

constexpr std::chrono::milliseconds kPeerTimeout{20000};

uint64_t fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

int fail(int code, const std::string& what) {
  std::fprintf(stderr, "fdpass_peer: %s\n", what.c_str());
  return code;
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string connect_path;
  int inherited_fd = -1;
  std::string token;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--connect") connect_path = argv[i + 1];
    else if (flag == "--fd") inherited_fd = std::atoi(argv[i + 1]);
    else if (flag == "--token") token = argv[i + 1];
    else return fail(2, "unknown flag " + flag);
  }
  if (token.empty() || (connect_path.empty() == (inherited_fd < 0))) {
    return fail(2, "usage: fdpass_peer (--connect PATH | --fd N) --token TOKEN");
  }

  nydus::UniqueFd sock;
  if (!connect_path.empty()) {
    auto res = nydus::connect_unix(connect_path);
    if (!res.ok()) return fail(3, res.error().message());
    sock = std::move(res).value();
  } else {
    sock.reset(inherited_fd);
  }

  auto msg = nydus::receive_message(sock.get(), kPeerTimeout);
  if (!msg.ok()) return fail(4, msg.error().message());
  if (msg->fds.empty()) return fail(5, "no fd received");

  int pipe_w = msg->fds[0].get();
  int flags = ::fcntl(pipe_w, F_GETFL);
  if (flags < 0 || ::fcntl(pipe_w, F_SETFL, flags | O_NONBLOCK) != 0) {
    return fail(5, fmt::format("F_SETFL on received fd: {}", std::strerror(errno)));
  }
  if (!write_all(pipe_w, token)) return fail(5, "write token");

  int back[2];
  if (::pipe2(back, O_CLOEXEC) != 0) return fail(5, "pipe2");
  nydus::UniqueFd back_r(back[0]);
  {
    nydus::UniqueFd back_w(back[1]);
    if (!write_all(back_w.get(), "back:" + token)) return fail(5, "write back token");
  }

  std::string reply = fmt::format("size={} fnv={:016x} fds={}", msg->bytes.size(),
                                  fnv1a64(msg->bytes), msg->fds.size());
  int reply_fds[] = {back_r.get()};
  auto sent = nydus::send_message(
      sock.get(), {reinterpret_cast<const uint8_t*>(reply.data()), reply.size()}, reply_fds,
      kPeerTimeout);
  if (!sent.ok()) return fail(6, sent.error().message());
  return 0;
}
