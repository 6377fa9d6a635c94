// Tests of common/process.h. Every child is owned by a Process handle (killed
// and reaped by its destructor, also when an assertion unwinds) or by a
// PidReaper in the test, and gets PR_SET_PDEATHSIG so that even a crashed
// test binary leaves nothing behind. Each test ends by checking that this
// process has no child left, reaped or not.
#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS: give it C linkage here.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using namespace std::chrono_literals;
using nydus::ErrorKind;
using nydus::Process;
using nydus::Redirect;
using nydus::SpawnOptions;
using nydus::UniqueFd;

namespace {

constexpr auto kTestTimeout = 10s;

SpawnOptions shell(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.parent_death_signal = SIGKILL;
  return o;
}

SpawnOptions sleeper() {
  SpawnOptions o;
  o.argv = {"/bin/sleep", "1000"};
  o.parent_death_signal = SIGKILL;
  return o;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while this process has a child, running or zombie.
bool has_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

bool pidfd_readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

// Kills and reaps (when it is our child) a pid the test manages by hand, if
// the test did not get to it, e.g. because an assertion failed first.
class PidReaper {
 public:
  explicit PidReaper(pid_t pid) : pid_(pid), pidfd_(::pidfd_open(pid, 0)) {}
  ~PidReaper() {
    if (!pidfd_) return;
    ::pidfd_send_signal(pidfd_.get(), SIGKILL, nullptr, 0);
    pidfd_readable(pidfd_.get(), 5000);
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG);
  }
  int pidfd() const { return pidfd_.get(); }

 private:
  pid_t pid_;
  UniqueFd pidfd_;
};

}  // namespace

TEST_CASE("spawn reports the exit code and a signal as a negative number") {
  {
    auto p = Process::spawn(shell("exit 7"));
    REQUIRE(p.ok());
    CHECK(p->is_child());
    CHECK(p->pid() > 0);
    auto st = p->wait(kTestTimeout);
    REQUIRE(st.ok());
    CHECK(*st == 7);
    CHECK(p->exited());
    CHECK(p->exit_status() == 7);
    // Reaped: signalling it again is NotFound, not a signal to a recycled pid.
    auto k = p->kill(SIGTERM);
    REQUIRE_FALSE(k.ok());
    CHECK(k.error().kind() == ErrorKind::kNotFound);
  }
  {
    auto p = Process::spawn(sleeper());
    REQUIRE(p.ok());
    auto running = p->try_wait();
    REQUIRE(running.ok());
    CHECK_FALSE(running->has_value());
    CHECK_FALSE(p->exited());
    REQUIRE(p->kill(SIGTERM).ok());
    auto st = p->wait(kTestTimeout);
    REQUIRE(st.ok());
    CHECK(*st == -SIGTERM);
  }
  CHECK_FALSE(has_children());
}

TEST_CASE("a bare program name is looked up in PATH") {
  SpawnOptions o;
  o.argv = {"sh", "-c", "exit 3"};
  o.parent_death_signal = SIGKILL;
  auto p = Process::spawn(o);
  REQUIRE(p.ok());
  CHECK(*p->wait(kTestTimeout) == 3);

  o.argv = {"nydus-no-such-program-xyz"};
  auto missing = Process::spawn(o);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);
  CHECK_THAT(missing.error().message(), Catch::Contains("nydus-no-such-program-xyz"));
  CHECK_FALSE(has_children());
}

