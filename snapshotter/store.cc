#include "snapshotter/store.h"

#include <fcntl.h>

#include <chrono>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/unique_fd.h"

namespace nydus::snapshotter {

std::string_view to_string(Kind kind) {
  switch (kind) {
    case Kind::kView: return "view";
    case Kind::kActive: return "active";
    case Kind::kCommitted: return "committed";
    case Kind::kUnknown: break;
  }
  return "unknown";
}

TimestampNs now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  ErrorKind kind = ErrorKind::kInternal;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: kind = ErrorKind::kNotReady; break;
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        kind = ErrorKind::kAlreadyExists;
      } else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        kind = ErrorKind::kFailedPrecondition;
      } else {
        kind = ErrorKind::kInvalidArgument;
      }
      break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: kind = ErrorKind::kCorrupt; break;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN: kind = ErrorKind::kIo; break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: kind = ErrorKind::kPermissionDenied; break;
    default: break;
  }
  const char* detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Error(kind, fmt::format("{}: {} (sqlite {})", what, detail, rc));
}

// ---------------------------------------------------------------------------
// Statement

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      bind_error_(other.bind_error_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_) sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_error_ = other.bind_error_;
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  int rc = sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::bind_null(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  return *this;
}

Result<bool> Statement::step() {
  if (bind_error_ != SQLITE_OK) return sqlite_error(db_, bind_error_, "binding a statement parameter");
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_error(db_, rc, fmt::format("executing \"{}\"", sqlite3_sql(stmt_)));
}

Status Statement::run() {
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, step());
    if (!row) return ok_status();
  }
}

int64_t Statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

std::optional<int64_t> Statement::column_optional_int(int index) const {
  if (sqlite3_column_type(stmt_, index) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(stmt_, index);
}

std::string Statement::column_text(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, index));
  if (!text) return {};
  return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, index)));
}

// ---------------------------------------------------------------------------
// Transaction

Transaction::Transaction(Transaction&& other) noexcept
    : store_(other.store_),
      lock_(std::move(other.lock_)),
      mode_(other.mode_),
      open_(std::exchange(other.open_, false)) {}

Transaction::~Transaction() {
  if (open_) rollback();
}

Status Transaction::commit() {
  if (!open_) return make_error(ErrorKind::kInternal, "commit of a transaction that is not open");
  auto st = store_->exec("COMMIT");
  if (!st.ok()) {
    rollback();
    return std::move(st).error().wrap("committing a transaction");
  }
  open_ = false;
  lock_ = {};
  return ok_status();
}

void Transaction::rollback() {
  // A failed COMMIT may already have rolled back; ROLLBACK then reports an
  // error that carries no information.
  if (!sqlite3_get_autocommit(store_->db_)) {
    auto st = store_->exec("ROLLBACK");
    if (!st.ok()) spdlog::error("rolling back a transaction: {}", st.error().message());
  }
  open_ = false;
  lock_ = {};
}

// ---------------------------------------------------------------------------
// Schema

