// The snapshots contract, written once in the spirit of containerd's
// snapshots testsuite and run against the Snapshotter core and against the
// gRPC service over a real unix socket. Metadata, mount descriptions and
// on-disk layout are checked here without privileges; the mounts themselves
// are exercised in overlay_mount_test.cc (integration).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::ErrorKind;
namespace fs = std::filesystem;

namespace {

template <typename Backend>
struct Fixture {
  nydus::testing::TempDir dir{std::string("nydus-suite-") + Backend::kName};
  Backend sn{dir.path() / "root"};

  fs::path snapshots_dir() const { return sn.root() / "snapshots"; }
  fs::path fs_dir(const std::string& id) const { return snapshots_dir() / id / "fs"; }
  // Directory names below <root>/snapshots.
  std::set<std::string> entries() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(snapshots_dir())) out.insert(e.path().filename().string());
    return out;
  }
};

// The layer directory a caller writes into: the bind source of a single
// layer, the upperdir of an overlay.
std::string upper_of(const std::vector<Mount>& mounts) {
  REQUIRE(mounts.size() == 1);
  const Mount& m = mounts[0];
  if (m.type == "bind") return m.source;
  for (const auto& o : m.options) {
    if (o.rfind("upperdir=", 0) == 0) return o.substr(9);
  }
  FAIL("no upper dir in mount");
  return {};
}

// "<root>/snapshots/<id>/fs" -> "<id>"
std::string id_of(const std::string& fs_path) { return fs::path(fs_path).parent_path().filename().string(); }

void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

template <typename T>
T must(nydus::Result<T> r, const char* what = "") {
  if (!r.ok()) FAIL(what << ": " << r.error().message());
  return std::move(r).value();
}

void must(const nydus::Status& s, const char* what = "") {
  if (!s.ok()) FAIL(what << ": " << s.error().message());
}

template <typename R>
ErrorKind kind_of(const R& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().kind();
}

const Labels kRootLabel = {{"containerd.io/gc.root", "2024-01-01T00:00:00Z"}};

}  // namespace

#define SUITE_CASE(name) TEMPLATE_TEST_CASE(name, "[suite]", CoreBackend, GrpcBackend)

SUITE_CASE("basic workflow: prepare, commit, stack, view, walk, remove") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto mounts = must(sn.prepare("preparing", "", kRootLabel), "prepare");
  REQUIRE(mounts.size() == 1);
  CHECK(mounts[0].type == "bind");
  CHECK(mounts[0].options == std::vector<std::string>{"rw", "rbind"});
  std::string upper = upper_of(mounts);
  CHECK(fs::is_directory(upper));
  write_file(fs::path(upper) / "foo", "foo\n");
  fs::create_directories(fs::path(upper) / "a/b/c");

  must(sn.commit("committed", "preparing", kRootLabel), "commit");
  auto si = must(sn.stat("committed"));
  CHECK(si.name == "committed");
  CHECK(si.parent == "");
  CHECK(si.kind == Kind::kCommitted);
  CHECK(si.labels == kRootLabel);
  CHECK(kind_of(sn.stat("preparing")) == ErrorKind::kNotFound);
  // Commit keeps the directory: the content is still where it was written.
  CHECK(fs::exists(fs::path(upper) / "foo"));

  auto next = must(sn.prepare("nextlayer", "committed", kRootLabel), "prepare next");
  REQUIRE(next.size() == 1);
  CHECK(next[0].type == "overlay");
  CHECK(next[0].source == "overlay");
  std::string next_upper = upper_of(next);
  CHECK(std::find(next[0].options.begin(), next[0].options.end(), "lowerdir=" + upper) != next[0].options.end());
  auto ni = must(sn.stat("nextlayer"));
  CHECK(ni.parent == "committed");
  CHECK(ni.kind == Kind::kActive);
  write_file(fs::path(next_upper) / "bar", "bar\n");

  must(sn.commit("committed-next", "nextlayer", kRootLabel), "commit next");
  auto si2 = must(sn.stat("committed-next"));
  CHECK(si2.parent == "committed");
  CHECK(si2.kind == Kind::kCommitted);
  CHECK(kind_of(sn.stat("nextlayer")) == ErrorKind::kNotFound);

  // Walk returns exactly what Stat returns.
  std::map<std::string, Info> walked;
  for (auto& i : must(sn.list())) walked[i.name] = i;
  REQUIRE(walked.size() == 2);
  CHECK(walked.at("committed") == si);
  CHECK(walked.at("committed-next") == si2);

  // A view on a two-layer chain is a read-only overlay without upper dir.
  auto view = must(sn.view("nextnextlayer", "committed-next", kRootLabel), "view");
  REQUIRE(view.size() == 1);
  CHECK(view[0].type == "overlay");
  CHECK(view[0].options == std::vector<std::string>{"lowerdir=" + next_upper + ":" + upper});

  must(sn.remove("nextnextlayer"));
  CHECK(kind_of(sn.remove("committed")) == ErrorKind::kFailedPrecondition);
  must(sn.remove("committed-next"));
  must(sn.remove("committed"));
  CHECK(must(sn.list()).empty());
  // Remove deletes the directories after the metadata.
  CHECK(f.entries().empty());
}

