// Tests of common/unix_socket.h and common/fd_passing.h: real unix sockets,
// a real fork+exec peer (tests/support/fdpass_peer.cc), and a fail-at-N loop
// over the syscall seam that checks every error path returns an error and
// leaks no fd.
#include "common/fd_passing.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/process.h"
#include "common/unix_socket.h"
#include "tests/support/temp_dir.h"

using namespace std::chrono_literals;
using nydus::ErrorKind;
using nydus::Process;
using nydus::ReceivedMessage;
using nydus::SocketOps;
using nydus::UniqueFd;

namespace {

constexpr auto kTestTimeout = 10s;
const std::string kPeerPath = NYDUS_BIN_DIR "/fdpass_peer";

size_t count_open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct Pipe {
  UniqueFd r, w;
};

Pipe make_pipe() {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

std::pair<UniqueFd, UniqueFd> make_socketpair() {
  auto res = nydus::unix_socketpair();
  REQUIRE(res.ok());
  return std::move(res).value();
}

std::vector<uint8_t> pattern(size_t size, uint32_t seed = 1) {
  std::vector<uint8_t> v(size);
  uint32_t x = seed;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return v;
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string as_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

void write_str(int fd, const std::string& s) {
  REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
}

// Reads until EOF or `max` bytes.
std::string read_some(int fd, size_t max = 4096) {
  std::string out(max, '\0');
  ssize_t n = ::read(fd, out.data(), max);
  REQUIRE(n >= 0);
  out.resize(static_cast<size_t>(n));
  return out;
}

uint64_t fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Runs a sender on its own thread; the result is checked on the main thread
// (Catch2 assertions are not thread-safe).
class SenderThread {
 public:
  SenderThread(int sock, std::vector<uint8_t> bytes, std::vector<int> fds,
               SocketOps& ops = SocketOps::system())
      : bytes_(std::move(bytes)), fds_(std::move(fds)) {
    thread_ = std::thread([this, sock, &ops] {
      status_ = nydus::send_message(sock, bytes_, fds_, kTestTimeout, ops);
    });
  }
  ~SenderThread() { join(); }
  const nydus::Status& join() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }

 private:
  std::vector<uint8_t> bytes_;
  std::vector<int> fds_;
  nydus::Status status_;
  std::thread thread_;
};

// Fails the Nth system call (counting from 0) with `err`; the calls before
// pass through to the kernel. With `interrupt_every`, every other call first
// fails with EINTR instead, which the code must retry.
class FailingOps : public SocketOps {
 public:
  explicit FailingOps(int fail_at, int err = EIO, bool interrupt_every = false)
      : fail_at_(fail_at), err_(err), interrupt_every_(interrupt_every) {}

  ssize_t sendmsg(int fd, const msghdr* msg, int flags) override {
    if (inject()) return -1;
    return SocketOps::sendmsg(fd, msg, flags);
  }
  ssize_t recvmsg(int fd, msghdr* msg, int flags) override {
    if (inject()) return -1;
    return SocketOps::recvmsg(fd, msg, flags);
  }
  int poll(pollfd* fds, nfds_t nfds, int timeout_ms) override {
    if (inject()) return -1;
    return SocketOps::poll(fds, nfds, timeout_ms);
  }
  int shutdown(int fd, int how) override {
    if (inject()) return -1;
    return SocketOps::shutdown(fd, how);
  }
  int calls() const { return calls_; }

 private:
  bool inject() {
    int n = calls_++;
    if (interrupt_every_ && (n % 2 == 0)) {
      errno = EINTR;
      return true;
    }
    if (n == fail_at_) {
      errno = err_;
      return true;
    }
    return false;
  }

  int fail_at_;
  int err_;
  bool interrupt_every_;
  int calls_ = 0;
};

bool is_cloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

}  // namespace

TEST_CASE("several fds and bytes cross a socketpair, received fds are close-on-exec") {
  size_t fds_before = count_open_fds();
  {
    auto [a, b] = make_socketpair();
    Pipe p1 = make_pipe();
    Pipe p2 = make_pipe();
    UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(devnull);
    int fds[] = {p1.w.get(), p2.r.get(), devnull.get()};
    REQUIRE(nydus::send_message(a.get(), as_bytes("hello"), fds).ok());

    auto msg = nydus::receive_message(b.get(), kTestTimeout);
    REQUIRE(msg.ok());
    CHECK(as_string(msg->bytes) == "hello");
    REQUIRE(msg->fds.size() == 3);
    for (auto& fd : msg->fds) {
      CHECK(fd.valid());
      CHECK(is_cloexec(fd.get()));
    }
    // Order is preserved: fds[0] is p1's write end, fds[1] p2's read end.
    write_str(msg->fds[0].get(), "one");
    CHECK(read_some(p1.r.get()) == "one");
    write_str(p2.w.get(), "two");
    CHECK(read_some(msg->fds[1].get()) == "two");
  }
  CHECK(count_open_fds() == fds_before);
}

TEST_CASE("an 8 MiB message with fds crosses listen/connect/accept sockets") {
  nydus::testing::TempDir dir("fdpass");
  std::string path = (dir / "sup.sock").string();
  auto listener = nydus::listen_unix(path);
  REQUIRE(listener.ok());

  auto payload = pattern(8u << 20);
  Pipe p = make_pipe();
  nydus::Status send_status;
  std::thread sender([&] {
    auto sock = nydus::wait_connect_unix(path, kTestTimeout);
    if (!sock.ok()) {
      send_status = std::move(sock).error();
      return;
    }
    int fds[] = {p.w.get(), p.r.get()};
    send_status = nydus::send_message(sock->get(), payload, fds);
  });

  auto conn = nydus::accept_unix(listener->get(), kTestTimeout);
  REQUIRE(conn.ok());
  auto creds = nydus::peer_credentials(conn->get());
  REQUIRE(creds.ok());
  CHECK(creds->pid == ::getpid());
  CHECK(creds->uid == ::getuid());
  CHECK(creds->gid == ::getgid());

  auto msg = nydus::receive_message(conn->get(), kTestTimeout);
  sender.join();
  REQUIRE(send_status.ok());
  REQUIRE(msg.ok());
  CHECK(msg->bytes.size() == payload.size());
  CHECK(msg->bytes == payload);
  REQUIRE(msg->fds.size() == 2);
  write_str(msg->fds[0].get(), "x");
  CHECK(read_some(msg->fds[1].get()) == "x");
}

TEST_CASE("a pipe fd crosses fork+exec and stays the same open file description") {
  nydus::testing::TempDir dir("fdpass-exec");
  std::string path = (dir / "sup.sock").string();
  auto listener = nydus::listen_unix(path);
  REQUIRE(listener.ok());

  nydus::SpawnOptions opts;
  opts.argv = {kPeerPath, "--connect", path, "--token", "tok-42"};
  opts.parent_death_signal = SIGKILL;
  auto child = Process::spawn(opts);
  REQUIRE(child.ok());

  auto conn = nydus::accept_unix(listener->get(), kTestTimeout);
  REQUIRE(conn.ok());
  // SO_PEERCRED names the process that connected: the child we spawned.
  auto creds = nydus::peer_credentials(conn->get());
  REQUIRE(creds.ok());
  CHECK(creds->pid == child->pid());

  Pipe p = make_pipe();
  REQUIRE((::fcntl(p.w.get(), F_GETFL) & O_NONBLOCK) == 0);
  auto payload = pattern(8u << 20, 7);
  int fds[] = {p.w.get()};
  REQUIRE(nydus::send_message(conn->get(), payload, fds, kTestTimeout).ok());

  // The peer's reply arrives on the same connection (half-close).
  auto reply = nydus::receive_message(conn->get(), kTestTimeout);
  REQUIRE(reply.ok());
  CHECK(as_string(reply->bytes) ==
        fmt::format("size={} fnv={:016x} fds=1", payload.size(), fnv1a64(payload)));

  auto status = child->wait(kTestTimeout);
  REQUIRE(status.ok());
  CHECK(*status == 0);

  // The peer set O_NONBLOCK through its copy; a file status flag lives in the
  // open file description, so our copy shows it. A reopened file (same
  // inode, new description) would not.
  CHECK((::fcntl(p.w.get(), F_GETFL) & O_NONBLOCK) != 0);
  p.w.reset();
  CHECK(read_some(p.r.get()) == "tok-42");

  // And an fd came back the other way.
  REQUIRE(reply->fds.size() == 1);
  CHECK(read_some(reply->fds[0].get()) == "back:tok-42");
}

TEST_CASE("a socket passed to a child at a chosen fd number carries a message both ways") {
  auto [ours, theirs] = make_socketpair();
  nydus::SpawnOptions opts;
  opts.argv = {kPeerPath, "--fd", "5", "--token", "inherited"};
  opts.fds = {{theirs.get(), 5}};
  opts.parent_death_signal = SIGKILL;
  auto child = Process::spawn(opts);
  REQUIRE(child.ok());
  theirs.reset();

  auto creds = nydus::peer_credentials(ours.get());
  REQUIRE(creds.ok());
  // socketpair records its creator (us), not the process that inherited it.
  CHECK(creds->pid == ::getpid());

  Pipe p = make_pipe();
  int fds[] = {p.w.get()};
  REQUIRE(nydus::send_message(ours.get(), as_bytes("small"), fds).ok());
  auto reply = nydus::receive_message(ours.get(), kTestTimeout);
  REQUIRE(reply.ok());
  CHECK(as_string(reply->bytes) ==
        fmt::format("size=5 fnv={:016x} fds=1", fnv1a64({'s', 'm', 'a', 'l', 'l'})));
  auto status = child->wait(kTestTimeout);
  REQUIRE(status.ok());
  CHECK(*status == 0);
  p.w.reset();
  CHECK(read_some(p.r.get()) == "inherited");
  REQUIRE(reply->fds.size() == 1);
  CHECK(read_some(reply->fds[0].get()) == "back:inherited");
}

TEST_CASE("zero-length payloads: fds need a byte to ride on, an empty message is valid") {
  auto [a, b] = make_socketpair();
  Pipe p = make_pipe();
  int fds[] = {p.w.get()};
  auto refused = nydus::send_message(a.get(), {}, fds);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind() == ErrorKind::kInvalidArgument);