namespace {

// migrations[i] brings a database from version i to version i + 1.
const char* const kMigrations[] = {
    // 0 -> 1
    R"sql(
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0,
  daemon_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE daemons (
  id TEXT PRIMARY KEY,
  pid INTEGER NOT NULL DEFAULT 0,
  api_socket TEXT NOT NULL,
  supervisor_path TEXT NOT NULL DEFAULT '',
  mountpoint TEXT NOT NULL DEFAULT '',
  daemon_mode TEXT NOT NULL DEFAULT '',
  fs_driver TEXT NOT NULL DEFAULT '',
  binary_path TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT '',
  config_path TEXT NOT NULL DEFAULT '',
  log_file TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE instances (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  snapshot_id TEXT NOT NULL UNIQUE,
  daemon_id TEXT NOT NULL REFERENCES daemons(id),
  image_id TEXT NOT NULL DEFAULT '',
  mountpoint TEXT NOT NULL DEFAULT '',
  bootstrap TEXT NOT NULL DEFAULT '',
  annotations TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX instances_by_daemon ON instances(daemon_id);
)sql",
    // 1 -> 2
    R"sql(
CREATE TABLE settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

std::string labels_to_json(const Labels& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

Result<Labels> labels_from_json(const std::string& text, int64_t id) {
  try {
    auto j = nlohmann::json::parse(text);
    Labels labels;
    for (auto it = j.begin(); it != j.end(); ++it) labels[it.key()] = it.value().get<std::string>();
    return labels;
  } catch (const nlohmann::json::exception& e) {
    return make_error(ErrorKind::kCorrupt, "labels of snapshot {} are not a JSON object of strings: {}", id,
                      e.what());
  }
}

constexpr const char* kSnapshotColumns =
    "s.id, s.key, s.parent_id, s.kind, s.labels, s.created_at, s.updated_at, s.size, s.inodes, "
    "s.daemon_id, COALESCE(p.key, '')";
constexpr const char* kSnapshotFrom = " FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id";

constexpr const char* kDaemonColumns =
    "id, pid, api_socket, supervisor_path, mountpoint, daemon_mode, fs_driver, binary_path, version, state, "
    "config_path, log_file, created_at, updated_at";

DaemonRecord read_daemon_row(const Statement& row) {
  DaemonRecord d;
  d.id = row.column_text(0);
  d.pid = row.column_int(1);
  d.api_socket = row.column_text(2);
  d.supervisor_path = row.column_text(3);
  d.mountpoint = row.column_text(4);
  d.daemon_mode = row.column_text(5);
  d.fs_driver = row.column_text(6);
  d.binary_path = row.column_text(7);
  d.version = row.column_text(8);
  d.state = row.column_text(9);
  d.config_path = row.column_text(10);
  d.log_file = row.column_text(11);
  d.created = row.column_int(12);
  d.updated = row.column_int(13);
  return d;
}

constexpr const char* kInstanceColumns =
    "seq, snapshot_id, daemon_id, image_id, mountpoint, bootstrap, annotations";

InstanceRecord read_instance_row(const Statement& row) {
  InstanceRecord r;
  r.seq = row.column_int(0);
  r.snapshot_id = row.column_text(1);
  r.daemon_id = row.column_text(2);
  r.image_id = row.column_text(3);
  r.mountpoint = row.column_text(4);
  r.bootstrap = row.column_text(5);
  r.annotations_json = row.column_text(6);
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------
// MetaStore

MetaStore::~MetaStore() {
  // Every Statement and Transaction is gone by now (they cannot outlive the
  // store), so close cannot fail with SQLITE_BUSY.
  sqlite3_close(db_);
}

Result<std::unique_ptr<MetaStore>> MetaStore::open(const std::filesystem::path& path) {
  // Create the file ourselves so that it (and the -wal/-shm files SQLite
  // derives from it) is private to root.
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return Error::from_errno(errno, fmt::format("creating database {}", path.string()));
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<MetaStore> store(raw ? new MetaStore(raw) : nullptr);
  if (rc != SQLITE_OK) {
    return sqlite_error(raw, rc, fmt::format("opening database {}", path.string()));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(kBusyTimeout.count()));

  auto setup = [&]() -> Status {
    // journal_mode returns the mode in effect; anything else than "wal"
    // (e.g. a file system without shared memory) would break our durability
    // argument, so refuse it.
    {
      NYDUS_ASSIGN_OR_RETURN(Statement mode, store->prepare("PRAGMA journal_mode=WAL"));
      NYDUS_ASSIGN_OR_RETURN(bool row, mode.step());
      std::string got = row ? mode.column_text(0) : "";
      if (got != "wal") {
        return make_error(ErrorKind::kIo, "cannot switch to WAL journal mode (got \"{}\")", got);
      }
    }
    NYDUS_TRY(store->exec("PRAGMA synchronous=FULL"));
    NYDUS_TRY(store->exec("PRAGMA foreign_keys=ON"));
    return store->migrate();
  };
  auto st = setup();
  if (!st.ok()) return std::move(st).error().wrap(fmt::format("opening database {}", path.string()));
  return store;
}

Result<Statement> MetaStore::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    if (stmt) sqlite3_finalize(stmt);
    return sqlite_error(db_, rc, fmt::format("preparing \"{}\"", sql));
  }
  return Statement(db_, stmt);
}

Status MetaStore::exec(std::string_view sql) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string detail = message ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    Error e = sqlite_error(db_, rc, "");
    return Error(e.kind(), fmt::format("executing \"{}\": {} (sqlite {})", sql.substr(0, 60), detail, rc));
  }
  return ok_status();
}

Status MetaStore::migrate() {
  NYDUS_ASSIGN_OR_RETURN(Transaction tx, begin(Transaction::Mode::kWrite));
  NYDUS_ASSIGN_OR_RETURN(Statement q, prepare("PRAGMA user_version"));
  NYDUS_ASSIGN_OR_RETURN(bool row, q.step());
  int version = row ? static_cast<int>(q.column_int(0)) : 0;
  q = Statement();
  if (version > kSchemaVersion) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "database schema version {} is newer than this binary supports ({}); refusing to "
                      "touch it (run the newer binary, or move the database away)",
                      version, kSchemaVersion);
  }
  if (version == kSchemaVersion) {
    schema_version_ = version;
    return ok_status();
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    auto st = exec(kMigrations[v]);
    if (!st.ok()) return std::move(st).error().wrap(fmt::format("migrating schema {} -> {}", v, v + 1));
  }
  NYDUS_TRY(exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion)));
  NYDUS_TRY(tx.commit());
  if (version != 0) spdlog::info("database schema migrated from version {} to {}", version, kSchemaVersion);
  schema_version_ = kSchemaVersion;
  return ok_status();
}

