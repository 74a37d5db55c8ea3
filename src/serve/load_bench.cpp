#include "serve/load_bench.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/json_text.h"
#include "core/process_stats.h"

namespace condense {

using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(clk::now().time_since_epoch()).count(); }

// ---- in-process ----

class TimingSink : public RequestSink {
 public:
  explicit TimingSink(double start) : start_(start) {}
  void on_token(const TokenOut&, const std::string&) override {
    const double t = now_s();
    std::lock_guard<std::mutex> lk(mu_);
    if (first_ < 0) first_ = t;
    else rec.itls.push_back(t - last_);
    last_ = t;
  }
  void on_finish(const std::string&, FinishReason why, int prompt_tokens, int completion_tokens, const std::string& error) override {
    std::lock_guard<std::mutex> lk(mu_);
    rec.success = (why == FinishReason::Stop || why == FinishReason::Length) && first_ >= 0;
    if (!rec.success) rec.error = error.empty() ? std::string(finish_reason_name(why)) + (first_ < 0 ? " before any token" : "") : error;
    rec.input_len = prompt_tokens;
    rec.output_len = completion_tokens;
    rec.ttft = first_ >= 0 ? first_ - start_ : 0;
    rec.latency = first_ >= 0 ? last_ - start_ : now_s() - start_;
    done_ = true;
    cv_.notify_all();
  }
  RequestRecord wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    return rec;
  }
  RequestRecord rec;

 private:
  double start_, first_ = -1, last_ = 0;
  bool done_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
};

class EngineTarget : public LoadTarget {
 public:
  explicit EngineTarget(Scheduler& s) : sched_(s) {}
  RequestRecord run(const LoadPrompt& p, int max_tokens, double temperature, uint64_t seed, bool ignore_eos, double t0) override {
    GenRequest r;
    r.prompt = p.tokens;
    r.max_tokens = max_tokens;
    r.sampling.temperature = float(temperature);
    r.sampling.seed = seed;
    r.ignore_eos = ignore_eos;
    const double start = now_s();
    auto sink = std::make_shared<TimingSink>(start);
    RequestRecord rec;
    rec.start = start - t0;
    try {
      if (!sched_.submit(std::move(r), sink)) {
        rec.error = "queue full (503)";
        return rec;
      }
    } catch (const Error& e) {
      rec.error = e.what();
      return rec;
    }
    RequestRecord got = sink->wait();
    got.start = rec.start;
    return got;
  }
  json describe() const override {
    return {{"kind", "engine"}, {"kv_blocks", sched_.engine().kv().total_blocks()}, {"kv_dtype", kv_code_name(sched_.engine().kv().code())}};
  }
  json spec_counters() override {
    const SchedulerStats st = sched_.stats();
    if (st.spec_accepted_per_pos.empty()) return nullptr;
    return {{"drafts", st.spec_drafts}, {"draft_tokens", st.spec_draft_tokens}, {"accepted_tokens", st.spec_accepted_tokens},
            {"accepted_per_pos", st.spec_accepted_per_pos}};
  }

 private:
  Scheduler& sched_;
};

// ---- HTTP ----

struct Url {
  std::string host, base;
  int port = 80;
};

Url parse_url(const std::string& url) {
  std::string rest = url;
  if (rest.rfind("https://", 0) == 0) fail("--server", "https is not supported: use the server's plain http address");
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  Url u;
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  u.base = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.base.empty() && u.base.back() == '/') u.base.pop_back();
  if (u.base.empty()) u.base = "/v1";
  const size_t colon = hostport.rfind(':');
  u.host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      u.port = std::stoi(hostport.substr(colon + 1));
    } catch (const std::exception&) {
      fail("--server", "'" + url + "': the port is not a number");
    }
  }
  if (u.host.empty() || u.port <= 0 || u.port > 65535) fail("--server", "'" + url + "' is not http://HOST:PORT[/v1]");
  return u;
}