  REQUIRE(nydus::send_message(a.get(), {}, {}).ok());
  auto msg = nydus::receive_message(b.get(), kTestTimeout);
  REQUIRE(msg.ok());
  CHECK(msg->bytes.empty());
  CHECK(msg->fds.empty());
}

TEST_CASE("receive bounds size, fd count and time, closing every fd it got") {
  size_t fds_before = count_open_fds();
  SECTION("more bytes than max_bytes is TooLarge") {
    auto [a, b] = make_socketpair();
    Pipe p = make_pipe();
    SenderThread sender(a.get(), pattern(1u << 20), {p.w.get(), p.r.get()});
    auto msg = nydus::receive_message(b.get(), kTestTimeout, /*max_bytes=*/1000);
    REQUIRE_FALSE(msg.ok());
    CHECK(msg.error().kind() == ErrorKind::kTooLarge);
    b.reset();  // the sender sees EPIPE and stops
    sender.join();
  }
  SECTION("exactly max_bytes is fine") {
    auto [a, b] = make_socketpair();
    SenderThread sender(a.get(), pattern(1000), {});
    auto msg = nydus::receive_message(b.get(), kTestTimeout, /*max_bytes=*/1000);
    REQUIRE(msg.ok());
    CHECK(msg->bytes.size() == 1000);
    REQUIRE(sender.join().ok());
  }
  SECTION("more fds than max_fds in one control message is TooLarge (MSG_CTRUNC)") {
    auto [a, b] = make_socketpair();
    Pipe p1 = make_pipe(), p2 = make_pipe(), p3 = make_pipe();
    int fds[] = {p1.r.get(), p1.w.get(), p2.r.get(), p2.w.get(), p3.r.get()};
    REQUIRE(nydus::send_message(a.get(), as_bytes("x"), fds).ok());
    auto msg = nydus::receive_message(b.get(), kTestTimeout, nydus::kDefaultMaxMessageBytes,
                                      /*max_fds=*/2);
    REQUIRE_FALSE(msg.ok());
    CHECK(msg.error().kind() == ErrorKind::kTooLarge);
  }
  SECTION("a message that does not end in time is Timeout") {
    auto [a, b] = make_socketpair();
    Pipe p = make_pipe();
    // Bytes and an fd, but no end of stream: the sender keeps the socket.
    msghdr mh{};
    char byte = 'x';
    iovec iov{&byte, 1};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int fd = p.w.get();
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    REQUIRE(::sendmsg(a.get(), &mh, 0) == 1);
    auto start = std::chrono::steady_clock::now();
    auto msg = nydus::receive_message(b.get(), 100ms);
    auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(msg.ok());
    CHECK(msg.error().kind() == ErrorKind::kTimeout);
    CHECK(elapsed >= 100ms);
    CHECK(elapsed < 5s);
  }
  CHECK(count_open_fds() == fds_before);
}