Result<Transaction> MetaStore::begin(Transaction::Mode mode) {
  std::unique_lock<std::mutex> lock(mutex_);
  NYDUS_TRY(exec(mode == Transaction::Mode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED"));
  return Transaction(this, std::move(lock), mode);
}

// --- snapshots -------------------------------------------------------------

Result<SnapshotRecord> MetaStore::read_snapshot_row(const Statement& row) {
  SnapshotRecord r;
  r.id = row.column_int(0);
  r.key = row.column_text(1);
  r.parent_id = row.column_optional_int(2);
  r.kind = static_cast<Kind>(row.column_int(3));
  NYDUS_ASSIGN_OR_RETURN(r.labels, labels_from_json(row.column_text(4), r.id));
  r.created = row.column_int(5);
  r.updated = row.column_int(6);
  r.usage.size = row.column_int(7);
  r.usage.inodes = row.column_int(8);
  r.daemon_id = row.column_text(9);
  r.parent_key = row.column_text(10);
  return r;
}

Status MetaStore::insert_snapshot(Transaction& tx, SnapshotRecord& r) {
  NYDUS_ASSIGN_OR_RETURN(
      Statement s,
      prepare("INSERT INTO snapshots (key, parent_id, kind, labels, created_at, updated_at, size, inodes, "
              "daemon_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  s.bind(1, r.key)
      .bind(2, r.parent_id)
      .bind(3, static_cast<int64_t>(r.kind))
      .bind(4, labels_to_json(r.labels))
      .bind(5, r.created)
      .bind(6, r.updated)
      .bind(7, r.usage.size)
      .bind(8, r.usage.inodes)
      .bind(9, r.daemon_id);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kAlreadyExists) {
      return make_error(ErrorKind::kAlreadyExists, "snapshot {} already exists", r.key);
    }
    return std::move(st).error().wrap(fmt::format("inserting snapshot {}", r.key));
  }
  r.id = sqlite3_last_insert_rowid(db_);
  return ok_status();
}

Result<std::optional<SnapshotRecord>> MetaStore::find_snapshot(Transaction& tx, std::string_view key) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare(fmt::format("SELECT {}{} WHERE s.key = ?", kSnapshotColumns, kSnapshotFrom)));
  s.bind(1, key);
  NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<SnapshotRecord>();
  NYDUS_ASSIGN_OR_RETURN(SnapshotRecord r, read_snapshot_row(s));
  return std::optional<SnapshotRecord>(std::move(r));
}