SUITE_CASE("mount shapes follow containerd's overlayfs snapshotter") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto base_fs = upper_of(must(sn.prepare("b-a")));
  must(sn.commit("base", "b-a"));
  auto mid_fs = upper_of(must(sn.prepare("m-a", "base")));
  must(sn.commit("mid", "m-a"));
  auto top_fs = upper_of(must(sn.prepare("t-a", "mid")));
  must(sn.commit("top", "t-a"));

  SECTION("active without parent: rw bind of its fs") {
    auto m = must(sn.prepare("a"));
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "bind");
    CHECK(m[0].options == std::vector<std::string>{"rw", "rbind"});
    CHECK(fs::is_directory(fs::path(m[0].source).parent_path() / "work"));
  }
  SECTION("view without parent: ro bind of its own (empty) fs") {
    auto m = must(sn.view("v"));
    REQUIRE(m.size() == 1);
    CHECK(m[0].type == "bind");
    CHECK(m[0].options == std::vector<std::string>{"ro", "rbind"});
    CHECK(fs::is_empty(m[0].source));
    // A view has no work dir.
    CHECK_FALSE(fs::exists(fs::path(m[0].source).parent_path() / "work"));
  }
  SECTION("view with one parent: ro bind of the parent's fs") {
    auto m = must(sn.view("v", "base"));
    REQUIRE(m.size() == 1);
    CHECK(m[0] == Mount{"bind", base_fs, "", {"ro", "rbind"}});
  }
  SECTION("active with parents: overlay, nearest lower first") {
    auto m = must(sn.prepare("a", "top"));
    REQUIRE(m.size() == 1);
    std::string id = id_of(upper_of(m));
    auto dir = f.snapshots_dir() / id;
    CHECK(m[0] == Mount{"overlay", "overlay", "",
                        {"workdir=" + (dir / "work").string(), "upperdir=" + (dir / "fs").string(),
                         "lowerdir=" + top_fs + ":" + mid_fs + ":" + base_fs}});
    CHECK(fs::is_directory(dir / "work"));
  }
  SECTION("view with parents: overlay of lowers only") {
    auto m = must(sn.view("v", "mid"));
    REQUIRE(m.size() == 1);
    CHECK(m[0] == Mount{"overlay", "overlay", "", {"lowerdir=" + mid_fs + ":" + base_fs}});
  }
  SECTION("Mounts repeats what Prepare and View returned") {
    auto a = must(sn.prepare("a", "top"));
    auto v = must(sn.view("v", "base"));
    CHECK(must(sn.mounts("a")) == a);
    CHECK(must(sn.mounts("v")) == v);
    CHECK(kind_of(sn.mounts("top")) == ErrorKind::kFailedPrecondition);
    CHECK(kind_of(sn.mounts("nope")) == ErrorKind::kNotFound);
    CHECK(kind_of(sn.mounts("")) == ErrorKind::kInvalidArgument);
  }
}

