// Continuous batching (iteration-level scheduling, as Orca and vLLM): one
// thread owns the Engine and loops; each engine step carries one decode token
// for every running sequence plus prefill chunks of waiting ones, under a
// per-step token budget. Requests join at the next step and leave the moment
// they finish, giving their KV blocks back. When a step needs more blocks than
// are free, the newest running sequence is preempted: its blocks are freed and
// it waits at the front of the queue to be recomputed (prompt and the tokens it
// had generated), so it resumes with the same state and the same output.
//
// A request reaches its caller through a RequestSink, called on the scheduler
// thread; a sink that reports cancelled() is dropped at the next step.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/engine.h"
#include "runtime/speculative.h"

namespace condense {

struct SamplingParams {
  float temperature = 1.f;
  float top_p = 1.f;
  int top_k = 0;          // 0: no limit
  uint64_t seed = 0;      // same seed, same tokens (whatever else is running)
  int logprobs = -1;      // -1: none; else the chosen token's and this many alternatives (<= 20)
};

struct GenRequest {
  std::vector<int> prompt;  // token ids, BOS first
  int max_tokens = 16;      // generated tokens at most (the context bounds it too); 0: the prompt only (with prompt_logprobs)
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the text)
  bool ignore_eos = false;        // BOS/EOS are generated like any token
  bool prompt_logprobs = false;   // also each prompt token's logprob given the ones before (and sampling.logprobs alternatives)
};

struct TokenLogprob {
  int token = 0;
  float logprob = 0;
};

struct TokenOut {
  int token = 0;
  std::string piece;  // this token's own text (raw; may be part of a character)
  float logprob = 0;  // under the model's distribution (before temperature)
  std::vector<TokenLogprob> top;
};

enum class FinishReason { Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // With GenRequest::prompt_logprobs, once the prompt is computed: an entry
  // per prompt token after the first (token i's logprob given tokens < i).
  virtual void on_prompt_logprobs(const std::vector<TokenOut>& prompt) {}
  // One generated token and the text it releases (complete UTF-8; possibly empty).
  virtual void on_token(const TokenOut& t, const std::string& text) = 0;
  // The end: the rest of the text, why, and the token counts.
  virtual void on_finish(const std::string& text, FinishReason why, int prompt_tokens, int completion_tokens,
                         const std::string& error) = 0;
  virtual bool cancelled() const { return false; }
};

struct SchedulerOptions {
  int max_batch_tokens = 512;  // tokens per engine step (decode tokens + prefill chunks)
  int max_seqs = 256;          // sequences running at once
  int max_queue = 256;         // requests waiting to start; submit() refuses beyond
  double watermark = 0.01;     // fraction of KV blocks kept free when admitting (limits preemption churn)
  int threads = 0;             // OpenMP threads of the engine's kernels; 0: the constructing thread's
};

struct SchedulerStats {
  int running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  int64_t preemptions = 0, prompt_tokens = 0, generation_tokens = 0, steps = 0;
  int64_t requests_finished = 0, requests_cancelled = 0;
  // Speculative decoding (with a draft; vLLM's spec_decode counters): rounds,
  // proposed and accepted draft tokens, accepted per draft position.
  int64_t spec_drafts = 0, spec_draft_tokens = 0, spec_accepted_tokens = 0;
  std::vector<int64_t> spec_accepted_per_pos;
  int64_t draft_kv_blocks_total = 0, draft_kv_blocks_free = 0;
};

class Scheduler {
 public:
  // The engine and tokenizer must outlive the scheduler; the engine is used by
  // the scheduler thread only (started here). With a draft engine (same
  // vocabulary) every sequence that is decoding speculates: the draft proposes
  // up to k tokens for it (its own adaptive k), and the target scores them in
  // the same step as everyone else's rows (runtime/speculative.h's rule, so
  // the output distribution is the model's).
  Scheduler(Engine& engine, const Tokenizer& tok, const SchedulerOptions& opt, Engine* draft = nullptr, const SpecConfig& spec = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; false when the queue is full or the scheduler is
  // stopping (the caller answers 503). Requests are checked by the caller: a
  // prompt of 1..max_seq-1 in-vocabulary tokens.
  bool submit(GenRequest req, std::shared_ptr<RequestSink> sink);
  // Stops taking requests; the running and queued ones go on.
  void close();
  // Waits until nothing runs or waits, or `seconds` pass; true when idle.
  bool wait_idle(double seconds);
  SchedulerStats stats() const;
  const Engine& engine() const { return engine_; }

 private:
  struct Seq;
  void loop();
  void step_once();
  void finish(Seq& s, FinishReason why, const std::string& error = "");
  void preempt(Seq& s);
  int64_t blocks_for(int64_t positions) const;
  // Draft proposals for the planned sequences with k > 0 (batched across
  // them); on a draft failure they fall back to plain decoding this step.
  struct Planned;
  void propose_drafts(std::vector<Planned>& plan);

  Engine& engine_;
  Engine* draft_;
  SpecConfig spec_;
  const Tokenizer& tok_;
  SchedulerOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::unique_ptr<Seq>> incoming_;  // guarded by mu_
  bool closed_ = false, quit_ = false;         // guarded by mu_
  std::atomic<int> queued_{0};                 // incoming + waiting
  std::atomic<int> running_count_{0};
  // Owned by the scheduler thread:
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<std::unique_ptr<Seq>> running_;  // in order of admission
  std::vector<float> logits_;
  mutable std::mutex stats_mu_;
  SchedulerStats stats_;  // guarded by stats_mu_
  std::thread thread_;
};

}  // namespace condense