Result<std::optional<SnapshotRecord>> MetaStore::find_snapshot_by_id(Transaction& tx, int64_t id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare(fmt::format("SELECT {}{} WHERE s.id = ?", kSnapshotColumns, kSnapshotFrom)));
  s.bind(1, id);
  NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<SnapshotRecord>();
  NYDUS_ASSIGN_OR_RETURN(SnapshotRecord r, read_snapshot_row(s));
  return std::optional<SnapshotRecord>(std::move(r));
}

Result<SnapshotRecord> MetaStore::get_snapshot(Transaction& tx, std::string_view key) {
  NYDUS_ASSIGN_OR_RETURN(auto found, find_snapshot(tx, key));
  if (!found) return make_error(ErrorKind::kNotFound, "snapshot {} does not exist", key);
  return std::move(*found);
}

Result<std::vector<SnapshotRecord>> MetaStore::parent_chain(Transaction& tx, const SnapshotRecord& record) {
  // A recursive query walks the chain in one statement, nearest first.
  NYDUS_ASSIGN_OR_RETURN(
      Statement s,
      prepare(fmt::format("WITH RECURSIVE chain(id, depth) AS ("
                          "  SELECT parent_id, 1 FROM snapshots WHERE id = ? AND parent_id IS NOT NULL"
                          "  UNION ALL"
                          "  SELECT x.parent_id, c.depth + 1 FROM snapshots x JOIN chain c ON x.id = c.id"
                          "  WHERE x.parent_id IS NOT NULL)"
                          " SELECT {}{} JOIN chain ON chain.id = s.id ORDER BY chain.depth",
                          kSnapshotColumns, kSnapshotFrom)));
  s.bind(1, record.id);
  std::vector<SnapshotRecord> chain;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    NYDUS_ASSIGN_OR_RETURN(SnapshotRecord r, read_snapshot_row(s));
    chain.push_back(std::move(r));
  }
  return chain;
}

Result<bool> MetaStore::has_children(Transaction& tx, int64_t id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1"));
  s.bind(1, id);
  return s.step();
}

Status MetaStore::update_snapshot(Transaction& tx, const SnapshotRecord& r) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare("UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, "
                                 "updated_at = ?, size = ?, inodes = ?, daemon_id = ? WHERE id = ?"));
  s.bind(1, r.key)
      .bind(2, static_cast<int64_t>(r.kind))
      .bind(3, labels_to_json(r.labels))
      .bind(4, r.created)
      .bind(5, r.updated)
      .bind(6, r.usage.size)
      .bind(7, r.usage.inodes)
      .bind(8, r.daemon_id)
      .bind(9, r.id);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kAlreadyExists) {
      return make_error(ErrorKind::kAlreadyExists, "snapshot {} already exists", r.key);
    }
    return std::move(st).error().wrap(fmt::format("updating snapshot {}", r.key));
  }
  if (sqlite3_changes(db_) == 0) return make_error(ErrorKind::kNotFound, "snapshot id {} does not exist", r.id);
  return ok_status();
}

Status MetaStore::delete_snapshot(Transaction& tx, int64_t id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("DELETE FROM snapshots WHERE id = ?"));
  s.bind(1, id);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kFailedPrecondition) {
      return make_error(ErrorKind::kFailedPrecondition, "snapshot id {} has children", id);
    }
    return std::move(st).error().wrap(fmt::format("deleting snapshot id {}", id));
  }
  if (sqlite3_changes(db_) == 0) return make_error(ErrorKind::kNotFound, "snapshot id {} does not exist", id);
  return ok_status();
}