SUITE_CASE("the same key cannot be prepared or viewed twice") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("p"));
  must(sn.commit("snapA", "p"));
  must(sn.prepare("newlayer", "snapA"));
  CHECK(kind_of(sn.view("newlayer", "snapA")) == ErrorKind::kAlreadyExists);
  CHECK(kind_of(sn.prepare("newlayer", "snapA")) == ErrorKind::kAlreadyExists);
  must(sn.view("viewlayer", "snapA"));
  CHECK(kind_of(sn.view("viewlayer", "snapA")) == ErrorKind::kAlreadyExists);
  CHECK(kind_of(sn.prepare("snapA")) == ErrorKind::kAlreadyExists);
  // Failed creations leave no directory behind.
  CHECK(f.entries().size() == 3);
}

SUITE_CASE("bad input to Prepare and View is rejected without side effects") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("active"));
  must(sn.view("view"));
  CHECK(kind_of(sn.prepare("x", "missing")) == ErrorKind::kNotFound);
  CHECK(kind_of(sn.view("x", "missing")) == ErrorKind::kNotFound);
  CHECK(kind_of(sn.prepare("x", "active")) == ErrorKind::kInvalidArgument);
  CHECK(kind_of(sn.prepare("x", "view")) == ErrorKind::kInvalidArgument);
  CHECK(kind_of(sn.view("x", "active")) == ErrorKind::kInvalidArgument);
  CHECK(kind_of(sn.prepare("")) == ErrorKind::kInvalidArgument);
  CHECK(kind_of(sn.view("")) == ErrorKind::kInvalidArgument);
  Labels big = {{"k", std::string(kMaxLabelSize, 'v')}};
  CHECK(kind_of(sn.prepare("x", "", big)) == ErrorKind::kInvalidArgument);
  Labels fits = {{"k", std::string(kMaxLabelSize - 1, 'v')}};
  must(sn.prepare("fits", "", fits));
  CHECK(kind_of(sn.stat("x")) == ErrorKind::kNotFound);
  CHECK(must(sn.list()).size() == 3);
  CHECK(f.entries().size() == 3);
}

SUITE_CASE("Commit requires an active snapshot and a free name") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("a1"));
  must(sn.prepare("a2"));
  must(sn.view("v1"));
  must(sn.commit("c1", "a1"));
  CHECK(kind_of(sn.commit("c1", "a2")) == ErrorKind::kAlreadyExists);
  CHECK(kind_of(sn.commit("a2", "a2")) == ErrorKind::kAlreadyExists);
  CHECK(kind_of(sn.commit("c2", "missing")) == ErrorKind::kNotFound);
  CHECK(kind_of(sn.commit("c2", "v1")) == ErrorKind::kFailedPrecondition);
  CHECK(kind_of(sn.commit("c2", "c1")) == ErrorKind::kFailedPrecondition);
  CHECK(kind_of(sn.commit("", "a2")) == ErrorKind::kInvalidArgument);
  CHECK(kind_of(sn.commit("c2", "")) == ErrorKind::kInvalidArgument);
  // Nothing changed for the failed ones.
  CHECK(must(sn.stat("a2")).kind == Kind::kActive);
  CHECK(must(sn.stat("v1")).kind == Kind::kView);
}

SUITE_CASE("Commit replaces labels and resets the timestamps") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("a", "", {{"from-prepare", "1"}}));
  auto before = must(sn.stat("a"));
  must(sn.commit("c", "a", {{"from-commit", "2"}}));
  auto after = must(sn.stat("c"));
  CHECK(after.labels == Labels{{"from-commit", "2"}});
  CHECK(after.created >= before.created);
  CHECK(after.created == after.updated);
}

