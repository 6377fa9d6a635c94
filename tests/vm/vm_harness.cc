#include "tests/vm/vm_harness.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/process.h"
#include "common/unique_fd.h"

#ifndef NYDUS_SHARED_DIR
#error "NYDUS_SHARED_DIR must be defined (the ../shared directory next to the source tree)"
#endif

namespace nydus::testing::vm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kBeginMarker = "NYDUS-VM-BEGIN";
constexpr const char* kResultMarker = "NYDUS-VM-RESULT: exit=";
constexpr const char* kInitFailedMarker = "NYDUS-VM-INIT-FAILED: ";
// qemu is killed and reaped within this after a timeout.
constexpr std::chrono::milliseconds kKillWait{5000};
// mkfs.ext4 of a small image takes well under a second.
constexpr std::chrono::milliseconds kMkfsTimeout{30000};
// Boots tried when the VM dies before the command starts (see run_in_vm).
constexpr int kBootAttempts = 2;

std::string getenv_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

bool is_executable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Looks a bare program name up in PATH and then in the sbin directories,
// which a non-login PATH may lack (mkfs.ext4 lives in /usr/sbin).
std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return is_executable(name) ? std::optional<std::string>(name) : std::nullopt;
  }
  std::string path = getenv_or("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (is_executable(candidate)) return candidate;
  }
  return std::nullopt;
}

// A static executable has no PT_INTERP program header.
Result<bool> is_static_elf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno(errno, fmt::format("open {}", path));
  Elf64_Ehdr eh;
  if (::pread(fd.get(), &eh, sizeof(eh), 0) != ssize_t(sizeof(eh)) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return make_error(ErrorKind::kInvalidArgument, "{} is not a 64-bit ELF executable", path);
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256) {
    return make_error(ErrorKind::kInvalidArgument, "{}: unexpected ELF program headers", path);
  }
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (::pread(fd.get(), &ph, sizeof(ph), off_t(eh.e_phoff + i * sizeof(ph))) != ssize_t(sizeof(ph))) {
      return make_error(ErrorKind::kInvalidArgument, "{}: truncated ELF program headers", path);
    }
    if (ph.p_type == PT_INTERP) return false;
  }
  return true;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::kNotFound, "cannot read {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file(const std::string& path, const std::string& text, mode_t mode = 0644) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return Error::from_errno(errno, fmt::format("create {}", path));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::from_errno(n < 0 ? errno : EIO, fmt::format("write {}", path));
    done += size_t(n);
  }
  return ok_status();
}

// ---------------------------------------------------------------------------
// newc cpio (the format the kernel unpacks as initramfs): per entry a
// 110-byte ASCII header "070701" + 13 fields of 8 hex digits (ino, mode, uid,
// gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
// namesize incl. NUL, check), the name, padding to 4, the data, padding to 4;
// the archive ends with the entry "TRAILER!!!".
// ---------------------------------------------------------------------------
class CpioWriter {
 public:
  void add(const std::string& name, uint32_t mode, const std::string& data = "",
           uint32_t rdev_major = 0, uint32_t rdev_minor = 0) {
    out_ += fmt::format("070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                        ++ino_, mode, 0, 0, S_ISDIR(mode) ? 2 : 1, 0, data.size(), 0, 0,
                        rdev_major, rdev_minor, name.size() + 1, 0);
    out_ += name;
    out_.push_back('\0');
    pad();
    out_ += data;
    pad();
  }
  std::string finish() {
    add("TRAILER!!!", 0);
    return std::move(out_);
  }

 private:
  void pad() { out_.append((4 - out_.size() % 4) % 4, '\0'); }
  std::string out_;
  uint32_t ino_ = 0;
};