TEST_CASE("exec failures come back as errors naming the binary, and the child is reaped") {
  nydus::testing::TempDir dir("proc-exec");
  SECTION("missing binary") {
    SpawnOptions o;
    o.argv = {"/nonexistent/nydus-binary"};
    auto p = Process::spawn(o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().kind() == ErrorKind::kNotFound);
    CHECK_THAT(p.error().message(), Catch::Contains("/nonexistent/nydus-binary"));
    CHECK_THAT(p.error().message(), Catch::Contains("exec"));
  }
  SECTION("not executable") {
    auto file = (dir / "script").string();
    std::ofstream(file) << "#!/bin/sh\nexit 0\n";
    ::chmod(file.c_str(), 0644);
    SpawnOptions o;
    o.argv = {file};
    auto p = Process::spawn(o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().kind() == ErrorKind::kPermissionDenied);
    CHECK_THAT(p.error().message(), Catch::Contains(file));
  }
  SECTION("bad working directory") {
    auto o = shell("exit 0");
    o.working_dir = (dir / "missing").string();
    auto p = Process::spawn(o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().kind() == ErrorKind::kNotFound);
    CHECK_THAT(p.error().message(), Catch::Contains("chdir"));
  }
  SECTION("redirect into a missing directory") {
    auto o = shell("exit 0");
    o.stdout_redirect = Redirect::append_to((dir / "missing" / "out.log").string());
    auto p = Process::spawn(o);
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.error().message(), Catch::Contains("redirect stdout"));
  }
  SECTION("invalid options") {
    SpawnOptions empty;
    CHECK(Process::spawn(empty).error().kind() == ErrorKind::kInvalidArgument);
    auto o = shell("exit 0");
    o.fds = {{0, 9}, {1, 9}};
    CHECK(Process::spawn(o).error().kind() == ErrorKind::kInvalidArgument);
    o.fds = {{0, 1}};
    o.stdout_redirect = Redirect::null();
    CHECK(Process::spawn(o).error().kind() == ErrorKind::kInvalidArgument);
    o = shell("exit 0");
    o.fds = {{987654, 5}};
    CHECK(Process::spawn(o).error().kind() == ErrorKind::kInvalidArgument);
  }
  CHECK_FALSE(has_children());
}

TEST_CASE("environment: inherit with overrides and removals, or exact") {
  nydus::testing::TempDir dir("proc-env");
  ::setenv("NYDUS_TEST_INHERITED", "yes", 1);
  auto out = dir / "env.out";
  auto run = [&](SpawnOptions o) {
    std::filesystem::remove(out);
    o.stdout_redirect = Redirect::append_to(out.string());
    auto p = Process::spawn(o);
    REQUIRE(p.ok());
    REQUIRE(*p->wait(kTestTimeout) == 0);
    return slurp(out);
  };
  const std::string script = "echo \"[${NYDUS_TEST_INHERITED-unset}][${NYDUS_A-unset}]\"";

  auto o = shell(script);
  o.env = {{"NYDUS_A", "1"}};
  CHECK(run(o) == "[yes][1]\n");

  o.env = {{"NYDUS_TEST_INHERITED", "overridden"}};
  CHECK(run(o) == "[overridden][unset]\n");

  o = shell(script);
  o.unset_env = {"NYDUS_TEST_INHERITED"};
  CHECK(run(o) == "[unset][unset]\n");

  o = shell(script);
  o.inherit_env = false;
  o.env = {{"NYDUS_A", "exact"}};
  CHECK(run(o) == "[unset][exact]\n");
  ::unsetenv("NYDUS_TEST_INHERITED");
  CHECK_FALSE(has_children());
}

TEST_CASE("working directory and stdout/stderr redirection (append)") {
  nydus::testing::TempDir dir("proc-io");
  auto out = dir / "out.log";
  auto err = dir / "err.log";
  std::ofstream(out) << "first\n";
  auto o = shell("pwd; echo to-stderr >&2");
  o.working_dir = dir.path().string();
  o.stdout_redirect = Redirect::append_to(out.string());
  o.stderr_redirect = Redirect::append_to(err.string());
  o.stdin_redirect = Redirect::null();
  {
    auto p = Process::spawn(o);
    REQUIRE(p.ok());
    REQUIRE(*p->wait(kTestTimeout) == 0);
  }
  auto real_dir = std::filesystem::canonical(dir.path()).string();
  CHECK(slurp(out) == "first\n" + real_dir + "\n");
  CHECK(slurp(err) == "to-stderr\n");
  CHECK_FALSE(has_children());
}

