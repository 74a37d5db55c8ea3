// Writes that fail: a full disk (a file-size limit in a child process, which
// makes write() fail with EFBIG as a full disk fails with ENOSPC), a folder
// condense may not write to, a rename onto a folder. For every writer (.cpk,
// Hugging Face folder, GGUF, llama2.c, training state) the error says what
// happened and nothing partial or temporary is left; temporaries a killed run
// left behind are removed at the next start, and --resume says what it found.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_writer.h"
#include "io/cpk.h"
#include "io/gguf.h"
#include "io/hf_model.h"
#include "io/llama2c.h"
#include "io/train_state.h"
#include "model/shapes.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace fs = std::filesystem;

namespace {

Model tiny() { return random_model(testutil::tiny_config({}), 3); }  // ~20 KB of f32 weights

struct Writer {
  const char* what;
  std::function<void(const Model&, const std::string&)> write;
};

const std::vector<Writer>& writers() {
  static const std::vector<Writer> w = {
      {"cpk", [](const Model& m, const std::string& p) { save_cpk(m, p, {}); }},
      {"hf", [](const Model& m, const std::string& p) { save_hf_model(m, p, DType::F32); }},
      {"gguf", [](const Model& m, const std::string& p) { save_gguf_model(m, nullptr, p, DType::F32); }},
      {"llama2c", [](const Model& m, const std::string& p) { save_llama2c(m, p); }},
      {"train state", [](const Model& m, const std::string& p) {
         NamedTensors t;
         for_each_weight(m, [&](const WeightRef& r) { t.push_back({"param/" + r.name, r.tensor}); });
         write_train_state(p, "{}", t);
       }}};
  return w;
}

// Runs `f` in a child process whose files may not grow past `limit` bytes;
// returns the child's exit status (0: `f` threw an Error whose text has `needle`).
int in_child_with_file_limit(rlim_t limit, const std::function<void()>& f, const std::string& needle) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // the limit then fails the write with EFBIG instead of killing the process
    const rlimit r{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &r);
    try {
      f();
    } catch (const Error& e) {
      const bool ok = std::string(e.what()).find(needle) != std::string::npos;
      if (!ok) std::fprintf(stderr, "unexpected message: %s\n", e.what());
      ::_exit(ok ? 0 : 3);
    } catch (...) {
      ::_exit(4);
    }
    ::_exit(2);  // no error at all
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().lexically_relative(dir).string());
  return out;
}

}  // namespace

TEST(FaultInjection, AFullDiskLeavesNoPartialOrTemporaryFile) {
  const Model m = tiny();
  for (const Writer& w : writers()) {
    testutil::TempDir dir;
    const std::string out = dir / "out";
    // 4 KB: every writer fails part-way through (the weights alone are ~20 KB).
    EXPECT_EQ(in_child_with_file_limit(4096, [&] { w.write(m, out); }, "out"), 0) << w.what;
    // What is left: nothing for a file; for the HF folder, the folder alone (made before any write).
    for (const std::string& e : entries(dir.path.string())) EXPECT_EQ(e, std::string(w.what) == "hf" ? "out" : "") << w.what << " left " << e;
    // The same write with room succeeds, so the failure above was the limit's.
    EXPECT_EQ(in_child_with_file_limit(RLIM_INFINITY, [&] { w.write(m, out); throw Error("done"); }, "done"), 0) << w.what;
    EXPECT_TRUE(fs::exists(out)) << w.what;
  }
}

TEST(FaultInjection, FailedWritesSayWhatHappened) {
  const Model m = tiny();
  testutil::TempDir dir;
  EXPECT_EQ(in_child_with_file_limit(4096, [&] { save_cpk(m, dir / "a.cpk", {}); }, "File too large"), 0);
  EXPECT_EQ(in_child_with_file_limit(4096, [&] { save_llama2c(m, dir / "a.bin"); }, "File too large"), 0);
  EXPECT_EQ(in_child_with_file_limit(4096, [&] { writers()[4].write(m, dir / "a.h5"); }, "training state"), 0);
}

