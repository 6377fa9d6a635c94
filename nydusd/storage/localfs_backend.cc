#include "nydusd/storage/localfs_backend.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "common/file_io.h"

namespace nydus::storage {

namespace {

Result<UniqueFd> open_regular_file(const std::string& path, uint64_t* size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno(errno, fmt::format("localfs: open blob file {}", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::from_errno(errno, fmt::format("localfs: stat blob file {}", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "localfs: blob file {} is not a regular file",
                      path);
  }
  *size = uint64_t(st.st_size);
  return fd;
}

}  // namespace

Result<std::unique_ptr<LocalFsBackend>> LocalFsBackend::open(
    const BackendConfig& config, const std::vector<rafs::BlobInfo>& blobs,
    StorageMetrics* metrics) {
  bool have_dir = config.dir.has_value() && !config.dir->empty();
  bool have_file = config.blob_file.has_value() && !config.blob_file->empty();
  if (!have_dir && !have_file) {
    return make_error(ErrorKind::kInvalidArgument, "localfs backend needs \"dir\" or \"blob_file\"");
  }
  // blob_file names one file, so it can only serve an image with one blob.
  if (have_file && !have_dir && blobs.size() > 1) {
    return make_error(ErrorKind::kInvalidArgument,
                      "localfs backend: blob_file {} given but the image has {} blobs",
                      *config.blob_file, blobs.size());
  }
  if (have_dir) {
    struct stat st {};
    if (::stat(config.dir->c_str(), &st) != 0) {
      return Error::from_errno(errno, fmt::format("localfs: blob dir {}", *config.dir));
    }
    if (!S_ISDIR(st.st_mode)) {
      return make_error(ErrorKind::kInvalidArgument, "localfs: blob dir {} is not a directory",
                        *config.dir);
    }
  }

  std::unique_ptr<LocalFsBackend> backend(new LocalFsBackend(metrics));
  for (const auto& blob : blobs) {
    BlobFile file;
    // blob_file wins for the single blob; dir serves the rest.
    file.path = (have_file && blobs.size() == 1) ? *config.blob_file
                                                 : *config.dir + "/" + blob.blob_id;
    NYDUS_ASSIGN_OR_RETURN(file.fd, open_regular_file(file.path, &file.size));
    backend->files_.emplace(blob.blob_id, std::move(file));
  }
  return backend;
}

Status LocalFsBackend::do_read(const std::string& blob_id, uint64_t offset,
                               std::span<uint8_t> out) {
  auto it = files_.find(blob_id);
  if (it == files_.end()) {
    return make_error(ErrorKind::kNotFound, "localfs: blob {} is not part of this image", blob_id);
  }
  const BlobFile& file = it->second;
  if (offset > file.size || out.size() > file.size - offset) {
    return make_error(ErrorKind::kCorrupt,
                      "localfs: range [{}, +{}) is outside blob {} ({} bytes, file {})", offset,
                      out.size(), blob_id, file.size, file.path);
  }
  // A short read means the file shrank after open (truncated under us): kCorrupt.
  return nydus::pread_exact(file.fd.get(), out, offset, file.path);
}

}  // namespace nydus::storage
