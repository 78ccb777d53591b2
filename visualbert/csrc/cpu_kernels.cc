// CPU kernels for the non-GEMM ops of a BERT layer where Paddle's own CPU kernels are scalar or single-threaded
// (float32, forward and backward): exact (erf) GELU, dropout, LayerNorm and the masked softmax of attention;
// and the BertAdam update (one pass per parameter instead of ~15 tensor ops).
// erf and exp are branch-free polynomial approximations that the compiler vectorises (no libm calls in the
// loops); the loops are split over OpenMP threads. Accuracy against float64 references: tests/test_kernels.py.
// Built on first use by visualbert/kernels.py.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "paddle/extension.h"

namespace {

constexpr float kSqrtHalf = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// erf(x), rational approximation on [-4, 4] (the Eigen / XLA float erf), clamped outside (|erf| = 1 in float).
inline float erf_approx(float x) {
  x = std::min(std::max(x, -4.0f), 4.0f);  // min/max (not ?:) so that the loop vectorises
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return x * p / q;
}

// exp(x) for x <= 0 (softmax, the GELU backward's exp(-x^2/2)): Cody-Waite reduction x = n ln2 + r, degree-6
// polynomial, 2^n from the exponent bits. 0 below -87, where expf leaves the normal range: denormal results
// (e.g. every masked score of a softmax) would make each GEMM that later reads them ~10x slower on x86.
inline float exp_nonpositive(float x) {
  const bool underflow = x < -87.0f;
  x = std::max(x, -87.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return underflow ? 0.0f : p * scale;
}

void gelu_forward(const float* x, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = v * 0.5f * (1.0f + erf_approx(v * kSqrtHalf));
  }
}

void gelu_backward(const float* x, const float* dout, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erf_approx(v * kSqrtHalf));
    const float pdf = kInvSqrt2Pi * exp_nonpositive(-0.5f * v * v);
    dx[i] = dout[i] * (cdf + v * pdf);
  }
}

// ---------------------------------------------------------------------------------------------- dropout
// The keep/drop draw of element i is a hash of (seed, i): counter-based, so the mask does not depend on the
// thread count or the loop order, and one 64-bit seed drawn from Paddle's generator per call makes the run as
// reproducible (and resumable) as Paddle's own dropout. lowbias32 (Wellons) is a bijective 32-bit mixer that
// vectorises (32-bit multiplies); two rounds with the two seed halves and the index's high word.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

inline bool keep_element(uint64_t seed, int64_t i, uint32_t threshold) {
  const uint64_t u = static_cast<uint64_t>(i);
  const uint32_t h = mix32(mix32(static_cast<uint32_t>(u) ^ static_cast<uint32_t>(seed)) ^
                           static_cast<uint32_t>(seed >> 32) ^ static_cast<uint32_t>(u >> 32));
  return (h >> 8) >= threshold;  // 24 uniform bits against round(p * 2^24)
}

void dropout_forward(const float* x, float* out, uint8_t* mask, int64_t n, uint64_t seed, float p) {
  const uint32_t threshold = static_cast<uint32_t>(std::lround(static_cast<double>(p) * 16777216.0));
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = keep_element(seed, i, threshold);
    mask[i] = keep;
    out[i] = keep ? x[i] * scale : 0.0f;
  }
}

void dropout_backward(const uint8_t* mask, const float* dout, float* dx, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dout[i] * scale : 0.0f;
}

// ---------------------------------------------------------------------------------------------- LayerNorm
// Over the last axis (width h) of `rows` rows; mean and 1/sqrt(var + eps) per row are kept for the backward.
// Row statistics are accumulated in double (two passes), the parameter gradients in per-thread double sums.
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* out, float* mean,
                        float* rstd, int64_t rows, int64_t h, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * h;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < h; ++j) sum += xr[j];
    const double mu = sum / h;
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < h; ++j) {
      const double d = xr[j] - mu;
      sq += d * d;
    }
    const float m = static_cast<float>(mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(sq / h + static_cast<double>(eps)));
    mean[r] = m;
    rstd[r] = rs;
    float* outr = out + r * h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) outr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
  }
}