TEST(FaultInjection, ARenameOntoAFolderFailsAndKeepsIt) {
  const Model m = tiny();
  for (const Writer& w : writers()) {
    if (std::string(w.what) == "hf") continue;  // writes into the folder by design
    testutil::TempDir dir;
    fs::create_directories(dir / "out");
    testutil::write_file(dir / "out/keep.txt", "x");
    try {
      w.write(m, dir / "out");
      ADD_FAILURE() << w.what << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("out"), std::string::npos) << e.what();
    }
    EXPECT_EQ(testutil::read_file(dir / "out/keep.txt"), "x") << w.what;
    const auto left = entries(dir.path.string());
    EXPECT_EQ(left.size(), 2u) << w.what << ": a temporary was left";  // out, out/keep.txt
  }
}

TEST(FaultInjection, AFolderWithoutWritePermissionIsNamed) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions do not stop writes (CI); covered where tests run as a user";
  const Model m = tiny();
  testutil::TempDir dir;
  fs::create_directories(dir / "ro");
  fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  for (const Writer& w : writers()) {
    if (std::string(w.what) == "hf") continue;
    try {
      w.write(m, dir / "ro/out");
      ADD_FAILURE() << w.what << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ro/out"), std::string::npos) << e.what();
    }
  }
  fs::permissions(dir / "ro", fs::perms::owner_all);
  EXPECT_TRUE(fs::is_empty(dir / "ro"));
}

TEST(Leftovers, StaleTemporariesAreRemovedLiveOnesKept) {
  testutil::TempDir dir;
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);  // its pid now names no process
  const std::string stale = dir / ("model.cpk.tmp." + std::to_string(dead));
  const std::string live = dir / ("model.cpk.tmp." + std::to_string(::getppid()));
  const std::string mine = temporary_path(dir / "state.h5");
  for (const std::string& p : {stale, live, mine}) testutil::write_file(p, "partial");
  testutil::write_file(dir / "notes.tmp.txt", "not a temporary");
  const std::vector<std::string> removed = remove_stale_temporaries(dir.path.string());
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], stale);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(dir / "notes.tmp.txt"));
}

TEST(Leftovers, ResumeSaysWhatItResumedFromOrThatItFoundNothing) {
  testutil::TempDir dir;
  testutil::write_corpus_and_tokenizer(dir / "text.txt", dir / "tok.model", 400, 300, 5);
  const nlohmann::json recipe = {{"data", {{"text", {dir / "text.txt"}}}},
                                 {"student", {{"init", "random"}, {"shape", "stories15M"}, {"config", {{"dim", 32}, {"n_layers", 1}, {"n_heads", 4}, {"n_kv_heads", 4}, {"ffn_dim", 64}, {"max_seq", 32}}}, {"tokenizer", dir / "tok.model"}}},
                                 {"stages", {{{"type", "train"}, {"steps", 2}, {"batch", 1}, {"seq", 16}, {"val_windows", 1}}}},
                                 {"output", {{"dir", dir / "out"}}}};
  testutil::write_file(dir / "r.json", recipe.dump());
  fs::create_directories(dir / "out");
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string stale = dir / ("out/state-stage0.h5.tmp." + std::to_string(dead));
  testutil::write_file(stale, "a run killed while writing its state");
  const std::string run = std::string(CONDENSE_BIN) + " run " + (dir / "r.json") + " --resume";
  const auto first = testutil::run_command(run);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("found no training state"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("removed " + stale), std::string::npos) << first.output;
  EXPECT_FALSE(fs::exists(stale));
  const auto second = testutil::run_command(run + " --set stages[0].steps=3");
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("resuming from"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("at step 2 of 3"), std::string::npos) << second.output;
}