TEST_CASE("send is bounded and never raises SIGPIPE") {
  SECTION("a peer that never reads makes a large send time out") {
    auto [a, b] = make_socketpair();
    auto start = std::chrono::steady_clock::now();
    auto st = nydus::send_message(a.get(), pattern(8u << 20), {}, 100ms);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind() == ErrorKind::kTimeout);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
  }
  SECTION("a closed peer is an error (EPIPE), not a signal") {
    auto [a, b] = make_socketpair();
    b.reset();
    auto st = nydus::send_message(a.get(), as_bytes("lost"), {});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().to_errno() == EPIPE);
  }
}

TEST_CASE("fail-at-N on the sender: every failure is an error and leaks no fd") {
  auto payload = pattern(1u << 20);
  int n = 0;
  for (;; ++n) {
    REQUIRE(n < 100000);
    size_t fds_before = count_open_fds();
    bool succeeded = false;
    {
      auto [a, b] = make_socketpair();
      Pipe p = make_pipe();
      FailingOps ops(n);
      nydus::Result<ReceivedMessage> received = nydus::make_error(ErrorKind::kInternal, "unset");
      std::thread receiver([&, sock = b.get()] { received = nydus::receive_message(sock, kTestTimeout); });
      int fds[] = {p.w.get(), p.r.get()};
      auto st = nydus::send_message(a.get(), payload, fds, kTestTimeout, ops);
      a.reset();  // a failed sender closes too; the receiver sees EOF
      receiver.join();
      succeeded = st.ok();
      if (succeeded) {
        REQUIRE(received.ok());
        CHECK(received->bytes == payload);
        CHECK(received->fds.size() == 2);
      } else {
        CHECK_FALSE(st.error().message().empty());
        CHECK(ops.calls() == n + 1);  // it stopped at the failed call
      }
    }
    CHECK(count_open_fds() == fds_before);
    if (succeeded) break;
  }
  std::fprintf(stderr, "fail-at-N sender: %d failing runs before success\n", n);
  CHECK(n >= 2);  // at least sendmsg and shutdown
}