std::string command_script(const VmOptions& o) {
  std::string s = "# written by tests/vm/vm_harness.cc; run by /init in the chroot\n";
  s += fmt::format("cd {} || exit 126\n", shell_quote(o.working_dir));
  s += "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";
  s += "export HOME=/root\n";
  s += fmt::format("mkdir -p {} && export TMPDIR={}\n", kGuestTmpDir, kGuestTmpDir);
  for (const auto& [k, v] : o.env) s += fmt::format("export {}={}\n", k, shell_quote(v));
  s += "exec";
  for (const auto& a : o.argv) s += " " + shell_quote(a);
  s += "\n";
  return s;
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

Status make_cache_disk(const std::string& path, uint64_t size_mb) {
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return Error::from_errno(errno, fmt::format("create {}", path));
    if (::ftruncate(fd.get(), off_t(size_mb << 20)) != 0) {
      return Error::from_errno(errno, fmt::format("size {}", path));
    }
  }
  auto mkfs = find_program("mkfs.ext4");
  if (!mkfs) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "mkfs.ext4 not found (install e2fsprogs); the VM needs an ext4 cache disk");
  }
  SpawnOptions so;
  so.argv = {*mkfs, "-q", "-F", "-E", "nodiscard", path};
  so.stdin_redirect = Redirect::null();
  so.stdout_redirect = Redirect::append_to(path + ".mkfs.log");
  so.stderr_redirect = Redirect::append_to(path + ".mkfs.log");
  so.parent_death_signal = SIGKILL;
  NYDUS_ASSIGN_OR_RETURN(Process p, Process::spawn(so));
  NYDUS_ASSIGN_OR_RETURN(int status, p.wait(kMkfsTimeout));
  if (status != 0) {
    auto log = read_file(path + ".mkfs.log");
    return make_error(ErrorKind::kIo, "mkfs.ext4 {} failed (status {}): {}", path, status,
                      log.ok() ? *log : std::string());
  }
  return ok_status();
}

std::string strip_cr(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '\r'), s.end());
  return s;
}

}  // namespace

std::string shell_quote(const std::string& word) {
  std::string q = "'";
  for (char c : word) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q.push_back(c);
    }
  }
  q += "'";
  return q;
}

