// The snapshotter's persistent metadata: one SQLite database at
// <root>/snapshotter.db holding snapshots (containerd's metastore), nydusd
// daemons and the RAFS instances they serve.
//
// Durability. The database runs in WAL mode with synchronous=FULL: every
// committed transaction is fsynced into the WAL before commit() returns.
// WAL with synchronous=NORMAL would already survive a kill -9 at any moment
// (the WAL lives in the file system, not in the process), but it can lose the
// last commits on power loss, while containerd's own metadata.db (bbolt)
// fsyncs every commit; a snapshot containerd believes in must not vanish
// here, so we pay one fsync per state change. foreign_keys=ON makes the
// parent relation and the daemon/instance relation hard constraints.
//
// Concurrency. One connection, serialized by a mutex that a Transaction holds
// for its whole life: at most one transaction exists at a time, readers
// included. Every accessor takes the Transaction as proof. Keep transactions
// short and never block on a peer (gRPC stream, nydusd) while holding one.
// A second process opening the same file waits up to kBusyTimeout and then
// fails with NotReady; main additionally holds a lock file on the root.
//
// Schema. PRAGMA user_version holds the schema version. A newer binary
// migrates an older database forward inside one transaction; an older binary
// refuses a newer schema (FailedPrecondition) and leaves it untouched.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "snapshotter/snapshot_types.h"

namespace nydus::snapshotter {

inline constexpr int kSchemaVersion = 2;
inline constexpr std::chrono::milliseconds kBusyTimeout{5000};

// ---------------------------------------------------------------------------
// RAII guards over the SQLite C API.

// Owns one prepared statement; finalized in the destructor. Parameters are
// 1-based as in SQLite.
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, std::string_view value);
  Statement& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Statement& bind_null(int index);
  Statement& bind(int index, const std::optional<int64_t>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }

  // Steps once: true when a row is available, false when done.
  Result<bool> step();
  // Steps to completion, for statements that return no rows.
  Status run();

  int64_t column_int(int index) const;
  std::optional<int64_t> column_optional_int(int index) const;
  std::string column_text(int index) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_error_ = SQLITE_OK;
};

class MetaStore;

// One database transaction, holding the store's mutex. commit() makes it
// durable; a transaction that was not committed is rolled back when the
// guard is destroyed (also on error paths and exceptions). Move-only.
class Transaction {
 public:
  enum class Mode { kRead, kWrite };

  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();

  // COMMIT. After a failed commit the transaction is rolled back.
  Status commit();
  bool writable() const { return mode_ == Mode::kWrite; }

 private:
  friend class MetaStore;
  Transaction(MetaStore* store, std::unique_lock<std::mutex> lock, Mode mode)
      : store_(store), lock_(std::move(lock)), mode_(mode) {}
  void rollback();

  MetaStore* store_;
  std::unique_lock<std::mutex> lock_;
  Mode mode_;
  bool open_ = true;
};

// ---------------------------------------------------------------------------
// Records.

struct SnapshotRecord {
  int64_t id = 0;  // never reused (AUTOINCREMENT): names <root>/snapshots/<id>
  std::string key;
  std::optional<int64_t> parent_id;
  std::string parent_key;  // filled on reads
  Kind kind = Kind::kUnknown;
  Labels labels;
  TimestampNs created = 0;
  TimestampNs updated = 0;
  Usage usage;  // recorded at commit (committed snapshots only)
  // The nydusd daemon serving this snapshot's RAFS mount, when any. Set by
  // the daemon manager; "" for plain overlay snapshots.
  std::string daemon_id;

  std::string id_string() const { return std::to_string(id); }
};

// A nydusd process the snapshotter started (the reference's ConfigState).
struct DaemonRecord {
  std::string id;  // 20-char xid
  int64_t pid = 0;
  std::string api_socket;
  std::string supervisor_path;  // "" without failover
  std::string mountpoint;       // FUSE mountpoint (dedicated) or shared root mountpoint
  std::string daemon_mode;      // dedicated | shared
  std::string fs_driver;        // fusedev | fscache
  std::string binary_path;      // nydusd binary it runs
  std::string version;          // nydusd's reported version (git commit)
  std::string state;            // last state seen: INIT, READY, RUNNING, DIED, ...
  std::string config_path;
  std::string log_file;
  TimestampNs created = 0;
  TimestampNs updated = 0;
};