TEST_CASE("passed fds land on their numbers, even swapped, every other fd is closed") {
  int p1[2], p2[2];
  REQUIRE(::pipe2(p1, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(p2, O_CLOEXEC) == 0);
  UniqueFd r1(p1[0]), w1(p1[1]), r2(p2[0]), w2(p2[1]);
  // Place the write ends at a and b, then ask for them the other way round:
  // the child must see pipe 1 at b and pipe 2 at a. dash redirects only
  // single-digit fds, so both must be below 10.
  std::vector<int> free_fds;
  for (int fd = 3; fd < 10 && free_fds.size() < 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0) free_fds.push_back(fd);
  }
  REQUIRE(free_fds.size() == 2);
  UniqueFd a(::dup3(w1.get(), free_fds[0], O_CLOEXEC));
  UniqueFd b(::dup3(w2.get(), free_fds[1], O_CLOEXEC));
  REQUIRE(a);
  REQUIRE(b);
  w1.reset();
  w2.reset();
  // Not close-on-exec here: the child must still not get it.
  UniqueFd leaky(::open("/dev/null", O_RDONLY));
  REQUIRE(leaky);

  auto o = shell("echo one >&" + std::to_string(b.get()) + "; echo two >&" +
                 std::to_string(a.get()) + "; if [ -e /proc/$$/fd/" +
                 std::to_string(leaky.get()) + " ]; then echo leaked >&" +
                 std::to_string(b.get()) + "; fi");
  o.fds = {{a.get(), b.get()}, {b.get(), a.get()}};
  {
    auto p = Process::spawn(o);
    REQUIRE(p.ok());
    a.reset();
    b.reset();
    REQUIRE(*p->wait(kTestTimeout) == 0);
  }
  auto read_all = [](int fd) {
    std::string s;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
  };
  CHECK(read_all(r1.get()) == "one\n");
  CHECK(read_all(r2.get()) == "two\n");
  CHECK_FALSE(has_children());
}

TEST_CASE("the pidfd becomes readable within milliseconds of a kill -9") {
  auto p = Process::spawn(sleeper());
  REQUIRE(p.ok());
  CHECK_FALSE(pidfd_readable(p->pidfd()));
  auto start = std::chrono::steady_clock::now();
  REQUIRE(::kill(p->pid(), SIGKILL) == 0);
  REQUIRE(pidfd_readable(p->pidfd(), 5000));
  auto elapsed = std::chrono::steady_clock::now() - start;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  std::fprintf(stderr, "pidfd readable %lld us after SIGKILL\n", static_cast<long long>(us));
  CHECK(elapsed < 200ms);
  auto st = p->wait(0ms);
  REQUIRE(st.ok());
  CHECK(*st == -SIGKILL);
  CHECK_FALSE(has_children());
}

TEST_CASE("wait times out on a running process, the destructor kills and reaps it") {
  UniqueFd observer;
  pid_t pid;
  {
    auto p = Process::spawn(sleeper());
    REQUIRE(p.ok());
    pid = p->pid();
    observer.reset(::pidfd_open(pid, 0));
    REQUIRE(observer);
    auto start = std::chrono::steady_clock::now();
    auto st = p->wait(50ms);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind() == ErrorKind::kTimeout);
    CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  }
  // Dead and reaped: the observer pidfd is readable and waitid has nothing
  // left to collect.
  CHECK(pidfd_readable(observer.get()));
  siginfo_t info{};
  CHECK(::waitid(P_PIDFD, static_cast<id_t>(observer.get()), &info, WEXITED | WNOHANG) == -1);
  CHECK(errno == ECHILD);
  CHECK_FALSE(has_children());
}

