// A written bootstrap read back through the reader contract (bootstrap.h):
// every attribute the builder keeps, large directories, inline and
// out-of-line symlinks, hard links, devices, xattrs and the chunk map.
#include "tools/nydus-image/bootstrap_writer.h"

#include <sys/sysmacros.h>

#include <catch2/catch.hpp>

#include "nydusd/rafs/bootstrap.h"
#include "tools/nydus-image/bootstrap_loader.h"

using namespace nydus::builder;
namespace rafs = nydus::rafs;

namespace {

InodePtr node(uint32_t mode) {
  auto n = std::make_shared<Inode>();
  n->mode = mode;
  n->uid = 100000;
  n->gid = 200000;
  n->mtime = 1234567890;
  n->mtime_nsec = 987654321;
  return n;
}

Image sample_image() {
  Image img;
  img.chunk_size = 0x10000;
  img.root = make_dir(0711);
  rafs::BlobInfo b;
  b.blob_id = std::string(64, 'a');
  b.chunk_size = img.chunk_size;
  b.chunk_count = 3;
  b.compressor = rafs::Compressor::kNone;
  b.features = rafs::blob_features::kAligned;
  b.uncompressed_size = 0x10000 * 3;
  b.compressed_size = 0x10000 * 3;
  b.ci_offset = 0x10000 * 3;
  b.ci_compressed_size = b.ci_uncompressed_size = 48;
  img.blobs.push_back(b);
  for (uint32_t i = 0; i < 3; ++i) {
    rafs::ChunkTableEntry c{};
    c.digest[0] = uint8_t(i);
    c.index = i;
    c.uncompressed_offset = c.compressed_offset = uint64_t(i) * 0x10000;
    c.uncompressed_size = c.compressed_size = 0x10000;
    img.chunks.push_back(c);
  }
  auto big = node(S_IFREG | 0640);
  big->size = 0x10000 * 3;
  big->chunks = {0, 1, 2};
  big->xattrs = {{"user.a", "b"}, {"security.selinux", "label"}, {"system.posix_acl_access", std::string(28, '\2')}};
  img.root->children.emplace("big", big);
  img.root->children.emplace("big-link", big);
  auto lots = make_dir();
  for (int i = 0; i < 2000; ++i) lots->children.emplace("entry-" + std::to_string(i), node(S_IFREG | 0600));
  img.root->children.emplace("lots", lots);
  auto s = node(S_IFLNK | 0777);
  s->symlink = "big";
  img.root->children.emplace("short", s);
  auto l = node(S_IFLNK | 0777);
  l->symlink = std::string(4095, 'x');
  img.root->children.emplace("long", l);
  auto dev = node(S_IFBLK | 0660);
  dev->rdev_major = 259;
  dev->rdev_minor = 70000;
  img.root->children.emplace("dev", dev);
  img.root->children.emplace("-dash", node(S_IFIFO | 0644));
  return img;
}

}  // namespace

TEST_CASE("builder: a written bootstrap reads back through the reader", "[builder][bootstrap]") {
  Image img = sample_image();
  auto bytes = write_bootstrap(img);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() % 4096 == 0);
  auto opened = rafs::Bootstrap::from_bytes(*bytes, "built");
  REQUIRE(opened.ok());
  const rafs::Bootstrap& bs = **opened;
  REQUIRE(bs.validate_tree().ok());
  CHECK(bs.root_nid() == 128);
  CHECK(bs.super().chunk_size == 0x10000);
  CHECK(bs.super().inodes == 1 + 7 + 2000);
  REQUIRE(bs.blobs().size() == 1);
  CHECK(bs.blobs()[0].mapped_blkaddr * 4096ull >= bytes->size());
  CHECK(bs.blobs()[0].mapped_blkaddr % 128 == 0);  // 512 KiB aligned

  auto big = bs.lookup(bs.root_nid(), "big");
  REQUIRE(big.ok());
  auto link = bs.lookup(bs.root_nid(), "big-link");
  REQUIRE(link.ok());
  CHECK(*big == *link);
  auto a = bs.getattr(*big);
  REQUIRE(a.ok());
  CHECK(a->mode == (S_IFREG | 0640));
  CHECK(a->uid == 100000);
  CHECK(a->gid == 200000);
  CHECK(a->mtime == 1234567890);
  CHECK(a->mtime_nsec == 987654321);
  CHECK(a->nlink == 2);
  CHECK(a->extended);
  auto x = bs.xattrs(*big);
  REQUIRE(x.ok());
  CHECK(x->size() == 3);
  auto refs = bs.map_range(*big, 0, a->size);
  REQUIRE(refs.ok());
  REQUIRE(refs->size() == 3);
  CHECK((*refs)[2].uncompressed_offset == 0x20000);
  CHECK((*refs)[2].file_offset == 0x20000);

  auto lots = bs.lookup(bs.root_nid(), "lots");
  REQUIRE(lots.ok());
  auto e1999 = bs.lookup(*lots, "entry-1999");
  CHECK(e1999.ok());
  size_t count = 0;
  REQUIRE(bs.readdir(*lots, 0, [&](const rafs::DirEntry&, uint64_t) { return ++count, true; }).ok());
  CHECK(count == 2002);

  for (const char* name : {"short", "long"}) {
    auto nid = bs.lookup(bs.root_nid(), name);
    REQUIRE(nid.ok());
    auto target = bs.readlink(*nid);
    REQUIRE(target.ok());
    CHECK(*target == img.root->children.at(name)->symlink);
  }
  auto dev = bs.lookup(bs.root_nid(), "dev");
  REQUIRE(dev.ok());
  auto da = bs.getattr(*dev);
  REQUIRE(da.ok());
  CHECK(major(da->rdev) == 259);
  CHECK(minor(da->rdev) == 70000);
  CHECK(bs.lookup(bs.root_nid(), "-dash").ok());

  // And back into an Image, as merge does.
  auto loaded = load_image(bs);
  REQUIRE(loaded.ok());
  CHECK(loaded->root->children.at("big") == loaded->root->children.at("big-link"));
  CHECK(loaded->root->children.at("big")->chunks.size() == 3);
  CHECK(loaded->chunks.size() == 3);
  CHECK(loaded->root->children.at("lots")->children.size() == 2000);
}