std::string tail_lines(const std::string& text, size_t lines) {
  size_t pos = text.size();
  while (lines > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
    --lines;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

std::string init_script() {
  // Every step that can fail reports which one it was; the command's status
  // is written to the shared directory and printed as the result marker.
  return fmt::format(R"(#!/bin/busybox sh
# /init of the nydus VM tests (tests/vm/vm_harness.cc)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /host /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
fail() {{
  echo "{0}$*"
  dmesg | tail -n 30
  sync; poweroff -f; sleep 30
}}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sys /sys || fail "mount /sys"
mount -t devtmpfs dev /dev 2>/dev/null || [ -c /dev/null ] || fail "mount /dev"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || fail "mount 9p hostroot"
mount -t devtmpfs dev /host/dev || fail "mount /host/dev"
mount -t proc proc /host/proc || fail "mount /host/proc"
mount -t sysfs sys /host/sys || fail "mount /host/sys"
mount -t tmpfs -o size=256m,mode=0755 run /host/run || fail "mount tmpfs /host/run"
mkdir -p /host/run/out /host/run/cache /host/run/tmp && chmod 1777 /host/run/tmp || fail "mkdir in /host/run"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 outdir /host/run/out || fail "mount 9p outdir"
if [ -b /dev/vda ]; then
  mount -t ext4 /dev/vda /host/run/cache || fail "mount ext4 /dev/vda"
fi
echo "{1}"
chroot /host /bin/sh /run/out/command.sh
rc=$?
echo "$rc" > /host/run/out/exit_code
if [ "$rc" != 0 ]; then
  echo "--- kernel log tail (exit $rc) ---"
  dmesg | tail -n 40
fi
echo "{2}$rc"
sync
poweroff -f
sleep 30
)",
                     kInitFailedMarker, kBeginMarker, kResultMarker);
}

Status write_initrd(const std::string& path, const std::string& busybox) {
  NYDUS_ASSIGN_OR_RETURN(std::string busybox_bytes, read_file(busybox));
  CpioWriter cpio;
  for (const char* dir : {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "host",
                          "root", "tmp"}) {
    cpio.add(dir, S_IFDIR | 0755);
  }
  // The kernel opens /dev/console for init's stdio before devtmpfs exists.
  cpio.add("dev/console", S_IFCHR | 0600, "", 5, 1);
  cpio.add("bin/busybox", S_IFREG | 0755, busybox_bytes);
  cpio.add("init", S_IFREG | 0755, init_script());
  return write_file(path, cpio.finish());
}

Result<VmTools> find_vm_tools() {
  VmTools t;
  std::string qemu_name = getenv_or("NYDUS_QEMU", "qemu-system-x86_64");
  auto qemu = find_program(qemu_name);
  if (!qemu) {
    return make_error(ErrorKind::kUnsupported,
                      "{} not found (install qemu-system-x86, or set NYDUS_QEMU)", qemu_name);
  }
  t.qemu = *qemu;
  t.kernel = getenv_or("NYDUS_VM_KERNEL", std::string(NYDUS_SHARED_DIR) + "/vm/bzImage");
  struct stat st;
  if (::stat(t.kernel.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kUnsupported,
                      "VM kernel {} not found (see ../shared/vm/README.md, or set NYDUS_VM_KERNEL)",
                      t.kernel);
  }
  std::vector<std::string> candidates;
  if (const char* b = std::getenv("NYDUS_VM_BUSYBOX"); b && *b) {
    candidates.push_back(b);
  } else {
    candidates = {"/bin/busybox", "/usr/bin/busybox"};
  }
  std::string why = "not found";
  for (const auto& c : candidates) {
    if (!is_executable(c)) continue;
    auto is_static = is_static_elf(c);
    if (is_static.ok() && *is_static) {
      t.busybox = c;
      return t;
    }
    why = is_static.ok() ? fmt::format("{} is dynamically linked", c) : is_static.error().message();
  }
  return make_error(ErrorKind::kFailedPrecondition,
                    "a static busybox is needed for the VM initrd ({}; install busybox-static "
                    "or set NYDUS_VM_BUSYBOX)",
                    why);
}

namespace {

// One boot. *command_started tells whether the console shows the command
// began (so a failure before it can be retried without running it twice).
Result<VmResult> run_once(const VmOptions& o, const VmTools& tools, bool* command_started);

}  // namespace

Result<VmResult> run_in_vm(const VmOptions& o) {
  if (o.argv.empty()) return make_error(ErrorKind::kInvalidArgument, "run_in_vm: empty command");
  for (const auto& [k, v] : o.env) {
    if (!valid_env_name(k)) return make_error(ErrorKind::kInvalidArgument, "run_in_vm: bad env name \"{}\"", k);
  }
  if (o.work_dir.empty() || !fs::is_directory(o.work_dir)) {
    return make_error(ErrorKind::kInvalidArgument, "run_in_vm: work_dir \"{}\" is not a directory", o.work_dir);
  }
  NYDUS_ASSIGN_OR_RETURN(VmTools tools, find_vm_tools());
  for (int attempt = 1;; ++attempt) {
    bool started = false;
    auto r = run_once(o, tools, &started);
    // A VM that died before the command began (a kernel panic while
    // booting) ran nothing; boot it once more. Timeouts are not retried.
    if (r.ok() || started || attempt >= kBootAttempts || r.error().kind() != ErrorKind::kInternal) return r;
    std::fprintf(stderr, "vm harness: boot attempt %d failed before the command started, retrying: %s\n", attempt,
                 r.error().message().c_str());
  }
}

namespace {

Result<VmResult> run_once(const VmOptions& o, const VmTools& tools, bool* command_started) {
  const std::string dir = fs::absolute(o.work_dir).string();
  const std::string out_dir = dir + "/out";
  const std::string initrd = dir + "/initrd.cpio";
  const std::string disk = dir + "/cache.ext4";
  const std::string console_path = dir + "/console.log";
  const std::string stderr_path = dir + "/qemu.stderr";
  std::error_code ec;
  fs::remove_all(out_dir, ec);
  fs::create_directories(out_dir, ec);
  if (ec) return make_error(ErrorKind::kIo, "create {}: {}", out_dir, ec.message());
  fs::remove(console_path, ec);
  fs::remove(stderr_path, ec);

  NYDUS_TRY(write_initrd(initrd, tools.busybox));
  NYDUS_TRY(write_file(out_dir + "/command.sh", command_script(o)));
  if (o.cache_disk_mb > 0) NYDUS_TRY(make_cache_disk(disk, o.cache_disk_mb));

  // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
  // check can miss its ticks and panic ("IO-APIC + timer doesn't work!").
  std::string cmdline = "console=ttyS0 quiet panic=-1 oops=panic no_timer_check";
  if (!o.extra_cmdline.empty()) cmdline += " " + o.extra_cmdline;

  SpawnOptions so;
  so.argv = {tools.qemu,
             "-accel", "tcg", "-cpu", "max",
             "-m", std::to_string(o.memory_mb), "-smp", std::to_string(o.cpus),
             "-nographic", "-no-reboot", "-nic", "none",
             "-kernel", tools.kernel, "-initrd", initrd,
             "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
             "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
             "-fsdev", fmt::format("local,id=outdir,path={},security_model=none", out_dir),
             "-device", "virtio-9p-pci,fsdev=outdir,mount_tag=outdir",
             "-append", cmdline};
  if (o.cache_disk_mb > 0) {
    so.argv.push_back("-drive");
    so.argv.push_back(fmt::format("file={},if=virtio,format=raw", disk));
  }
  so.stdin_redirect = Redirect::null();
  so.stdout_redirect = Redirect::append_to(console_path);
  so.stderr_redirect = Redirect::append_to(stderr_path);
  // A test that crashes must not leave a VM running.
  so.parent_death_signal = SIGKILL;

  const auto start = std::chrono::steady_clock::now();
  NYDUS_ASSIGN_OR_RETURN(Process qemu, Process::spawn(so));
  auto status = qemu.wait(std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout));
  bool timed_out = false;
  if (!status.ok()) {
    timed_out = true;
    (void)qemu.kill(SIGKILL);
    (void)qemu.wait(kKillWait);
  }
  VmResult r;
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  auto console = read_file(console_path);
  r.console = console.ok() ? strip_cr(std::move(console).value()) : std::string();
  auto qemu_err = read_file(stderr_path);
  const std::string qemu_stderr = qemu_err.ok() ? *qemu_err : std::string();

  *command_started = r.console.find(kBeginMarker) != std::string::npos;
  if (timed_out) {
    return make_error(ErrorKind::kTimeout, "VM did not finish within {}s (qemu killed); console tail:\n{}",
                      o.timeout.count(), tail_lines(r.console, 40));
  }
  if (auto pos = r.console.find(kInitFailedMarker); pos != std::string::npos) {
    return make_error(ErrorKind::kFailedPrecondition, "VM /init failed: {}",
                      r.console.substr(pos + std::strlen(kInitFailedMarker)));
  }

  const size_t begin = r.console.find(kBeginMarker);
  *command_started = begin != std::string::npos;
  const size_t result = r.console.rfind(kResultMarker);
  std::optional<int> code;
  if (auto file = read_file(out_dir + "/exit_code"); file.ok()) {
    try {
      code = std::stoi(*file);
    } catch (...) {
    }
  }
  if (!code && result != std::string::npos) {
    try {
      code = std::stoi(r.console.substr(result + std::strlen(kResultMarker)));
    } catch (...) {
    }
  }
  if (!code) {
    return make_error(ErrorKind::kInternal,
                      "VM ended (qemu status {}) without a result marker (kernel panic or early "
                      "failure?); qemu stderr: {}; console tail:\n{}",
                      status.ok() ? *status : -1, qemu_stderr, tail_lines(r.console, 40));
  }
  r.exit_code = *code;
  if (begin != std::string::npos) {
    size_t from = r.console.find('\n', begin);
    from = from == std::string::npos ? r.console.size() : from + 1;
    size_t to = result != std::string::npos && result >= from ? result : r.console.size();
    r.output = r.console.substr(from, to - from);
  }
  return r;
}

}  // namespace

}  // namespace nydus::testing::vm
