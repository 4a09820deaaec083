// Matrix products of a few rows by a large fp32 weight: y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]).
//
// For the handful of rows of a draft tree the product is bound by streaming the weight from memory; a general
// GEMM (MKL's sgemm, even with pre-packed weights) keeps the CPU busy with blocking meant for big products
// and reads the weight at half the speed a one-row product does. Here the weight is stored once as panels of
// VEC output columns, each panel holding all K inputs contiguously ([P][K][VEC], `pack_panels`), and every
// step reads a few panels side by side while all rows of a group accumulate in registers: each weight byte is
// read once per group of rows (row groups reuse the panels from L2), and the reads are long sequential
// streams (prefetched ahead in software when several rows share them). Every output is one fp32 fused
// multiply-add chain over k in order, so the result is deterministic and differs from other fp32 products
// only by rounding. Weights may also be bf16 (a draft head's: half the bytes), widened to fp32 in registers.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>

#if defined(__AVX512F__)
constexpr int VEC = 16;        // floats per vector register
constexpr int REGISTERS = 32;  // vector registers
#else
constexpr int VEC = 8;
constexpr int REGISTERS = 16;
#endif
// With several rows the FMAs between loads delay the hardware prefetcher: read each panel this many vectors
// ahead in software (measured: an 8-row product of the whole model 49 -> 41 ms; one row gains nothing, so skips it)
constexpr int PREFETCH_AHEAD = 64;
constexpr int MAX_GROUP = REGISTERS >= 32 ? 8 : 4;  // rows accumulated together
typedef float vec_t __attribute__((vector_size(VEC * sizeof(float))));

// Panels read side by side for a group of g rows: as many as the registers hold next to g accumulators each.
constexpr int panels_for(int g) {
  return std::max(1, std::min(8, (REGISTERS - 2) / (g + 1)));
}

// Weights are fp32, or bf16 (half the bytes to stream; widened to fp32 in registers, sums stay fp32).
static inline vec_t load_weights(const float* p) {
  vec_t v;
  __builtin_memcpy(&v, p, sizeof(vec_t));
  return v;
}

static inline vec_t load_weights(const at::BFloat16* p) {
  typedef uint16_t half_t __attribute__((vector_size(VEC * sizeof(uint16_t))));
  typedef uint32_t wide_t __attribute__((vector_size(VEC * sizeof(uint32_t))));
  half_t raw;
  __builtin_memcpy(&raw, p, sizeof(half_t));
  wide_t wide = __builtin_convertvector(raw, wide_t) << 16;  // bf16 is the top half of an fp32
  vec_t v;
  __builtin_memcpy(&v, &wide, sizeof(vec_t));
  return v;
}

torch::Tensor pack_panels(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && (weight.scalar_type() == torch::kFloat32 || weight.scalar_type() == torch::kBFloat16),
              "pack_panels: a 2-D fp32 or bf16 weight");
  const int64_t n = weight.size(0), k = weight.size(1), panels = (n + VEC - 1) / VEC;
  auto padded = torch::zeros({panels * VEC, k}, weight.options());
  padded.narrow(0, 0, n).copy_(weight);
  return padded.view({panels, VEC, k}).transpose(1, 2).contiguous();  // [panels][k][VEC]
}

int64_t panel_width() { return VEC; }

template <int G, int PAN, typename W>
static void group_kernel(const float* x, const W* packed, float* y, int64_t n, int64_t k, int64_t first,
                         int64_t last) {
  for (int64_t p = first; p < last; p += PAN) {
    const int count = (int)std::min<int64_t>(PAN, last - p);
    vec_t acc[G][PAN];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
      for (int j = 0; j < PAN; ++j) acc[g][j] = (vec_t){0};
    const W* base = packed + p * k * VEC;
    if (count == PAN) {
      for (int64_t i = 0; i < k; ++i) {
        vec_t b[PAN];
#pragma GCC unroll 8
        for (int j = 0; j < PAN; ++j) {
          b[j] = load_weights(base + (j * k + i) * VEC);
          if constexpr (G >= 2) __builtin_prefetch(base + (j * k + i + PREFETCH_AHEAD) * VEC, 0, 3);
        }
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) {
          const float xs = x[g * k + i];
#pragma GCC unroll 8
          for (int j = 0; j < PAN; ++j) acc[g][j] += b[j] * xs;
        }
      }
    } else {  // the last few panels: one at a time
      for (int j = 0; j < count; ++j) {
        for (int64_t i = 0; i < k; ++i) {
          const vec_t b = load_weights(base + (j * k + i) * VEC);
#pragma GCC unroll 8
          for (int g = 0; g < G; ++g) acc[g][j] += b * x[g * k + i];
        }
      }
    }
    for (int j = 0; j < count; ++j) {
      const int64_t col = (p + j) * VEC;
      const int lanes = (int)std::min<int64_t>(VEC, n - col);
      for (int g = 0; g < G; ++g)
        for (int l = 0; l < lanes; ++l) y[g * n + col + l] = acc[g][j][l];
    }
  }
}

