// The Snapshotter core beyond the shared contract: the pure mount builder,
// the filter language, file-system helpers, and the RemoteMounter seam the
// nydusd daemon manager will plug into (driven here by a fake).
#include <fstream>
#include <mutex>

#include <catch2/catch.hpp>

#include "snapshotter/filters.h"
#include "snapshotter/fs_util.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::ErrorKind;
using nydus::Result;
namespace fs = std::filesystem;

namespace {

template <typename T>
T must(nydus::Result<T> r) {
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}
void must(const nydus::Status& s) {
  if (!s.ok()) FAIL(s.error().message());
}

void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

// Serves layers whose parent chain holds a bootstrap with a fake mount,
// records every call, and fails or defers on request.
class FakeRemote : public RemoteMounter {
 public:
  Result<bool> skip_unpack(std::string_view key, std::string_view parent, const Labels& labels) override {
    std::lock_guard<std::mutex> lock(mu_);
    skip_calls.push_back(std::string(key));
    return labels.count(std::string(kLabelNydusBlob)) > 0;
  }
  Result<std::optional<std::vector<Mount>>> mounts_for(const SnapshotChain& chain) override {
    std::lock_guard<std::mutex> lock(mu_);
    chains.push_back(chain);
    if (fail_mounts) return nydus::make_error(ErrorKind::kNotReady, "nydusd did not become ready");
    auto meta = find_bootstrap_layer(chain);
    if (!meta) return std::optional<std::vector<Mount>>();
    const SnapshotRef& layer = chain.parents[*meta];
    return std::optional<std::vector<Mount>>(std::vector<Mount>{
        Mount{"fuse.nydus-overlayfs", "overlay", "",
              {"lowerdir=" + (layer.dir / "mnt").string(), "meta=" + layer.key}}});
  }
  Result<bool> release(const std::string& id, const fs::path& dir, Phase phase) override {
    std::lock_guard<std::mutex> lock(mu_);
    releases.emplace_back(id, phase);
    if (fail_release) return nydus::make_error(ErrorKind::kIo, "umount failed");
    if (phase == Phase::kRemove && defer_remove) return false;
    return true;
  }

  bool fail_mounts = false;
  bool fail_release = false;
  bool defer_remove = false;
  std::vector<std::string> skip_calls;
  std::vector<SnapshotChain> chains;
  std::vector<std::pair<std::string, Phase>> releases;

 private:
  std::mutex mu_;
};

struct RemoteFixture {
  nydus::testing::TempDir dir{"nydus-core"};
  FakeRemote remote;
  CoreStack core{dir.path() / "root", &remote};
  Snapshotter& sn = core.snapshotter();
  fs::path snapshots() const { return core.root() / "snapshots"; }
};

std::string id_of_bind(const std::vector<Mount>& m) {
  return fs::path(m.at(0).source).parent_path().filename().string();
}

}  // namespace

TEST_CASE("overlay_mounts: options in containerd's order") {
  fs::path dir = "/r/snapshots";
  OverlayOptions plain;
  CHECK(overlay_mounts(dir, "5", Kind::kActive, {}, plain) ==
        std::vector<Mount>{{"bind", "/r/snapshots/5/fs", "", {"rw", "rbind"}}});
  CHECK(overlay_mounts(dir, "5", Kind::kView, {}, plain) ==
        std::vector<Mount>{{"bind", "/r/snapshots/5/fs", "", {"ro", "rbind"}}});
  CHECK(overlay_mounts(dir, "5", Kind::kView, {"3"}, plain) ==
        std::vector<Mount>{{"bind", "/r/snapshots/3/fs", "", {"ro", "rbind"}}});
  OverlayOptions all{true, true};
  CHECK(overlay_mounts(dir, "5", Kind::kActive, {"3", "1"}, all) ==
        std::vector<Mount>{{"overlay", "overlay", "",
                            {"index=off", "volatile", "workdir=/r/snapshots/5/work", "upperdir=/r/snapshots/5/fs",
                             "lowerdir=/r/snapshots/3/fs:/r/snapshots/1/fs"}}});
  // volatile only concerns a writable upper dir.
  CHECK(overlay_mounts(dir, "5", Kind::kView, {"3", "1"}, all) ==
        std::vector<Mount>{{"overlay", "overlay", "", {"index=off", "lowerdir=/r/snapshots/3/fs:/r/snapshots/1/fs"}}});
  // A single-layer bind mount needs no overlay options.
  CHECK(overlay_mounts(dir, "5", Kind::kActive, {}, all)[0].options == std::vector<std::string>{"rw", "rbind"});
}

