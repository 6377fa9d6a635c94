// File ranges to chunks (§9, §13). A regular file's chunk index k covers
// [k*C, min((k+1)*C, i_size)) with C the RAFS chunk size (never the EROFS
// chunkbits, which may be larger for "contiguous" files). Each index names
// (blob, CI index, uncompressed block); the bootstrap chunk table, when it
// has that key, adds the compressed extent and the digest.
#include <sys/stat.h>

#include <cerrno>

#include "nydusd/rafs/bootstrap_impl.h"

namespace nydus::rafs {

Result<std::vector<ChunkRef>> BootstrapImpl::map_range(uint64_t nid, uint64_t offset, uint64_t length) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView ino, load_inode(nid));
  if (!S_ISREG(ino.attr.mode)) {
    return Error(ErrorKind::kInvalidArgument, fmt::format("nid {} is not a regular file", nid),
                 S_ISDIR(ino.attr.mode) ? EISDIR : EINVAL);
  }
  return map_inode(ino, offset, length);
}

Result<std::vector<ChunkRef>> BootstrapImpl::map_inode(const InodeView& ino, uint64_t offset,
                                                       uint64_t length) const {
  std::vector<ChunkRef> out;
  const uint64_t size = ino.attr.size;
  if (offset >= size || length == 0) return out;
  const uint64_t end = offset + std::min(length, size - offset);
  const uint64_t C = super_.chunk_size;
  const uint64_t index_base = round_up(ino.body_offset(), sizeof(ChunkAddr));  // array range checked by load_inode()
  const uint64_t nid = ino.attr.nid;
  out.reserve((end - 1) / C - offset / C + 1);
  for (uint64_t k = offset / C; k <= (end - 1) / C; ++k) {
    const uint64_t at = index_base + k * sizeof(ChunkAddr);
    const ChunkAddr addr = *read_struct<ChunkAddr>(bytes_, at);
    if (addr.blkaddr == kChunkAddrHole) {
      return corrupt("nid {} chunk {} @{:#x}: blkaddr is the EROFS hole marker, which RAFS never writes", nid, k, at);
    }
    const uint32_t blob_plus1 = addr.blob_index_plus1();
    if (blob_plus1 == 0 || blob_plus1 > blobs_.size()) {
      return corrupt("nid {} chunk {} @{:#x}: device id {} must be blob index + 1 in [1, {}]", nid, k, at, blob_plus1,
                     blobs_.size());
    }
    const BlobInfo& blob = blobs_[blob_plus1 - 1];
    const uint32_t ci = addr.ci_index();
    if (ci >= blob.chunk_count) {
      return corrupt("nid {} chunk {} @{:#x}: CI index {} >= chunk_count {} of blob {}", nid, k, at, ci,
                     blob.chunk_count, blob.index);
    }
    ChunkRef r;
    r.blob_index = blob.index;
    r.ci_index = ci;
    r.file_offset = k * C;
    r.uncompressed_size = uint32_t(std::min(C, size - k * C));
    r.uncompressed_offset = uint64_t(addr.blkaddr) * block_size();
    r.compressor = blob.compressor;
    r.digester = blob.digester;
    if (!in_range(blob.uncompressed_size, r.uncompressed_offset, r.uncompressed_size)) {
      return corrupt("nid {} chunk {} @{:#x}: blkaddr {:#x} (+{} bytes) is outside blob {} (uncompressed size {:#x})",
                     nid, k, at + 4, addr.blkaddr, r.uncompressed_size, blob.index, blob.uncompressed_size);
    }
    if (const ChunkTableEntry* e = find_chunk(blob.index, ci, r.uncompressed_offset)) {
      if (e->uncompressed_size != r.uncompressed_size) {
        return corrupt("nid {} chunk {} @{:#x}: the chunk table says blob {} chunk {} has {} bytes, the file needs {}",
                       nid, k, at, blob.index, ci, e->uncompressed_size, r.uncompressed_size);
      }
      r.compressed_offset = e->compressed_offset;
      r.compressed_size = e->compressed_size;
      r.compressed = (e->flags & chunk_flags::kCompressed) != 0;
      Digest d;
      std::memcpy(d.data(), e->digest, d.size());
      r.digest = d;
      r.in_chunk_table = true;
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace nydus::rafs