SUITE_CASE("Stat reports name, parent, kind and creation times of every kind") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto t1 = now_ns();
  must(sn.prepare("c1-a", "", kRootLabel));
  must(sn.commit("c1", "c1-a", kRootLabel));
  must(sn.prepare("c2-a", "c1", kRootLabel));
  must(sn.commit("c2", "c2-a", kRootLabel));
  must(sn.prepare("a1", "c2", kRootLabel));
  must(sn.prepare("a2", "", kRootLabel));
  must(sn.view("v1", "c2", kRootLabel));
  must(sn.view("v2", "", kRootLabel));
  auto t2 = now_ns();
  struct Expect {
    std::string name;
    Kind kind;
    std::string parent;
  };
  for (const auto& e : std::vector<Expect>{{"c1", Kind::kCommitted, ""},
                                           {"c2", Kind::kCommitted, "c1"},
                                           {"a1", Kind::kActive, "c2"},
                                           {"a2", Kind::kActive, ""},
                                           {"v1", Kind::kView, "c2"},
                                           {"v2", Kind::kView, ""}}) {
    INFO(e.name);
    auto st = must(sn.stat(e.name));
    CHECK(st.name == e.name);
    CHECK(st.kind == e.kind);
    CHECK(st.parent == e.parent);
    CHECK(st.created >= t1);
    CHECK(st.created <= t2);
    CHECK(st.created == st.updated);
    CHECK(st.labels == kRootLabel);
  }
  CHECK(kind_of(sn.stat("nope")) == ErrorKind::kNotFound);
  CHECK(kind_of(sn.stat("")) == ErrorKind::kInvalidArgument);
}

SUITE_CASE("Update changes labels only, per field path") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("c1-a", "", kRootLabel));
  must(sn.commit("c1", "c1-a", kRootLabel));
  must(sn.prepare("a1", "c1", kRootLabel));
  must(sn.view("v1", "c1", kRootLabel));
  for (const std::string name : {"c1", "a1", "v1"}) {
    INFO(name);
    auto st = must(sn.stat(name));
    auto created = st.created;
    auto kind = st.kind;
    auto parent = st.parent;
    Labels expected = {{"l1", "v1"}, {"l2", "v2"}, {"l3", "v3"}, {"containerd.io/gc.root", "now"}};
    st.parent = "doesnotexist";  // immutable: ignored without a mask
    st.kind = Kind::kView;
    st.labels = expected;
    auto u1 = now_ns();
    st = must(sn.update(st));
    auto u2 = now_ns();
    CHECK(st.created == created);
    CHECK(st.updated >= u1);
    CHECK(st.updated <= u2);
    CHECK(st.kind == kind);
    CHECK(st.parent == parent);
    CHECK(st.name == name);
    CHECK(st.labels == expected);
    CHECK(must(sn.stat(name)) == st);

    // labels.<key>: set l1, delete l2 (absent from the request), leave l3.
    st.labels = {{"l1", "updated"}, {"l4", "v4"}};
    st = must(sn.update(st, {"labels.l1", "labels.l2"}));
    CHECK(st.labels == Labels{{"l1", "updated"}, {"l3", "v3"}, {"containerd.io/gc.root", "now"}});

    // labels: replace all.
    st.labels = {{"l4", "v4"}, {"containerd.io/gc.root", "now"}};
    st = must(sn.update(st, {"labels"}));
    CHECK(st.labels == Labels{{"l4", "v4"}, {"containerd.io/gc.root", "now"}});

    // An empty value removes a label.
    st.labels = {{"l4", ""}};
    st = must(sn.update(st, {"labels.l4"}));
    CHECK(st.labels == Labels{{"containerd.io/gc.root", "now"}});

    // Immutable fields cannot be named.
    for (const char* path : {"parent", "name", "kind", "created_at", "bogus"}) {
      INFO(path);
      CHECK(kind_of(sn.update(st, {path})) == ErrorKind::kInvalidArgument);
    }
    CHECK(must(sn.stat(name)).labels == st.labels);
  }
  Info ghost;
  ghost.name = "ghost";
  CHECK(kind_of(sn.update(ghost)) == ErrorKind::kNotFound);
  Info big;
  big.name = "c1";
  big.labels = {{"k", std::string(kMaxLabelSize + 1, 'x')}};
  CHECK(kind_of(sn.update(big)) == ErrorKind::kInvalidArgument);
}

