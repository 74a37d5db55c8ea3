#include "serve/http_server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>

#include "core/error.h"
#include "serve/worker_pool.h"

namespace condense {
namespace {

using json = nlohmann::json;
using clk = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

double seconds(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type, const std::string& param = "",
                const std::string& code = "") {
  res.status = status;
  res.set_content(dump(error_body(status, message, type, param, code)), "application/json");
}

// What the scheduler thread hands to a request's HTTP thread.
struct Event {
  int index = 0;                     // the choice (one per prompt of the request)
  bool end = false;
  bool prompt = false;               // the prompt's logprobs (echo)
  std::vector<TokenOut> prompt_lp;
  TokenOut token;
  std::string text;
  FinishReason why = FinishReason::Stop;
  int prompt_tokens = 0, completion_tokens = 0;
  std::string error;
};

// One request's events, from all its choices, in arrival order; and whether
// its client went away (every choice is then cancelled).
class EventQueue {
 public:
  // Moves every event that arrives within `s` seconds into `out`; false when
  // none did. The scheduler wakes the consumer per token, unless tokens come
  // faster than `interval` (the last two takes were closer than that, or one
  // found several tokens waiting): then the consumer polls every interval and
  // is not woken, since waking a thread costs a futex call, a large share of a
  // small model's token time. A poll that finds nothing returns to being
  // woken (a slow model, or the stream paused), so many slow streams do not poll.
  bool wait(std::deque<Event>& out, double s) {
    std::unique_lock<std::mutex> lk(mu_);
    if (q_.empty() && polling_) {
      cv_.wait_for(lk, interval_);
      if (q_.empty()) polling_ = false;
    }
    if (q_.empty() && !cv_.wait_for(lk, std::chrono::duration<double>(s), [&] { return !q_.empty(); })) return false;
    const size_t n = q_.size();
    while (!q_.empty()) {
      out.push_back(std::move(q_.front()));
      q_.pop_front();
    }
    const auto now = clk::now();
    polling_ = interval_.count() > 0 && (n >= 2 || now - last_take_ < interval_);
    last_take_ = now;
    return true;
  }
  void push(Event e) {
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu_);
      wake = e.end || !polling_;
      q_.push_back(std::move(e));
    }
    if (wake) cv_.notify_one();
  }
  void set_interval(double seconds) { interval_ = std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(seconds)); }
  bool cancelled() const { return cancelled_.load(); }
  void cancel() { cancelled_.store(true); }

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> q_;                    // guarded by mu_, as are:
  bool polling_ = false;                   // the consumer wakes itself each interval
  clk::duration interval_{0};
  clk::time_point last_take_;              // when the consumer last took events
};

// One choice's sink: its timing for the metrics, its events into the request's queue.
class StreamSink : public RequestSink {
 public:
  StreamSink(ServerMetrics& m, std::shared_ptr<EventQueue> q, int index) : metrics_(m), q_(std::move(q)), index_(index), arrival_(clk::now()) {}

  void on_token(const TokenOut& t, const std::string& text) override {
    const auto now = clk::now();
    if (!got_first_) {
      got_first_ = true;
      ttft_ = seconds(arrival_, now);
      metrics_.first_token(ttft_);
    } else {
      metrics_.inter_token(seconds(last_, now));
    }
    last_ = now;
    Event e;
    e.index = index_;
    e.token = t;
    e.text = text;
    q_->push(std::move(e));
  }
  void on_prompt_logprobs(const std::vector<TokenOut>& prompt) override {
    Event e;
    e.index = index_;
    e.prompt = true;
    e.prompt_lp = prompt;
    q_->push(std::move(e));
  }
  void on_finish(const std::string& text, FinishReason why, int prompt_tokens, int completion_tokens, const std::string& error) override {
    metrics_.finished(finish_reason_name(why), seconds(arrival_, got_first_ ? last_ : clk::now()), got_first_ ? ttft_ : -1.0, prompt_tokens,
                      completion_tokens);
    Event e;
    e.index = index_;
    e.end = true;
    e.text = text;
    e.why = why;
    e.prompt_tokens = prompt_tokens;
    e.completion_tokens = completion_tokens;
    e.error = error;
    q_->push(std::move(e));
  }
  bool cancelled() const override { return q_->cancelled(); }

 private:
  ServerMetrics& metrics_;
  std::shared_ptr<EventQueue> q_;
  int index_;
  clk::time_point arrival_, last_;
  bool got_first_ = false;  // scheduler thread only
  double ttft_ = 0;
};