TEST_CASE("move assignment ends the process held before") {
  auto first = Process::spawn(sleeper());
  REQUIRE(first.ok());
  UniqueFd observer(::pidfd_open(first->pid(), 0));
  auto second = Process::spawn(sleeper());
  REQUIRE(second.ok());
  pid_t second_pid = second->pid();
  *first = std::move(*second);
  CHECK(pidfd_readable(observer.get()));
  CHECK(first->pid() == second_pid);
  CHECK(second->pid() == -1);
}

TEST_CASE("a detached process outlives its handle") {
  pid_t pid;
  {
    auto p = Process::spawn(sleeper());
    REQUIRE(p.ok());
    pid = p->pid();
    p->detach();
    CHECK(p->detached());
  }
  PidReaper reaper(pid);  // kills it should a check below fail
  REQUIRE(reaper.pidfd() >= 0);
  CHECK_FALSE(pidfd_readable(reaper.pidfd()));
  CHECK(::kill(pid, 0) == 0);

  // Still our child: kill it by pid and reap it by hand.
  REQUIRE(::kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK_FALSE(has_children());
}

TEST_CASE("adopt: our own child keeps its exit status") {
  auto original = Process::spawn(sleeper());
  REQUIRE(original.ok());
  original->detach();  // the adopting handle owns it from here
  auto adopted = Process::adopt(original->pid());
  REQUIRE(adopted.ok());
  CHECK(adopted->is_child());
  CHECK(adopted->pid() == original->pid());
  CHECK(adopted->name() == "sleep");
  CHECK_FALSE(adopted->exited());
  REQUIRE(adopted->kill(SIGKILL).ok());
  auto st = adopted->wait(kTestTimeout);
  REQUIRE(st.ok());
  CHECK(*st == -SIGKILL);
  CHECK_FALSE(has_children());
}

TEST_CASE("adopt: a process we did not spawn is watched through its pidfd only") {
  nydus::testing::TempDir dir("proc-adopt");
  auto out = dir / "pid";
  // The shell starts a sleep in the background, prints its pid and exits, so
  // the sleep is reparented away from us: not our child.
  auto o = shell("sleep 1000 </dev/null >/dev/null 2>&1 & echo $!");
  o.stdout_redirect = Redirect::append_to(out.string());
  {
    auto sh = Process::spawn(o);
    REQUIRE(sh.ok());
    REQUIRE(*sh->wait(kTestTimeout) == 0);
  }
  pid_t pid = std::stoi(slurp(out));
  PidReaper reaper(pid);
  REQUIRE(reaper.pidfd() >= 0);

  auto adopted = Process::adopt(pid);
  REQUIRE(adopted.ok());
  CHECK_FALSE(adopted->is_child());
  auto running = adopted->try_wait();
  REQUIRE(running.ok());
  CHECK_FALSE(running->has_value());
  REQUIRE(adopted->kill(SIGKILL).ok());
  auto st = adopted->wait(kTestTimeout);
  REQUIRE(st.ok());
  CHECK(*st == Process::kExitStatusUnknown);
  CHECK(adopted->exited());

  auto missing = Process::adopt(4194304 + 12345);  // above any pid_max
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);
  CHECK_FALSE(has_children());
}

TEST_CASE("new_session puts the child in its own session") {
  auto o = sleeper();
  o.new_session = true;
  auto p = Process::spawn(o);
  REQUIRE(p.ok());
  CHECK(::getsid(p->pid()) == p->pid());
  CHECK(::getsid(0) != p->pid());
}

TEST_CASE("parent_death_signal kills the child when the spawning thread exits") {
  nydus::Result<Process> p = nydus::make_error(ErrorKind::kInternal, "unset");
  std::thread spawner([&] { p = Process::spawn(sleeper()); });
  spawner.join();
  REQUIRE(p.ok());
  auto st = p->wait(kTestTimeout);
  REQUIRE(st.ok());
  CHECK(*st == -SIGKILL);
  CHECK_FALSE(has_children());
}