// One RAFS image served by a daemon (the reference's Rafs instance).
struct InstanceRecord {
  int64_t seq = 0;          // assigned on insert; remount order
  std::string snapshot_id;  // id of the meta-layer snapshot
  std::string daemon_id;
  std::string image_id;
  std::string mountpoint;
  std::string bootstrap;
  std::string annotations_json = "{}";
};

// ---------------------------------------------------------------------------

class MetaStore {
 public:
  // Opens (creating if needed) and migrates the database at `path`.
  static Result<std::unique_ptr<MetaStore>> open(const std::filesystem::path& path);
  ~MetaStore();
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  // Blocks until no other transaction of this store is open. kWrite takes
  // SQLite's write lock at once (BEGIN IMMEDIATE), so a write transaction
  // never fails half-way on a lock upgrade.
  Result<Transaction> begin(Transaction::Mode mode);

  int schema_version() const { return schema_version_; }

  // --- snapshots ---
  // Inserts a snapshot; fills id. AlreadyExists when the key is taken.
  Status insert_snapshot(Transaction& tx, SnapshotRecord& record);
  // NotFound when absent.
  Result<SnapshotRecord> get_snapshot(Transaction& tx, std::string_view key);
  Result<std::optional<SnapshotRecord>> find_snapshot(Transaction& tx, std::string_view key);
  Result<std::optional<SnapshotRecord>> find_snapshot_by_id(Transaction& tx, int64_t id);
  // Ancestors of `record`, nearest first (its parent, grandparent, ...).
  Result<std::vector<SnapshotRecord>> parent_chain(Transaction& tx, const SnapshotRecord& record);
  Result<bool> has_children(Transaction& tx, int64_t id);
  // Rewrites key, kind, labels, timestamps, usage and daemon_id of record.id.
  Status update_snapshot(Transaction& tx, const SnapshotRecord& record);
  // FailedPrecondition while children exist.
  Status delete_snapshot(Transaction& tx, int64_t id);
  Result<std::vector<SnapshotRecord>> list_snapshots(Transaction& tx);
  Result<std::vector<int64_t>> snapshot_ids(Transaction& tx);

  // --- daemons ---
  Status insert_daemon(Transaction& tx, DaemonRecord& record);  // AlreadyExists on a duplicate id
  Result<DaemonRecord> get_daemon(Transaction& tx, std::string_view id);
  Status update_daemon(Transaction& tx, DaemonRecord& record);  // NotFound when absent
  Status delete_daemon(Transaction& tx, std::string_view id);   // NotFound when absent
  Result<std::vector<DaemonRecord>> list_daemons(Transaction& tx);

  // --- RAFS instances ---
  Status insert_instance(Transaction& tx, InstanceRecord& record);  // fills seq
  Result<InstanceRecord> get_instance(Transaction& tx, std::string_view snapshot_id);
  Status update_instance(Transaction& tx, const InstanceRecord& record);
  Status delete_instance(Transaction& tx, std::string_view snapshot_id);
  // Ordered by seq.
  Result<std::vector<InstanceRecord>> list_instances(Transaction& tx);

  // --- settings: small named values the snapshotter keeps across restarts ---
  Result<std::optional<std::string>> get_setting(Transaction& tx, std::string_view name);
  Status put_setting(Transaction& tx, std::string_view name, std::string_view value);
  Status delete_setting(Transaction& tx, std::string_view name);  // absent is fine

 private:
  friend class Transaction;
  explicit MetaStore(sqlite3* db) : db_(db) {}
  Result<Statement> prepare(std::string_view sql);
  Status exec(std::string_view sql);
  Status migrate();
  Result<SnapshotRecord> read_snapshot_row(const Statement& row);

  sqlite3* db_;
  std::mutex mutex_;  // held by the one open Transaction
  int schema_version_ = 0;
};

// Maps a SQLite result code to the project's error kinds.
Error sqlite_error(sqlite3* db, int rc, std::string_view what);

}  // namespace nydus::snapshotter
