// Linear layers over weights kept in their stored encoding: f32, int8, int4
// (group-wise, symmetric or with zero points) and fp8 E4M3, each with per-tensor,
// per-channel or per-group scales. y[m, n] = sum_k x[m, k] * w(n, k), where w is
// the weight's effective value exactly as model/quantized_weight.h defines it:
// fl(scale * q) (integers: q - zero when asymmetric; fp8: the E4M3 value).
//
// Panel layout (a one-time repack of the stored codes; docs/FORMAT.md "Runtime
// layout"): output rows go in panels of kPanel = 32, zero-padded past n; inside
// a panel the codes run along k, one k-step holding the 32 rows' codes:
//   f32:  [k][32] floats;  int8/fp8: [k][32] bytes;
//   int4: [k][16] bytes, byte j holding row j in its low nibble, row j+16 high.
// Scales: per-tensor one value; else [panel][group][32] (per-channel: 1 group),
// stored as f16 when every scale is an f16 value (as .cpk files store them),
// else f32. Zero points (asymmetric only): [panel][group][32] bytes for int8,
// [panel][group][16] nibble pairs for int4, like the codes. Apart from the
// padding of the last panel this takes the bytes the .cpk stores.
//
// Sparse (f32 and int8 codes, f32 activations only):
// the codes of removed weights are not stored. Per panel and k-step a 32-bit
// mask says which of the 32 rows' weights are kept (bit j: row j); the kept
// codes follow in panel, k, row order, and each panel's first code's index is
// stored, so panels decode independently. The kernels expand the kept codes
// into their lanes in registers (AVX-512 vpexpandd, AVX2 a permutation table)
// and multiply the zeros like the dense kernels do, so a sparse matrix gives
// the dense kernel's result bit for bit while reading 1 bit per weight plus
// the kept codes.
//
// Integer activations (a8: int8 and int4 weights only): each row of x is
// quantized as the W8A8 recipes define it (s = amax / 127, q = round(x / s)
// clamped to +-127) and multiplied in integers (VNNI vpdpbusd, AVX2
// vpmaddubsw, portable int32), exact per scale group; then per group
// f += scale * float(sum), and y = f * s. Layout ("VNNI order"): weight codes
// made unsigned (symmetric: q + 128 / q + 8; asymmetric: the code), a panel's
// k-axis cut into 4-long (int8) or 8-long (int4) steps, each step 128 bytes:
// [32 rows][4 bytes], int8 one code per byte, int4 byte j holding steps j
// (low nibble) and 4 + j (high). Each scale group starts a new step (a ragged
// group is padded with codes the zero activations of the padding cancel).
// Sparse int8 with integer activations: per panel and step a 128-bit mask of
// the step's 128 bytes (4 words, bit i of word w: byte 32w + i) and only the
// kept bytes, in step order. AVX-512 with VBMI2 expands each 64-byte half of a
// step in registers (vpexpandb, pruned bytes getting the code of 0: 128, or
// the row's zero point) straight into vpdpbusd; other CPUs expand a panel
// into an L1-sized buffer in the dense VNNI order (AVX2: an 8-bit-mask shuffle
// table) before the dense body runs on it. Either way the result is the dense
// one bit for bit while memory holds 1 bit per weight plus the kept codes.
//
// 16-bit integer activations (a16: int8 and int4 weights with f32 inputs,
// the weight-only recipes): each row of x is quantized to int16 (s = amax /
// 32639, q = round(x / s) clamped to +-32639: an error of at most amax / 65278
// per element, at the largest elements ~30x finer than f16 activations) and
// multiplied in integers, exact per block; then per block f += scale *
// float(sum), and y = f * s. Same layout as a8 (the VNNI order). A block is a
// scale group, cut every 256 k positions so that no int32 sum can overflow
// (256 * 255 * 32639 < 2^31). VNNI and AVX2 int4: each code split into two
// signed bytes q = 256 h + l (|h|, |l| <= 127: hence 32639), the a8 int8 dot
// products once per digit, sums 256 H + L (the codes need no widening: ~2x
// the speed of widening them to 16 bits for vpdpwssd, on Zen 4). AVX2 int8:
// the codes widened to 16 bits (vpmovzxbw) against 4 activation codes at a
// time (vpmaddwd), each row's two lanes added per block.
//
// Arithmetic: every row of x is reduced in one fixed order per output element
// (KC = 256-long FMA chains from zero, chains added in k order), whatever m, the
// other rows or the thread count are, so a row's result is bitwise the same in
// any batch. Decoding gives exactly the effective f32 weights, so the result is
// bitwise the f32 kernel's on the dequantized matrix (portable: mul + add).
#pragma once
#include <cstdint>