class HttpTarget : public LoadTarget {
 public:
  HttpTarget(const std::string& url, std::string model, std::string key) : url_(url), u_(parse_url(url)), model_(std::move(model)), key_(std::move(key)) {
    httplib::Client c(u_.host, u_.port);
    c.set_connection_timeout(10, 0);
    auto r = c.Get((u_.base + "/models").c_str(), headers());
    if (!r) fail("--server", "cannot reach " + url + ": " + httplib::to_string(r.error()));
    if (r->status != 200) fail("--server", url + u_.base + "/models answered " + std::to_string(r->status) + ": " + r->body.substr(0, 300));
    const json j = try_parse_json(r->body);
    if (model_.empty()) {
      if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() || !j["data"][0].contains("id")) {
        fail("--server", url + "/models did not list a model; name one with --served-model-name");
      }
      model_ = j["data"][0]["id"].get<std::string>();
    }
  }
  httplib::Headers headers() const {
    httplib::Headers h;
    if (!key_.empty()) h.emplace("Authorization", "Bearer " + key_);
    return h;
  }
  RequestRecord run(const LoadPrompt& p, int max_tokens, double temperature, uint64_t seed, bool ignore_eos, double t0) override {
    json body = {{"model", model_}, {"max_tokens", max_tokens}, {"temperature", temperature}, {"stream", true},
                 {"stream_options", {{"include_usage", true}}}, {"seed", seed}};
    if (ignore_eos) body["ignore_eos"] = true;
    if (p.text.empty()) body["prompt"] = p.tokens;
    else body["prompt"] = p.text;
    RequestRecord rec;
    rec.input_len = p.input_len;
    httplib::Client c(u_.host, u_.port);
    c.set_connection_timeout(60, 0);
    c.set_read_timeout(3600, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = u_.base + "/completions";
    req.headers = headers();
    req.set_header("Content-Type", "application/json");
    req.body = body.dump();
    std::string buf, err_body;
    double first = -1, last = 0;
    int chunks = 0, usage_tokens = -1;
    bool done = false;
    const double start = now_s();
    rec.start = start - t0;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      const double t = now_s();
      buf.append(data, n);
      size_t e;
      while ((e = buf.find("\n\n")) != std::string::npos) {
        const std::string ev = buf.substr(0, e);
        buf.erase(0, e + 2);
        for (size_t ls = 0; ls < ev.size();) {  // an event may hold several lines
          size_t le = ev.find('\n', ls);
          if (le == std::string::npos) le = ev.size();
          std::string line = ev.substr(ls, le - ls);
          ls = le + 1;
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.rfind("data:", 0) != 0) continue;
          std::string d = line.substr(5);
          if (!d.empty() && d[0] == ' ') d.erase(0, 1);
          if (d == "[DONE]") {
            done = true;
            continue;
          }
          // Token chunks are recognised without parsing them (the client
          // shares the machine with the server it measures); usage and error
          // chunks are parsed.
          const bool maybe_usage = d.find("\"usage\":{") != std::string::npos, maybe_error = d.find("\"error\"") != std::string::npos;
          const size_t ch = d.find("\"choices\":[");
          if (!maybe_usage && !maybe_error && ch != std::string::npos && d.compare(ch + 11, 1, "]") != 0) {
            if (first < 0) first = t;
            else rec.itls.push_back(t - last);
            last = t;
            ++chunks;
            continue;
          }
          const json j = try_parse_json(d);
          if (j.is_discarded()) continue;
          if (j.contains("error")) {
            err_body = d;
            continue;
          }
          if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
            if (first < 0) first = t;
            else rec.itls.push_back(t - last);
            last = t;
            ++chunks;
          }
          if (j.contains("usage") && j["usage"].is_object()) {
            usage_tokens = j["usage"].value("completion_tokens", -1);
            if (j["usage"].contains("prompt_tokens")) rec.input_len = j["usage"]["prompt_tokens"].get<int>();
          }
        }
      }
      return true;
    };
    auto res = c.send(req);
    if (!res) {
      rec.error = "connection: " + httplib::to_string(res.error());
      return rec;
    }
    if (res->status != 200) {
      rec.error = "HTTP " + std::to_string(res->status) + ": " + (buf.size() > 300 ? buf.substr(0, 300) : buf);
      return rec;
    }
    if (!err_body.empty()) {
      rec.error = "stream error: " + err_body.substr(0, 300);
      return rec;
    }
    if (first < 0) {
      rec.error = "no tokens in the stream";
      return rec;
    }
    rec.success = true;
    rec.ttft = first - start;
    rec.latency = last - start;
    // usage.completion_tokens when the server sends it; else one token per chunk (vLLM re-tokenizes the text instead).
    rec.output_len = usage_tokens >= 0 ? usage_tokens : chunks;
    return rec;
  }
  json describe() const override { return {{"kind", "server"}, {"url", url_}, {"model", model_}}; }
  // vLLM's counters (vllm:spec_decode_*) or condense's (condense:spec_decode_*).
  json spec_counters() override {
    const std::string body = metrics_text();
    for (const std::string prefix : {"vllm:", "condense:"}) {
      auto value = [&](const std::string& name, double* v) {
        const std::string key = "\n" + prefix + name + " ";
        const size_t p = body.find(key);
        if (p == std::string::npos) return false;
        *v = std::stod(body.substr(p + key.size()));
        return true;
      };
      double drafts = 0, tokens = 0, accepted = 0;
      if (!value("spec_decode_num_drafts_total", &drafts) || !value("spec_decode_num_draft_tokens_total", &tokens) ||
          !value("spec_decode_num_accepted_tokens_total", &accepted)) {
        continue;
      }
      std::vector<double> per_pos;
      for (int i = 0;; ++i) {
        const std::string key = prefix + "spec_decode_num_accepted_tokens_per_pos_total{position=\"" + std::to_string(i) + "\"} ";
        const size_t p = body.find(key);
        if (p == std::string::npos) break;
        per_pos.push_back(std::stod(body.substr(p + key.size())));
      }
      return {{"drafts", drafts}, {"draft_tokens", tokens}, {"accepted_tokens", accepted}, {"accepted_per_pos", per_pos}};
    }
    return nullptr;
  }
  json after_run() override {
    // condense's /metrics carries the server's memory; other servers may not.
    const std::string body = metrics_text();
    json out = json::object();
    for (const char* name : {"process_resident_memory_bytes", "condense:process_peak_rss_bytes", "condense:num_preemptions_total"}) {
      const std::string key = std::string("\n") + name + " ";
      const size_t p = body.find(key);
      if (p != std::string::npos) out[name] = std::stod(body.substr(p + key.size()));
    }
    return out.empty() ? json(nullptr) : out;
  }

 private:
  // GET /metrics (Prometheus text; "" when the server has none), with a
  // newline in front so every metric name can be found as "\nname ".
  std::string metrics_text() {
    httplib::Client c(u_.host, u_.port);
    c.set_connection_timeout(5, 0);
    const std::string root = u_.base.size() >= 3 && u_.base.substr(u_.base.size() - 3) == "/v1" ? u_.base.substr(0, u_.base.size() - 3) : "";
    auto r = c.Get((root + "/metrics").c_str(), headers());
    if (!r || r->status != 200) return "";
    return "\n" + r->body;
  }

  std::string url_;
  Url u_;
  std::string model_, key_;
};

}  // namespace

