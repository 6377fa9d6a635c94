// Tests of common/http.h: the codec and Router without sockets, then server
// and client over real unix sockets in a TempDir. A RawConnection (a plain
// socket) stands in where the test must see bytes, idleness or hang-up that
// HttpClient would hide.

#include "common/http.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "common/unique_fd.h"
#include "tests/support/temp_dir.h"

using namespace std::chrono_literals;
using nlohmann::json;
using nydus::ErrorKind;
using nydus::HttpClient;
using nydus::HttpRequest;
using nydus::HttpResponse;
using nydus::HttpServer;
using nydus::HttpServerOptions;
using nydus::HttpServerThread;
using nydus::Router;
using nydus::UniqueFd;
using nydus::testing::TempDir;

namespace {

// Bounds every wait in this file; only a hang reaches it.
constexpr auto kEventDeadline = 5s;

// ---------------------------------------------------------------------------
// Helpers

struct RawResponse {
  int status = 0;
  std::string head;
  std::string body;
};

// A client connection on a plain socket.
class RawConnection {
 public:
  explicit RawConnection(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, path.data(), path.size());
    REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  }

  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      REQUIRE(n > 0);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  // The poll events seen within `timeout`, 0 if none.
  short wait_events(std::chrono::milliseconds timeout) {
    pollfd pfd{fd_.get(), POLLIN | POLLRDHUP, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    REQUIRE(n >= 0);
    return n == 0 ? 0 : pfd.revents;
  }

  // Reads one response (header, then a Content-Length body).
  RawResponse read_response() {
    RawResponse response;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) REQUIRE(fill());
    response.head = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    REQUIRE(response.head.rfind("HTTP/1.1 ", 0) == 0);
    response.status = std::stoi(response.head.substr(9, 3));
    size_t length = 0;
    if (auto pos = lower(response.head).find("content-length:"); pos != std::string::npos) {
      length = std::stoul(response.head.substr(pos + 15));
    }
    while (buffer_.size() < length) REQUIRE(fill());
    response.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return response;
  }