void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                         const float* dout, float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t h) {
  std::vector<double> total_gamma(h, 0.0), total_beta(h, 0.0);
#pragma omp parallel
  {
    std::vector<double> part_gamma(h, 0.0), part_beta(h, 0.0);
    std::vector<float> g(h);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * h;
      const float* dyr = dout + r * h;
      const float m = mean[r], rs = rstd[r];
      double sum_g = 0.0, sum_gx = 0.0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t j = 0; j < h; ++j) {
        const float xhat = (xr[j] - m) * rs;
        g[j] = dyr[j] * gamma[j];
        sum_g += g[j];
        sum_gx += g[j] * xhat;
        part_gamma[j] += static_cast<double>(dyr[j]) * xhat;
        part_beta[j] += dyr[j];
      }
      const float mean_g = static_cast<float>(sum_g / h), mean_gx = static_cast<float>(sum_gx / h);
      float* dxr = dx + r * h;
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) dxr[j] = rs * (g[j] - mean_g - (xr[j] - m) * rs * mean_gx);
    }
#pragma omp critical
    for (int64_t j = 0; j < h; ++j) {
      total_gamma[j] += part_gamma[j];
      total_beta[j] += part_beta[j];
    }
  }
  for (int64_t j = 0; j < h; ++j) {
    dgamma[j] = static_cast<float>(total_gamma[j]);
    dbeta[j] = static_cast<float>(total_beta[j]);
  }
}

// ---------------------------------------------------------------------------------------------- softmax
// softmax(scores + mask) over the last axis of [B, heads, Lq, Lk] scores; the additive mask is read through
// its strides, so a [B, 1, 1, Lk] mask needs no expansion (dims of size 1 broadcast).
void masked_softmax_forward(const float* x, const float* mask, float* out, int64_t b, int64_t heads, int64_t lq,
                            int64_t lk, int64_t mask_b, int64_t mask_h, int64_t mask_q) {
  const int64_t rows = b * heads * lq;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t q = r % lq, hd = (r / lq) % heads, bt = r / (lq * heads);
    const float* __restrict xr = x + r * lk;
    const float* __restrict mr = mask + bt * mask_b + hd * mask_h + q * mask_q;
    float* __restrict yr = out + r * lk;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < lk; ++j) {
      const float v = xr[j] + mr[j];
      yr[j] = v;
      mx = std::max(mx, v);
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < lk; ++j) {
      const float e = exp_nonpositive(yr[j] - mx);
      yr[j] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < lk; ++j) {
      const float v = yr[j] * inv;
      yr[j] = v < FLT_MIN ? 0.0f : v;  // no denormal probabilities (see exp_nonpositive)
    }
  }
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t lk) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * lk;
    const float* dyr = dy + r * lk;
    float* dxr = dx + r * lk;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < lk; ++j) dot += yr[j] * dyr[j];
#pragma omp simd
    for (int64_t j = 0; j < lk; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
  }
}

// ---------------------------------------------------------------------------------------------- BertAdam
// One parameter tensor's update of the original's BertAdam (pytorch_pretrained_bert/optimization.py), in one
// pass instead of ~15 tensor ops: per-tensor gradient clipping, no bias correction, decoupled weight decay.
// The same float32 operations in the same order as visualbert/optim.py's tensor-op path (the norm: see below).
double squared_norm(const float* g, int64_t n) {
  double total = 0.0;
#pragma omp parallel for simd reduction(+ : total) schedule(static)
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(g[i]) * g[i];
  return total;
}

// No FMA contraction here: each product and sum is rounded to float32 as the separate tensor ops round them.
__attribute__((optimize("fp-contract=off"))) void bert_adam_update(
    float* w, const float* grad, float* m, float* v, int64_t n, float clip, float lr, float b1, float one_minus_b1,
    float b2, float one_minus_b2, float eps, float decay) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * clip;
    const float next_m = m[i] * b1 + g * one_minus_b1;
    const float next_v = v[i] * b2 + g * g * one_minus_b2;
    float update = next_m / (std::sqrt(next_v) + eps);
    if (decay > 0.0f) update = update + w[i] * decay;
    w[i] = w[i] - update * lr;
    m[i] = next_m;
    v[i] = next_v;
  }
}