TEST_CASE("builder: an image without data has no devices and no chunk table", "[builder][bootstrap]") {
  Image img;
  img.root = make_dir();
  img.root->children.emplace("empty", node(S_IFREG | 0644));
  auto bytes = write_bootstrap(img);
  REQUIRE(bytes.ok());
  auto opened = rafs::Bootstrap::from_bytes(*bytes, "empty");
  REQUIRE(opened.ok());
  CHECK((*opened)->validate_tree().ok());
  CHECK((*opened)->blobs().empty());
}

TEST_CASE("builder: flat mapping aligns each blob to 512 KiB", "[builder][bootstrap]") {
  CHECK(flat_mapped_blkaddrs(20480, {9}) == std::vector<uint32_t>{128});
  CHECK(flat_mapped_blkaddrs(20480, {128, 1}) == std::vector<uint32_t>{128, 256});
  CHECK(flat_mapped_blkaddrs(600 * 1024, {1}) == std::vector<uint32_t>{256});
}

TEST_CASE("builder: thirty blobs push the blob table past block 0", "[builder][bootstrap]") {
  Image img;
  img.chunk_size = 0x10000;
  img.root = make_dir();
  for (uint32_t i = 0; i < 30; ++i) {
    rafs::BlobInfo b;
    b.blob_id = std::string(64, 'a');  // unique ids: the reader rejects duplicates
    b.blob_id[62] = char('a' + i / 26);
    b.blob_id[63] = char('a' + i % 26);
    b.chunk_size = img.chunk_size;
    b.chunk_count = 1;
    b.features = rafs::blob_features::kAligned;
    b.uncompressed_size = 4096;
    b.compressed_size = 100;
    b.ci_offset = 100;
    b.ci_compressed_size = b.ci_uncompressed_size = 16;
    img.blobs.push_back(b);
    rafs::ChunkTableEntry c{};
    c.blob_index = i;
    c.uncompressed_size = c.compressed_size = 100;
    img.chunks.push_back(c);
    auto f = node(S_IFREG | 0644);
    f->size = 100;
    f->chunks = {i};
    img.root->children.emplace("f" + std::to_string(i), f);
  }
  auto bytes = write_bootstrap(img);
  REQUIRE(bytes.ok());
  auto opened = rafs::Bootstrap::from_bytes(*bytes, "thirty");
  INFO((opened.ok() ? std::string() : opened.error().message()));
  REQUIRE(opened.ok());
  REQUIRE((*opened)->validate_tree().ok());
  REQUIRE((*opened)->blobs().size() == 30);
  CHECK((*opened)->blobs()[29].blob_id == img.blobs[29].blob_id);
  auto nid = (*opened)->lookup((*opened)->root_nid(), "f29");
  REQUIRE(nid.ok());
  auto refs = (*opened)->map_range(*nid, 0, 100);
  REQUIRE(refs.ok());
  CHECK((*refs)[0].blob_index == 29);
}
