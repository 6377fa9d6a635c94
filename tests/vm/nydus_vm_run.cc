// nydus-vm-run: runs one command inside the fscache test VM (vm_harness.h)
// and exits with its status. For manual use and for scripts:
//
//   nydus-vm-run [--timeout S] [--disk-mb N] [--cpus N] [--memory-mb N]
//                [--env K=V]... [--cwd DIR] [--work-dir DIR] -- CMD [ARG...]
//
// The command's output (and kernel messages printed meanwhile) goes to
// stdout; the whole console log stays in the work directory when --work-dir
// is given (a temporary one is removed otherwise). Exit status: the command's,
// 77 when qemu or the kernel is missing, 125 when the VM itself failed.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "tests/vm/vm_harness.h"

namespace {

constexpr int kVmFailed = 125;

int usage() {
  std::fprintf(stderr,
               "usage: nydus-vm-run [--timeout S] [--disk-mb N] [--cpus N] [--memory-mb N] "
               "[--env K=V]... [--cwd DIR] [--work-dir DIR] -- CMD [ARG...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace nydus::testing::vm;
  VmOptions o;
  std::string work_dir;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--") {
      ++i;
      break;
    }
    const char* v = nullptr;
    if (a == "--timeout" && (v = next())) {
      o.timeout = std::chrono::seconds(std::atoi(v));
    } else if (a == "--disk-mb" && (v = next())) {
      o.cache_disk_mb = std::strtoull(v, nullptr, 10);
    } else if (a == "--cpus" && (v = next())) {
      o.cpus = std::atoi(v);
    } else if (a == "--memory-mb" && (v = next())) {
      o.memory_mb = std::atoi(v);
    } else if (a == "--cwd" && (v = next())) {
      o.working_dir = v;
    } else if (a == "--work-dir" && (v = next())) {
      work_dir = v;
    } else if (a == "--env" && (v = next())) {
      std::string kv = v;
      auto eq = kv.find('=');
      if (eq == std::string::npos) return usage();
      o.env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else {
      return usage();
    }
  }
  for (; i < argc; ++i) o.argv.push_back(argv[i]);
  if (o.argv.empty()) return usage();

  auto tools = find_vm_tools();
  if (!tools.ok()) {
    std::fprintf(stderr, "nydus-vm-run: %s\n", tools.error().message().c_str());
    return tools.error().kind() == nydus::ErrorKind::kUnsupported ? kSkipExitCode : kVmFailed;
  }

  std::filesystem::path temp;
  if (work_dir.empty()) {
    std::string tmpl = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") +
                       "/nydus-vm-run-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      return kVmFailed;
    }
    temp = tmpl;
    work_dir = tmpl;
  } else {
    std::filesystem::create_directories(work_dir);
  }
  o.work_dir = work_dir;

  auto r = run_in_vm(o);
  if (!temp.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp, ec);
  }
  if (!r.ok()) {
    std::fprintf(stderr, "nydus-vm-run: %s\n", r.error().message().c_str());
    return kVmFailed;
  }
  std::fwrite(r->output.data(), 1, r->output.size(), stdout);
  std::fprintf(stderr, "nydus-vm-run: exit %d after %.1fs\n", r->exit_code,
               double(r->elapsed.count()) / 1000.0);
  return r->exit_code;
}