template <int G, typename W>
static void run_group(const float* x, const W* packed, float* y, int64_t n, int64_t k, int64_t first,
                      int64_t last) {
  group_kernel<G, panels_for(G), W>(x, packed, y, n, k, first, last);
}

template <typename W>
static void run_rows(int rows, const float* x, const W* packed, float* y, int64_t n, int64_t k, int64_t first,
                     int64_t last) {
  switch (rows) {
    case 1: run_group<1, W>(x, packed, y, n, k, first, last); break;
    case 2: run_group<2, W>(x, packed, y, n, k, first, last); break;
    case 3: run_group<3, W>(x, packed, y, n, k, first, last); break;
    case 4: run_group<4, W>(x, packed, y, n, k, first, last); break;
#if defined(__AVX512F__)
    case 5: run_group<5, W>(x, packed, y, n, k, first, last); break;
    case 6: run_group<6, W>(x, packed, y, n, k, first, last); break;
    case 7: run_group<7, W>(x, packed, y, n, k, first, last); break;
    case 8: run_group<8, W>(x, packed, y, n, k, first, last); break;
#endif
    default: TORCH_CHECK(false, "panel_linear: bad row group ", rows);
  }
}

torch::Tensor panel_linear(torch::Tensor x, torch::Tensor packed, int64_t n, c10::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 &&
              (packed.scalar_type() == torch::kFloat32 || packed.scalar_type() == torch::kBFloat16),
              "panel_linear: fp32 input and fp32 or bf16 weights");
  TORCH_CHECK(packed.dim() == 3 && packed.size(2) == VEC && packed.size(1) == x.size(-1),
              "panel_linear: packed weight does not match the input");
  auto rows2d = x.reshape({-1, x.size(-1)}).contiguous();
  const int64_t m = rows2d.size(0), k = rows2d.size(1), panels = packed.size(0);
  auto y = torch::empty({m, n}, rows2d.options());
  const float* xp = rows2d.data_ptr<float>();
  const bool half = packed.scalar_type() == torch::kBFloat16;
  const float* wp = half ? nullptr : packed.data_ptr<float>();
  const at::BFloat16* hp = half ? packed.data_ptr<at::BFloat16>() : nullptr;
  float* yp = y.data_ptr<float>();
  // a block of panels is swept by every row group while it sits in cache; a multiple of the first group's step
  const int64_t step = panels_for((int)std::min<int64_t>(MAX_GROUP, std::max<int64_t>(m, 1)));
  int64_t block = step * 8;
  if (m <= MAX_GROUP) {  // one row group: no reuse across groups, so split the panels evenly over the threads
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    block = std::max<int64_t>(step, ((panels + threads - 1) / threads + step - 1) / step * step);
  }
  at::parallel_for(0, (panels + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * block, last = std::min(panels, first + block);
      for (int64_t row = 0; row < m; row += MAX_GROUP) {  // row groups reuse this block's panels from cache
        const int rows = (int)std::min<int64_t>(MAX_GROUP, m - row);
        if (half)
          run_rows(rows, xp + row * k, hp, yp + row * n, n, k, first, last);
        else
          run_rows(rows, xp + row * k, wp, yp + row * n, n, k, first, last);
      }
    }
  });
  if (bias.has_value() && bias->defined()) y.add_(*bias);
  auto shape = x.sizes().vec();
  shape.back() = n;
  return y.view(shape);
}

void register_fused_layer(pybind11::module& module);  // fused_layer.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("pack_panels", &pack_panels, "weight [N, K] -> panels [ceil(N/VEC), K, VEC]");
  module.def("panel_linear", &panel_linear, "x [..., K] @ weight.T (+ bias) from panels");
  module.def("panel_width", &panel_width, "VEC");
  register_fused_layer(module);
}
