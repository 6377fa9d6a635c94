// HTTP/1.1 over unix domain sockets: the transport of nydusd's control API
// (--apisock) and the snapshotter's system API, server and client.
//
// Wire behaviour, fixed by the reference (docs/reference-nydusd.md §2):
//  - Routing matches method + exact path. The query string is parsed apart and
//    percent-decoded ('+' decodes to a space, as Go's url.Values encodes it).
//  - Every response carries `Server: Nydus API`. A response with a body carries
//    Content-Type (application/json unless the handler says otherwise). 204
//    carries neither a body nor Content-Length.
//  - Errors carry {"code":"<ErrorKind name>","message":"..."} with the HTTP
//    status of the ErrorKind (common/result.h).
//  - Connections are kept alive, and the server NEVER closes an idle connection
//    on its own: a supervisor holds one idle connection to each daemon and
//    takes its hang-up as the daemon's death. Only a partially received request
//    (and a response the peer does not read) is bounded in time.
//  - Requests are answered one at a time per connection, in order (pipelined
//    requests wait in the socket until the previous response is written).
//
// Beast and Asio stay out of this header: dependents only see the types below
// and a forward declaration of boost::asio::io_context.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace nydus {

// ---------------------------------------------------------------------------
// Messages

struct HttpRequest {
  std::string method;                         // "GET", "PUT", ... as sent
  std::string path;                           // exact, without the query string
  std::map<std::string, std::string> query;   // percent-decoded; a key without '=' maps to ""
  std::string body;
  std::map<std::string, std::string> headers; // names lower-cased; repeats joined with ", "
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

// A response with status `status` whose body is `body.dump()` (invalid UTF-8 replaced).
HttpResponse json_response(int status, const nlohmann::json& body);
// 204, no body.
HttpResponse no_content();
// error.http_status() with body {"code":"<error_kind_name>","message":"..."}.
HttpResponse error_response(const Error& error);
// The request body as JSON; malformed JSON -> kInvalidArgument naming the parse
// error. An empty body is malformed too (callers that allow none check first).
Result<nlohmann::json> parse_json_body(const HttpRequest& request);

// Percent-encodes everything but RFC 3986 unreserved characters, for building
// query strings: "/mnt/a b" -> "%2Fmnt%2Fa%20b".
std::string url_encode(std::string_view text);
// Reverses url_encode; '+' decodes to a space when `plus_is_space`.
// A '%' not followed by two hex digits -> kInvalidArgument.
Result<std::string> url_decode(std::string_view text, bool plus_is_space = true);
// "a=1&b=x%2Fy&c" -> {a:1, b:x/y, c:""}. A repeated key keeps its last value.
Result<std::map<std::string, std::string>> parse_query(std::string_view query);

// ---------------------------------------------------------------------------
// Routing: a pure function from request to response, testable without sockets.

class Router {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // `method_not_allowed_status` answers a known path asked with another method
  // (405 by default; nydusd passes 400, as the reference answers).
  explicit Router(int method_not_allowed_status = 405)
      : method_not_allowed_status_(method_not_allowed_status) {}

  // Registers `handler` for `method` (e.g. "PUT") on exact `path`; a second
  // registration of the same pair replaces the first.
  Router& add(std::string method, std::string path, Handler handler);

  // Unknown path -> 404, known path with another method -> the configured
  // status, a handler that throws -> 500; all with a JSON error body. Never
  // throws. Safe to call concurrently (const, and handlers are only read).
  // The wrong-method body has code "InvalidArgument" whatever the status.
  HttpResponse dispatch(const HttpRequest& request) const;

 private:
  // path -> method -> handler
  std::map<std::string, std::map<std::string, Handler>> routes_;
  int method_not_allowed_status_;
};

// ---------------------------------------------------------------------------
// Server

struct HttpServerOptions {
  // Mode of the socket file. The file is created with the process umask and
  // chmod'ed right after bind, so keep the parent directory private too.
  mode_t socket_mode = 0600;
  // Largest accepted request body; a larger one gets 413 and the connection closes.
  std::uint64_t body_limit = 1024 * 1024;
  // Largest accepted request line + headers; larger gets 431 and a close.
  std::uint32_t header_limit = 16 * 1024;
  // How long a request may take from its first byte to its last, and how long
  // writing a response may take. Idleness between requests is never bounded.
  std::chrono::milliseconds message_timeout = std::chrono::seconds(30);
  int listen_backlog = 64;
};

struct HttpServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t requests_handled = 0;
  std::uint64_t open_connections = 0;
};