TEST_CASE("filters: syntax") {
  Info info{"sha256:abc", "base", Kind::kActive, {{"containerd.io/gc.root", "x"}, {"a.b", "c d"}, {"e", ""}}, 1, 2};
  auto matches = [&](std::vector<std::string> exprs) { return must(Filter::parse(exprs)).match(info); };
  CHECK(matches({}));
  CHECK(matches({"name==sha256:abc"}));
  CHECK(matches({"  name == sha256:abc  "}));
  CHECK(matches({"name==\"sha256:abc\""}));
  CHECK(matches({"labels.\"containerd.io/gc.root\"==x"}));
  CHECK(matches({"labels.a.b==\"c d\""}));  // unquoted path parts join with '.'
  CHECK(matches({"labels.\"a.b\"~=^c\\s"}));
  CHECK(matches({"labels.e"}));              // present, even empty
  CHECK_FALSE(matches({"labels.f"}));
  CHECK(matches({"labels.f!=x"}));           // != matches an absent field
  CHECK(matches({"labels.f~=^$"}));          // ~= sees an absent field as ""
  CHECK_FALSE(matches({"unknown"}));
  CHECK_FALSE(matches({"kind==committed"}));
  CHECK(matches({"kind==committed", "kind==active"}));
  CHECK_FALSE(matches({"kind==active,name==other"}));
  CHECK(matches({"name~=/^sha256:[a-f]+$/"}));
  CHECK(matches({"name==\"with \\\"escapes\\\"\"", "parent==base"}));

  auto err = Filter::parse({"name==a,,"});
  REQUIRE_FALSE(err.ok());
  CHECK(err.error().kind() == ErrorKind::kInvalidArgument);
  CHECK(err.error().message().find("offset") != std::string::npos);
  CHECK_FALSE(Filter::parse({"name=="}).ok());
  CHECK_FALSE(Filter::parse({"name=x"}).ok());
  CHECK_FALSE(Filter::parse({"name~=["}).ok());
  CHECK_FALSE(Filter::parse({"labels.\"unterminated"}).ok());
  CHECK_FALSE(Filter::parse({"   "}).ok());
}

TEST_CASE("disk_usage counts blocks of distinct inodes") {
  nydus::testing::TempDir dir("nydus-du");
  auto root = dir / "fs";
  fs::create_directories(root / "d");
  write_file(root / "d/f", std::string(100000, 'x'));
  fs::create_hard_link(root / "d/f", root / "link");
  fs::create_symlink("d/f", root / "sym");
  auto u = must(disk_usage(root));
  CHECK(u.inodes == 4);  // fs, d, f (twice linked), sym
  CHECK(u.size >= 100000);
  auto missing = disk_usage(dir / "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);
}

TEST_CASE("StagedDir removes what it holds unless dismissed") {
  nydus::testing::TempDir dir("nydus-staged");
  fs::path staged_path, final_path = dir / "42";
  {
    auto staged = must(StagedDir::create(dir.path()));
    staged_path = staged.path();
    CHECK(staged_path.filename().string().rfind("new-", 0) == 0);
    write_file(staged_path / "fs/x", "x");
  }
  CHECK_FALSE(fs::exists(staged_path));
  {
    auto staged = must(StagedDir::create(dir.path()));
    must(staged.rename_to(final_path));
    CHECK(staged.path() == final_path);
  }  // failed after rename: the final directory goes too
  CHECK_FALSE(fs::exists(final_path));
  {
    auto staged = must(StagedDir::create(dir.path()));
    must(staged.rename_to(final_path));
    staged.dismiss();
  }
  CHECK(fs::is_directory(final_path));
  // rename onto a non-empty directory fails and keeps the staged one owned.
  write_file(final_path / "occupied", "x");
  {
    auto staged = must(StagedDir::create(dir.path()));
    auto st = staged.rename_to(final_path);
    CHECK_FALSE(st.ok());
    staged_path = staged.path();
    CHECK(fs::exists(staged_path));
  }
  CHECK_FALSE(fs::exists(staged_path));
  CHECK(fs::exists(final_path / "occupied"));
  must(remove_tree(dir / "does-not-exist"));
}

TEST_CASE("remote: a chain with a nydus bootstrap gets the remote mounts") {
  RemoteFixture f;
  // The meta layer: containerd unpacks image/image.boot into it.
  auto meta = must(f.sn.prepare("meta-extract", "", {{std::string(kLabelNydusBootstrap), "true"}}));
  write_file(fs::path(meta[0].source) / "image/image.boot", "bootstrap");
  must(f.sn.commit("meta", "meta-extract", {{std::string(kLabelNydusBootstrap), "true"}}));
  auto meta_id = id_of_bind(meta);

  auto rootfs = must(f.sn.prepare("container", "meta"));
  CHECK(rootfs == std::vector<Mount>{{"fuse.nydus-overlayfs", "overlay", "",
                                       {"lowerdir=" + (f.snapshots() / meta_id / "mnt").string(), "meta=meta"}}});
  REQUIRE_FALSE(f.remote.chains.empty());
  const SnapshotChain& chain = f.remote.chains.back();
  CHECK(chain.snapshot.key == "container");
  CHECK(chain.snapshot.kind == Kind::kActive);
  REQUIRE(chain.parents.size() == 1);
  CHECK(chain.parents[0].id == meta_id);
  CHECK(chain.parents[0].labels.count(std::string(kLabelNydusBootstrap)) == 1);
  CHECK(chain.parents[0].dir == f.snapshots() / meta_id);
  // Mounts asks again and gets the same answer; so does a view.
  CHECK(must(f.sn.mounts("container")) == rootfs);
  CHECK(must(f.sn.view("v", "meta"))[0].type == "fuse.nydus-overlayfs");

  // Without a bootstrap in the chain: the native mounts.
  must(f.sn.prepare("plain-a"));
  must(f.sn.commit("plain", "plain-a"));
  CHECK(must(f.sn.prepare("c2", "plain"))[0].type == "overlay");
}

TEST_CASE("remote: a failing mount leaves no snapshot behind") {
  RemoteFixture f;
  f.remote.fail_mounts = true;
  auto r = f.sn.prepare("container");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kNotReady);
  CHECK(r.error().message().find("nydusd did not become ready") != std::string::npos);
  CHECK(f.sn.stat("container").error().kind() == ErrorKind::kNotFound);
  CHECK(fs::is_empty(f.snapshots()));
  // The key is free again.
  f.remote.fail_mounts = false;
  must(f.sn.prepare("container"));
}

