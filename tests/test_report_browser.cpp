// The report opened in headless Chromium (Debian `chromium`; skipped, saying
// so, where it is not installed): the scripts run without a console message,
// the page requests nothing from the network (Chromium's net log: requests
// the page initiated from its file:// origin), the DOM after the scripts holds
// one mark per variant in each chart, and a screenshot is not blank and shows
// the marks' colour. PNG decoded here (8-bit RGB/RGBA, zlib, the five filters).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "report/report_html.h"
#include "report/variants.h"
#include "tests/report_fixture.h"
#include "tests/test_util.h"

using namespace condense;

namespace {

struct Image {
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;  // w * h * 3
};

uint32_t be32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 | uint8_t(s[at + 3]);
}

// Non-interlaced 8-bit RGB (2) or RGBA (6), as Chromium writes screenshots.
Image decode_png(const std::string& f) {
  Image im;
  if (f.size() < 8 || f.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return im;
  std::string idat;
  int channels = 0;
  for (size_t at = 8; at + 12 <= f.size();) {
    const uint32_t len = be32(f, at);
    const std::string type = f.substr(at + 4, 4);
    if (type == "IHDR") {
      im.w = int(be32(f, at + 8));
      im.h = int(be32(f, at + 12));
      const int depth = uint8_t(f[at + 16]), colour = uint8_t(f[at + 17]), interlace = uint8_t(f[at + 20]);
      if (depth != 8 || (colour != 2 && colour != 6) || interlace != 0) return {};
      channels = colour == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat += f.substr(at + 8, len);
    }
    at += 12 + len;
  }
  const size_t stride = size_t(im.w) * size_t(channels);
  std::vector<uint8_t> raw((stride + 1) * size_t(im.h));
  uLongf n = uLongf(raw.size());
  if (channels == 0 || uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(idat.data()), uLong(idat.size())) != Z_OK) return {};
  std::vector<uint8_t> prev(stride, 0), cur(stride);
  im.rgb.resize(size_t(im.w) * size_t(im.h) * 3);
  for (int y = 0; y < im.h; ++y) {
    const uint8_t* line = raw.data() + size_t(y) * (stride + 1);
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= size_t(channels) ? cur[i - size_t(channels)] : 0, b = prev[i], c = i >= size_t(channels) ? prev[i - size_t(channels)] : 0;
      int pred = 0;
      switch (line[0]) {
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: break;
      }
      cur[i] = uint8_t(line[1 + i] + pred);
    }
    for (int x = 0; x < im.w; ++x)
      for (int k = 0; k < 3; ++k) im.rgb[(size_t(y) * size_t(im.w) + size_t(x)) * 3 + size_t(k)] = cur[size_t(x) * size_t(channels) + size_t(k)];
    prev = cur;
  }
  return im;
}

const char* kChromium = "chromium";
const std::string kFlags =
    " --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-background-networking --disable-component-update --disable-sync"
    " --no-first-run --no-default-browser-check --disable-default-apps --disable-extensions --disable-dev-shm-usage"
    " --enable-logging=stderr --v=0";

}  // namespace

TEST(ReportBrowser, OpensCleanOfflineWithEveryMark) {
  if (testutil::run_command(std::string("command -v ") + kChromium).status != 0) {
    GTEST_SKIP() << "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)";
  }
  // A machine where Chromium cannot start at all (no display stack, a locked-down
  // container) is not the report's fault: say so and skip.
  const auto probe = testutil::run_command(std::string(kChromium) + kFlags + " --dump-dom 'data:text/html,<p>probe</p>'");
  if (probe.status != 0 || probe.output.find("probe") == std::string::npos) GTEST_SKIP() << "chromium does not run here:\n" << probe.output;
  testfix::ReportRuns r;
  const auto v = report::load_variants(r.paths);
  const std::string html = r.dir / "report.html";
  testutil::write_file(html, report::render_html(v, "browser test"));
  const std::string url = "file://" + html;

  const auto dom = testutil::run_command(std::string(kChromium) + kFlags + " --log-net-log=" + (r.dir / "net.json") + " --dump-dom " + url);
  ASSERT_EQ(dom.status, 0) << dom.output;
  EXPECT_EQ(dom.output.find("CONSOLE"), std::string::npos) << "console output:\n" << dom.output;
  size_t marks = 0;
  for (size_t at = dom.output.find("<circle class=\"pt"); at != std::string::npos; at = dom.output.find("<circle class=\"pt", at + 1)) ++marks;
  EXPECT_EQ(marks, 3 * v.size()) << "one mark per variant in each chart";
  const std::string front = "<circle class=\"pt front\" data-variant=\"0\"";  // variant a is on both fronts
  EXPECT_NE(dom.output.find(front), std::string::npos);

  // The net log: a request the page made carries its opaque file:// origin ("null").
  const nlohmann::json net = nlohmann::json::parse(testutil::read_file(r.dir / "net.json"), nullptr, false);
  ASSERT_FALSE(net.is_discarded()) << "Chromium's net log did not parse";
  for (const auto& e : net.value("events", nlohmann::json::array())) {
    const auto& p = e.value("params", nlohmann::json::object());
    if (p.value("initiator", "") == "null" && p.contains("url")) {
      const std::string u = p["url"].get<std::string>();
      EXPECT_EQ(u.rfind("file:", 0), 0u) << "the page requested " << u;
    }
  }

  const auto shot = testutil::run_command(std::string(kChromium) + kFlags + " --window-size=1300,900 --screenshot=" + (r.dir / "shot.png") + " " + url);
  ASSERT_EQ(shot.status, 0) << shot.output;
  const Image im = decode_png(testutil::read_file(r.dir / "shot.png"));
  ASSERT_EQ(im.w, 1300);
  ASSERT_EQ(im.h, 900);
  size_t ink = 0, blue = 0;
  for (size_t i = 0; i < im.rgb.size(); i += 3) {
    const int R = im.rgb[i], G = im.rgb[i + 1], B = im.rgb[i + 2];
    ink += R < 200 || G < 200 || B < 200;
    blue += std::abs(R - 0x00) < 4 && std::abs(G - 0x72) < 4 && std::abs(B - 0xB2) < 4;  // variant 0's colour, fully opaque on the front
  }
  EXPECT_GT(ink, im.rgb.size() / 3 / 50) << "the screenshot is (nearly) blank";
  EXPECT_GT(blue, 50u) << "no mark in variant 0's colour was drawn";
}