// ---------------------------------------------------------------------------------------------- attention heads
// [B, L, 3, heads, d] (the one Q/K/V GEMM's output) <-> three [B, heads, L, d]; [B, heads, L, d] <-> [B, L, heads * d].
// One copy of d floats per (token, head) instead of a transpose and an unbind (or a transpose and a reshape).
// Row r of the packed layout is (b, l, part, h); its row in head tensor `part` is (b, h, l).
inline int64_t head_row(int64_t r, int64_t l, int64_t heads, int64_t* part) {
  const int64_t h = r % heads, p = (r / heads) % 3, li = (r / (3 * heads)) % l, bi = r / (3 * heads * l);
  *part = p;
  return (bi * heads + h) * l + li;
}

void split_heads(const float* qkv, float* const out[3], int64_t b, int64_t l, int64_t heads, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < b * l * 3 * heads; ++r) {
    int64_t part;
    const int64_t row = head_row(r, l, heads, &part);
    std::memcpy(out[part] + row * d, qkv + r * d, d * sizeof(float));
  }
}

void split_heads_backward(const float* const grad_heads[3], float* grad_qkv, int64_t b, int64_t l, int64_t heads,
                          int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < b * l * 3 * heads; ++r) {
    int64_t part;
    const int64_t row = head_row(r, l, heads, &part);
    std::memcpy(grad_qkv + r * d, grad_heads[part] + row * d, d * sizeof(float));
  }
}

// Row r of [B, L, heads] is (b, l, h); its row in [B, heads, L] is (b, h, l).
inline int64_t per_head_row(int64_t r, int64_t l, int64_t heads) {
  const int64_t h = r % heads, li = (r / heads) % l, bi = r / (heads * l);
  return (bi * heads + h) * l + li;
}

void merge_heads(const float* context, float* merged, int64_t b, int64_t l, int64_t heads, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < b * l * heads; ++r)
    std::memcpy(merged + r * d, context + per_head_row(r, l, heads) * d, d * sizeof(float));
}

void merge_heads_backward(const float* grad_merged, float* grad_context, int64_t b, int64_t l, int64_t heads,
                          int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < b * l * heads; ++r)
    std::memcpy(grad_context + per_head_row(r, l, heads) * d, grad_merged + r * d, d * sizeof(float));
}

}  // namespace

// A gradient Paddle did not compute (an output that takes no part in the loss) arrives uninitialised.
static void check_initialized(const paddle::Tensor& t, const char* op) {
  PD_CHECK(t.initialized() && t.is_cpu() && t.dtype() == paddle::DataType::FLOAT32, op,
           ": every output must take part in the loss (a float32 CPU gradient for each)");
}

static void check_cpu_float32(const paddle::Tensor& t, const char* op) {
  PD_CHECK(t.is_cpu(), op, ": CPU tensors only");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, op, ": float32 only");
}

std::vector<paddle::Tensor> GeluForward(const paddle::Tensor& x) {
  PD_CHECK(x.is_cpu(), "visualbert_gelu: CPU tensors only");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, "visualbert_gelu: float32 only");
  auto out = paddle::empty(x.shape(), x.dtype(), x.place());
  gelu_forward(x.data<float>(), out.data<float>(), x.numel());
  return {out};
}

std::vector<paddle::Tensor> GeluBackward(const paddle::Tensor& x, const paddle::Tensor& grad_out) {
  check_initialized(grad_out, "visualbert_gelu_grad");
  auto grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  gelu_backward(x.data<float>(), grad_out.data<float>(), grad_x.data<float>(), x.numel());
  return {grad_x};
}

