// The VM harness itself: boot, run a command, get its status and output;
// and the cachefiles device in the guest kernel: open, dir, tag, bind
// ondemand on the ext4 cache disk (fscache-facts.md §2.1).
#include <string>

#include "tests/vm/vm_test_support.h"

using namespace nydus::testing;
using namespace nydus::testing::vm;

TEST_CASE("vm boots, runs a command in the host root and reports its status", "[vm]") {
  require_vm_or_skip();
  TempDir dir("nydus-vm-smoke");
  VmOptions o;
  o.work_dir = dir.path().string();
  o.env = {{"NYDUS_SMOKE", "a b 'c' $d"}};
  // Host paths are visible unchanged; the cache disk is ext4 at /run/cache.
  o.argv = {"/bin/sh", "-c",
            "echo \"hello from $(uname -r) [$NYDUS_SMOKE]\"; "
            "test -d " + dir.path().string() + " || exit 90; "
            "grep -q ' /run/cache ext4 ' /proc/mounts || exit 91; "
            "test -c /dev/cachefiles || exit 92; "
            "touch /run/tmp/x /run/cache/x /run/out/x || exit 93; "
            "exit 7"};
  o.timeout = std::chrono::seconds(90);
  VmResult r = run_or_fail(o);
  INFO(r.console);
  CHECK(r.exit_code == 7);
  CHECK(r.output.find("hello from 6.12") != std::string::npos);
  CHECK(r.output.find("[a b 'c' $d]") != std::string::npos);
  // The shared directory is written through to the host.
  CHECK(std::filesystem::exists(dir.path() / "out" / "x"));
  std::printf("vm smoke: %.1fs boot to result\n", double(r.elapsed.count()) / 1000.0);
}

TEST_CASE("vm reports a failing command and a missing program", "[vm]") {
  require_vm_or_skip();
  TempDir dir("nydus-vm-smoke");
  VmOptions o;
  o.work_dir = dir.path().string();
  o.cache_disk_mb = 0;  // no disk needed
  o.argv = {"/nonexistent/program"};
  o.timeout = std::chrono::seconds(90);
  VmResult r = run_or_fail(o);
  CHECK(r.exit_code == 127);  // exec failed in /bin/sh
}

TEST_CASE("vm cachefiles: dir, tag and bind ondemand on the ext4 cache disk", "[vm]") {
  require_vm_or_skip();
  TempDir dir("nydus-vm-smoke");
  VmOptions o;
  o.work_dir = dir.path().string();
  // One write per command (fscache-facts.md §2.1). A second bind is EBUSY,
  // a second open of the device is EBUSY, `restore` is accepted once bound.
  o.argv = {"/bin/sh", "-c", R"(
    mkdir -p /run/cache/fscache || exit 10
    exec 3<>/dev/cachefiles || exit 11
    printf 'dir /run/cache/fscache' >&3 || exit 12
    printf 'tag vmsmoke' >&3 || exit 13
    printf 'bind ondemand' >&3 || exit 14
    printf 'restore' >&3 || exit 15
    if printf 'bind ondemand' >&3 2>/dev/null; then echo "second bind accepted"; exit 16; fi
    if (exec 4<>/dev/cachefiles) 2>/dev/null; then echo "second open accepted"; exit 17; fi
    dmesg | grep -q 'vmsmoke' || { dmesg | tail; exit 18; }
    echo "cachefiles bound"
  )"};
  o.timeout = std::chrono::seconds(90);
  VmResult r = run_or_fail(o);
  INFO(r.console);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("cachefiles bound") != std::string::npos);
}
