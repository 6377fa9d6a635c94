// Overlay semantics of merge on in-memory trees.
#include "tools/nydus-image/merge.h"

#include <catch2/catch.hpp>

#include "tools/nydus-image/whiteout.h"

using namespace nydus::builder;

namespace {

InodePtr file(uint32_t tag) {
  auto f = std::make_shared<Inode>();
  f->mode = S_IFREG | 0644;
  f->uid = tag;  // identifies which layer an entry came from
  return f;
}

InodePtr whiteout() {
  auto w = std::make_shared<Inode>();
  w->mode = S_IFCHR;
  return w;
}

InodePtr dir(std::initializer_list<std::pair<std::string, InodePtr>> children, uint32_t tag = 0) {
  auto d = make_dir();
  d->uid = tag;
  for (auto& [n, c] : children) d->children.emplace(n, c);
  return d;
}

}  // namespace

TEST_CASE("builder: overlay: upper wins and whiteouts delete and opaque dirs hide the lower layer", "[builder][merge]") {
  auto lower = dir({{"a", file(1)},
                    {"b", file(1)},
                    {"d", dir({{"x", file(1)}, {"y", file(1)}}, 1)},
                    {"o", dir({{"hidden", file(1)}}, 1)},
                    {"r", dir({{"z", file(1)}}, 1)}});
  auto opaque = dir({{"new", file(2)}, {"wh", whiteout()}}, 2);
  opaque->xattrs["trusted.overlay.opaque"] = "y";
  opaque->xattrs["user.keep"] = "1";
  auto upper = dir({{"a", file(2)},
                    {"b", whiteout()},
                    {"d", dir({{"y", whiteout()}, {"w", file(2)}}, 2)},
                    {"o", opaque},
                    {"r", file(2)},
                    {"gone", whiteout()}});
  overlay_apply(*lower, *upper);
  strip_markers(*lower);

  CHECK(lower->children.at("a")->uid == 2);
  CHECK(lower->children.count("b") == 0);
  CHECK(lower->children.count("gone") == 0);  // a whiteout with nothing below is dropped
  auto& d = lower->children.at("d");
  CHECK(d->uid == 2);  // merged directory: upper attributes
  CHECK(d->children.count("x") == 1);
  CHECK(d->children.count("y") == 0);
  CHECK(d->children.at("w")->uid == 2);
  auto& o = lower->children.at("o");
  CHECK(o->children.count("hidden") == 0);
  CHECK(o->children.count("new") == 1);
  CHECK(o->children.count("wh") == 0);
  CHECK(o->xattrs.count("trusted.overlay.opaque") == 0);  // the marker is dropped
  CHECK(o->xattrs.at("user.keep") == "1");
  CHECK(lower->children.at("r")->is_reg());  // a file replaces a directory
}

TEST_CASE("builder: merge_images renumbers blobs and chunks and honours OCI markers", "[builder][merge]") {
  auto make_layer = [](const std::string& blob, std::vector<std::pair<std::string, InodePtr>> files) {
    Image img;
    img.root = make_dir();
    nydus::rafs::BlobInfo b;
    b.blob_id = blob;
    b.uncompressed_size = 4096;
    b.chunk_count = 1;
    img.blobs.push_back(b);
    nydus::rafs::ChunkTableEntry c{};
    c.blob_index = 0;
    c.index = 0;
    c.uncompressed_size = 10;
    img.chunks.push_back(c);
    for (auto& [n, f] : files) img.root->children.emplace(n, f);
    return img;
  };
  auto f1 = file(1);
  f1->size = 10;
  f1->chunks = {0};
  auto f2 = file(2);
  f2->size = 10;
  f2->chunks = {0};
  std::vector<Image> layers;
  layers.push_back(make_layer("aaaa", {{"one", f1}, {"del", file(1)}}));
  layers.push_back(make_layer("bbbb", {{"two", f2}, {".wh.del", file(2)}}));
  auto merged = merge_images(std::move(layers));
  REQUIRE(merged.ok());
  REQUIRE(merged->blobs.size() == 2);
  CHECK(merged->blobs[1].blob_id == "bbbb");
  CHECK(merged->blobs[1].index == 1);
  REQUIRE(merged->chunks.size() == 2);
  CHECK(merged->chunks[1].blob_index == 1);
  CHECK(merged->root->children.at("two")->chunks == std::vector<uint32_t>{1});
  CHECK(merged->root->children.at("one")->chunks == std::vector<uint32_t>{0});
  CHECK(merged->root->children.count("del") == 0);
  CHECK(merged->root->children.count(".wh.del") == 0);
}