PD_BUILD_OP(visualbert_gelu)
    .Inputs({"X"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(GeluForward));

PD_BUILD_GRAD_OP(visualbert_gelu)
    .Inputs({"X", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(GeluBackward));

std::vector<paddle::Tensor> DropoutForward(const paddle::Tensor& x, const paddle::Tensor& seed, float p) {
  check_cpu_float32(x, "visualbert_dropout");
  PD_CHECK(seed.is_cpu() && seed.dtype() == paddle::DataType::INT64 && seed.numel() == 2,
           "visualbert_dropout: seed must be two int64 (31-bit halves) on the CPU");
  PD_CHECK(p > 0.0f && p < 1.0f, "visualbert_dropout: p must be in (0, 1)");
  auto out = paddle::empty(x.shape(), x.dtype(), x.place());
  auto mask = paddle::empty(x.shape(), paddle::DataType::UINT8, x.place());
  dropout_forward(x.data<float>(), out.data<float>(), mask.data<uint8_t>(), x.numel(),
                  (static_cast<uint64_t>(seed.data<int64_t>()[0]) << 32) ^
                      static_cast<uint64_t>(seed.data<int64_t>()[1]), p);
  return {out, mask};
}

std::vector<paddle::Tensor> DropoutBackward(const paddle::Tensor& mask, const paddle::Tensor& grad_out, float p) {
  check_initialized(grad_out, "visualbert_dropout_grad");
  auto grad_x = paddle::empty(grad_out.shape(), grad_out.dtype(), grad_out.place());
  dropout_backward(mask.data<uint8_t>(), grad_out.data<float>(), grad_x.data<float>(), grad_out.numel(), p);
  return {grad_x};
}

std::vector<std::vector<int64_t>> DropoutInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>&) {
  return {x, x};
}

std::vector<paddle::DataType> DropoutInferDtype(const paddle::DataType& x, const paddle::DataType&) {
  return {x, paddle::DataType::UINT8};
}

PD_BUILD_OP(visualbert_dropout)
    .Inputs({"X", "Seed"})
    .Outputs({"Out", "Mask"})
    .Attrs({"p: float"})
    .SetKernelFn(PD_KERNEL(DropoutForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DropoutInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DropoutInferDtype));

PD_BUILD_GRAD_OP(visualbert_dropout)
    .Inputs({"Mask", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"p: float"})
    .SetKernelFn(PD_KERNEL(DropoutBackward));

std::vector<paddle::Tensor> LayerNormForward(const paddle::Tensor& x, const paddle::Tensor& gamma,
                                             const paddle::Tensor& beta, float eps) {
  check_cpu_float32(x, "visualbert_layer_norm");
  check_cpu_float32(gamma, "visualbert_layer_norm");
  check_cpu_float32(beta, "visualbert_layer_norm");
  const int64_t h = x.shape().back();
  PD_CHECK(gamma.numel() == h && beta.numel() == h, "visualbert_layer_norm: weight and bias must have ", h,
           " elements");
  const int64_t rows = x.numel() / h;
  auto out = paddle::empty(x.shape(), x.dtype(), x.place());
  auto mean = paddle::empty({rows}, x.dtype(), x.place());
  auto rstd = paddle::empty({rows}, x.dtype(), x.place());
  layer_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), out.data<float>(),
                     mean.data<float>(), rstd.data<float>(), rows, h, eps);
  return {out, mean, rstd};
}

std::vector<paddle::Tensor> LayerNormBackward(const paddle::Tensor& x, const paddle::Tensor& gamma,
                                              const paddle::Tensor& mean, const paddle::Tensor& rstd,
                                              const paddle::Tensor& grad_out) {
  check_initialized(grad_out, "visualbert_layer_norm_grad");
  const int64_t h = x.shape().back();
  const int64_t rows = x.numel() / h;
  auto grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  auto grad_gamma = paddle::empty(gamma.shape(), gamma.dtype(), gamma.place());
  auto grad_beta = paddle::empty(gamma.shape(), gamma.dtype(), gamma.place());
  layer_norm_backward(x.data<float>(), gamma.data<float>(), mean.data<float>(), rstd.data<float>(),
                      grad_out.data<float>(), grad_x.data<float>(), grad_gamma.data<float>(),
                      grad_beta.data<float>(), rows, h);
  return {grad_x, grad_gamma, grad_beta};
}

std::vector<std::vector<int64_t>> LayerNormInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x.size(); ++i) rows *= x[i];
  return {x, {rows}, {rows}};
}

std::vector<paddle::DataType> LayerNormInferDtype(const paddle::DataType& x, const paddle::DataType&,
                                                  const paddle::DataType&) {
  return {x, x, x};
}