  // True when the server has closed: poll shows hang-up and read returns EOF,
  // or ECONNRESET when the server closed with our bytes unread (or before
  // accepting us).
  bool sees_hangup() {
    short events = wait_events(kEventDeadline);
    if (!(events & (POLLHUP | POLLRDHUP))) return false;
    char byte;
    ssize_t n = ::read(fd_.get(), &byte, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool fill() {
    if (!(wait_events(kEventDeadline) & POLLIN)) return false;
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  UniqueFd fd_;
  std::string buffer_;
};

HttpResponse echo(const HttpRequest& request) {
  return nydus::json_response(200, {{"method", request.method},
                                    {"path", request.path},
                                    {"query", request.query},
                                    {"body", request.body}});
}

Router make_router(int method_not_allowed_status = 405) {
  Router router(method_not_allowed_status);
  for (const char* method : {"GET", "PUT", "POST", "DELETE"}) router.add(method, "/echo", echo);
  router.add("PUT", "/empty", [](const HttpRequest&) { return nydus::no_content(); });
  router.add("POST", "/json", [](const HttpRequest& request) {
    auto body = nydus::parse_json_body(request);
    if (!body.ok()) return nydus::error_response(body.error());
    return nydus::json_response(200, {{"got", *body}});
  });
  router.add("GET", "/throw", [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("boom");
  });
  router.add("GET", "/text", [](const HttpRequest&) {
    return HttpResponse{200, "plain", "text/plain"};
  });
  return router;
}

// A started server in its own TempDir.
struct TestServer {
  explicit TestServer(HttpServerOptions options = {}, unsigned threads = 1,
                      Router router = make_router())
      : server(path, std::move(router), options, threads) {
    auto started = server.start();
    REQUIRE(started.ok());
  }

  TempDir dir{"nydus-http"};
  std::string path = (dir / "api.sock").string();
  HttpServerThread server;
};

json body_json(const HttpResponse& response) { return json::parse(response.body); }

}  // namespace

// ---------------------------------------------------------------------------
// Without sockets

TEST_CASE("url_encode and url_decode round-trip", "[http]") {
  CHECK(nydus::url_encode("/mnt/a b&c=d") == "%2Fmnt%2Fa%20b%26c%3Dd");
  CHECK(nydus::url_encode("AZaz09-._~") == "AZaz09-._~");
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  auto decoded = nydus::url_decode(nydus::url_encode(all));
  REQUIRE(decoded.ok());
  CHECK(*decoded == all);
  CHECK(*nydus::url_decode("a+b%2f") == "a b/");
  CHECK(*nydus::url_decode("a+b", /*plus_is_space=*/false) == "a+b");
  CHECK(nydus::url_decode("%zz").error().kind() == ErrorKind::kInvalidArgument);
  CHECK_FALSE(nydus::url_decode("abc%2").ok());
}

TEST_CASE("parse_query splits and decodes", "[http]") {
  auto query = nydus::parse_query("mountpoint=%2Fmnt%2Fx&flag&&id=a+b&id=last");
  REQUIRE(query.ok());
  CHECK(*query == std::map<std::string, std::string>{
                      {"mountpoint", "/mnt/x"}, {"flag", ""}, {"id", "last"}});
  CHECK_FALSE(nydus::parse_query("a=%G0").ok());
}

TEST_CASE("Router dispatches by method and exact path", "[http]") {
  Router router = make_router();
  HttpRequest request{"PUT", "/echo", {{"k", "v"}}, "data", {}};
  HttpResponse response = router.dispatch(request);
  CHECK(response.status == 200);
  CHECK(body_json(response)["query"]["k"] == "v");

  request.path = "/echo/";
  response = router.dispatch(request);
  CHECK(response.status == 404);
  CHECK(body_json(response)["code"] == "NotFound");

  request = HttpRequest{"PATCH", "/echo", {}, {}, {}};
  CHECK(router.dispatch(request).status == 405);
  CHECK(make_router(400).dispatch(request).status == 400);

  request = HttpRequest{"GET", "/throw", {}, {}, {}};
  response = router.dispatch(request);
  CHECK(response.status == 500);
  CHECK(body_json(response)["code"] == "Internal");
}

TEST_CASE("error_response and parse_json_body", "[http]") {
  HttpResponse response =
      nydus::error_response(nydus::Error(ErrorKind::kNotReady, "daemon is starting"));
  CHECK(response.status == 503);
  CHECK(body_json(response) == json{{"code", "NotReady"}, {"message", "daemon is starting"}});

  auto parsed = nydus::parse_json_body(HttpRequest{"PUT", "/", {}, "{\"a\":", {}});
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().kind() == ErrorKind::kInvalidArgument);
  CHECK_THAT(parsed.error().message(), Catch::Contains("parse error"));
}

// ---------------------------------------------------------------------------
// Over a unix socket

TEST_CASE("routes GET/PUT/POST/DELETE with decoded query parameters", "[http]") {
  TestServer server;
  HttpClient client(server.path);
  for (std::string method : {"GET", "PUT", "POST", "DELETE"}) {
    std::string target = "/echo?mountpoint=" + nydus::url_encode("/mnt/my dir") + "&x=1+2";
    std::string body = method == "GET" ? "" : "{\"m\":\"" + method + "\"}";
    auto response = client.request(method, target, body);
    REQUIRE(response.ok());
    CHECK(response->status == 200);
    CHECK(response->content_type == "application/json");
    json got = body_json(*response);
    CHECK(got["method"] == method);
    CHECK(got["path"] == "/echo");
    CHECK(got["query"] == json{{"mountpoint", "/mnt/my dir"}, {"x", "1 2"}});
    CHECK(got["body"] == body);
  }
  auto text = client.request("GET", "/text");
  REQUIRE(text.ok());
  CHECK(text->content_type == "text/plain");
  CHECK(text->body == "plain");

  // A malformed query never reaches the handler.
  auto bad = client.request("GET", "/echo?a=%zz");
  REQUIRE(bad.ok());
  CHECK(bad->status == 400);
}

TEST_CASE("204 carries no body, and headers are as the reference sends", "[http]") {
  TestServer server;
  RawConnection conn(server.path);
  conn.send("PUT /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  RawResponse response = conn.read_response();
  CHECK(response.status == 204);
  CHECK(response.body.empty());
  CHECK_THAT(response.head, Catch::Contains("Server: Nydus API"));
  CHECK_THAT(response.head, !Catch::Contains("Content-Length"));

  conn.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  response = conn.read_response();
  CHECK(response.status == 200);
  CHECK_THAT(response.head, Catch::Contains("Server: Nydus API"));
  CHECK_THAT(response.head, Catch::Contains("Content-Type: application/json"));

  HttpClient client(server.path);
  auto via_client = client.request("PUT", "/empty");
  REQUIRE(via_client.ok());
  CHECK(via_client->status == 204);
  CHECK(via_client->body.empty());
  auto json_result = client.request_json("PUT", "/empty");
  REQUIRE(json_result.ok());
  CHECK(json_result->is_null());
}

TEST_CASE("error statuses carry a JSON {code, message} body", "[http]") {
  TestServer server;
  HttpClient client(server.path);

  auto missing = client.request("GET", "/nope");
  REQUIRE(missing.ok());
  CHECK(missing->status == 404);
  json body = body_json(*missing);
  CHECK(body["code"] == "NotFound");
  CHECK(body["message"].is_string());

  auto wrong_method = client.request("PATCH", "/echo");
  REQUIRE(wrong_method.ok());
  CHECK(wrong_method->status == 405);
  CHECK(body_json(*wrong_method)["code"].is_string());

  auto malformed = client.request("POST", "/json", "{not json");
  REQUIRE(malformed.ok());
  CHECK(malformed->status == 400);
  CHECK(body_json(*malformed)["code"] == "InvalidArgument");
  CHECK_THAT(body_json(*malformed)["message"].get<std::string>(), Catch::Contains("parse error"));

  auto thrown = client.request("GET", "/throw");
  REQUIRE(thrown.ok());
  CHECK(thrown->status == 500);
  CHECK(body_json(*thrown)["code"] == "Internal");

  // The server survived all of the above on the same connection.
  auto ok = client.request_json("POST", "/json", json{{"a", 1}});
  REQUIRE(ok.ok());
  CHECK((*ok)["got"]["a"] == 1);
  CHECK(server.server.stats().connections_accepted == 1);

  // request_json turns an error status into an Error of the sent kind.
  auto as_error = client.request_json("GET", "/nope");
  REQUIRE_FALSE(as_error.ok());
  CHECK(as_error.error().kind() == ErrorKind::kNotFound);
  CHECK_THAT(as_error.error().message(), Catch::Contains("HTTP 404"));
}

TEST_CASE("wrong-method status is configurable", "[http]") {
  TestServer server({}, 1, make_router(400));
  HttpClient client(server.path);
  auto response = client.request("GET", "/empty");
  REQUIRE(response.ok());
  CHECK(response->status == 400);
}

TEST_CASE("an oversized body gets 413 and the connection closes", "[http]") {
  SECTION("small limit, raw connection") {
    HttpServerOptions options;
    options.body_limit = 1024;
    TestServer server(options);
    RawConnection conn(server.path);
    conn.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n");
    RawResponse response = conn.read_response();
    CHECK(response.status == 413);
    CHECK(json::parse(response.body)["code"] == "TooLarge");
    CHECK(conn.sees_hangup());
  }
  SECTION("default 1 MiB limit, the client still reports the early answer") {
    TestServer server;
    HttpClient client(server.path);
    auto response = client.request("POST", "/echo", std::string(2 * 1024 * 1024, 'x'));
    REQUIRE(response.ok());
    CHECK(response->status == 413);
    // A body at the limit passes, on a new connection.
    auto at_limit = client.request("POST", "/echo", std::string(1024 * 1024, 'y'));
    REQUIRE(at_limit.ok());
    CHECK(at_limit->status == 200);
  }
}

TEST_CASE("oversized headers get 431, garbage gets 400", "[http]") {
  HttpServerOptions options;
  options.header_limit = 1024;
  TestServer server(options);

  RawConnection big(server.path);
  big.send("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2048, 'a') + "\r\n\r\n");
  CHECK(big.read_response().status == 431);
  CHECK(big.sees_hangup());

  RawConnection garbage(server.path);
  garbage.send("NOT HTTP AT ALL\r\n\r\n");
  CHECK(garbage.read_response().status == 400);
  CHECK(garbage.sees_hangup());
}

TEST_CASE("keep-alive: many requests on one connection", "[http]") {
  TestServer server;
  HttpClient client(server.path);
  for (int i = 0; i < 20; ++i) {
    auto response = client.request("GET", "/echo?i=" + std::to_string(i));
    REQUIRE(response.ok());
    CHECK(body_json(*response)["query"]["i"] == std::to_string(i));
  }
  auto stats = server.server.stats();
  CHECK(stats.connections_accepted == 1);
  CHECK(stats.requests_handled == 20);

  // Pipelined requests in one write are answered in order.
  RawConnection conn(server.path);
  conn.send(
      "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(json::parse(conn.read_response().body)["query"]["n"] == "1");
  CHECK(json::parse(conn.read_response().body)["query"]["n"] == "2");

  // HTTP/1.0 without keep-alive is answered, then closed.
  RawConnection old(server.path);
  old.send("GET /echo HTTP/1.0\r\n\r\n");
  CHECK(old.read_response().status == 200);
  CHECK(old.sees_hangup());
}

TEST_CASE("Expect: 100-continue is honoured", "[http]") {
  TestServer server;
  RawConnection conn(server.path);
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  CHECK(conn.read_response().status == 100);
  conn.send("hello");
  RawResponse response = conn.read_response();
  CHECK(response.status == 200);
  CHECK(json::parse(response.body)["body"] == "hello");
}

TEST_CASE("16 concurrent clients get their own answers", "[http]") {
  TestServer server({}, 4);
  constexpr int kClients = 16;
  constexpr int kRequests = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpClient client(server.path);
      for (int i = 0; i < kRequests; ++i) {
        std::string id = std::to_string(c) + "-" + std::to_string(i);
        auto response = client.request("POST", "/echo?id=" + id, id);
        if (!response.ok() || response->status != 200) {
          ++failures;
          continue;
        }
        json got = json::parse(response->body);
        if (got["query"]["id"] != id || got["body"] != id) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  auto stats = server.server.stats();
  CHECK(stats.connections_accepted == kClients);
  CHECK(stats.requests_handled == kClients * kRequests);
}

TEST_CASE("one HttpClient shared by threads", "[http]") {
  TestServer server({}, 2);
  HttpClient client(server.path);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string id = std::to_string(t * 1000 + i);
        auto response = client.request_json("GET", "/echo?id=" + id);
        if (!response.ok() || (*response)["query"]["id"] != id) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(server.server.stats().connections_accepted == 1);
}

TEST_CASE("an idle connection is never closed by the server", "[http][slow]") {
  // A short message timeout proves that idleness is not a partial message.
  HttpServerOptions options;
  options.message_timeout = 500ms;
  TestServer server(options);
  RawConnection conn(server.path);
  conn.send("GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(conn.read_response().status == 200);

  // Idle for 5 s: no readable data, no hang-up.
  CHECK(conn.wait_events(5s) == 0);

  conn.send("GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  RawResponse response = conn.read_response();
  CHECK(response.status == 200);
  CHECK(json::parse(response.body)["query"]["n"] == "2");
  CHECK(server.server.stats().connections_accepted == 1);
}

TEST_CASE("a partial request is bounded by the message timeout", "[http]") {
  HttpServerOptions options;
  options.message_timeout = 300ms;
  TestServer server(options);
  RawConnection conn(server.path);
  conn.send("GET /echo HTTP/1.1\r\nHost: x\r\n");  // no blank line: never completes
  CHECK(conn.sees_hangup());
  // Other connections are unaffected.
  HttpClient client(server.path);
  auto response = client.request("GET", "/echo");
  REQUIRE(response.ok());
  CHECK(response->status == 200);
}

TEST_CASE("stopping the server hangs up a held idle connection", "[http]") {
  TestServer server;
  RawConnection conn(server.path);
  conn.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(conn.read_response().status == 200);
  RawConnection never_used(server.path);

  server.server.stop();
  CHECK(conn.sees_hangup());
  CHECK(never_used.sees_hangup());
  CHECK(server.server.stats().open_connections == 0);
  // The socket file stays (crash detection relies on it) but refuses connections.
  CHECK(std::filesystem::exists(server.path));
  HttpClient client(server.path);
  auto refused = client.request("GET", "/echo");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind() == ErrorKind::kNotReady);
}

TEST_CASE("HttpServer on a caller's io_context", "[http]") {
  TempDir dir("nydus-http");
  std::string path = (dir / "api.sock").string();
  boost::asio::io_context io;
  HttpServer server(io, path, make_router());
  REQUIRE(server.start().ok());
  CHECK(server.start().error().kind() == ErrorKind::kFailedPrecondition);
  std::thread runner([&] { io.run(); });

  RawConnection held(path);
  HttpClient client(path);
  REQUIRE(client.request("GET", "/echo").ok());
  server.stop();
  CHECK(held.sees_hangup());
  // With the listener and every connection closed, run() runs out of work.
  runner.join();
}

TEST_CASE("the socket file: parent created, stale file replaced, mode applied", "[http]") {
  TempDir dir("nydus-http");
  std::string path = (dir / "nested" / "deeper" / "api.sock").string();
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "stale";

  HttpServerOptions options;
  options.socket_mode = 0660;
  HttpServerThread server(path, make_router(), options);
  REQUIRE(server.start().ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0660);

  std::string default_path = (dir / "fresh" / "api.sock").string();
  HttpServerThread default_mode(default_path, make_router());
  REQUIRE(default_mode.start().ok());
  REQUIRE(::stat(default_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);

  HttpServerThread too_long(std::string(200, 'x'), make_router());
  CHECK(too_long.start().error().kind() == ErrorKind::kInvalidArgument);
}

TEST_CASE("client errors: no server, bad input, timeout", "[http]") {
  TempDir dir("nydus-http");
  std::string path = (dir / "missing.sock").string();
  HttpClient client(path);
  auto missing = client.request("GET", "/echo");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotReady);
  CHECK_THAT(missing.error().message(), Catch::Contains(path));

  CHECK(client.request("GET", "no-slash").error().kind() == ErrorKind::kInvalidArgument);
  CHECK(client.request("GET", "/a b").error().kind() == ErrorKind::kInvalidArgument);
  CHECK(client.request("BREW", "/").error().kind() == ErrorKind::kInvalidArgument);

  // A handler that blocks until released: the client gives up at its deadline
  // and its next request works on a fresh connection.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  Router router = make_router();
  router.add("GET", "/block", [released](const HttpRequest&) {
    released.wait_for(kEventDeadline);
    return nydus::no_content();
  });
  TestServer server({}, 1, std::move(router));
  HttpClient slow(server.path);
  auto start = std::chrono::steady_clock::now();
  auto timed_out = slow.request("GET", "/block", {}, 200ms);
  REQUIRE_FALSE(timed_out.ok());
  CHECK(timed_out.error().kind() == ErrorKind::kTimeout);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  release.set_value();
  auto after = slow.request("GET", "/echo");
  REQUIRE(after.ok());
  CHECK(after->status == 200);
}

TEST_CASE("a client reconnects transparently when the server restarts", "[http]") {
  TempDir dir("nydus-http");
  std::string path = (dir / "api.sock").string();
  HttpClient client(path);
  {
    HttpServerThread first(path, make_router());
    REQUIRE(first.start().ok());
    REQUIRE(client.request("GET", "/echo").ok());
  }
  HttpServerThread second(path, make_router());
  REQUIRE(second.start().ok());
  auto response = client.request("GET", "/echo?after=restart");
  REQUIRE(response.ok());
  CHECK(body_json(*response)["query"]["after"] == "restart");
  CHECK(second.stats().connections_accepted == 1);
}
