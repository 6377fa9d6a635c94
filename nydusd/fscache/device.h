// /dev/cachefiles: opening and binding it, or adopting an fd a predecessor
// bound, and the system calls the handler makes (DeviceOps). The wire
// format is in protocol.h.
//
// The fd is non-blocking and close-on-exec (adopted fds are made so too);
// workers wait for requests in poll(2).
//
// Session start (fscache-facts.md §7.1): open O_RDWR (exclusive: a second
// open is EBUSY; needs CAP_SYS_ADMIN), then `dir <canonical dir>`, optionally
// `tag <tag>`, then `bind ondemand`, each its own write. The dir must be on a
// disk filesystem (ext4 works; tmpfs gives EOPNOTSUPP at bind).
//
// Failover: the fd of a bound session is what keeps the cache (and every
// EROFS mount on it) alive. A successor adopts a dup of it (received over
// SCM_RIGHTS from the supervisor) and writes `restore` once the predecessor
// has exited; closing the last reference while mounts exist breaks them
// until remounted (facts §4.2, §7).
//
// Thread safety: every method may be called from any thread; the kernel
// handles one write(2) per command atomically.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/fscache/handler.h"

namespace nydus::fscache {

inline constexpr const char* kCachefilesDevice = "/dev/cachefiles";

class CachefilesDevice final : public DeviceOps {
 public:
  // Opens the device and binds a fresh on-demand cache on `dir` (created if
  // missing, then canonicalized). `tag` may be empty.
  static Result<std::unique_ptr<CachefilesDevice>> open_and_bind(const std::string& dir, const std::string& tag,
                                                                 const std::string& device = kCachefilesDevice);
  // Takes an fd of an already bound device (from a predecessor). Checks that
  // it is a character device; the caller decides whether to write `restore`.
  static Result<std::unique_ptr<CachefilesDevice>> adopt(UniqueFd fd);

  int fd() const { return fd_.get(); }
  // A dup of the device fd (close-on-exec), to hand to a supervisor.
  Result<UniqueFd> dup_fd() const;

  // Reads one message: its size, 0 when nothing is pending. kIo on errors
  // other than EAGAIN/EINTR (those return 0).
  Result<size_t> read_message(std::span<uint8_t> buf);

  // `restore`: every pending request becomes new again (facts §4).
  Status restore() { return write_command("restore"); }

  // DeviceOps
  Status write_command(std::string_view command) override;
  Status write_object(int anon_fd, std::span<const uint8_t> data, uint64_t offset) override;
  Status complete_read(int anon_fd, uint32_t msg_id) override;
  bool is_anon_fd(int fd) override;

 private:
  explicit CachefilesDevice(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace nydus::fscache
