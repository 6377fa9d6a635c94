#include "snapshotter/store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using namespace nydus::snapshotter;
using nydus::ErrorKind;
using Mode = Transaction::Mode;

namespace {

std::unique_ptr<MetaStore> open_store(const std::filesystem::path& path) {
  auto s = MetaStore::open(path);
  if (!s.ok()) FAIL(s.error().message());
  return std::move(s).value();
}

Transaction begin(MetaStore& store, Mode mode) {
  auto tx = store.begin(mode);
  if (!tx.ok()) FAIL(tx.error().message());
  return std::move(tx).value();
}

SnapshotRecord make_snapshot(const std::string& key, Kind kind, std::optional<int64_t> parent = std::nullopt) {
  SnapshotRecord r;
  r.key = key;
  r.kind = kind;
  r.parent_id = parent;
  r.created = r.updated = now_ns();
  return r;
}

// Runs one SQL query on a separate raw connection and returns the first
// column of the first row.
std::string raw_query(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("a new database gets the current schema in WAL mode, private to root") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "snapshotter.db";
  {
    auto store = open_store(path);
    CHECK(store->schema_version() == kSchemaVersion);
  }
  CHECK(raw_query(path, "PRAGMA user_version") == std::to_string(kSchemaVersion));
  CHECK(raw_query(path, "PRAGMA journal_mode") == "wal");
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  // Reopening an up-to-date database changes nothing.
  auto again = open_store(path);
  CHECK(again->schema_version() == kSchemaVersion);
}

TEST_CASE("a schema 1 database migrates to settings, keeping its records") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "snapshotter.db";
  {
    auto store = open_store(path);
    auto tx = begin(*store, Mode::kWrite);
    auto base = make_snapshot("kept", Kind::kCommitted);
    REQUIRE(store->insert_snapshot(tx, base).ok());
    REQUIRE(tx.commit().ok());
  }
  // What a schema 1 binary left behind.
  raw_query(path, "DROP TABLE settings");
  raw_query(path, "PRAGMA user_version = 1");
  auto store = open_store(path);
  CHECK(store->schema_version() == 2);
  auto tx = begin(*store, Mode::kWrite);
  CHECK(store->get_snapshot(tx, "kept").ok());
  CHECK_FALSE(store->get_setting(tx, "x").value().has_value());
  REQUIRE(store->put_setting(tx, "x", "1").ok());
  REQUIRE(store->put_setting(tx, "x", "2").ok());
  CHECK(store->get_setting(tx, "x").value() == std::optional<std::string>("2"));
  REQUIRE(store->delete_setting(tx, "x").ok());
  REQUIRE(store->delete_setting(tx, "x").ok());  // absent is fine
  CHECK_FALSE(store->get_setting(tx, "x").value().has_value());
  REQUIRE(tx.commit().ok());
}