Result<std::vector<SnapshotRecord>> MetaStore::list_snapshots(Transaction& tx) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare(fmt::format("SELECT {}{} ORDER BY s.id", kSnapshotColumns, kSnapshotFrom)));
  std::vector<SnapshotRecord> out;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    NYDUS_ASSIGN_OR_RETURN(SnapshotRecord r, read_snapshot_row(s));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<int64_t>> MetaStore::snapshot_ids(Transaction& tx) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("SELECT id FROM snapshots ORDER BY id"));
  std::vector<int64_t> out;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(s.column_int(0));
  }
  return out;
}

// --- daemons ---------------------------------------------------------------

Status MetaStore::insert_daemon(Transaction& tx, DaemonRecord& d) {
  if (d.id.empty()) return make_error(ErrorKind::kInvalidArgument, "daemon id must not be empty");
  d.created = d.updated = now_ns();
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare(fmt::format("INSERT INTO daemons ({}) VALUES "
                                                          "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                                          kDaemonColumns)));
  s.bind(1, d.id).bind(2, d.pid).bind(3, d.api_socket).bind(4, d.supervisor_path).bind(5, d.mountpoint);
  s.bind(6, d.daemon_mode).bind(7, d.fs_driver).bind(8, d.binary_path).bind(9, d.version).bind(10, d.state);
  s.bind(11, d.config_path).bind(12, d.log_file).bind(13, d.created).bind(14, d.updated);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kAlreadyExists) {
      return make_error(ErrorKind::kAlreadyExists, "daemon {} already exists", d.id);
    }
    return std::move(st).error().wrap(fmt::format("inserting daemon {}", d.id));
  }
  return ok_status();
}

Result<DaemonRecord> MetaStore::get_daemon(Transaction& tx, std::string_view id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare(fmt::format("SELECT {} FROM daemons WHERE id = ?", kDaemonColumns)));
  s.bind(1, id);
  NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return make_error(ErrorKind::kNotFound, "daemon {} does not exist", id);
  return read_daemon_row(s);
}

Status MetaStore::update_daemon(Transaction& tx, DaemonRecord& d) {
  d.updated = now_ns();
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare("UPDATE daemons SET pid = ?, api_socket = ?, supervisor_path = ?, "
                                 "mountpoint = ?, daemon_mode = ?, fs_driver = ?, binary_path = ?, "
                                 "version = ?, state = ?, config_path = ?, log_file = ?, updated_at = ? "
                                 "WHERE id = ?"));
  s.bind(1, d.pid).bind(2, d.api_socket).bind(3, d.supervisor_path).bind(4, d.mountpoint);
  s.bind(5, d.daemon_mode).bind(6, d.fs_driver).bind(7, d.binary_path).bind(8, d.version).bind(9, d.state);
  s.bind(10, d.config_path).bind(11, d.log_file).bind(12, d.updated).bind(13, d.id);
  auto st = s.run();
  if (!st.ok()) return std::move(st).error().wrap(fmt::format("updating daemon {}", d.id));
  if (sqlite3_changes(db_) == 0) return make_error(ErrorKind::kNotFound, "daemon {} does not exist", d.id);
  return ok_status();
}

Status MetaStore::delete_daemon(Transaction& tx, std::string_view id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("DELETE FROM daemons WHERE id = ?"));
  s.bind(1, id);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kFailedPrecondition) {
      return make_error(ErrorKind::kFailedPrecondition, "daemon {} still serves RAFS instances", id);
    }
    return std::move(st).error().wrap(fmt::format("deleting daemon {}", id));
  }
  if (sqlite3_changes(db_) == 0) return make_error(ErrorKind::kNotFound, "daemon {} does not exist", id);
  return ok_status();
}

Result<std::vector<DaemonRecord>> MetaStore::list_daemons(Transaction& tx) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare(fmt::format("SELECT {} FROM daemons ORDER BY created_at, id",
                                                          kDaemonColumns)));
  std::vector<DaemonRecord> out;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(read_daemon_row(s));
  }
  return out;
}

// --- instances -------------------------------------------------------------

