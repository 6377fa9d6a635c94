// Directory packing and sort order, inline decisions, chunk formats and inode
// placement (format spec §6, §7, §9, §19).
#include "tools/nydus-image/meta_layout.h"

#include <cstring>

#include <catch2/catch.hpp>

using namespace nydus::builder;
namespace rafs = nydus::rafs;

namespace {

std::vector<std::string> names_of(const std::vector<DirBlock>& blocks) {
  std::vector<std::string> out;
  for (const auto& b : blocks)
    for (const auto& e : b) out.push_back(e.name);
  return out;
}

}  // namespace

TEST_CASE("builder: dirents sort by raw bytes with dot and dot-dot included", "[builder][layout]") {
  std::vector<DirentSpec> entries{{"b", 1, 1}, {"..", 2, 2}, {"\xc3\xa9t\xc3\xa9", 3, 1}, {"-dash", 4, 1},
                                  {".", 5, 2}, {"B", 6, 1},  {".hidden", 7, 1},           {"a b", 8, 1}};
  auto blocks = pack_dirents(entries);
  REQUIRE(blocks.size() == 1);
  // '-' (0x2d) sorts below '.' (0x2e); upper case below lower case; UTF-8 bytes (>= 0x80) last.
  CHECK(names_of(blocks) == std::vector<std::string>{"-dash", ".", "..", ".hidden", "B", "a b", "b", "\xc3\xa9t\xc3\xa9"});
}

TEST_CASE("builder: dirent blocks never split an entry", "[builder][layout]") {
  std::vector<DirentSpec> entries{{".", 0, 2}, {"..", 0, 2}};
  for (int i = 0; i < 100; ++i) {
    std::string name(255, 'a');
    std::snprintf(name.data(), 4, "%03d", i);
    name[3] = 'x';
    entries.push_back({name, uint64_t(i), 1});
  }
  auto blocks = pack_dirents(entries);
  size_t total = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    uint32_t used = dir_block_used(blocks[i]);
    CHECK(used <= rafs::kBlockSize);
    if (i + 1 < blocks.size()) {
      // The first entry of the next block would not have fitted here.
      CHECK(used + 12 + blocks[i + 1].front().name.size() > rafs::kBlockSize);
    }
    total += blocks[i].size();
  }
  CHECK(total == entries.size());
  // 255-byte names take 267 bytes: 15 fit in a block (4005 bytes).
  CHECK(blocks[1].size() == 15);
  CHECK(dir_size(blocks) == (blocks.size() - 1) * 4096 + dir_block_used(blocks.back()));
}

TEST_CASE("builder: a directory block encodes dirents then names", "[builder][layout]") {
  DirBlock block{{".", 128, 2}, {"..", 128, 2}, {"file", 200, 1}};
  auto bytes = encode_dir_block(block, false);
  REQUIRE(bytes.size() == 36 + 1 + 2 + 4);
  rafs::Dirent d[3];
  std::memcpy(d, bytes.data(), sizeof(d));
  CHECK(d[0].nameoff == 36);  // nameoff / 12 = number of entries
  CHECK(d[1].nameoff == 37);
  CHECK(d[2].nameoff == 39);
  CHECK(d[2].nid == 200);
  CHECK(d[2].file_type == 1);
  CHECK(std::string(reinterpret_cast<char*>(bytes.data()) + 36, 7) == "...file");
  CHECK(encode_dir_block(block, true).size() == rafs::kBlockSize);
}

TEST_CASE("builder: inline tails only when inode and xattrs and tail fit one block", "[builder][layout]") {
  auto p = plan_data(100, 64);
  CHECK(p.layout == rafs::DataLayout::kFlatInline);
  CHECK(p.full_blocks == 0);
  CHECK(p.inline_tail == 100);

  p = plan_data(4032, 64);  // exactly one block
  CHECK(p.layout == rafs::DataLayout::kFlatInline);

  p = plan_data(4033, 64);
  CHECK(p.layout == rafs::DataLayout::kFlatPlain);
  CHECK(p.full_blocks == 1);
  CHECK(p.inline_tail == 0);

  p = plan_data(4095, 64);  // a 4095-byte symlink is never inline
  CHECK(p.layout == rafs::DataLayout::kFlatPlain);

  p = plan_data(8192, 64);  // no tail: plain
  CHECK(p.layout == rafs::DataLayout::kFlatPlain);
  CHECK(p.full_blocks == 2);

  p = plan_data(5000, 64 + 100);  // one full block plus an inline tail
  CHECK(p.layout == rafs::DataLayout::kFlatInline);
  CHECK(p.full_blocks == 1);
  CHECK(p.inline_tail == 904);
}

TEST_CASE("builder: chunk formats", "[builder][layout]") {
  CHECK(chunk_format(1 << 20, 100, false) == 0x28);
  CHECK(chunk_format(1 << 20, 5 << 20, false) == 0x28);
  CHECK(chunk_format(4096, 10, false) == 0x20);
  CHECK(chunk_format(0x10000, 0x10000, true) == 0x24);       // one chunk: nothing to extend
  CHECK(chunk_format(1 << 20, (5 << 20) / 2, true) == 0x2A);  // 2.5 MiB -> 4 MiB extent (§9)
}

TEST_CASE("builder: table offsets follow the device slots", "[builder][layout]") {
  CHECK(blob_table_offset(0) == 4096);
  CHECK(blob_table_offset(1) == 4096);
  CHECK(blob_table_offset(21) == 4096);
  CHECK(blob_table_offset(22) == 8192);
  CHECK(meta_blkaddr_for(0) == 1);
  CHECK(meta_blkaddr_for(1) == 2);
  CHECK(meta_blkaddr_for(16) == 2);
  CHECK(meta_blkaddr_for(17) == 3);
}

TEST_CASE("builder: placement puts the root at nid 128 and inline data never crosses a block", "[builder][layout]") {
  Image img;
  img.root = make_dir();
  // Enough symlinks with 1000-byte targets that some must skip to a new block.
  for (int i = 0; i < 20; ++i) {
    auto l = std::make_shared<Inode>();
    l->mode = S_IFLNK | 0777;
    l->symlink = std::string(1000, 'a' + i);
    img.root->children.emplace("l" + std::to_string(i), l);
  }
  auto sub = make_dir();
  img.root->children.emplace("sub", sub);
  auto file = std::make_shared<Inode>();
  file->mode = S_IFREG | 0644;
  sub->children.emplace("f", file);
  sub->children.emplace("g", file);  // a hard link

  MetaPlan plan = plan_meta(img, 2);
  CHECK(plan.inodes.at(img.root.get()).nid == 128);
  CHECK(plan.inodes.at(img.root.get()).offset == 3 * 4096);
  CHECK(plan.inos == 1 + 20 + 1 + 2);
  CHECK(plan.order.size() == 1 + 20 + 1 + 1);  // the hard link is placed once
  for (const auto& [node, ip] : plan.inodes) {
    CHECK(ip.offset % 32 == 0);
    uint64_t end = ip.offset + 64 + ip.xattr_size + ip.data.inline_tail;
    CHECK((ip.offset / 4096) == ((end - 1) / 4096));
  }
  CHECK(plan.inodes.at(file.get()).nlink == 2);
  CHECK(plan.inodes.at(img.root.get()).nlink == 3);
  CHECK(plan.inodes.at(sub.get()).parent_nid == 128);
  CHECK(plan.chunk_table_offset % 4096 == 0);
  CHECK(plan.file_size % 4096 == 0);
}