TEST_CASE("snapshots: insert, find, duplicate keys, update and delete") {
  nydus::testing::TempDir dir("nydus-store");
  auto store = open_store(dir / "db");

  auto tx = begin(*store, Mode::kWrite);
  auto base = make_snapshot("base", Kind::kCommitted);
  base.labels = {{"a", "1"}, {"containerd.io/gc.root", "x y \"quoted\" \\ ünïcode"}};
  base.usage = Usage{4096, 3};
  REQUIRE(store->insert_snapshot(tx, base).ok());
  CHECK(base.id > 0);
  auto child = make_snapshot("child", Kind::kActive, base.id);
  REQUIRE(store->insert_snapshot(tx, child).ok());
  CHECK(child.id > base.id);

  auto dup = make_snapshot("base", Kind::kActive);
  auto st = store->insert_snapshot(tx, dup);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind() == ErrorKind::kAlreadyExists);
  REQUIRE(tx.commit().ok());

  auto rtx = begin(*store, Mode::kRead);
  auto got = store->get_snapshot(rtx, "base");
  REQUIRE(got.ok());
  CHECK(got->id == base.id);
  CHECK(got->kind == Kind::kCommitted);
  CHECK(got->labels == base.labels);
  CHECK(got->usage == Usage{4096, 3});
  CHECK(got->created == base.created);
  CHECK_FALSE(got->parent_id.has_value());
  CHECK(got->parent_key.empty());

  auto c = store->get_snapshot(rtx, "child");
  REQUIRE(c.ok());
  CHECK(c->parent_id == base.id);
  CHECK(c->parent_key == "base");

  auto missing = store->get_snapshot(rtx, "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);
  auto found = store->find_snapshot(rtx, "nope");
  REQUIRE(found.ok());
  CHECK_FALSE(found->has_value());
  auto by_id = store->find_snapshot_by_id(rtx, child.id);
  REQUIRE(by_id.ok());
  REQUIRE(by_id->has_value());
  CHECK((*by_id)->key == "child");
  CHECK(*store->has_children(rtx, base.id));
  CHECK_FALSE(*store->has_children(rtx, child.id));
  REQUIRE(rtx.commit().ok());

  auto wtx = begin(*store, Mode::kWrite);
  // The parent relation is a hard constraint.
  st = store->delete_snapshot(wtx, base.id);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind() == ErrorKind::kFailedPrecondition);
  // Commit-like rename keeps the id.
  auto renamed = *store->get_snapshot(wtx, "child");
  renamed.key = "child-committed";
  renamed.kind = Kind::kCommitted;
  renamed.usage = Usage{10, 1};
  REQUIRE(store->update_snapshot(wtx, renamed).ok());
  auto after = store->get_snapshot(wtx, "child-committed");
  REQUIRE(after.ok());
  CHECK(after->id == child.id);
  CHECK(after->usage == Usage{10, 1});
  CHECK(store->get_snapshot(wtx, "child").error().kind() == ErrorKind::kNotFound);
  // Renaming onto a taken key fails.
  renamed.key = "base";
  CHECK(store->update_snapshot(wtx, renamed).error().kind() == ErrorKind::kAlreadyExists);

  REQUIRE(store->delete_snapshot(wtx, child.id).ok());
  CHECK(store->delete_snapshot(wtx, child.id).error().kind() == ErrorKind::kNotFound);
  REQUIRE(store->delete_snapshot(wtx, base.id).ok());
  REQUIRE(wtx.commit().ok());
}

TEST_CASE("parent chains come nearest first, and ids are never reused") {
  nydus::testing::TempDir dir("nydus-store");
  auto store = open_store(dir / "db");
  auto tx = begin(*store, Mode::kWrite);
  std::vector<int64_t> ids;
  std::optional<int64_t> parent;
  for (int i = 0; i < 5; ++i) {
    auto r = make_snapshot("layer" + std::to_string(i), Kind::kCommitted, parent);
    REQUIRE(store->insert_snapshot(tx, r).ok());
    ids.push_back(r.id);
    parent = r.id;
  }
  auto top = *store->get_snapshot(tx, "layer4");
  auto chain = store->parent_chain(tx, top);
  REQUIRE(chain.ok());
  REQUIRE(chain->size() == 4);
  for (int i = 0; i < 4; ++i) CHECK((*chain)[i].key == "layer" + std::to_string(3 - i));
  CHECK(store->parent_chain(tx, *store->get_snapshot(tx, "layer0"))->empty());

  REQUIRE(store->delete_snapshot(tx, ids[4]).ok());
  auto next = make_snapshot("again", Kind::kActive);
  REQUIRE(store->insert_snapshot(tx, next).ok());
  CHECK(next.id > ids[4]);  // AUTOINCREMENT: a removed id never names a new snapshot
  auto all_ids = store->snapshot_ids(tx);
  REQUIRE(all_ids.ok());
  CHECK(all_ids->size() == 5);
  CHECK(store->list_snapshots(tx)->size() == 5);
  REQUIRE(tx.commit().ok());
}

TEST_CASE("a transaction that is not committed is rolled back by its guard") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "db";
  auto store = open_store(path);
  {
    auto tx = begin(*store, Mode::kWrite);
    auto r = make_snapshot("kept", Kind::kActive);
    REQUIRE(store->insert_snapshot(tx, r).ok());
    REQUIRE(tx.commit().ok());
  }
  {
    auto tx = begin(*store, Mode::kWrite);
    auto r = make_snapshot("dropped", Kind::kActive);
    REQUIRE(store->insert_snapshot(tx, r).ok());
    auto kept = *store->get_snapshot(tx, "kept");
    REQUIRE(store->delete_snapshot(tx, kept.id).ok());
    // Visible inside the transaction...
    CHECK(store->find_snapshot(tx, "dropped")->has_value());
  }  // ...and gone after the guard rolled back.
  {
    auto tx = begin(*store, Mode::kRead);
    CHECK_FALSE(store->find_snapshot(tx, "dropped")->has_value());
    CHECK(store->find_snapshot(tx, "kept")->has_value());
  }
  // A moved-from guard does nothing; the moved-to one owns the transaction.
  {
    auto tx = begin(*store, Mode::kWrite);
    Transaction moved(std::move(tx));
    auto r = make_snapshot("moved", Kind::kView);
    REQUIRE(store->insert_snapshot(moved, r).ok());
    REQUIRE(moved.commit().ok());
    CHECK_FALSE(moved.commit().ok());  // not open any more
  }
  store.reset();
  auto reopened = open_store(path);
  auto tx = begin(*reopened, Mode::kRead);
  CHECK(reopened->find_snapshot(tx, "kept")->has_value());
  CHECK(reopened->find_snapshot(tx, "moved")->has_value());
  CHECK_FALSE(reopened->find_snapshot(tx, "dropped")->has_value());
}