TEST_CASE("fail-at-N on the receiver: every failure is an error and leaks no fd") {
  auto payload = pattern(1u << 20, 3);
  int n = 0;
  for (;; ++n) {
    REQUIRE(n < 100000);
    size_t fds_before = count_open_fds();
    bool succeeded = false;
    {
      auto [a, b] = make_socketpair();
      Pipe p = make_pipe();
      FailingOps ops(n);
      SenderThread sender(a.get(), payload, {p.w.get(), p.r.get()});
      auto msg = nydus::receive_message(b.get(), kTestTimeout, nydus::kDefaultMaxMessageBytes,
                                        nydus::kDefaultMaxMessageFds, ops);
      succeeded = msg.ok();
      if (succeeded) {
        CHECK(msg->bytes == payload);
        CHECK(msg->fds.size() == 2);
      } else {
        CHECK(msg.error().kind() != ErrorKind::kTimeout);
        CHECK(ops.calls() == n + 1);
      }
      b.reset();  // unblocks a sender still waiting for buffer space
      sender.join();
    }
    CHECK(count_open_fds() == fds_before);
    if (succeeded) break;
  }
  std::fprintf(stderr, "fail-at-N receiver: %d failing runs before success\n", n);
  CHECK(n >= 2);
}

TEST_CASE("EINTR from any system call is retried") {
  auto [a, b] = make_socketpair();
  Pipe p = make_pipe();
  FailingOps send_ops(-1, EIO, /*interrupt_every=*/true);
  FailingOps recv_ops(-1, EIO, /*interrupt_every=*/true);
  auto payload = pattern(1u << 20, 5);
  SenderThread sender(a.get(), payload, {p.w.get()}, send_ops);
  auto msg = nydus::receive_message(b.get(), kTestTimeout, nydus::kDefaultMaxMessageBytes,
                                    nydus::kDefaultMaxMessageFds, recv_ops);
  REQUIRE(sender.join().ok());
  REQUIRE(msg.ok());
  CHECK(msg->bytes == payload);
  CHECK(msg->fds.size() == 1);
}

