// Runs one command inside a throw-away qemu VM booted from the fscache test
// kernel (../shared/vm/bzImage, Linux 6.12 with cachefiles on-demand), for
// the tests that need what the host kernel lacks. See ../shared/vm/README.md
// and ../shared/docs/fscache-facts.md §1 for the recipe this follows.
//
// What one run does (every run is independent, nothing is shared or reused):
//
//   host                                   guest (qemu TCG, -smp 1, 1 GiB)
//   ----                                   -----
//   work_dir/initrd.cpio  (newc, written   /init (busybox sh):
//     here: static busybox, /dev/console,    mount proc, sysfs, devtmpfs
//     /init)                                 mount 9p "hostroot" ro at /host
//   work_dir/out/         (9p "outdir")      mount devtmpfs/proc/sysfs in /host
//     command.sh  <- the command             tmpfs at /host/run (writable)
//     exit_code   -> written by /init        9p "outdir" rw at /host/run/out
//   work_dir/cache.ext4   (fresh mkfs)       ext4 /dev/vda at /host/run/cache
//   work_dir/console.log  (serial ttyS0)     chroot /host /bin/sh /run/out/command.sh
//                                            print the result marker, poweroff -f
//
// Inside the chroot every host path is what it is on the host (read-only), so
// build/bin binaries, their shared libraries and test data in the host's
// /tmp work unchanged. Writable places: /run (tmpfs; TMPDIR=/run/tmp), the
// ext4 cache disk at kGuestCacheDir (the cachefiles `dir` must be on a disk
// filesystem, not tmpfs), and kGuestOutDir (shared with the host).
//
// Console protocol (lines on the serial console, \r removed by the harness):
//   NYDUS-VM-BEGIN                  the command starts
//   NYDUS-VM-RESULT: exit=<n>       the command ended with exit status n
//   NYDUS-VM-INIT-FAILED: <step>    /init could not set the guest up
// The exit status is also written to out/exit_code; the harness takes the
// file first and falls back to the marker.
//
// Failure modes, each a distinct error: qemu cannot start (kIo, its stderr),
// the VM did not finish within the timeout (kTimeout; qemu is killed and
// reaped, the console tail is in the message), /init failed (kFailedPrecondition),
// the VM ended without a result, e.g. a kernel panic (kInternal, console tail).
// A VM that dies before the command started (a panic while booting under a
// loaded host) is booted once more; nothing ran, so nothing runs twice.
//
// Availability: the VM tests need qemu-system-x86_64 and the kernel file;
// when either is missing they are skipped (exit code kSkipExitCode, which
// ctest reports as "Skipped"). Everything else missing (static busybox,
// mkfs.ext4) is a failure, not a skip: it is a broken setup.
//
// Thread safety: run_in_vm() may be called from several threads; each call
// uses only its own work_dir.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace nydus::testing::vm {

// Exit code of a test binary that skips (ctest SKIP_RETURN_CODE).
inline constexpr int kSkipExitCode = 77;
// How long one VM may take from qemu start to power-off, unless told.
inline constexpr std::chrono::seconds kDefaultVmTimeout{120};
// Where things are inside the guest's chroot.
inline constexpr const char* kGuestCacheDir = "/run/cache";  // ext4 disk mount
inline constexpr const char* kGuestOutDir = "/run/out";      // shared with host work_dir/out
inline constexpr const char* kGuestTmpDir = "/run/tmp";      // tmpfs, TMPDIR

struct VmTools {
  std::string qemu;     // qemu-system-x86_64
  std::string kernel;   // bzImage
  std::string busybox;  // a static busybox (checked: no ELF interpreter)
};

// Finds the tools: $NYDUS_QEMU or qemu-system-x86_64 in PATH; $NYDUS_VM_KERNEL
// or <shared>/vm/bzImage; $NYDUS_VM_BUSYBOX, /bin/busybox or /usr/bin/busybox.
// kUnsupported when qemu or the kernel is missing (callers skip), another
// kind when the setup is broken (callers fail).
Result<VmTools> find_vm_tools();

struct VmOptions {
  // The command, run with exec from /bin/sh inside the chroot.
  std::vector<std::string> argv;
  // Exported before the command, after PATH, HOME and TMPDIR.
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir = "/";
  // A host directory owned by the caller (must exist; files are created in it).
  std::string work_dir;
  std::chrono::seconds timeout = kDefaultVmTimeout;
  // Size of the fresh ext4 cache disk at kGuestCacheDir; 0 = no disk.
  uint64_t cache_disk_mb = 128;
  int memory_mb = 1024;
  int cpus = 1;
  // Extra kernel command line words.
  std::string extra_cmdline;
};

struct VmResult {
  int exit_code = -1;        // the command's exit status (128+n: killed by signal n)
  std::string output;        // console text between BEGIN and RESULT (command output
                             // and any kernel messages printed meanwhile)
  std::string console;       // the whole serial console log
  std::chrono::milliseconds elapsed{0};  // qemu start to exit
};

// Boots the VM, runs the command, returns its exit status and output.
Result<VmResult> run_in_vm(const VmOptions& options);

// Writes the initrd (uncompressed newc cpio: busybox, /init, /dev/console)
// to `path`. Exposed for the run tool and for tests.
Status write_initrd(const std::string& path, const std::string& busybox);

// The /init script the initrd carries.
std::string init_script();

// Quotes `word` for /bin/sh (single quotes).
std::string shell_quote(const std::string& word);

// The last `lines` lines of `text`, for error messages.
std::string tail_lines(const std::string& text, size_t lines);

}  // namespace nydus::testing::vm