TEST_CASE("remote: layers served remotely are committed at Prepare (lazy pull)") {
  RemoteFixture f;
  must(f.sn.prepare("base-a"));
  must(f.sn.commit("base", "base-a"));
  Labels labels = {{std::string(kLabelTargetSnapshotRef), "sha256:chain2"}, {std::string(kLabelNydusBlob), "true"}};
  auto r = f.sn.prepare("extract-1 sha256:chain2", "base", labels);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kAlreadyExists);
  auto info = must(f.sn.stat("sha256:chain2"));
  CHECK(info.kind == Kind::kCommitted);
  CHECK(info.parent == "base");
  CHECK(info.labels == labels);
  CHECK(f.sn.stat("extract-1 sha256:chain2").error().kind() == ErrorKind::kNotFound);
  // Asking again (a concurrent pull) gives the same answer.
  CHECK(f.sn.prepare("extract-2 sha256:chain2", "base", labels).error().kind() == ErrorKind::kAlreadyExists);
  CHECK(must(f.sn.list({"kind==committed"})).size() == 2);
  // A missing parent is still NotFound.
  CHECK(f.sn.prepare("x", "nope", labels).error().kind() == ErrorKind::kNotFound);
  // Views never skip.
  auto skips = f.remote.skip_calls.size();
  must(f.sn.view("v", "sha256:chain2", labels));
  CHECK(f.remote.skip_calls.size() == skips);
}

TEST_CASE("remote: release decides when a removed snapshot's directory goes") {
  RemoteFixture f;
  auto a = must(f.sn.prepare("a"));
  auto id = id_of_bind(a);
  SECTION("released at once") {
    must(f.sn.remove("a"));
    REQUIRE(f.remote.releases.size() == 1);
    CHECK(f.remote.releases[0] == std::make_pair(id, RemoteMounter::Phase::kRemove));
    CHECK_FALSE(fs::exists(f.snapshots() / id));
  }
  SECTION("deferred to Cleanup") {
    f.remote.defer_remove = true;
    must(f.sn.remove("a"));
    CHECK(fs::exists(f.snapshots() / id));
    CHECK(f.sn.stat("a").error().kind() == ErrorKind::kNotFound);
    must(f.sn.cleanup());
    REQUIRE(f.remote.releases.size() == 2);
    CHECK(f.remote.releases[1] == std::make_pair(id, RemoteMounter::Phase::kCleanup));
    CHECK_FALSE(fs::exists(f.snapshots() / id));
  }
  SECTION("a failed release keeps the directory, and Remove still succeeds") {
    f.remote.fail_release = true;
    must(f.sn.remove("a"));
    CHECK(fs::exists(f.snapshots() / id));
    must(f.sn.cleanup());  // fails again: logged, kept
    CHECK(fs::exists(f.snapshots() / id));
    f.remote.fail_release = false;
    must(f.sn.cleanup());
    CHECK_FALSE(fs::exists(f.snapshots() / id));
  }
}

TEST_CASE("find_bootstrap_layer picks the nearest parent with a bootstrap") {
  nydus::testing::TempDir dir("nydus-boot");
  SnapshotChain chain;
  for (int i = 0; i < 3; ++i) {
    SnapshotRef r;
    r.id = std::to_string(i);
    r.dir = dir / std::to_string(i);
    fs::create_directories(r.dir / "fs");
    chain.parents.push_back(r);
  }
  CHECK_FALSE(find_bootstrap_layer(chain).has_value());
  write_file(dir / "2" / kLegacyBootstrapPath, "legacy");
  CHECK(find_bootstrap_layer(chain) == 2u);
  write_file(dir / "1" / kBootstrapPath, "boot");
  CHECK(find_bootstrap_layer(chain) == 1u);
}

TEST_CASE("a directory left by a creation that never committed does not block its id") {
  RemoteFixture f;
  // A process died after renaming the staged directory to "1" but before
  // the commit: the id is handed out again.
  write_file(f.snapshots() / "1/fs/stale", "old");
  auto m = must(f.sn.prepare("a"));
  CHECK(m[0].source == (f.snapshots() / "1/fs").string());
  CHECK(fs::is_empty(m[0].source));
  CHECK(fs::is_directory(f.snapshots() / "1/work"));
}