Status MetaStore::insert_instance(Transaction& tx, InstanceRecord& r) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare("INSERT INTO instances (snapshot_id, daemon_id, image_id, mountpoint, "
                                 "bootstrap, annotations) VALUES (?, ?, ?, ?, ?, ?)"));
  s.bind(1, r.snapshot_id).bind(2, r.daemon_id).bind(3, r.image_id).bind(4, r.mountpoint);
  s.bind(5, r.bootstrap).bind(6, r.annotations_json);
  auto st = s.run();
  if (!st.ok()) {
    if (st.error().kind() == ErrorKind::kAlreadyExists) {
      return make_error(ErrorKind::kAlreadyExists, "RAFS instance {} already exists", r.snapshot_id);
    }
    if (st.error().kind() == ErrorKind::kFailedPrecondition) {
      return make_error(ErrorKind::kNotFound, "RAFS instance {}: daemon {} does not exist", r.snapshot_id,
                        r.daemon_id);
    }
    return std::move(st).error().wrap(fmt::format("inserting RAFS instance {}", r.snapshot_id));
  }
  r.seq = sqlite3_last_insert_rowid(db_);
  return ok_status();
}

Result<InstanceRecord> MetaStore::get_instance(Transaction& tx, std::string_view snapshot_id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare(fmt::format("SELECT {} FROM instances WHERE snapshot_id = ?",
                                                          kInstanceColumns)));
  s.bind(1, snapshot_id);
  NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return make_error(ErrorKind::kNotFound, "RAFS instance {} does not exist", snapshot_id);
  return read_instance_row(s);
}

Status MetaStore::update_instance(Transaction& tx, const InstanceRecord& r) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare("UPDATE instances SET daemon_id = ?, image_id = ?, mountpoint = ?, "
                                 "bootstrap = ?, annotations = ? WHERE snapshot_id = ?"));
  s.bind(1, r.daemon_id).bind(2, r.image_id).bind(3, r.mountpoint).bind(4, r.bootstrap);
  s.bind(5, r.annotations_json).bind(6, r.snapshot_id);
  auto st = s.run();
  if (!st.ok()) return std::move(st).error().wrap(fmt::format("updating RAFS instance {}", r.snapshot_id));
  if (sqlite3_changes(db_) == 0) {
    return make_error(ErrorKind::kNotFound, "RAFS instance {} does not exist", r.snapshot_id);
  }
  return ok_status();
}

Status MetaStore::delete_instance(Transaction& tx, std::string_view snapshot_id) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("DELETE FROM instances WHERE snapshot_id = ?"));
  s.bind(1, snapshot_id);
  NYDUS_TRY(s.run());
  if (sqlite3_changes(db_) == 0) {
    return make_error(ErrorKind::kNotFound, "RAFS instance {} does not exist", snapshot_id);
  }
  return ok_status();
}

Result<std::vector<InstanceRecord>> MetaStore::list_instances(Transaction& tx) {
  NYDUS_ASSIGN_OR_RETURN(Statement s,
                         prepare(fmt::format("SELECT {} FROM instances ORDER BY seq", kInstanceColumns)));
  std::vector<InstanceRecord> out;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(read_instance_row(s));
  }
  return out;
}

// --- settings --------------------------------------------------------------

Result<std::optional<std::string>> MetaStore::get_setting(Transaction& tx, std::string_view name) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("SELECT value FROM settings WHERE name = ?"));
  s.bind(1, name);
  NYDUS_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.column_text(0));
}

Status MetaStore::put_setting(Transaction& tx, std::string_view name, std::string_view value) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("INSERT INTO settings (name, value) VALUES (?, ?) "
                                              "ON CONFLICT(name) DO UPDATE SET value = excluded.value"));
  s.bind(1, name).bind(2, value);
  auto st = s.run();
  if (!st.ok()) return std::move(st).error().wrap(fmt::format("writing setting {}", name));
  return ok_status();
}

Status MetaStore::delete_setting(Transaction& tx, std::string_view name) {
  NYDUS_ASSIGN_OR_RETURN(Statement s, prepare("DELETE FROM settings WHERE name = ?"));
  s.bind(1, name);
  return s.run();
}

}  // namespace nydus::snapshotter