SUITE_CASE("Remove: keys can be reused, children protect parents") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("committed-a"));
  must(sn.commit("committed-1", "committed-a"));
  must(sn.prepare("reuse-1", "committed-1"));
  must(sn.remove("reuse-1"));
  must(sn.view("reuse-1", "committed-1"));
  must(sn.remove("reuse-1"));
  must(sn.prepare("reuse-1"));
  must(sn.remove("committed-1"));
  must(sn.commit("committed-1", "reuse-1"));
  CHECK(kind_of(sn.remove("nope")) == ErrorKind::kNotFound);
  CHECK(kind_of(sn.remove("")) == ErrorKind::kInvalidArgument);
  CHECK(f.entries().size() == 1);
}

SUITE_CASE("removing an intermediate snapshot fails until its children are gone") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("base"));
  must(sn.commit("committed-base", "base"));
  must(sn.prepare("intermediate", "committed-base"));
  must(sn.commit("committed-inter", "intermediate"));
  must(sn.prepare("toplayer", "committed-inter"));
  CHECK(kind_of(sn.remove("committed-inter")) == ErrorKind::kFailedPrecondition);
  CHECK(kind_of(sn.remove("committed-base")) == ErrorKind::kFailedPrecondition);
  CHECK(must(sn.list()).size() == 3);
  must(sn.remove("toplayer"));
  must(sn.remove("committed-inter"));
  must(sn.remove("committed-base"));
  CHECK(f.entries().empty());
}

SUITE_CASE("Usage: live for active snapshots, recorded at commit, zero for views") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto upper = fs::path(upper_of(must(sn.prepare("a"))));
  auto empty = must(sn.usage("a"));
  CHECK(empty.inodes == 1);  // the fs directory itself
  write_file(upper / "big", std::string(1 << 20, 'x'));
  write_file(upper / "dir/small", "hello");
  ::link((upper / "big").c_str(), (upper / "hardlink").c_str());
  auto u = must(sn.usage("a"));
  CHECK(u.inodes == 4);  // fs, big (counted once despite the hard link), dir, dir/small
  CHECK(u.size >= (1 << 20));
  CHECK(u.size < (1 << 20) + 64 * 1024);

  must(sn.commit("c", "a"));
  auto c = must(sn.usage("c"));
  CHECK(c == u);
  // Recorded, not recomputed: later changes to the directory do not show.
  write_file(upper / "late", std::string(8192, 'y'));
  CHECK(must(sn.usage("c")) == u);

  must(sn.view("v", "c"));
  CHECK(must(sn.usage("v")) == Usage{});
  CHECK(kind_of(sn.usage("nope")) == ErrorKind::kNotFound);
}

SUITE_CASE("List filters like containerd's Walk") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("base-a", "", {{"containerd.io/gc.root", "x"}}));
  must(sn.commit("base", "base-a", {{"containerd.io/gc.root", "x"}, {"app", "web"}}));
  must(sn.prepare("active", "base", {{"app", "db"}}));
  must(sn.view("view", "base"));
  auto names = [&](const std::vector<std::string>& filters) {
    std::set<std::string> out;
    for (const auto& i : must(sn.list(filters))) out.insert(i.name);
    return out;
  };
  using S = std::set<std::string>;
  CHECK(names({}) == S{"base", "active", "view"});
  CHECK(names({"name==base"}) == S{"base"});
  CHECK(names({"kind==committed"}) == S{"base"});
  CHECK(names({"kind==active"}) == S{"active"});
  CHECK(names({"kind==view"}) == S{"view"});
  CHECK(names({"parent==base"}) == S{"active", "view"});
  CHECK(names({"labels.\"containerd.io/gc.root\""}) == S{"base"});
  CHECK(names({"labels.app"}) == S{"base", "active"});
  CHECK(names({"labels.app==web"}) == S{"base"});
  CHECK(names({"labels.app!=web"}) == S{"active", "view"});
  CHECK(names({"name~=^ba"}) == S{"base"});
  CHECK(names({"name~=/v.*w/"}) == S{"view"});
  CHECK(names({"kind==active", "kind==view"}) == S{"active", "view"});  // OR
  CHECK(names({"parent==base,labels.app"}) == S{"active"});            // AND
  CHECK(names({"name==nothing"}).empty());
  for (const char* bad : {"", "name==", "name=base", "labels.\"open", "name~=(", ",", "1abc"}) {
    INFO(bad);
    CHECK(kind_of(sn.list({bad})) == ErrorKind::kInvalidArgument);
  }
}

