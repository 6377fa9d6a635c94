// End to end with Debian's containerd: a private containerd (own root, state
// and sockets in a temp dir) uses containerd-nydus-grpc as the proxy
// snapshotter "nydus"; an OCI image archive built here (busybox-static plus
// symlinks and data files of known content) is imported and unpacked through
// our snapshotter, run with runc, checked from inside the container, and
// removed again. Everything started here is stopped by pid; no mount may
// remain. LABEL e2e.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/e2e/e2e_support.h"

using namespace nydus::e2e;

namespace {

// Checks the `find / -xdev` lines of a container's output: exactly the
// layer's entries, plus the mount points runc creates. Returns the paths seen.
std::set<std::string> check_container_tree(const std::string& output, const Layer& layer) {
  std::set<std::string> seen;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("/", 0) == 0) seen.insert(line);
  }
  std::set<std::string> expected = {"/", "/bin", "/bin/busybox", "/data", "/data/sub"};
  for (const auto& [name, _] : layer.files) expected.insert("/" + name);
  for (const auto& [name, _] : layer.symlinks) expected.insert("/" + name);
  const std::set<std::string> runtime = {"/dev", "/proc", "/sys", "/run", "/etc", "/etc/resolv.conf", "/etc/hosts",
                                         "/etc/hostname", "/tmp"};
  for (const auto& path : seen) {
    INFO(path);
    CHECK((expected.count(path) > 0 || runtime.count(path) > 0));
  }
  for (const auto& path : expected) {
    INFO(path);
    CHECK(seen.count(path) == 1);
  }
  return seen;
}

}  // namespace

TEST_CASE("e2e: containerd imports, unpacks and runs an image through the nydus snapshotter") {
  if (skip_without_e2e_tools()) return;
  Stack s;
  s.start();
  Layer layer;
  fs::path archive = s.dir / "image.tar";
  build_oci_archive(s.dir / "oci", archive, layer);

  // The proxy plugin is known to containerd.
  auto plugins = s.ctr({"plugins", "ls"});
  REQUIRE(plugins.exited_ok());
  CHECK(plugins.output.find("io.containerd.snapshotter.v1    nydus") != std::string::npos);

  // Import: containerd unpacks the layer through Prepare/Commit of ours.
  auto import = s.ctr({"images", "import", "--snapshotter", "nydus", archive.string()});
  INFO(import.output);
  REQUIRE(import.exited_ok());
  CHECK(import.output.find(kImage) != std::string::npos);

  GrpcClient client(s.nydus_sock.string());
  // The unpacked layer is one committed snapshot of ours, named by
  // containerd after the layer's chain id; the extraction key is gone.
  auto committed = client.list({"kind==committed"});
  REQUIRE(committed.ok());
  REQUIRE(committed->size() == 1);
  CHECK(committed->at(0).parent.empty());
  CHECK(committed->at(0).name.find("sha256:") != std::string::npos);
  CHECK(client.list({"kind==active"})->empty());
  auto layer_usage = client.usage(committed->at(0).name);
  REQUIRE(layer_usage.ok());
  CHECK(layer_usage->size >= static_cast<int64_t>(fs::file_size("/bin/busybox")));

  // Run: the container's rootfs is an overlay of our committed layer.
  s.containers.push_back("c1");
  std::string script =
      "cd /data && /bin/sha256sum hello.txt sub/numbers.txt empty && /bin/find / -xdev | /bin/busybox sort "
      "&& /bin/busybox readlink /bin/sh && /bin/busybox readlink link-to-hello && /bin/cat link-to-hello";
  auto run = s.ctr({"run", "--snapshotter", "nydus", "--rm", kImage, "c1", "/bin/busybox", "sh", "-c", script});
  INFO(run.output);
  REQUIRE(run.exited_ok());
  for (const auto& [name, content] : layer.files) {
    std::string rel = name.substr(5);  // below /data
    INFO(name);
    CHECK(run.output.find(sha256_hex(content) + "  " + rel) != std::string::npos);
  }
  // Exactly the layer's files (plus the mount points runc creates).
  check_container_tree(run.output, layer);
  CHECK(run.output.find("busybox\nhello.txt\n") != std::string::npos);
  CHECK(run.output.find(layer.files.at("data/hello.txt")) != std::string::npos);
  s.containers.clear();  // --rm removed it

  // Removing the image synchronously runs containerd's GC, which removes our
  // snapshots and calls Cleanup.
  auto rm = s.ctr({"images", "rm", "--sync", kImage});
  INFO(rm.output);
  REQUIRE(rm.exited_ok());
  auto left = client.list();
  REQUIRE(left.ok());
  CHECK(left->empty());
  CHECK(fs::is_empty(s.dir / "nydus/snapshots"));

  // Stop both daemons by pid; nothing may stay mounted.
  s.containerd->signal(SIGTERM);
  REQUIRE(s.containerd->wait(kStopTimeout).has_value());
  s.snapshotter->signal(SIGTERM);
  auto status = s.snapshotter->wait(kStopTimeout);
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK(mounts_below(s.dir.path().string()).empty());
}

// ---------------------------------------------------------------------------
// Nydus images: the layer is a RAFS bootstrap, the data comes from nydusd.


