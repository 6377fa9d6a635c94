#include "common/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace nydus {

Result<UniqueFd> open_readonly(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno(errno, "open " + path);
  return UniqueFd(fd);
}

Result<uint64_t> file_size(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Error::from_errno(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "{}: not a regular file", path);
  }
  return uint64_t(st.st_size);
}

Status pread_exact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, fmt::format("read {} at {}", path, offset + done));
    }
    if (n == 0) {
      return make_error(ErrorKind::kCorrupt, "{}: want {} bytes at offset {}, but the file ends at {}",
                        path, out.size(), offset, offset + done);
    }
    done += size_t(n);
  }
  return ok_status();
}

Status pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // pwrite(2) never returns 0 for a non-empty buffer on a regular file;
      // if something does, fail instead of spinning.
      return Error::from_errno(n < 0 ? errno : EIO, fmt::format("write {} at {}", path, offset + done));
    }
    done += size_t(n);
  }
  return ok_status();
}

Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t max_size) {
  NYDUS_ASSIGN_OR_RETURN(UniqueFd fd, open_readonly(path));
  NYDUS_ASSIGN_OR_RETURN(uint64_t size, file_size(fd.get(), path));
  if (size > max_size) {
    return make_error(ErrorKind::kTooLarge, "{}: {} bytes is larger than the limit {}", path, size, max_size);
  }
  std::vector<uint8_t> bytes(size);
  NYDUS_TRY(pread_exact(fd.get(), bytes, 0, path));
  return bytes;
}

}  // namespace nydus
