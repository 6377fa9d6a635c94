#include "nydusd/rafs/blob_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "nydusd/rafs/blob_ci.h"
#include "nydusd/rafs/compression.h"
#include "common/file_io.h"

namespace nydus::rafs {

BlobReader::BlobReader(std::shared_ptr<const Bootstrap> bootstrap, std::string blob_dir)
    : bootstrap_(std::move(bootstrap)), blob_dir_(std::move(blob_dir)), blobs_(bootstrap_->blobs().size()) {}

std::string BlobReader::blob_path(uint32_t blob_index) const {
  return blob_dir_ + "/" + bootstrap_->blobs().at(blob_index).blob_id;
}

Result<BlobReader::BlobState*> BlobReader::blob(uint32_t blob_index) {
  if (blob_index >= blobs_.size()) {
    return make_error(ErrorKind::kInvalidArgument, "blob index {} out of range ({} blobs)", blob_index, blobs_.size());
  }
  BlobState& s = blobs_[blob_index];
  if (!s.fd) {
    NYDUS_ASSIGN_OR_RETURN(s.fd, open_readonly(blob_path(blob_index)));
  }
  return &s;
}

Result<const std::vector<ChunkInfo>*> BlobReader::chunk_infos(uint32_t blob_index) {
  NYDUS_ASSIGN_OR_RETURN(BlobState * s, blob(blob_index));
  if (!s->ci) {
    NYDUS_ASSIGN_OR_RETURN(s->ci, read_blob_ci(bootstrap_->blobs()[blob_index], blob_path(blob_index), CiSource::kBlob));
  }
  return &*s->ci;
}

Result<std::vector<uint8_t>> BlobReader::fetch(uint32_t blob_index, uint32_t ci_index, const ChunkInfo& info,
                                               const std::optional<Digest>& digest) {
  const BlobInfo& b = bootstrap_->blobs()[blob_index];
  NYDUS_ASSIGN_OR_RETURN(BlobState * s, blob(blob_index));
  const std::string where = fmt::format("blob {} ({}) chunk {}", blob_index, b.blob_id, ci_index);
  std::vector<uint8_t> raw(info.compressed_size);
  if (auto st = pread_exact(s->fd.get(), raw, info.compressed_offset, blob_path(blob_index)); !st.ok()) {
    return std::move(st).error().wrap(where);
  }
  std::vector<uint8_t> data;
  if (info.compressed) {
    auto d = decompress(b.compressor, raw, info.uncompressed_size);
    if (!d.ok()) return std::move(d).error().wrap(where);
    data = std::move(*d);
  } else {
    data = std::move(raw);  // CI validation guarantees csize == usize here
  }
  if (digest) {
    const Digest got = compute_digest(b.digester, data);
    if (got != *digest) {
      return make_error(ErrorKind::kCorrupt, "{}: digest {} does not match the bootstrap's {}", where, to_hex(got),
                        to_hex(*digest));
    }
  }
  return data;
}

Result<std::vector<uint8_t>> BlobReader::read_chunk(const ChunkRef& c) {
  NYDUS_ASSIGN_OR_RETURN(const std::vector<ChunkInfo>* ci, chunk_infos(c.blob_index));
  if (c.ci_index >= ci->size()) {
    return make_error(ErrorKind::kCorrupt, "blob {} chunk {}: the CI array has only {} entries", c.blob_index,
                      c.ci_index, ci->size());
  }
  const ChunkInfo& info = (*ci)[c.ci_index];
  // The bootstrap and the blob must agree on where this chunk is.
  const bool agree = info.uncompressed_offset == c.uncompressed_offset &&
                     info.uncompressed_size == c.uncompressed_size &&
                     (!c.in_chunk_table || (info.compressed_offset == c.compressed_offset &&
                                            info.compressed_size == c.compressed_size &&
                                            info.compressed == c.compressed));
  if (!agree) {
    return make_error(ErrorKind::kCorrupt,
                      "blob {} chunk {}: bootstrap says u[{:#x}, +{}) c[{:#x}, +{}), the blob's CI says u[{:#x}, +{}) "
                      "c[{:#x}, +{})",
                      c.blob_index, c.ci_index, c.uncompressed_offset, c.uncompressed_size, c.compressed_offset,
                      c.compressed_size, info.uncompressed_offset, info.uncompressed_size, info.compressed_offset,
                      info.compressed_size);
  }
  return fetch(c.blob_index, c.ci_index, info, c.digest);
}

Result<std::vector<uint8_t>> BlobReader::read(uint64_t nid, uint64_t offset, uint64_t length) {
  NYDUS_ASSIGN_OR_RETURN(InodeAttr attr, bootstrap_->getattr(nid));
  NYDUS_ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, bootstrap_->map_range(nid, offset, length));
  std::vector<uint8_t> out;
  if (offset >= attr.size) return out;
  const uint64_t end = offset + std::min(length, attr.size - offset);
  out.reserve(end - offset);
  for (const ChunkRef& c : chunks) {
    NYDUS_ASSIGN_OR_RETURN(std::vector<uint8_t> data, read_chunk(c));
    const uint64_t from = std::max(offset, c.file_offset);
    const uint64_t to = std::min(end, c.file_offset + data.size());
    out.insert(out.end(), data.begin() + (from - c.file_offset), data.begin() + (to - c.file_offset));
  }
  if (out.size() != end - offset) {
    return make_error(ErrorKind::kCorrupt, "nid {}: chunks cover {} bytes of [{}, {})", nid, out.size(), offset, end);
  }
  return out;
}

Status BlobReader::write_uncompressed_blob(uint32_t blob_index, const std::string& out_path) {
  NYDUS_ASSIGN_OR_RETURN(const std::vector<ChunkInfo>* ci, chunk_infos(blob_index));
  const BlobInfo& b = bootstrap_->blobs()[blob_index];
  int raw_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (raw_fd < 0) return Error::from_errno(errno, "create " + out_path);
  UniqueFd fd(raw_fd);
  if (ftruncate(fd.get(), off_t(b.uncompressed_size)) != 0) return Error::from_errno(errno, "truncate " + out_path);
  for (uint32_t k = 0; k < ci->size(); ++k) {
    const ChunkInfo& info = (*ci)[k];
    std::optional<Digest> digest;
    if (const ChunkTableEntry* e = bootstrap_->find_chunk(blob_index, k, info.uncompressed_offset)) {
      digest.emplace();
      std::memcpy(digest->data(), e->digest, digest->size());
    }
    NYDUS_ASSIGN_OR_RETURN(std::vector<uint8_t> data, fetch(blob_index, k, info, digest));
    NYDUS_TRY(pwrite_all(fd.get(), data, info.uncompressed_offset, out_path));
  }
  return ok_status();
}

}  // namespace nydus::rafs