TEST_CASE("transactions serialize across threads") {
  nydus::testing::TempDir dir("nydus-store");
  auto store = open_store(dir / "db");
  constexpr int kThreads = 4, kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto tx = store->begin(Mode::kWrite);
        if (!tx.ok()) { ++failures; continue; }
        auto r = make_snapshot(fmt::format("t{}-{}", t, i), Kind::kActive);
        if (!store->insert_snapshot(*tx, r).ok() || !tx->commit().ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto tx = begin(*store, Mode::kRead);
  CHECK(store->list_snapshots(tx)->size() == kThreads * kPerThread);
}

TEST_CASE("daemons and RAFS instances: CRUD and their relation") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "db";
  auto store = open_store(path);
  auto tx = begin(*store, Mode::kWrite);

  DaemonRecord d;
  d.id = "cmd2k3a0abcdefghij01";
  d.pid = 1234;
  d.api_socket = "/root/socket/cmd2k3a0abcdefghij01/api.sock";
  d.mountpoint = "/root/snapshots/7/mnt";
  d.daemon_mode = "dedicated";
  d.fs_driver = "fusedev";
  d.binary_path = "/usr/bin/nydusd";
  d.version = "abc123";
  d.state = "RUNNING";
  REQUIRE(store->insert_daemon(tx, d).ok());
  CHECK(d.created > 0);
  CHECK(store->insert_daemon(tx, d).error().kind() == ErrorKind::kAlreadyExists);
  DaemonRecord nameless;
  CHECK(store->insert_daemon(tx, nameless).error().kind() == ErrorKind::kInvalidArgument);

  InstanceRecord inst;
  inst.snapshot_id = "7";
  inst.daemon_id = d.id;
  inst.image_id = "docker.io/library/busybox:latest";
  inst.mountpoint = d.mountpoint;
  inst.bootstrap = "/root/snapshots/7/fs/image/image.boot";
  REQUIRE(store->insert_instance(tx, inst).ok());
  CHECK(inst.seq > 0);
  InstanceRecord orphan = inst;
  orphan.snapshot_id = "8";
  orphan.daemon_id = "no-such-daemon";
  CHECK(store->insert_instance(tx, orphan).error().kind() == ErrorKind::kNotFound);
  InstanceRecord second = inst;
  second.snapshot_id = "9";
  REQUIRE(store->insert_instance(tx, second).ok());
  CHECK(second.seq > inst.seq);

  // A daemon that still serves instances cannot be deleted.
  CHECK(store->delete_daemon(tx, d.id).error().kind() == ErrorKind::kFailedPrecondition);
  REQUIRE(tx.commit().ok());

  // Survives a reopen.
  store.reset();
  store = open_store(path);
  auto tx2 = begin(*store, Mode::kWrite);
  auto got = store->get_daemon(tx2, d.id);
  REQUIRE(got.ok());
  CHECK(got->pid == 1234);
  CHECK(got->api_socket == d.api_socket);
  CHECK(got->binary_path == "/usr/bin/nydusd");
  CHECK(got->state == "RUNNING");
  got->pid = 5678;
  got->api_socket = "/root/socket/cmd2k3a0abcdefghij01/api1.sock";
  got->state = "INIT";
  REQUIRE(store->update_daemon(tx2, *got).ok());
  CHECK(store->get_daemon(tx2, d.id)->pid == 5678);
  DaemonRecord ghost;
  ghost.id = "ghost";
  CHECK(store->update_daemon(tx2, ghost).error().kind() == ErrorKind::kNotFound);
  CHECK(store->list_daemons(tx2)->size() == 1);

  auto instances = store->list_instances(tx2);
  REQUIRE(instances.ok());
  REQUIRE(instances->size() == 2);
  CHECK((*instances)[0].snapshot_id == "7");  // by seq
  CHECK((*instances)[1].snapshot_id == "9");
  auto one = store->get_instance(tx2, "9");
  REQUIRE(one.ok());
  one->mountpoint = "/elsewhere";
  REQUIRE(store->update_instance(tx2, *one).ok());
  CHECK(store->get_instance(tx2, "9")->mountpoint == "/elsewhere");
  CHECK(store->get_instance(tx2, "nope").error().kind() == ErrorKind::kNotFound);

  REQUIRE(store->delete_instance(tx2, "7").ok());
  REQUIRE(store->delete_instance(tx2, "9").ok());
  CHECK(store->delete_instance(tx2, "9").error().kind() == ErrorKind::kNotFound);
  REQUIRE(store->delete_daemon(tx2, d.id).ok());
  CHECK(store->get_daemon(tx2, d.id).error().kind() == ErrorKind::kNotFound);
  CHECK(store->delete_daemon(tx2, d.id).error().kind() == ErrorKind::kNotFound);
  REQUIRE(tx2.commit().ok());
}

