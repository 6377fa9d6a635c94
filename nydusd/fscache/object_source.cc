#include "nydusd/fscache/object_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace nydus::fscache {

Result<std::shared_ptr<BootstrapSource>> BootstrapSource::open(const std::string& id, const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno(errno, fmt::format("open bootstrap {}", path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno(errno, fmt::format("stat bootstrap {}", path));
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "bootstrap {} is not a regular file", path);
  }
  return std::shared_ptr<BootstrapSource>(new BootstrapSource(id, path, std::move(fd), uint64_t(st.st_size)));
}

Status BootstrapSource::read(uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  // The file is immutable while registered; a short read means EOF (zeros).
  while (done < out.size() && offset + done < size_) {
    ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, fmt::format("read {}", describe()));
    if (n == 0) break;
    done += size_t(n);
  }
  std::memset(out.data() + done, 0, out.size() - done);
  return ok_status();
}

std::string BootstrapSource::describe() const { return fmt::format("bootstrap {} ({})", id_, path_); }

}  // namespace nydus::fscache
