#include "nydusd/fscache/device.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "nydusd/fscache/protocol.h"
#include "common/file_io.h"

namespace nydus::fscache {

Result<std::unique_ptr<CachefilesDevice>> CachefilesDevice::open_and_bind(const std::string& dir,
                                                                          const std::string& tag,
                                                                          const std::string& device) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ErrorKind::kIo, "fscache: create cache dir {}: {}", dir, ec.message());
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr) return Error::from_errno(errno, fmt::format("fscache: realpath {}", dir));
  if (tag.find_first_of(" \n\t") != std::string::npos) {
    return make_error(ErrorKind::kInvalidArgument, "fscache: tag \"{}\" contains white space", tag);
  }

  // Non-blocking: read(2) returns 0 when nothing is pending on 6.x kernels,
  // but older ones may block; the workers wait in poll(2), never in read.
  UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    int err = errno;
    std::string hint;
    if (err == ENOENT) hint = " (kernel without CONFIG_CACHEFILES?)";
    if (err == EBUSY) hint = " (another cachefiles daemon has it open)";
    return Error::from_errno(err, fmt::format("fscache: open {}{}", device, hint));
  }
  std::unique_ptr<CachefilesDevice> dev(new CachefilesDevice(std::move(fd)));
  NYDUS_TRY(dev->write_command(fmt::format("dir {}", real)));
  if (!tag.empty()) NYDUS_TRY(dev->write_command(fmt::format("tag {}", tag)));
  if (Status st = dev->write_command("bind ondemand"); !st.ok()) {
    return std::move(st).error().wrap(
        fmt::format("fscache: bind ondemand on {} (needs CONFIG_CACHEFILES_ONDEMAND and a disk filesystem such as "
                    "ext4; tmpfs gives EOPNOTSUPP)",
                    real));
  }
  spdlog::info("fscache: bound {} on {}{}", device, real, tag.empty() ? "" : fmt::format(" (tag {})", tag));
  return dev;
}

Result<std::unique_ptr<CachefilesDevice>> CachefilesDevice::adopt(UniqueFd fd) {
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0) return Error::from_errno(errno ? errno : EBADF, "fscache: adopt device fd");
  if (!S_ISCHR(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "fscache: the fd to adopt is not a character device");
  }
  (void)::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  if (int fl = ::fcntl(fd.get(), F_GETFL); fl >= 0) (void)::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK);
  return std::unique_ptr<CachefilesDevice>(new CachefilesDevice(std::move(fd)));
}

Result<UniqueFd> CachefilesDevice::dup_fd() const {
  UniqueFd d(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!d) return Error::from_errno(errno, "fscache: dup the device fd");
  return d;
}

Result<size_t> CachefilesDevice::read_message(std::span<uint8_t> buf) {
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n >= 0) return size_t(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t(0);
    return Error::from_errno(errno, "fscache: read /dev/cachefiles");
  }
}

Status CachefilesDevice::write_command(std::string_view command) {
  if (command.size() > kMaxCommandSize) {
    return make_error(ErrorKind::kInvalidArgument, "fscache: command of {} bytes is too long", command.size());
  }
  for (;;) {
    ssize_t n = ::write(fd_.get(), command.data(), command.size());
    if (n == ssize_t(command.size())) return ok_status();
    if (n < 0 && errno == EINTR) continue;
    int err = n < 0 ? errno : EIO;
    return Error::from_errno(err, fmt::format("fscache: command \"{}\"", command));
  }
}

Status CachefilesDevice::write_object(int anon_fd, std::span<const uint8_t> data, uint64_t offset) {
  return nydus::pwrite_all(anon_fd, data, offset, "fscache: the object's cache file");
}

Status CachefilesDevice::complete_read(int anon_fd, uint32_t msg_id) {
  // The argument is the msg_id by value, not a pointer (facts §2.5).
  if (::ioctl(anon_fd, kIocReadComplete, static_cast<unsigned long>(msg_id)) == 0) return ok_status();
  return Error::from_errno(errno, fmt::format("fscache: READ_COMPLETE msg {}", msg_id));
}

bool CachefilesDevice::is_anon_fd(int fd) {
  char link[64];
  std::string path = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n < 0) return false;
  return std::string_view(link, size_t(n)) == "anon_inode:[cachefiles]";
}

}  // namespace nydus::fscache