PD_BUILD_OP(visualbert_layer_norm)
    .Inputs({"X", "Scale", "Bias"})
    .Outputs({"Out", "Mean", "Rstd"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(LayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormInferDtype));

PD_BUILD_GRAD_OP(visualbert_layer_norm)
    .Inputs({"X", "Scale", "Mean", "Rstd", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(LayerNormBackward));

// Mask: additive float32, 4-D, each dim equal to the scores' or 1.
std::vector<paddle::Tensor> MaskedSoftmaxForward(const paddle::Tensor& x, const paddle::Tensor& mask) {
  check_cpu_float32(x, "visualbert_masked_softmax");
  check_cpu_float32(mask, "visualbert_masked_softmax");
  const auto& s = x.shape();
  const auto& ms = mask.shape();
  PD_CHECK(s.size() == 4 && ms.size() == 4, "visualbert_masked_softmax: 4-D scores and mask");
  for (int i = 0; i < 4; ++i)
    PD_CHECK(ms[i] == s[i] || (ms[i] == 1 && i < 3), "visualbert_masked_softmax: mask dim ", i, " is ", ms[i],
             ", scores' ", s[i]);
  const int64_t stride_q = ms[3], stride_h = ms[2] * stride_q, stride_b = ms[1] * stride_h;
  auto out = paddle::empty(s, x.dtype(), x.place());
  masked_softmax_forward(x.data<float>(), mask.data<float>(), out.data<float>(), s[0], s[1], s[2], s[3],
                         ms[0] == 1 ? 0 : stride_b, ms[1] == 1 ? 0 : stride_h, ms[2] == 1 ? 0 : stride_q);
  return {out};
}

std::vector<paddle::Tensor> MaskedSoftmaxBackward(const paddle::Tensor& out, const paddle::Tensor& grad_out) {
  check_initialized(grad_out, "visualbert_masked_softmax_grad");
  auto grad_x = paddle::empty(out.shape(), out.dtype(), out.place());
  const int64_t lk = out.shape().back();
  softmax_backward(out.data<float>(), grad_out.data<float>(), grad_x.data<float>(), out.numel() / lk, lk);
  return {grad_x};
}

PD_BUILD_OP(visualbert_masked_softmax)
    .Inputs({"X", "Mask"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(MaskedSoftmaxForward));

PD_BUILD_GRAD_OP(visualbert_masked_softmax)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(MaskedSoftmaxBackward));

// In place on Param, M and V. clip_norm <= 0: no clipping; the clip factor is min(clip_norm / (|grad| + clip_eps), 1)
// as torch.nn.utils.clip_grad_norm_ (eps 1e-6), which the original calls per parameter; |grad| is summed in double
// (the tensor-op path sums in float32: the factors agree to float32 rounding).
// one_minus_beta*: 1 - beta computed in double and rounded once, as a Python scalar 1.0 - b is.
void BertAdamStep(paddle::Tensor& param, const paddle::Tensor& grad, paddle::Tensor& m, paddle::Tensor& v, float lr,
                  float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float epsilon,
                  float weight_decay, float clip_norm, float clip_eps) {
  for (const paddle::Tensor* t : {static_cast<const paddle::Tensor*>(&param), &grad,
                                  static_cast<const paddle::Tensor*>(&m), static_cast<const paddle::Tensor*>(&v)})
    check_cpu_float32(*t, "visualbert_bert_adam_");
  const int64_t n = param.numel();
  PD_CHECK(grad.numel() == n && m.numel() == n && v.numel() == n, "visualbert_bert_adam_: sizes differ");
  float clip = 1.0f;
  if (clip_norm > 0.0f) {
    const float norm = static_cast<float>(std::sqrt(squared_norm(grad.data<float>(), n)));
    clip = std::min(clip_norm / (norm + clip_eps), 1.0f);
  }
  bert_adam_update(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), n, clip, lr, beta1,
                   one_minus_beta1, beta2, one_minus_beta2, epsilon, weight_decay);
}

PD_BUILD_OP(visualbert_bert_adam_)
    .Inputs({"Param", "Grad", "M", "V"})
    .Outputs({"ParamOut", "MOut", "VOut"})
    .SetInplaceMap({{"Param", "ParamOut"}, {"M", "MOut"}, {"V", "VOut"}})
    .Attrs({"lr: float", "beta1: float", "one_minus_beta1: float", "beta2: float", "one_minus_beta2: float",
            "epsilon: float", "weight_decay: float", "clip_norm: float", "clip_eps: float"})
    .SetKernelFn(PD_KERNEL(BertAdamStep));

std::vector<paddle::Tensor> SplitHeadsForward(const paddle::Tensor& qkv) {
  check_cpu_float32(qkv, "visualbert_split_heads");
  const auto& s = qkv.shape();
  PD_CHECK(s.size() == 5 && s[2] == 3, "visualbert_split_heads: [B, L, 3, heads, d] expected");
  std::vector<paddle::Tensor> outs;
  for (int i = 0; i < 3; ++i) outs.push_back(paddle::empty({s[0], s[3], s[1], s[4]}, qkv.dtype(), qkv.place()));
  float* const heads[3] = {outs[0].data<float>(), outs[1].data<float>(), outs[2].data<float>()};
  split_heads(qkv.data<float>(), heads, s[0], s[1], s[3], s[4]);
  return outs;
}

std::vector<paddle::Tensor> SplitHeadsBackward(const paddle::Tensor& dq, const paddle::Tensor& dk,
                                               const paddle::Tensor& dv) {
  for (const paddle::Tensor* t : {&dq, &dk, &dv}) check_initialized(*t, "visualbert_split_heads_grad");
  const auto& s = dq.shape();  // [B, heads, L, d]
  auto grad = paddle::empty({s[0], s[2], 3, s[1], s[3]}, dq.dtype(), dq.place());
  const float* const grads[3] = {dq.data<float>(), dk.data<float>(), dv.data<float>()};
  split_heads_backward(grads, grad.data<float>(), s[0], s[2], s[1], s[3]);
  return {grad};
}

std::vector<std::vector<int64_t>> SplitHeadsInferShape(const std::vector<int64_t>& s) {
  const std::vector<int64_t> head = {s[0], s[3], s[1], s[4]};
  return {head, head, head};
}

std::vector<paddle::DataType> SplitHeadsInferDtype(const paddle::DataType& x) { return {x, x, x}; }

PD_BUILD_OP(visualbert_split_heads)
    .Inputs({"QKV"})
    .Outputs({"Q", "K", "V"})
    .SetKernelFn(PD_KERNEL(SplitHeadsForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SplitHeadsInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SplitHeadsInferDtype));

PD_BUILD_GRAD_OP(visualbert_split_heads)
    .Inputs({paddle::Grad("Q"), paddle::Grad("K"), paddle::Grad("V")})
    .Outputs({paddle::Grad("QKV")})
    .SetKernelFn(PD_KERNEL(SplitHeadsBackward));

std::vector<paddle::Tensor> MergeHeadsForward(const paddle::Tensor& context, int64_t heads) {
  check_cpu_float32(context, "visualbert_merge_heads");
  const auto& s = context.shape();
  PD_CHECK(s.size() == 4 && s[1] == heads, "visualbert_merge_heads: [B, heads, L, d] expected");
  auto out = paddle::empty({s[0], s[2], s[1] * s[3]}, context.dtype(), context.place());
  merge_heads(context.data<float>(), out.data<float>(), s[0], s[2], s[1], s[3]);
  return {out};
}

std::vector<paddle::Tensor> MergeHeadsBackward(const paddle::Tensor& grad_out, int64_t heads) {
  check_initialized(grad_out, "visualbert_merge_heads_grad");
  const auto& s = grad_out.shape();  // [B, L, heads * d]
  const int64_t d = s[2] / heads;
  auto grad = paddle::empty({s[0], heads, s[1], d}, grad_out.dtype(), grad_out.place());
  merge_heads_backward(grad_out.data<float>(), grad.data<float>(), s[0], s[1], heads, d);
  return {grad};
}

std::vector<std::vector<int64_t>> MergeHeadsInferShape(const std::vector<int64_t>& s, int64_t) {
  return {{s[0], s[2], s[1] * s[3]}};
}

PD_BUILD_OP(visualbert_merge_heads)
    .Inputs({"Context"})
    .Outputs({"Out"})
    .Attrs({"heads: int64_t"})
    .SetKernelFn(PD_KERNEL(MergeHeadsForward))
    .SetInferShapeFn(PD_INFER_SHAPE(MergeHeadsInferShape));

PD_BUILD_GRAD_OP(visualbert_merge_heads)
    .Inputs({paddle::Grad("Out")})
    .Outputs({paddle::Grad("Context")})
    .Attrs({"heads: int64_t"})
    .SetKernelFn(PD_KERNEL(MergeHeadsBackward));
