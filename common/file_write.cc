#include "common/file_write.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "common/unique_fd.h"

namespace nydus {

Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes, unsigned mode,
                         Durability durability) {
  std::string tmp = path + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return Error::from_errno(errno, fmt::format("creating a temporary file for {}", path));
  auto fail = [&](int err, std::string_view what) {
    ::unlink(tmp.c_str());
    return Error::from_errno(err, fmt::format("{} {}", what, tmp));
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(errno, "chmod");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(n < 0 ? errno : EIO, "writing");
    done += size_t(n);
  }
  if (durability == Durability::kDurable && ::fsync(fd.get()) != 0) return fail(errno, "fsync");
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(errno, fmt::format("renaming to {}", path));
  return ok_status();
}

}  // namespace nydus
