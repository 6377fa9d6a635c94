// The supervisor store over real unix sockets: who may save, who is served a
// takeover (SO_PEERCRED), that a save replaces the state and closes the fd it
// replaces, and that a forged client gets nothing and changes nothing. The
// peers are this test process (its pid is what SO_PEERCRED reports) and a
// forked child for "another process". Also the pure helpers of recovery.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/fd_passing.h"
#include "snapshotter/recovery.h"
#include "snapshotter/supervisor.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::snapshotter;
using namespace std::chrono_literals;

namespace {

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A pipe whose read end we pass as "the FUSE fd": whether the store closed
// its copy shows in the write end getting EPIPE once every read end is gone.
struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    r = UniqueFd(fds[0]);
    w = UniqueFd(fds[1]);
  }
  bool readers_gone() const { return ::write(w.get(), "x", 1) < 0 && errno == EPIPE; }
};

void save(const std::string& path, const std::string& bytes, int fd) {
  int fds[] = {fd};
  REQUIRE(connect_and_send_message(path, as_bytes(bytes), fds, 5s).ok());
}

}  // namespace

TEST_CASE("supervisor: the owner saves and an armed pid is served the state and fd") {
  signal(SIGPIPE, SIG_IGN);
  testing::TempDir dir("supervisor");
  auto store = SupervisorStore::open((dir / "supervisor").string());
  REQUIRE(store.ok());
  auto path = (*store)->add("d1");
  REQUIRE(path.ok());
  CHECK(*path == (dir / "supervisor/d1.sock").string());
  struct stat st {};
  REQUIRE(::stat(path->c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE((*store)->arm_takeover("d1", ::getpid()).ok());  // nothing saved yet

  (*store)->set_owner("d1", ::getpid());
  Pipe first;
  save(*path, "state-1", first.r.get());
  REQUIRE((*store)->wait_save("d1", 0, 5s));
  CHECK((*store)->has_state("d1"));
  first.r.reset();
  CHECK_FALSE(first.readers_gone());  // the store holds a copy

  // A second save replaces the state and closes the fd it replaces.
  Pipe second;
  save(*path, "state-2", second.r.get());
  REQUIRE((*store)->wait_save("d1", 1, 5s));
  CHECK(first.readers_gone());
  second.r.reset();

  // The armed pid (here: us) is served the latest state with the held fd.
  REQUIRE((*store)->arm_takeover("d1", ::getpid()).ok());
  auto got = connect_and_receive_message(*path, 5s);
  REQUIRE(got.ok());
  CHECK(std::string(got->bytes.begin(), got->bytes.end()) == "state-2");
  REQUIRE(got->fds.size() == 1);
  CHECK(::write(second.w.get(), "y", 1) == 1);
  char c = 0;
  CHECK(::read(got->fds[0].get(), &c, 1) == 1);  // the same pipe
  CHECK((*store)->wait_serve("d1", 0, 5s));  // counted once the send completed on its side

  // The new owner may save; the takeover is disarmed by it.
  (*store)->set_owner("d1", ::getpid());
  Pipe third;
  save(*path, "state-3", third.r.get());
  REQUIRE((*store)->wait_save("d1", 2, 5s));

  (*store)->remove("d1");
  CHECK_FALSE(std::filesystem::exists(*path));
  got->fds.clear();
  third.r.reset();
  CHECK(third.readers_gone());  // remove() closed the held fd
}

TEST_CASE("supervisor: a forged client is refused and changes nothing") {
  signal(SIGPIPE, SIG_IGN);
  testing::TempDir dir("supervisor");
  auto store = SupervisorStore::open((dir / "supervisor").string());
  REQUIRE(store.ok());
  auto path = (*store)->add("d1");
  REQUIRE(path.ok());
  (*store)->set_owner("d1", ::getpid());
  Pipe held;
  save(*path, "good", held.r.get());
  REQUIRE((*store)->wait_save("d1", 0, 5s));

  // The daemon's own pid is armed, but the forger is another process.
  REQUIRE((*store)->arm_takeover("d1", ::getpid()).ok());
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // A takeover attempt must get no fd; a save attempt must not be stored.
    auto stolen = connect_and_receive_message(*path, 5s);
    bool got_fd = stolen.ok() && !stolen->fds.empty();
    int devnull = ::open("/dev/null", O_RDONLY);
    int fds[] = {devnull};
    std::string junk = "forged";
    (void)connect_and_send_message(*path, as_bytes(junk), fds, 5s);
    ::_exit(got_fd ? 1 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       (*store)->refused("d1") < 2 && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK((*store)->refused("d1") == 2);
  CHECK((*store)->saves("d1") == 1);
  CHECK((*store)->serves("d1") == 0);
  auto got = connect_and_receive_message(*path, 5s);
  REQUIRE(got.ok());
  CHECK(std::string(got->bytes.begin(), got->bytes.end()) == "good");
  CHECK(got->fds.size() == 1);
}

TEST_CASE("recovery: api socket names and back-off") {
  CHECK(next_api_socket("/r/socket/x/api.sock") == "/r/socket/x/api1.sock");
  CHECK(next_api_socket("/r/socket/x/api1.sock") == "/r/socket/x/api2.sock");
  CHECK(next_api_socket("/r/socket/x/api41.sock") == "/r/socket/x/api42.sock");
  CHECK(next_api_socket("/r/socket/x/other.sock") == "/r/socket/x/api1.sock");
  using std::chrono::milliseconds;
  CHECK(recovery_backoff(1, milliseconds(100), milliseconds(5000)) == milliseconds(0));
  CHECK(recovery_backoff(2, milliseconds(100), milliseconds(5000)) == milliseconds(100));
  CHECK(recovery_backoff(3, milliseconds(100), milliseconds(5000)) == milliseconds(200));
  CHECK(recovery_backoff(5, milliseconds(100), milliseconds(5000)) == milliseconds(800));
  CHECK(recovery_backoff(30, milliseconds(100), milliseconds(5000)) == milliseconds(5000));
}