TEST_CASE("e2e: a nydus image runs through nydusd and shows exactly its source tree") {
  if (skip_without_e2e_tools()) return;
  Stack s;
  configure_nydus(s, "dedicated");
  Layer layer;
  start_with_nydus_image(s, layer);
  CHECK(s.daemon_records().empty());  // importing starts no daemon

  s.containers.push_back("n1");
  std::string script =
      "cd /data && /bin/sha256sum hello.txt sub/numbers.txt empty /bin/busybox && /bin/find / -xdev | "
      "/bin/busybox sort && /bin/busybox readlink link-to-hello && /bin/cat link-to-hello";
  auto run = s.ctr({"run", "--snapshotter", "nydus", "--rm", kNydusImage, "n1", "/bin/busybox", "sh", "-c", script});
  INFO(run.output);
  INFO(s.snapshotter_log());
  REQUIRE(run.exited_ok());
  s.containers.clear();
  for (const auto& [name, content] : layer.files) {
    INFO(name);
    CHECK(run.output.find(sha256_hex(content) + "  " + name.substr(5)) != std::string::npos);
  }
  CHECK(run.output.find(sha256_hex(read_file("/bin/busybox")) + "  /bin/busybox") != std::string::npos);
  std::set<std::string> seen = check_container_tree(run.output, layer);
  // The image's bootstrap is not part of the container's tree.
  CHECK(seen.count("/image") == 0);

  auto daemons = s.daemon_records();
  REQUIRE(daemons.size() == 1);
  CHECK(daemons[0].state == "RUNNING");
  int64_t pid = daemons[0].pid;

  // Removing the image removes the layer; Cleanup stops its nydusd.
  auto rm = s.ctr({"images", "rm", "--sync", kNydusImage});
  INFO(rm.output);
  REQUIRE(rm.exited_ok());
  check_daemon_exits(pid);
  CHECK(s.daemon_records().empty());
  CHECK(fs::is_empty(s.dir / "nydus/snapshots"));
}

TEST_CASE("e2e: kill -9 of the snapshotter under a running nydus container is invisible to it") {
  if (skip_without_e2e_tools()) return;
  Stack s;
  configure_nydus(s, "dedicated");
  Layer layer;
  start_with_nydus_image(s, layer);

  // The container reads and checks the image's files in a loop and counts
  // rounds into a bind-mounted directory; any failed read is written down.
  ReaderOut out(s.dir / "out");
  std::string want = sha256_hex(layer.files.at("data/hello.txt"));
  std::string loop =
      "i=0; while true; do "
      "if /bin/sha256sum /data/hello.txt /data/sub/numbers.txt /bin/busybox > /out/sums 2>&1 && "
      "/bin/busybox grep -q " + want + " /out/sums; then i=$((i+1)); echo $i > /out/count; "
      "else echo ERR >> /out/errors; /bin/cat /out/sums >> /out/errors; fi; /bin/busybox usleep 5000; done";
  run_reader_container(s, out.path, loop);
  INFO(s.snapshotter_log());

  INFO(out.errors());
  REQUIRE(out.wait_rounds(20, kCommandTimeout));
  auto before = s.daemon_records();
  REQUIRE(before.size() == 1);

  s.kill9_snapshotter();
  long during = out.count();
  CHECK(::kill(static_cast<pid_t>(before[0].pid), 0) == 0);  // nydusd serves on
  s.start_snapshotter();
  CHECK(out.wait_rounds(during + 50, kCommandTimeout));
  CHECK_FALSE(fs::exists(out.path / "errors"));
  if (fs::exists(out.path / "errors")) FAIL_CHECK(out.errors());

  // The restarted snapshotter re-adopted the same nydusd, and its records
  // agree with what containerd sees.
  auto after = s.daemon_records();
  REQUIRE(after.size() == 1);
  CHECK(after[0].id == before[0].id);
  CHECK(after[0].pid == before[0].pid);
  CHECK(after[0].state == "RUNNING");
  auto instances = s.instance_records();
  REQUIRE(instances.size() == 1);
  CHECK(instances[0].daemon_id == after[0].id);
  // containerd's proxy connection broke with the old snapshotter; its gRPC
  // channel reconnects with its own back-off (nothing of it is observable
  // from here), so the first calls may report "unavailable": retry under
  // the command deadline.
  auto ls = list_snapshots_after_restart(s, /*retry_any_failure=*/false, 200ms);
  INFO(ls.output);
  REQUIRE(ls.exited_ok());
  // KEY PARENT KIND: the container's active snapshot sits on the meta layer
  // whose instance the record names.
  // (The record names the layer by containerd's namespaced key "<ns>/<n>/<name>".)
  std::string meta_name = instances[0].image_id.substr(instances[0].image_id.rfind('/') + 1);
  CHECK(ls.output.find("reader") != std::string::npos);
  CHECK(ls.output.find(meta_name) != std::string::npos);
  CHECK(ls.output.find("Active") != std::string::npos);

  remove_reader_container(s);
  auto rm = s.ctr({"images", "rm", "--sync", kNydusImage});
  INFO(rm.output);
  CHECK(rm.exited_ok());
  check_daemon_exits(before[0].pid);
  CHECK(s.daemon_records().empty());
}
