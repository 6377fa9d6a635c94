#include "tools/nydus-image/export_block.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/blob_ci.h"
#include "nydusd/rafs/blob_reader.h"
#include "common/file_io.h"
#include "tools/nydus-image/bootstrap_writer.h"

namespace nydus::builder {

namespace {

constexpr uint64_t kMaxBootstrapSize = 1ull << 32;

}  // namespace

Result<ExportResult> export_block(const std::string& bootstrap, const std::string& blob_dir,
                                  const std::string& output) {
  NYDUS_ASSIGN_OR_RETURN(auto bytes, nydus::read_file(bootstrap, kMaxBootstrapSize));
  NYDUS_ASSIGN_OR_RETURN(auto bs, rafs::Bootstrap::from_bytes(bytes, bootstrap));
  const auto& blobs = bs->blobs();

  std::vector<uint64_t> blocks;
  for (const auto& b : blobs) blocks.push_back(b.uncompressed_size / rafs::kBlockSize);
  std::vector<uint32_t> mapped = flat_mapped_blkaddrs(bytes.size(), blocks);
  for (size_t i = 0; i < blobs.size(); ++i) {
    uint64_t off = rafs::kDeviceTableOffset + i * sizeof(rafs::DeviceSlot) + offsetof(rafs::DeviceSlot, mapped_blkaddr);
    std::memcpy(bytes.data() + off, &mapped[i], sizeof(uint32_t));
  }

  std::string tmp = output + ".tmp" + std::to_string(getpid());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Error::from_errno(errno, "create " + tmp);
  auto fail = [&](Error e) -> Error {
    unlink(tmp.c_str());
    return e;
  };
  if (auto st = nydus::pwrite_all(fd.get(), bytes, 0, tmp); !st.ok()) return fail(std::move(st).error());
  uint64_t end = bytes.size();
  rafs::BlobReader reader(bs, blob_dir);
  for (uint32_t i = 0; i < blobs.size(); ++i) {
    auto infos = reader.chunk_infos(i);
    if (!infos.ok()) return fail(std::move(infos).error());
    uint64_t base = uint64_t(mapped[i]) * rafs::kBlockSize;
    for (uint32_t ci = 0; ci < (*infos)->size(); ++ci) {
      const rafs::ChunkInfo& info = (**infos)[ci];
      auto data = reader.read_chunk(rafs::chunk_ref_from_ci(bs->blobs()[i], ci, info, bs.get()));
      if (!data.ok()) return fail(std::move(data).error());
      if (auto st = nydus::pwrite_all(fd.get(), *data, base + info.uncompressed_offset, tmp); !st.ok())
        return fail(std::move(st).error());
    }
    end = base + blobs[i].uncompressed_size;
  }
  // Holes between and after chunks read as zeros; the length covers every device block.
  if (ftruncate(fd.get(), off_t(end)) != 0 || rename(tmp.c_str(), output.c_str()) != 0)
    return fail(Error::from_errno(errno, "save " + output));
  return ExportResult{end, blobs.size()};
}

}  // namespace nydus::builder