SUITE_CASE("Cleanup removes exactly the directories no snapshot references") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto kept_active = id_of(upper_of(must(sn.prepare("a"))));
  auto kept_view = id_of(upper_of(must(sn.view("v"))));
  // Leftovers: an id no record has, an interrupted staging dir, a stray file.
  fs::create_directories(f.snapshots_dir() / "9999/fs/sub");
  write_file(f.snapshots_dir() / "9999/fs/sub/file", "data");
  fs::create_directories(f.snapshots_dir() / "new-abc123/fs");
  write_file(f.snapshots_dir() / "stray", "x");
  must(sn.cleanup());
  CHECK(f.entries() == std::set<std::string>{kept_active, kept_view});
  must(sn.cleanup());  // idempotent
  CHECK(f.entries() == std::set<std::string>{kept_active, kept_view});
}

SUITE_CASE("metadata survives a restart, and staging leftovers are reclaimed at start") {
  Fixture<TestType> f;
  auto& sn = f.sn;
  must(sn.prepare("c-a", "", {{"k", "v"}}));
  must(sn.commit("c", "c-a", {{"k", "v"}}));
  auto active = must(sn.prepare("a", "c"));
  auto view = must(sn.view("v", "c"));
  auto before = must(sn.list());
  fs::create_directories(f.snapshots_dir() / "new-leftover/fs");
  sn.reopen();
  CHECK(must(sn.list()) == before);
  CHECK(must(sn.mounts("a")) == active);
  CHECK(must(sn.mounts("v")) == view);
  CHECK_FALSE(fs::exists(f.snapshots_dir() / "new-leftover"));
  // Ids keep growing across restarts.
  auto next = id_of(upper_of(must(sn.prepare("b"))));
  CHECK(std::stoll(next) > std::stoll(id_of(upper_of(active))));
}

SUITE_CASE("a child's upper dir takes the owner of its parent's") {
  if (::geteuid() != 0) {
    WARN("needs root to chown; skipped");
    return;
  }
  Fixture<TestType> f;
  auto& sn = f.sn;
  auto base = upper_of(must(sn.prepare("a")));
  REQUIRE(::chown(base.c_str(), 1234, 5678) == 0);
  must(sn.commit("c", "a"));
  auto child = upper_of(must(sn.prepare("child", "c")));
  struct stat st;
  REQUIRE(::stat(child.c_str(), &st) == 0);
  CHECK(st.st_uid == 1234u);
  CHECK(st.st_gid == 5678u);
}

TEST_CASE("gRPC: List streams large answers in batches") {
  nydus::testing::TempDir dir("nydus-suite-grpc");
  GrpcBackend sn(dir.path() / "root");
  constexpr int kCount = 2 * kListBatchSize + 17;
  for (int i = 0; i < kCount; ++i) must(sn.view("v" + std::to_string(i)));
  auto all = must(sn.list());
  CHECK(all.size() == kCount);
  CHECK(sn.last_list_batches() == 3);
  CHECK(must(sn.list({"name==v7"})).size() == 1);
  CHECK(sn.last_list_batches() == 1);
  CHECK(must(sn.list({"name==none"})).empty());
  CHECK(sn.last_list_batches() == 0);
}

TEST_CASE("gRPC: Info timestamps and labels round-trip exactly") {
  nydus::testing::TempDir dir("nydus-suite-grpc");
  GrpcBackend sn(dir.path() / "root");
  Labels labels = {{"containerd.io/snapshot.ref", "sha256:abc"}, {"ünï", "çødé"}, {"empty-ok", "x"}};
  must(sn.prepare("k", "", labels));
  auto info = must(sn.stat("k"));
  CHECK(info.labels == labels);
  CHECK(info.created > 0);
  auto listed = must(sn.list());
  REQUIRE(listed.size() == 1);
  CHECK(listed[0] == info);
}