// cpp-httplib's task queue interface over the on-demand WorkerPool.
class PoolQueue : public httplib::TaskQueue {
 public:
  explicit PoolQueue(int n) : pool_(n) {}
  void enqueue(std::function<void()> fn) override { pool_.enqueue(std::move(fn)); }
  void shutdown() override { pool_.shutdown(); }

 private:
  WorkerPool pool_;
};

struct RequestState {
  ParsedRequest req;
  std::shared_ptr<EventQueue> queue;
  std::vector<ParsedRequest> choices;                  // per prompt: the request with that prompt
  std::vector<std::unique_ptr<ResponseWriter>> writers;  // per choice, sharing one id
  int ended = 0;
  int prompt_tokens = 0, completion_tokens = 0;           // summed over the choices
  std::vector<json> finals;                               // non-streaming: each choice's response
  clk::time_point last_write = clk::now();  // non-streaming: when the last keep-alive space went out
};

json failure_body(const Event& e) {
  if (e.why == FinishReason::Cancelled) {
    return error_body(503, "the request was cancelled: " + (e.error.empty() ? std::string("cancelled") : e.error), "server_error", "", "cancelled");
  }
  return error_body(500, "the engine failed: " + e.error, "server_error", "", "engine_error");
}

const char* status_message(int status) {
  switch (status) {
    case 400: return "Bad request";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 408: return "Request timeout";
    case 413: return "The request body is too large";
    case 414: return "The request URI is too long";
    case 415: return "Unsupported media type";
    default: return status < 500 ? "Bad request" : "Internal server error";
  }
}

}  // namespace

HttpServer::HttpServer(Scheduler& sched, const ServedModel& model, const HttpOptions& opt, const SchedulerOptions& sched_opt)
    : sched_(sched), model_(model), opt_(opt), svr_(std::make_unique<httplib::Server>()) {
  threads_ = opt_.http_threads > 0 ? opt_.http_threads : std::min(4096, sched_opt.max_queue + sched_opt.max_seqs + 32);
  const int n = threads_;
  svr_->new_task_queue = [n] { return new PoolQueue(n); };
  svr_->set_payload_max_length(opt_.max_body_bytes);
  svr_->set_read_timeout(opt_.read_timeout_s, 0);
  svr_->set_write_timeout(opt_.read_timeout_s, 0);
  svr_->set_keep_alive_timeout(5);
  routes();
}

HttpServer::~HttpServer() {
  if (svr_->is_running()) svr_->stop();
}

int HttpServer::bind() {
  // cpp-httplib 0.11 listens with a backlog of 5: a burst of clients then
  // overflows the accept queue and some connections fail. The socket is
  // captured here and listen() called again with a deep backlog after binding.
  int fd = -1;
  svr_->set_socket_options([&fd](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    fd = sock;
  });
  int port = opt_.port;
  if (port == 0) {
    port = svr_->bind_to_any_port(opt_.host);
    if (port < 0) fail("serve", "cannot bind to " + opt_.host + " (any port)");
  } else if (!svr_->bind_to_port(opt_.host, port)) {
    fail("serve", "cannot listen on " + opt_.host + ":" + std::to_string(port), "Is another server using the port? Pick another with --port");
  }
  if (fd >= 0) ::listen(fd, 4096);
  return port;
}

void HttpServer::listen() { svr_->listen_after_bind(); }

bool HttpServer::shutdown(double drain_s) {
  draining_.store(true);
  sched_.close();
  const bool drained = sched_.wait_idle(drain_s);
  svr_->stop();
  return drained;
}