std::unique_ptr<LoadTarget> http_target(const std::string& url, const std::string& model, const std::string& api_key) {
  return std::make_unique<HttpTarget>(url, model, api_key);
}

std::unique_ptr<LoadTarget> engine_target(Scheduler& sched) { return std::make_unique<EngineTarget>(sched); }

std::vector<LoadPrompt> synthetic_prompts(int n, int input_len, int bos, int lo, int hi, uint64_t seed) {
  if (input_len < 1) fail("--input-len", "must be at least 1");
  if (hi <= lo) fail("synthetic prompts", "an empty id range");
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 17);
  std::vector<LoadPrompt> out(static_cast<size_t>(n));
  for (auto& p : out) {
    p.tokens.push_back(bos);
    while (int(p.tokens.size()) < input_len) p.tokens.push_back(lo + int(rng() % uint64_t(hi - lo)));
    p.input_len = input_len;
  }
  return out;
}

std::vector<double> arrival_times(int n, double rate, double burstiness, uint64_t seed) {
  std::vector<double> t(static_cast<size_t>(n), 0.0);
  if (!std::isfinite(rate) || n == 0) return t;
  if (!(rate > 0)) fail("--request-rate", "must be > 0 (or inf)");
  if (!(burstiness > 0)) fail("--burstiness", "must be > 0");
  std::mt19937_64 rng(seed + 1);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  double cum = 0;
  for (int i = 0; i < n; ++i) {
    cum += gap(rng);
    t[size_t(i)] = cum;
  }
  const double scale = (double(n) / rate) / cum;
  for (double& x : t) x *= scale;
  return t;
}