// Serves a Router on a unix socket with an io_context the caller runs.
//
// Threading: each connection runs on its own strand, and handlers run
// synchronously on the io thread that read the request. With one io thread
// (HttpServerThread's default) all handlers therefore run serially, as in the
// reference; with more threads, handlers of different connections may run
// concurrently and must be thread-safe. A slow handler delays every connection
// that shares its io thread.
//
// Lifetime: stop() closes the listener and every connection (a held idle
// connection sees hang-up); it only posts to the io_context, so it is safe from
// any thread, a handler included, and takes effect once the io_context runs
// those posts. Objects that handlers reference must outlive the io_context's
// run (HttpServerThread joins its threads in stop()). The socket file is left
// in place: nydusd's crash detection ("file exists, connect() fails") relies on
// a dead server's file, and the next server removes it before binding.
class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, std::string socket_path, Router router,
             HttpServerOptions options = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();  // stop()

  // Creates the parent directory if missing, removes a stale file at the path,
  // binds, chmods, listens and starts accepting. Call once.
  Status start();
  void stop();

  const std::string& socket_path() const;
  HttpServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An HttpServer with its own io_context run on `threads` threads.
class HttpServerThread {
 public:
  HttpServerThread(std::string socket_path, Router router, HttpServerOptions options = {},
                   unsigned threads = 1);
  HttpServerThread(const HttpServerThread&) = delete;
  HttpServerThread& operator=(const HttpServerThread&) = delete;
  ~HttpServerThread();  // stop()

  // Binds (errors are returned here, before any thread starts) and starts the threads.
  Status start();
  // Closes the listener and all connections, waits for running handlers to
  // return and joins the threads. Must not be called from a handler of this
  // server (it would join its own thread); use server().stop() there.
  void stop();

  HttpServer& server() { return *server_; }
  const std::string& socket_path() const { return server_->socket_path(); }
  HttpServerStats stats() const { return server_->stats(); }

 private:
  void run_loop();

  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<HttpServer> server_;
  unsigned thread_count_;
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------
// Client

inline constexpr std::chrono::milliseconds kDefaultHttpTimeout = std::chrono::seconds(30);

// A blocking client of one unix-socket HTTP server. It keeps its connection
// alive across requests; a connection the server has since closed (restart,
// upgrade) is replaced transparently, once per request. Thread-safe: requests
// from several threads are serialized on an internal mutex, and waiting for
// that mutex counts against the request's timeout.
//
// Errors: the socket missing or refusing -> kNotReady (message names the
// path); the timeout expiring -> kTimeout (the connection is dropped, since
// its state is unknown); other I/O failures -> kIo. An HTTP error status is
// not an error of request(); request_json() turns it into one.
class HttpClient {
 public:
  explicit HttpClient(std::string socket_path);
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  // `target` is "path?query" (build the query with url_encode). A non-empty
  // body is sent as application/json. The timeout covers connecting, sending
  // and receiving.
  Result<HttpResponse> request(std::string method, std::string target, std::string body = {},
                               std::chrono::milliseconds timeout = kDefaultHttpTimeout);

  // request() with a JSON body (none when nullopt). 2xx -> the parsed response
  // body (null when empty); an error status -> an Error whose kind comes from
  // the body's "code" (or else from the status) and whose message carries the
  // server's "message".
  Result<nlohmann::json> request_json(std::string method, std::string target,
                                      const std::optional<nlohmann::json>& body = std::nullopt,
                                      std::chrono::milliseconds timeout = kDefaultHttpTimeout);

  // Drops the kept-alive connection, if any.
  void close();

  const std::string& socket_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nydus