void HttpServer::routes() {
  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (opt_.api_key.empty()) return true;
    const std::string h = req.get_header_value("Authorization");
    if (h.empty()) {
      send_error(res, 401, "You didn't provide an API key: send 'Authorization: Bearer KEY' (the server runs with --api-key).", "invalid_request_error",
                 "", "invalid_api_key");
      metrics_.rejected(401);
      return false;
    }
    if (h != "Bearer " + opt_.api_key) {
      send_error(res, 401, "Incorrect API key provided.", "invalid_request_error", "", "invalid_api_key");
      metrics_.rejected(401);
      return false;
    }
    return true;
  };

  svr_->set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg = status_message(res.status);
    if (res.status == 404) msg = "Not found: " + req.method + " " + req.path + " (routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics)";
    res.set_content(dump(error_body(res.status, msg, res.status >= 500 ? "server_error" : "invalid_request_error", "",
                                    res.status == 404 ? "not_found" : "")),
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error: " + what, "server_error");
  });

  // Browsers' pages (chat UIs) may call the API from another origin, as
  // vLLM and llama.cpp allow by default: every answer carries the CORS
  // headers, and preflight requests get them with 204.
  svr_->set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Access-Control-Allow-Origin", "*");
  });
  svr_->Options(R"(/.*)", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
    res.set_header("Access-Control-Max-Age", "86400");
    res.status = 204;
  });
  svr_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_.load()) {
      res.status = 503;
      res.set_content(R"({"status":"draining"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.prometheus(sched_.stats()), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto model_card = [this] {
    return json{{"id", model_.id},           {"object", "model"}, {"created", model_.created}, {"owned_by", "condense"},
                {"root", model_.root},       {"parent", nullptr}, {"max_model_len", model_.max_seq}};
  };
  svr_->Get("/v1/models", [this, authorized, model_card](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    res.set_content(dump({{"object", "list"}, {"data", json::array({model_card()})}}), "application/json");
  });
  svr_->Get(R"(/v1/models/(.+))", [this, authorized, model_card](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    if (req.matches[1] != model_.id) {
      send_error(res, 404, "The model '" + std::string(req.matches[1]) + "' does not exist.", "invalid_request_error", "model", "model_not_found");
      return;
    }
    res.set_content(dump(model_card()), "application/json");
  });

  auto completion = [this, authorized](const httplib::Request& req, httplib::Response& res, bool chat) {
    if (!authorized(req, res)) return;
    if (draining_.load()) {
      res.set_header("Retry-After", "5");
      send_error(res, 503, "The server is shutting down.", "server_error", "", "shutting_down");
      metrics_.rejected(503);
      return;
    }
    auto st = std::make_shared<RequestState>();
    try {
      st->req = parse_request(req.body, chat, model_);
    } catch (const ApiError& e) {
      metrics_.rejected(e.status);
      send_error(res, e.status, e.what(), e.type, e.param, e.code);
      return;
    }
    // One choice per prompt: each its own sequence, all into one queue.
    st->queue = std::make_shared<EventQueue>();
    st->queue->set_interval(opt_.stream_interval_s);
    // Choice i * n + k: prompt i, sample k (OpenAI's order); sample k's seed
    // follows from the request's, so a seeded request repeats as a whole.
    const size_t n = st->req.prompts.size() * size_t(st->req.n);
    std::string id;
    int64_t created = 0;
    for (size_t i = 0; i < n; ++i) {
      ParsedRequest c = st->req;
      const size_t p = i / size_t(st->req.n), k = i % size_t(st->req.n);
      c.gen.prompt = st->req.prompts[p];
      c.echo_text = st->req.echo_texts[p];
      c.gen.sampling.seed = st->req.gen.sampling.seed + uint64_t(k) * 0xD1B54A32D192ED03ull;
      c.index = int(i);
      st->choices.push_back(std::move(c));
    }
    for (size_t i = 0; i < n; ++i) {
      st->writers.push_back(std::make_unique<ResponseWriter>(st->choices[i], model_, *model_.tokenizer, id, created));
      if (i == 0) id = st->writers[0]->id(), created = st->writers[0]->created();
    }
    st->finals.resize(n);
    bool queued = true;
    try {
      for (size_t i = 0; i < n && queued; ++i) queued = sched_.submit(st->choices[i].gen, std::make_shared<StreamSink>(metrics_, st->queue, int(i)));
    } catch (const Error& e) {
      st->queue->cancel();
      metrics_.rejected(400);
      send_error(res, 400, e.what(), "invalid_request_error");
      return;
    }
    if (!queued) {
      st->queue->cancel();  // the choices already queued leave at the next step
      metrics_.rejected(503);
      res.set_header("Retry-After", "1");
      send_error(res, 503,
                 draining_.load() ? "The server is shutting down."
                                  : "The server is overloaded: its queue is full (" + std::to_string(sched_.stats().waiting) +
                                        " requests waiting; --max-queue). Retry later.",
                 "server_error", "", "server_overloaded");
      return;
    }
    if (st->req.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [st](size_t, httplib::DataSink& ds) {
            std::deque<Event> evs;
            if (!st->queue->wait(evs, 1.0)) {
              // Nothing for a second: an SSE comment, which clients skip, tells a live client from a gone one.
              if (!ds.write(": ping\n\n", 8)) {
                st->queue->cancel();
                return false;
              }
              return true;
            }
            std::string out;
            bool end = false;
            // Tokens of a choice that arrived together go out as one chunk
            // (their texts joined), unless each carries logprobs.
            std::string joined;
            const TokenOut* last_token = nullptr;
            int joined_index = -1;
            auto flush_joined = [&] {
              if (!last_token) return;
              for (const std::string& c : st->writers[size_t(joined_index)]->token_chunks(*last_token, joined)) out += "data: " + c + "\n\n";
              joined.clear();
              last_token = nullptr;
            };
            for (const auto& e : evs) {
              if (end) break;
              ResponseWriter& w = *st->writers[size_t(e.index)];
              if (e.prompt) {
                w.set_prompt_logprobs(e.prompt_lp);
                continue;
              }
              if (!e.end && !st->req.logprobs) {
                if (last_token && joined_index != e.index) flush_joined();
                joined += e.text;
                last_token = &e.token;
                joined_index = e.index;
                continue;
              }
              flush_joined();
              if (!e.end) {
                for (const std::string& c : w.token_chunks(e.token, e.text)) out += "data: " + c + "\n\n";
                continue;
              }
              if (e.why == FinishReason::Error || e.why == FinishReason::Cancelled) {
                out += "data: " + dump(failure_body(e)) + "\n\ndata: [DONE]\n\n";  // the SDK raises APIError on an "error" payload
                st->queue->cancel();
                end = true;
                break;
              }
              for (const std::string& c : w.final_chunks(e.text, e.why)) out += "data: " + c + "\n\n";
              st->prompt_tokens += e.prompt_tokens;
              st->completion_tokens += e.completion_tokens;
              if (++st->ended == int(st->writers.size())) {
                if (st->req.include_usage) out += "data: " + st->writers[0]->usage_chunk(st->prompt_tokens, st->completion_tokens) + "\n\n";
                out += "data: [DONE]\n\n";
                end = true;
              }
            }
            if (!end) flush_joined();
            if (!out.empty() && !ds.write(out.data(), out.size())) {
              st->queue->cancel();
              return false;
            }
            if (end) ds.done();
            return true;
          },
          [st](bool success) {
            if (!success) st->queue->cancel();
          });
    } else {
      // The status is sent with the first byte, so a JSON body is written only
      // at the end; while waiting, a space (JSON allows leading whitespace)
      // each second finds a client that went away.
      res.set_chunked_content_provider(
          "application/json",
          [st](size_t, httplib::DataSink& ds) {
            std::deque<Event> evs;
            const bool got = st->queue->wait(evs, 1.0);
            if (clk::now() - st->last_write > std::chrono::seconds(1)) {
              st->last_write = clk::now();
              if (!ds.write(" ", 1)) {
                st->queue->cancel();
                return false;
              }
            }
            if (!got) return true;
            for (const auto& e : evs) {
              ResponseWriter& w = *st->writers[size_t(e.index)];
              if (e.prompt) {
                w.set_prompt_logprobs(e.prompt_lp);
                continue;
              }
              if (!e.end) {
                w.add(e.token, e.text);
                continue;
              }
              std::string body;
              if (e.why == FinishReason::Error || e.why == FinishReason::Cancelled) {
                st->queue->cancel();
                body = dump(failure_body(e));
              } else {
                st->finals[size_t(e.index)] = w.response(e.text, e.why, e.prompt_tokens, e.completion_tokens);
                st->prompt_tokens += e.prompt_tokens;
                st->completion_tokens += e.completion_tokens;
                if (++st->ended < int(st->writers.size())) continue;
                // All choices done: one response, their choices in order, usage summed.
                json all = st->finals[0];
                all["choices"] = json::array();
                for (const json& f : st->finals) all["choices"].push_back(f["choices"][0]);
                all["usage"] = {{"prompt_tokens", st->prompt_tokens}, {"completion_tokens", st->completion_tokens},
                                {"total_tokens", st->prompt_tokens + st->completion_tokens}};
                body = dump(all);
              }
              if (!ds.write(body.data(), body.size())) {
                st->queue->cancel();
                return false;
              }
              ds.done();
              return true;
            }
            return true;
          },
          [st](bool success) {
            if (!success) st->queue->cancel();
          });
    }
  };
  svr_->Post("/v1/completions", [completion](const httplib::Request& req, httplib::Response& res) { completion(req, res, false); });
  svr_->Post("/v1/chat/completions", [completion](const httplib::Request& req, httplib::Response& res) { completion(req, res, true); });
}

}  // namespace condense
