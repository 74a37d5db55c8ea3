// The Jinja subset for chat templates: real templates (ChatML, TinyLlama /
// Zephyr, Llama 2) give the prompts their model cards document, as
// transformers renders them (trim_blocks, lstrip_blocks); the language
// features they use one by one; errors name the line.
#include <gtest/gtest.h>

#include "core/error.h"
#include "serve/chat_template.h"
#include "serve/jinja.h"
#include "serve/openai_protocol.h"

using namespace condense;
using nlohmann::json;

namespace {

json chat(std::vector<std::pair<std::string, std::string>> m, bool gen = true) {
  json msgs = json::array();
  for (auto& [r, c] : m) msgs.push_back({{"role", r}, {"content", c}});
  return {{"messages", msgs}, {"add_generation_prompt", gen}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
}

// As published in the models' tokenizer_config.json.
const char* kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* kTinyLlama =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

}  // namespace

TEST(Jinja, ChatMLTemplate) {
  EXPECT_EQ(jinja::render(kChatML, chat({{"system", "Be brief."}, {"user", "Hi"}})),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(jinja::render(kChatML, chat({{"user", "Hi"}}, false)), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(Jinja, TinyLlamaTemplateWithTrimAndLstripBlocks) {
  // The TinyLlama-1.1B-Chat model card's format: every block tag's own line
  // disappears, the newline after each {{ }} stays.
  EXPECT_EQ(jinja::render(kTinyLlama, chat({{"system", "S"}, {"user", "U"}, {"assistant", "A"}, {"user", "V"}})),
            "<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\nA</s>\n<|user|>\nV</s>\n<|assistant|>\n");
}

TEST(Jinja, Llama2TemplateAndItsException) {
  EXPECT_EQ(jinja::render(kLlama2, chat({{"system", "Sys"}, {"user", " Hi "}, {"assistant", "Hello"}, {"user", "Bye"}})),
            "<s>[INST] <<SYS>>\nSys\n<</SYS>>\n\n Hi [/INST] Hello </s><s>[INST] Bye [/INST]");  // strip() trims the joined content's ends only
  EXPECT_EQ(jinja::render(kLlama2, chat({{"user", "Hi"}})), "<s>[INST] Hi [/INST]");
  try {
    jinja::render(kLlama2, chat({{"user", "a"}, {"user", "b"}}), "tmpl");
    FAIL() << "expected the template's exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("tmpl"), std::string::npos);
  }
}

TEST(Jinja, LanguageFeatures) {
  const json v = {{"xs", {1, 2, 3}}, {"s", "  Hello World  "}, {"d", {{"b", 2}, {"a", 1}}}, {"n", nullptr}, {"t", true}};
  auto r = [&](const std::string& t) { return jinja::render(t, v); };
  EXPECT_EQ(r("{% for x in xs %}{{ loop.index }}/{{ loop.length }}{% if not loop.last %},{% endif %}{% endfor %}"), "1/3,2/3,3/3");
  EXPECT_EQ(r("{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}"), "23|empty");
  EXPECT_EQ(r("{{ s | trim }}|{{ s.strip() | upper }}|{{ s | length }}|{{ xs | length }}"), "Hello World|HELLO WORLD|15|3");
  EXPECT_EQ(r("{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ 'abc'[1] }}"), "3[2, 3][3, 2, 1]b");
  EXPECT_EQ(r("{{ d['a'] }}{{ d.b }}{{ d.missing }}{{ d.get('zz', 9) }}"), "129");
  EXPECT_EQ(r("{% set ns = namespace(found=false) %}{% for x in xs %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}"),
            "True");
  EXPECT_EQ(r("{% set y = 1 %}{% for x in xs %}{% set y = x %}{% endfor %}{{ y }}"), "1");  // a loop's set stays inside it
  EXPECT_EQ(r("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }}"), "3 -4 1 2 3.5 1024 7");
  EXPECT_EQ(r("{{ 'a' ~ 1 ~ none }}|{{ 'yes' if t else 'no' }}|{{ n or 'fallback' }}|{{ t and 'both' }}"), "a1None|yes|fallback|both");
  EXPECT_EQ(r("{{ n is none }}{{ undefined_thing is defined }}{{ s is string }}{{ d is mapping }}{{ 3 is odd }}{{ xs is not string }}"),
            "TrueFalseTrueTrueTrueTrue");
  EXPECT_EQ(r("{{ 'lo' in 'hello' }}{{ 2 in xs }}{{ 'a' in d }}{{ 5 not in xs }}"), "TrueTrueTrueTrue");
  EXPECT_EQ(r("{{ d | tojson }}|{{ xs | tojson(indent=2) }}|{{ {'k': [1, 'x', none, 1.5]} | tojson }}"),
            "{\"a\": 1, \"b\": 2}|[\n  1,\n  2,\n  3\n]|{\"k\": [1, \"x\", null, 1.5]}");
  EXPECT_EQ(r("{{ xs | join(', ') }}|{{ undefined_thing | default('dflt') }}|{{ 'a-b-c'.split('-') }}|{{ 'x'.startswith('x') }}"),
            "1, 2, 3|dflt|['a', 'b', 'c']|True");
  EXPECT_EQ(r("{{ 'a-b'.replace('-', '+') }}|{{ 'ab'.upper() }}|{{ 'hello world'.title() }}|{{ 'x-y' | replace('-', '') }}"), "a+b|AB|Hello World|xy");
  EXPECT_EQ(r("{% for k, val in d.items() %}{{ k }}={{ val }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(r("a  {%- if t -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(r("{# a comment #}x{{ 'y' }}"), "xy");
  EXPECT_EQ(r("  {% if t %}\n  x\n  {% endif %}\ny"), "  x\ny");  // lstrip_blocks + trim_blocks
  EXPECT_EQ(r("{{ \"it's\" }} {{ 'a\\nb' }}"), "it's a\nb");
  EXPECT_EQ(r("{{ xs }} {{ d }} {{ 1.0 }} {{ t }}"), "[1, 2, 3] {'a': 1, 'b': 2} 1.0 True");
}

TEST(Jinja, ErrorsNameTheLine) {
  const json v = json::object();
  auto line_of = [&](const std::string& t) -> std::string {
    try {
      jinja::render(t, v, "T");
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(line_of("a\n{% if x %}\nb").find("T, line 2"), std::string::npos);  // no endif
  EXPECT_NE(line_of("{{ x | nosuchfilter }}").find("unsupported filter |nosuchfilter"), std::string::npos);
  EXPECT_NE(line_of("a\nb\n{% macro m() %}{% endmacro %}").find("T, line 3"), std::string::npos);
  EXPECT_NE(line_of("{{ 'a' + 1 }}").find("unsupported operands"), std::string::npos);
  EXPECT_NE(line_of("{{ 'unterminated }}").find("never closed"), std::string::npos);  // the quote runs to the end
  EXPECT_NE(line_of("{{ x ").find("never closed"), std::string::npos);
  EXPECT_NE(line_of("{% set ns.a = 1 %}").find("namespace"), std::string::npos);
}

TEST(Jinja, HostileTemplatesHitALimitNotTheMachine) {
  // Templates arrive inside model files: each of these would exhaust the stack,
  // run for hours or fill memory without the interpreter's limits.
  const json v = json::object();
  auto error_of = [&](const std::string& t) -> std::string {
    try {
      jinja::render(t, v, "T");
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}").find("nests deeper"), std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(100000, '-') + "1 }}").find("nests deeper"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 10000; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nests deeper"), std::string::npos);
  EXPECT_NE(error_of("{% for i in range(1000000000000) %}x{% endfor %}").find("range() of more than"), std::string::npos);
  EXPECT_NE(error_of("{% for i in range(999999) %}{% for j in range(999999) %}{% endfor %}{% endfor %}").find("steps"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}").find("grows past"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'abc' * 1000000000 }}").find("repeated past"), std::string::npos);
  EXPECT_NE(error_of("{% set s = 'x' * 4000000 %}{{ s }}{{ s }}{{ s }}").find("output passes"), std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ -9223372036854775807 - 2 }}").find("integer overflow"), std::string::npos);
  EXPECT_EQ(jinja::render("{{ 7 // -1 }} {{ 7 % -1 }} {{ range(3, 0, -1) | join(',') }}", v), "-7 0 3,2,1");  // still Python's answers
}

TEST(ChatTemplate, JinjaFromTheModelOrAFileAndSpecialTokens) {
  const ChatTemplate t = ChatTemplate::jinja(kLlama2, "<s>", "</s>", "llama2");
  EXPECT_TRUE(t.is_jinja());
  EXPECT_EQ(t.apply({{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Go"}}), "<s>[INST] Hi [/INST] Yo </s><s>[INST] Go [/INST]");
  const ChatTemplate plain;
  EXPECT_EQ(plain.apply({{"system", "S"}, {"user", "U"}}), "System: S\nUser: U\nAssistant:");
  EXPECT_THROW(ChatTemplate::from_json_text(R"({"user": "no placeholder"})", "t"), Error);
}

TEST(ChatTemplate, SpecialTokenTextBecomesTheirIds) {
  // A byte-level tokenizer: "<s>" / "</s>" in the rendered text are the BOS / EOS ids, not 3 and 4 bytes.
  struct Bytes : Tokenizer {
    std::vector<int> encode(const std::string& t) const override {
      std::vector<int> o;
      for (unsigned char c : t) o.push_back(int(c) + 3);
      return o;
    }
    std::string decode_token(int, int t) const override { return std::string(1, char(t - 3)); }
    int vocab_size() const override { return 259; }
    std::string kind() const override { return "bytes"; }
  } tok;
  const ChatTemplate t = ChatTemplate::jinja(kLlama2, "<s>", "</s>", "llama2");
  ServedModel m;
  m.bos_id = 1;
  m.eos_id = 2;
  m.tokenizer = &tok;
  m.chat_template = &t;
  const std::string text = t.apply({{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Go"}});
  std::vector<int> want = {1};
  for (int id : tok.encode("[INST] Hi [/INST] Yo ")) want.push_back(id);
  want.push_back(2);
  want.push_back(1);
  for (int id : tok.encode("[INST] Go [/INST]")) want.push_back(id);
  EXPECT_EQ(chat_prompt_tokens(text, m), want);
  // Without a leading BOS in the text, BOS is still first (as llama.cpp adds it).
  const ChatTemplate chatml = ChatTemplate::jinja(kChatML, "<s>", "</s>", "chatml");
  m.chat_template = &chatml;
  const auto ids = chat_prompt_tokens(chatml.apply({{"user", "Hi"}}), m);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids.size(), 1 + std::string("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n").size());
}