namespace condense::kernels {

enum class WCode : uint8_t { F32, I8, I4, E4M3 };

struct QLayout {
  WCode code = WCode::F32;
  int64_t n = 0, k = 0;
  int64_t group = 0;        // columns per scale group; 0 = one group per row (per-channel)
  bool per_tensor = false;  // one scale for the whole matrix
  bool asym = false;        // integer codes with a zero point per scale
  bool f16_scales = false;
  bool small_scales = false;  // every |scale| < 256: fp8 decoding folds 2^8 into the scale
  bool a8 = false;            // integer activations, VNNI order (int8 / int4 codes only)
  bool a16 = false;           // 16-bit integer activations, VNNI order (int8 / int4 codes only)
  bool sparse = false;        // kept codes only (f32 / int8; a8: int8 only); `kept` of them
  int64_t kept = 0;

  int64_t panels() const { return (n + 31) / 32; }
  int64_t group_len() const { return group > 0 ? group : k; }
  int64_t groups() const { return (k + group_len() - 1) / group_len(); }
  bool int_acts() const { return a8 || a16; }
  // a8 / a16: k positions per step, per (padded) full group, and in all (the padded k).
  int64_t a8_unit() const { return code == WCode::I4 ? 8 : 4; }
  int64_t a8_group_span() const { return (group_len() + a8_unit() - 1) / a8_unit() * a8_unit(); }
  int64_t a8_kp() const;
  // Integer sums are flushed to float once per block: a group, cut (a16) every
  // kA16Block positions; blocks of one group, and in all.
  static constexpr int64_t kA16Block = 256;
  int64_t blocks_per_group() const { return a16 ? (a8_group_span() + kA16Block - 1) / kA16Block : 1; }
  int64_t sum_blocks() const { return groups() * blocks_per_group(); }
  // Bytes of each part; scale_count() scales, zero_bytes() 0 when symmetric.
  int64_t code_bytes() const;
  int64_t scale_count() const;
  int64_t scale_bytes() const { return scale_count() * (f16_scales ? 2 : 4); }
  int64_t zero_bytes() const;
  int64_t mask_bytes() const { return sparse ? panels() * (a8 ? a8_kp() : k) * 4 + panels() * 8 : 0; }  // masks + panel starts
  int64_t bytes() const { return code_bytes() + scale_bytes() + zero_bytes() + mask_bytes(); }
};

// A packed matrix (pointers into buffers sized by the layout, 64-byte aligned).
struct QMatrix {
  QLayout layout;
  const uint8_t* codes = nullptr;  // f32: the packed floats
  const void* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const uint32_t* masks = nullptr;        // sparse: [panel][k] (a8: [panel][step][4]; a16 is never sparse)
  const int64_t* panel_start = nullptr;   // sparse: index of each panel's first kept code
};

// Packs rows [row0, row0 + rows) of a matrix with layout L from row-major
// inputs: f32 values (code F32), or one code byte per element (int4: the low
// nibble, as model/quantized_weight.h holds them) with scales [rows][groups]
// (one when per_tensor) and zero points [rows][groups] (asymmetric). Several
// calls with consecutive row0 fuse matrices that share a scheme. Outputs must be
// zero-filled once beforehand (the padding stays zero).
void pack_q_rows(const QLayout& L, const void* values, const float* scales, const uint8_t* zeros, int64_t rows,
                 int64_t row0, uint8_t* codes_out, void* scales_out, uint8_t* zeros_out);

// Sparse: the masks, panel starts and kept codes of rows [0, L.n), given
// `kept(row, col)` and the rows' codes (f32 values or code bytes) through
// `code_at(row, col)` (returning the bytes to copy). codes_out holds
// L.code_bytes() bytes (kept codes + 64 bytes of slack for vector reads).
void pack_sparse(const QLayout& L, bool (*kept)(const void*, int64_t, int64_t), const void* (*code_at)(const void*, int64_t, int64_t),
                 const void* ctx, uint8_t* codes_out, uint32_t* masks_out, int64_t* panel_start_out);
// The same for int8 with integer activations (L.a8): masks per step of the
// VNNI order, kept codes made unsigned as the dense a8 layout does.
void pack_sparse_a8(const QLayout& L, bool (*kept)(const void*, int64_t, int64_t), const void* (*code_at)(const void*, int64_t, int64_t),
                    const void* ctx, uint8_t* codes_out, uint32_t* masks_out, int64_t* panel_start_out);

// The effective weights of row r (fl(scale * q), exactly model/quantized_weight.h's
// values), k floats: an embedding lookup from a quantized (tied) table.
void decode_row(const QMatrix& w, int64_t r, float* out);

// Whether the active ISA expands sparse int8 codes with integer activations
// in registers (AVX-512 with VNNI and VBMI2), where the sparse kernel beats the
// dense one.
bool sparse_a8_in_registers();

// x: [m, L.k] with row stride ldx; y: [m, L.n] with row stride ldy; y must not
// alias x. Uses the OpenMP threads when the problem is large enough.
void linear_q(const float* x, int64_t m, int64_t ldx, const QMatrix& w, float* y, int64_t ldy);

}  // namespace condense::kernels