json run_load(LoadTarget& target, const std::vector<LoadPrompt>& prompts, const LoadTestOptions& opt, const std::function<void(int, int)>& progress) {
  if (prompts.empty()) fail("bench", "no prompts");
  if (opt.num_prompts < 1) fail("--num-prompts", "must be at least 1");
  for (int w = 0; w < opt.warmups; ++w) {
    const RequestRecord r = target.run(prompts[size_t(w) % prompts.size()], opt.output_len, opt.temperature, opt.seed + 1000000 + uint64_t(w),
                                       opt.ignore_eos, now_s());
    if (!r.success) fail("bench", "the warm-up request failed: " + r.error);
  }
  const std::vector<double> arrivals = arrival_times(opt.num_prompts, opt.request_rate, opt.burstiness, opt.seed);
  std::vector<RequestRecord> records(static_cast<size_t>(opt.num_prompts));
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  threads.reserve(records.size());
  reset_peak_rss();
  const json spec_before = target.spec_counters();
  const double t0 = now_s();
  int last_progress = -1;
  auto report = [&] {
    if (progress && done.load() != last_progress) progress(last_progress = done.load(), opt.num_prompts);
  };
  for (int i = 0; i < opt.num_prompts; ++i) {
    // Wait for the arrival time (and a free slot under --max-concurrency), reporting progress meanwhile.
    for (;;) {
      const double wait = t0 + arrivals[size_t(i)] - now_s();
      std::unique_lock<std::mutex> lk(mu);
      const bool slot = opt.max_concurrency <= 0 || in_flight < opt.max_concurrency;
      if (wait <= 0 && slot) {
        ++in_flight;
        break;
      }
      cv.wait_for(lk, std::chrono::duration<double>(std::min(0.2, wait > 0 ? wait : 0.2)));
      lk.unlock();
      report();
    }
    threads.emplace_back([&, i] {
      RequestRecord r = target.run(prompts[size_t(i) % prompts.size()], opt.output_len, opt.temperature, opt.seed + uint64_t(i), opt.ignore_eos, t0);
      {
        std::lock_guard<std::mutex> lk(mu);
        records[size_t(i)] = std::move(r);
        --in_flight;
      }
      ++done;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lk(mu);
    while (done.load() < opt.num_prompts) {
      cv.wait_for(lk, std::chrono::milliseconds(200));
      lk.unlock();
      report();
      lk.lock();
    }
  }
  const double duration = now_s() - t0;
  for (auto& t : threads) t.join();
  report();
  json out = summarize_load(records, duration, opt.percentiles, opt.slo);
  out["request_rate"] = std::isfinite(opt.request_rate) ? json(opt.request_rate) : json("inf");
  out["burstiness"] = opt.burstiness;
  out["max_concurrency"] = opt.max_concurrency > 0 ? json(opt.max_concurrency) : json(nullptr);
  out["num_prompts"] = opt.num_prompts;
  out["client_peak_rss_bytes"] = peak_rss_bytes();
  if (opt.price_per_hour > 0 && out["total_output_tokens"].get<int64_t>() > 0) {
    out["dollars_per_million_output_tokens"] = opt.price_per_hour / 3600.0 * duration / out["total_output_tokens"].get<double>() * 1e6;
  }
  json errors = json::array();
  std::map<std::string, int> counts;
  for (const RequestRecord& r : records) {
    if (!r.success) ++counts[r.error.substr(0, 120)];
  }
  for (auto& [e, n] : counts) errors.push_back({{"error", e}, {"count", n}});
  out["errors"] = errors;
  json detail = {{"input_lens", json::array()}, {"output_lens", json::array()}, {"ttfts", json::array()}, {"itls", json::array()},
                 {"latencies", json::array()}, {"start_times", json::array()}, {"errors", json::array()}};
  for (const RequestRecord& r : records) {
    detail["input_lens"].push_back(r.input_len);
    detail["output_lens"].push_back(r.output_len);
    detail["ttfts"].push_back(r.ttft);
    detail["itls"].push_back(r.itls);
    detail["latencies"].push_back(r.latency);
    detail["start_times"].push_back(r.start);
    detail["errors"].push_back(r.error);
  }
  out["detail"] = detail;
  if (json a = target.after_run(); !a.is_null()) out["server"] = a;
  if (const json after = target.spec_counters(); !after.is_null() && !spec_before.is_null()) {
    // vLLM's bench: acceptance_rate = accepted / draft tokens x 100, acceptance_length = 1 + accepted / drafts,
    // per-position rate = accepted at that position / drafts
    const double drafts = after["drafts"].get<double>() - spec_before["drafts"].get<double>();
    const double tokens = after["draft_tokens"].get<double>() - spec_before["draft_tokens"].get<double>();
    const double accepted = after["accepted_tokens"].get<double>() - spec_before["accepted_tokens"].get<double>();
    json per_pos = json::array();
    const json& a = after["accepted_per_pos"];
    const json& b = spec_before["accepted_per_pos"];
    for (size_t i = 0; i < a.size(); ++i) {
      const double d = a[i].get<double>() - (i < b.size() ? b[i].get<double>() : 0.0);
      per_pos.push_back(drafts > 0 ? d / drafts : 0.0);
    }
    out["spec_decode_num_drafts"] = drafts;
    out["spec_decode_draft_tokens"] = tokens;
    out["spec_decode_accepted_tokens"] = accepted;
    out["spec_decode_acceptance_rate"] = tokens > 0 ? 100.0 * accepted / tokens : 0.0;
    out["spec_decode_acceptance_length"] = drafts > 0 ? 1.0 + accepted / drafts : 0.0;
    out["spec_decode_per_position_acceptance_rates"] = per_pos;
  }
  return out;
}

}  // namespace condense