TEST_CASE("connect_and_send_message / connect_and_receive_message speak to a listener") {
  nydus::testing::TempDir dir("fdpass-conn");
  std::string path = (dir / "s.sock").string();
  auto listener = nydus::listen_unix(path);
  REQUIRE(listener.ok());
  Pipe p = make_pipe();
  nydus::Status st;
  std::thread client([&] {
    int fds[] = {p.w.get()};
    st = nydus::connect_and_send_message(path, as_bytes("state"), fds);
  });
  auto conn = nydus::accept_unix(listener->get(), kTestTimeout);
  REQUIRE(conn.ok());
  auto msg = nydus::receive_message(conn->get(), kTestTimeout);
  client.join();
  REQUIRE(st.ok());
  REQUIRE(msg.ok());
  CHECK(as_string(msg->bytes) == "state");
  CHECK(msg->fds.size() == 1);

  // The other direction: the supervisor sends to whoever connects.
  nydus::Result<ReceivedMessage> got = nydus::make_error(ErrorKind::kInternal, "unset");
  std::thread fetcher([&] { got = nydus::connect_and_receive_message(path, kTestTimeout); });
  auto conn2 = nydus::accept_unix(listener->get(), kTestTimeout);
  REQUIRE(conn2.ok());
  int fds[] = {p.r.get()};
  REQUIRE(nydus::send_message(conn2->get(), as_bytes("restore"), fds).ok());
  fetcher.join();
  REQUIRE(got.ok());
  CHECK(as_string(got->bytes) == "restore");
  CHECK(got->fds.size() == 1);
}

TEST_CASE("listen_unix replaces a stale socket, refuses other files and sets the mode") {
  nydus::testing::TempDir dir("sock");
  std::string path = (dir / "a.sock").string();
  {
    auto first = nydus::listen_unix(path);
    REQUIRE(first.ok());
  }
  // The first listener is closed; its socket file is stale now.
  REQUIRE(std::filesystem::exists(path));
  auto refused = nydus::connect_unix(path);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind() == ErrorKind::kNotReady);

  auto second = nydus::listen_unix(path, 0660);
  REQUIRE(second.ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);
  CHECK(is_cloexec(second->get()));
  CHECK(nydus::connect_unix(path).ok());

  std::string file = (dir / "regular").string();
  { UniqueFd f(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)); }
  auto in_the_way = nydus::listen_unix(file);
  REQUIRE_FALSE(in_the_way.ok());
  CHECK(in_the_way.error().kind() == ErrorKind::kAlreadyExists);
  CHECK(std::filesystem::is_regular_file(file));

  auto too_long = nydus::listen_unix((dir / std::string(200, 'x')).string());
  REQUIRE_FALSE(too_long.ok());
  CHECK(too_long.error().kind() == ErrorKind::kInvalidArgument);
}

TEST_CASE("connect, wait_connect and accept are bounded") {
  nydus::testing::TempDir dir("sock-wait");
  std::string path = (dir / "late.sock").string();

  auto missing = nydus::connect_unix(path);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);

  auto start = std::chrono::steady_clock::now();
  auto timed_out = nydus::wait_connect_unix(path, 50ms);
  REQUIRE_FALSE(timed_out.ok());
  CHECK(timed_out.error().kind() == ErrorKind::kTimeout);
  CHECK(std::chrono::steady_clock::now() - start < 2s);

  auto listener = nydus::listen_unix(path);
  REQUIRE(listener.ok());
  start = std::chrono::steady_clock::now();
  auto none = nydus::accept_unix(listener->get(), 50ms);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().kind() == ErrorKind::kTimeout);
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);

  // A server that starts late: wait_connect_unix keeps trying until it listens.
  std::string late = (dir / "later.sock").string();
  std::atomic<bool> listening{false};
  nydus::Result<UniqueFd> late_listener = nydus::make_error(ErrorKind::kInternal, "unset");
  std::thread server([&] {
    std::this_thread::sleep_for(30ms);  // simulates a slow daemon start-up
    late_listener = nydus::listen_unix(late);
    listening = true;
  });
  auto conn = nydus::wait_connect_unix(late, kTestTimeout);
  server.join();
  REQUIRE(late_listener.ok());
  REQUIRE(conn.ok());
  CHECK(is_cloexec(conn->get()));
  auto accepted = nydus::accept_unix(late_listener->get(), kTestTimeout);
  REQUIRE(accepted.ok());
  CHECK(is_cloexec(accepted->get()));
}
