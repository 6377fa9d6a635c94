#include "tools/nydus-image/export_block.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/file_io.h"
#include "nydusd/rafs/blob_reader.h"
#include "tools/nydus-image/bootstrap_writer.h"

namespace nydus::builder {

namespace {

constexpr uint64_t kMaxBootstrapSize = 1ull << 32;

Status pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& path) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Error::from_errno(errno, "write " + path);
    p += w;
    n -= size_t(w);
    off += uint64_t(w);
  }
  return ok_status();
}

// A reference to CI entry `ci` of blob `blob`, with the chunk table's
// digest when the bootstrap has one, so every exported chunk is verified.
rafs::ChunkRef chunk_ref(const rafs::Bootstrap& bs, uint32_t blob, uint32_t ci, const rafs::ChunkInfo& info) {
  rafs::ChunkRef r;
  r.blob_index = blob;
  r.ci_index = ci;
  r.uncompressed_offset = info.uncompressed_offset;
  r.uncompressed_size = info.uncompressed_size;
  r.compressed_offset = info.compressed_offset;
  r.compressed_size = info.compressed_size;
  r.compressed = info.compressed;
  r.compressor = bs.blobs()[blob].compressor;
  r.digester = bs.blobs()[blob].digester;
  if (const rafs::ChunkTableEntry* e = bs.find_chunk(blob, ci, info.uncompressed_offset)) {
    r.digest.emplace();
    std::memcpy(r.digest->data(), e->digest, r.digest->size());
  }
  return r;
}

}  // namespace

Result<ExportResult> export_block(const std::string& bootstrap, const std::string& blob_dir,
                                  const std::string& output) {
  NYDUS_ASSIGN_OR_RETURN(auto bytes, rafs::read_file(bootstrap, kMaxBootstrapSize));
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
  if (auto st = pwrite_all(fd.get(), bytes.data(), bytes.size(), 0, tmp); !st.ok()) return fail(std::move(st).error());
  uint64_t end = bytes.size();
  rafs::BlobReader reader(bs, blob_dir);
  for (uint32_t i = 0; i < blobs.size(); ++i) {
    auto infos = reader.chunk_infos(i);
    if (!infos.ok()) return fail(std::move(infos).error());
    uint64_t base = uint64_t(mapped[i]) * rafs::kBlockSize;
    for (uint32_t ci = 0; ci < (*infos)->size(); ++ci) {
      const rafs::ChunkInfo& info = (**infos)[ci];
      auto data = reader.read_chunk(chunk_ref(*bs, i, ci, info));
      if (!data.ok()) return fail(std::move(data).error());
      if (auto st = pwrite_all(fd.get(), data->data(), data->size(), base + info.uncompressed_offset, tmp); !st.ok())
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