TEST_CASE("a database from a newer binary is refused and left untouched") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "db";
  open_store(path).reset();
  raw_query(path, "PRAGMA user_version = 99");
  REQUIRE(raw_query(path, "PRAGMA user_version") == "99");
  auto r = MetaStore::open(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kFailedPrecondition);
  CHECK(r.error().message().find("99") != std::string::npos);
  CHECK(raw_query(path, "PRAGMA user_version") == "99");
}

TEST_CASE("a file that is not a database is reported as corrupt") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "db";
  {
    std::ofstream out(path);
    out << std::string(8192, 'x');
  }
  auto r = MetaStore::open(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kCorrupt);
  CHECK(r.error().message().find(path.string()) != std::string::npos);
}

TEST_CASE("kill -9 at any moment loses no committed snapshot") {
  nydus::testing::TempDir dir("nydus-store");
  auto path = dir / "db";
  open_store(path).reset();
  constexpr int kAckedBeforeKill = 40;

  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: commit snapshots as fast as possible and acknowledge each one
    // only after commit() returned. Never returns into Catch.
    ::close(pipefd[0]);
    auto store = MetaStore::open(path);
    if (!store.ok()) ::_exit(3);
    for (int i = 0;; ++i) {
      auto tx = (*store)->begin(Mode::kWrite);
      if (!tx.ok()) ::_exit(4);
      auto r = make_snapshot("s" + std::to_string(i), Kind::kCommitted);
      r.labels = {{"i", std::to_string(i)}};
      if (!(*store)->insert_snapshot(*tx, r).ok()) ::_exit(5);
      if (!tx->commit().ok()) ::_exit(6);
      int32_t ack = i;
      if (::write(pipefd[1], &ack, sizeof(ack)) != sizeof(ack)) ::_exit(7);
    }
  }
  ::close(pipefd[1]);
  int32_t last_ack = -1;
  for (int n = 0; n < kAckedBeforeKill; ++n) {
    int32_t ack;
    REQUIRE(::read(pipefd[0], &ack, sizeof(ack)) == sizeof(ack));
    last_ack = ack;
  }
  ::kill(pid, SIGKILL);  // mid-transaction, most likely
  // Acks written before the kill are still in the pipe: they count too.
  int32_t ack;
  while (::read(pipefd[0], &ack, sizeof(ack)) == sizeof(ack)) last_ack = ack;
  ::close(pipefd[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));

  auto store = open_store(path);
  auto tx = begin(*store, Mode::kRead);
  auto all = store->list_snapshots(tx);
  REQUIRE(all.ok());
  // Every acknowledged snapshot is there, complete; at most one more (the
  // commit that finished as the kill landed) may exist.
  CHECK(all->size() >= static_cast<size_t>(last_ack + 1));
  CHECK(all->size() <= static_cast<size_t>(last_ack + 2));
  std::set<std::string> keys;
  for (const auto& r : *all) {
    keys.insert(r.key);
    CHECK(r.labels.at("i") == r.key.substr(1));
  }
  for (int i = 0; i <= last_ack; ++i) CHECK(keys.count("s" + std::to_string(i)) == 1);
}
