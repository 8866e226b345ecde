// The persistent decoding-step kernel of decode_kernels.h.
//
// One block of 512 threads per SM. A product phase gives each warp one output feature at a time (features strided over
// the grid's warps): its lanes read the weight row 8 elements at a time (one 16-byte load for bf16/f16, two for f32), G
// pieces in flight before the first is used (G = 4 or 8: kernel_for_rows), against input rows held in shared memory
// (the normalised residual, y) or, for x_proj's slices, read from global memory; the warp then adds its partial sums
// with shuffles. Between its arrival at each barrier and its wait there every warp loads the first H pieces of its
// first row in the next phase into registers (and, for in_proj and the head, asks L2 for the rest of that row), every
// thread its share of the next norm's weights, and the scan phase's lanes load the inputs that do not depend on
// x_proj's output, so that these latencies overlap the barrier. The scan phase gives each (row, channel) a group of
// lanes (n rounded up to a power of two, at most 32, as scan_step_kernel.cu does, halved down to 4 while the grid's
// lanes would need more than one round for all of them). The arithmetic follows the unfused ops (infer_kernels.cu,
// scan_step_kernel.cu) expression by expression; only the order of the sums (the products', and the scan's over the
// state) differs, and the norms' 1/rms multiplies the products' sums instead of their inputs. Every sum has a fixed
// order, so results are the same from run to run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "ops/cuda/decode_device.cuh"
#include "ops/cuda/decode_kernels.h"

namespace mambacpp::cuda {
namespace {

using namespace decode_step;

// One block per SM: at 512 threads a thread may hold 128 registers, so the preloaded weights and scan inputs
// stay in registers (at 1,024 threads, 64 registers, they spilled and the step was slower: docs/PERFORMANCE.md).
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

struct Grid {
  int lane, warp;  // global warp index
  int warps;       // warps in the grid
};

// Warp w of block k is the grid's warp w · blocks + k: units strided over the grid's warps then spread evenly over
// the blocks (SMs), also where a phase has fewer units than warps (x_proj's, out_proj's rows at Mamba-1.4B) and
// in the last round of a phase (in_proj's 8,192 rows over 2,112 warps).
__device__ __forceinline__ Grid grid_position() {
  return Grid{int(threadIdx.x % 32), int(threadIdx.x / 32) * int(gridDim.x) + int(blockIdx.x),
              int(gridDim.x) * kWarps};
}

// ---- phases --------------------------------------------------------------------------------------------------

// A thread's share of a norm's weights (elements threadIdx.x + q · kThreads), loaded before the barrier that
// precedes the norm: after the barrier only the residual is read.
constexpr int kNormPer = 8;
static_assert(kNormPer * kThreads >= kDecodeMaxD, "the norm's weights fit the threads' registers");
struct NormWeights {
  float w[kNormPer];
};

__device__ __forceinline__ void load_norm(NormWeights& nw, const float* w, int64_t d) {
#pragma unroll
  for (int q = 0; q < kNormPer; ++q) {
    const int64_t j = threadIdx.x + int64_t(q) * kThreads;
    nw.w[q] = j < d ? w[j] : 0.0f;
  }
}

// The rmsnorm of the residual rows, in two parts: xs (b, d) = residual · norm_w, and the scale 1 / rms(row r), returned
// to the threads of lane r < b (as the products hold row r's sum in lane r), which the product that reads xs applies to
// its sums (so the product starts after one block barrier). With from_embedding the rows are the embedding of the ids
// (NaN for an id out of range, as embedding_kernel writes), and block 0 also stores them as the residual. A thread's
// loads are all issued before the first is used.
template <class W, int M>
__device__ float norm_rows(float* xs, const DecodeStepParams& p, const NormWeights& nw, bool from_embedding) {
  __shared__ float part[kWarps][M];
  const int64_t d = p.d;
#pragma unroll 1
  for (int64_t r = 0; r < p.b; ++r) {
    const int32_t id = from_embedding ? p.ids[r] : 0;
    const W* emb = static_cast<const W*>(p.embedding) + int64_t(id) * d;
    float v[kNormPer];
#pragma unroll
    for (int q = 0; q < kNormPer; ++q) {
      const int64_t j = threadIdx.x + int64_t(q) * kThreads;
      if (j >= d) continue;
      if (from_embedding) {
        v[q] = (id >= 0 && id < p.v) ? to_f32(emb[j]) : __int_as_float(0x7fc00000);
        if (blockIdx.x == 0) p.residual[r * d + j] = v[q];
      } else {
        v[q] = p.residual[r * d + j];
      }
    }
    float sum[1] = {0.0f};
#pragma unroll
    for (int q = 0; q < kNormPer; ++q) {
      const int64_t j = threadIdx.x + int64_t(q) * kThreads;
      if (j >= d) continue;
      xs[r * d + j] = v[q] * nw.w[q];
      sum[0] += v[q] * v[q];
    }
    warp_sum(sum);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32][r] = sum[0];
  }
  __syncthreads();
  const int r = threadIdx.x % 32;
  if (r >= p.b) return 0.0f;
  float t = 0.0f;
  for (int w = 0; w < kWarps; ++w) t += part[w][r];
  return rsqrtf(t / float(d) + p.eps);
}

// Phase A: xz = (xs · in_projᵀ) · scale + bias; for x features, the conv step of that channel (lane r: row r).
// The warp's first row starts from `head`; the conv window and weights are loaded before the product, and the
// warp's next row is asked of L1 when a row starts, so that its loads hit L1 (1.4B batch 1: 1.502–1.511 →
// 1.480 ms/token; the same for the second half of out_proj's rows was slower, 1.554–1.563).
template <class W, int M, int G, int H>
__device__ void phase_in(const DecodeStepParams& p, const DecodeLayer& L, const float* xs, float scale,
                         const RowHead<W, H>& head) {
  const Grid g = grid_position();
  const int64_t e = p.e, d = p.d, k = p.k, km1 = p.k - 1;
  for (int64_t o = g.warp; o < 2 * e; o += g.warps) {
    const bool conv = o < e && g.lane < p.b;
    float win[kDecodeMaxWidth], cw[kDecodeMaxWidth], a = 0.0f, bias = 0.0f;
    float* st = L.conv_state + (g.lane * e + o) * km1;
    if (g.lane < p.b) bias = L.in_bias != nullptr ? L.in_bias[o] : 0.0f;
    if (conv) {
      a = L.conv_b != nullptr ? L.conv_b[o] : 0.0f;
#pragma unroll
      for (int j = 0; j < kDecodeMaxWidth; ++j) {
        if (j < km1) win[j] = st[j];
        if (j < k) cw[j] = L.conv_w[o * k + j];
      }
    }
    float acc[M];
    if (o + g.warps < 2 * e)
      prefetch_l1_bytes(static_cast<const W*>(L.in_proj) + (o + g.warps) * d, d * int64_t(sizeof(W)), g.lane);
    row_dot<W, M, G, H>(acc, static_cast<const W*>(L.in_proj) + o * d, xs, d, d, p.b, g.lane, head, o == g.warp);
    if (g.lane >= p.b) continue;
    const float x = lane_value(acc, g.lane) * scale + bias;
    if (o >= e) {
      p.xz[g.lane * 2 * e + o] = x;
      continue;
    }
    // conv_step_kernel's arithmetic: the window is the state, then x.
#pragma unroll
    for (int j = 0; j < kDecodeMaxWidth; ++j)
      if (j == km1) win[j] = x;
#pragma unroll
    for (int j = 0; j < kDecodeMaxWidth; ++j)
      if (j < k) a += cw[j] * win[j];
    p.xc[g.lane * e + o] = silu_f(a);
#pragma unroll
    for (int j = 0; j + 1 < kDecodeMaxWidth; ++j)
      if (j < km1) st[j] = win[j + 1];
  }
}

// Phase B: part (s, b, xw) = xc[:, slice s] · x_proj[:, slice s]ᵀ, one (feature, slice) per warp. A slice is
// p.xpieces · kDecodeSlice input channels: each lane takes p.xpieces pieces of 8 (1, or 2 where slices of
// kDecodeSlice would give the grid's warps more than one unit each: decode_step_launch).
template <class W>
struct XPieces {
  Piece<W> pc[kDecodeMaxXPieces];
};

// The pieces of x_proj that lane `lane` uses for unit u of phase B (channels ≥ e: none).
template <class W>
__device__ __forceinline__ XPieces<W> xproj_pieces(const DecodeStepParams& p, const DecodeLayer& L, int64_t u,
                                                   int lane) {
  const int64_t xw = p.r + 2 * p.n, width = p.xpieces * kDecodeSlice, o = u % xw;
  XPieces<W> x{};
  if (u >= xw * ((p.e + width - 1) / width)) return x;
#pragma unroll
  for (int q = 0; q < kDecodeMaxXPieces; ++q) {
    const int64_t k = u / xw * width + q * kDecodeSlice + lane * 8;
    if (q < p.xpieces && k < p.e) x.pc[q] = load_piece(static_cast<const W*>(L.x_proj) + o * p.e + k);
  }
  return x;
}

template <class W, int M>
__device__ void phase_xproj(const DecodeStepParams& p, const DecodeLayer& L, const XPieces<W>& first) {
  const Grid g = grid_position();
  const int64_t e = p.e, xw = p.r + 2 * p.n, width = p.xpieces * kDecodeSlice, slices = (e + width - 1) / width;
  for (int64_t u = g.warp; u < xw * slices; u += g.warps) {
    const int64_t s = u / xw;
    const XPieces<W> x = u == g.warp ? first : xproj_pieces<W>(p, L, u, g.lane);
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = 0.0f;
#pragma unroll
    for (int q = 0; q < kDecodeMaxXPieces; ++q) {
      const int64_t k = s * width + q * kDecodeSlice + g.lane * 8;
      if (q < p.xpieces && k < e) fma_piece<W, M>(acc, x.pc[q], p.xc + k, e, p.b);
    }
    warp_sum(acc);
    if (g.lane < p.b) p.part[(s * p.b + g.lane) * xw + u % xw] = lane_value(acc, g.lane);
  }
}

__host__ __device__ __forceinline__ int64_t padded4(int64_t x) { return (x + 3) / 4 * 4; }

// What one lane of the scan phase reads that does not depend on xdbl: its (row, channel)'s u and z, dt_bias, D,
// its first state element with its A, and its first dt_proj piece. Loaded before the barrier into phase C.
template <class W>
struct ScanInputs {
  float u = 0, z = 0, dt_bias = 0, D = 0, A0 = 0, h0 = 0;
  Piece<W> wd0{};
};

template <class W>
__device__ __forceinline__ ScanInputs<W> scan_inputs(const DecodeStepParams& p, const DecodeLayer& L, int64_t t,
                                                     int group) {
  ScanInputs<W> in;
  const int64_t e = p.e, n = p.n, i = t / group, g = t % group;
  if (t >= p.b * e * group) return in;
  const int64_t bi = i / e, c = i % e;
  in.u = p.xc[bi * e + c], in.z = p.xz[bi * 2 * e + e + c];
  in.dt_bias = L.dt_bias[c], in.D = L.D[c];
  if (g < n) in.A0 = L.A[c * n + g], in.h0 = L.ssm_state[i * n + g];
  if (p.r % 8 == 0 && g * 8 < p.r) in.wd0 = load_piece(static_cast<const W*>(L.dt_proj) + c * p.r + g * 8);
  return in;
}

// Phase C: xd (b, xw) = Σ_s part[s] into shared memory (rows padded to 4), then one scan step per (row,
// channel), as scan_step_kernel does, with Δ from the dt_proj row. `first` holds the inputs of the lane's first
// (row, channel).
template <class W, int M>
__device__ void phase_scan(const DecodeStepParams& p, const DecodeLayer& L, float* xd, int group,
                           const ScanInputs<W>& first) {
  const int64_t e = p.e, n = p.n, rk = p.r, xw = rk + 2 * n, ld = padded4(xw);
  const int64_t width = p.xpieces * kDecodeSlice, slices = (e + width - 1) / width;
  constexpr int kBatch = 16;  // partial sums loaded at once, then added in order
  for (int64_t t = threadIdx.x; t < p.b * xw; t += kThreads) {
    float s = 0.0f;
    for (int64_t q0 = 0; q0 < slices; q0 += kBatch) {
      float v[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) v[j] = q0 + j < slices ? p.part[(q0 + j) * p.b * xw + t] : 0.0f;
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (q0 + j < slices) s += v[j];
    }
    xd[(t / xw) * ld + t % xw] = s;
  }
  __syncthreads();
  const Grid gp = grid_position();
  const int64_t total = p.b * e * group, start = int64_t(gp.warp) * 32;
  for (int64_t base = start; base < total; base += int64_t(gp.warps) * 32) {
    const int64_t t = base + gp.lane, i = t / group, g = t % group;
    const bool valid = t < total;
    const ScanInputs<W> in = base == start ? first : scan_inputs<W>(p, L, t, group);
    const int64_t bi = valid ? i / e : 0, c = valid ? i % e : 0;
    const float* x = xd + bi * ld;
    float dt = 0.0f, y = 0.0f;
    if (valid) {
      const W* wd = static_cast<const W*>(L.dt_proj) + c * rk;
      if (rk % 8 == 0) {
        float acc[1] = {0.0f};
        for (int64_t q = g * 8; q < rk; q += group * 8)
          fma_piece<W, 1>(acc, q == g * 8 ? in.wd0 : load_piece(wd + q), x + q, 0, 1);
        dt = acc[0];
      } else {
        for (int64_t q = g; q < rk; q += group) dt += to_f32(wd[q]) * x[q];
      }
    }
    for (int off = group / 2; off > 0; off >>= 1) dt += __shfl_xor_sync(0xffffffffu, dt, off);
    if (valid) {
      float delta = dt + in.dt_bias;
      delta = delta > 20.0f ? delta : log1pf(expf(delta));
      const float du = delta * in.u;
      const float* A = L.A + c * n;
      float* h = L.ssm_state + i * n;
      for (int64_t s = g; s < n; s += group) {
        const float a = s == g ? in.A0 : A[s], h0 = s == g ? in.h0 : h[s];
        const float hs = expf(delta * a) * h0 + du * x[rk + s];
        y += hs * x[rk + n + s];
        h[s] = hs;
      }
    }
    for (int off = group / 2; off > 0; off >>= 1) y += __shfl_xor_sync(0xffffffffu, y, off);
    if (!valid || g != 0) continue;
    y += in.D * in.u;
    p.y[bi * e + c] = y * (in.z / (1.0f + expf(-in.z)));
  }
}

// Phase D: residual += y · out_projᵀ + bias (y staged in shared memory as xs).
template <class W, int M, int G, int H>
__device__ void phase_out(const DecodeStepParams& p, const DecodeLayer& L, float* xs, const RowHead<W, H>& head) {
  const int64_t e = p.e, d = p.d;
  for (int64_t t = threadIdx.x; t < p.b * e / 4; t += kThreads)
    reinterpret_cast<float4*>(xs)[t] = reinterpret_cast<const float4*>(p.y)[t];
  __syncthreads();
  const Grid g = grid_position();
  for (int64_t o = g.warp; o < d; o += g.warps) {
    float res = 0.0f, bias = 0.0f;
    if (g.lane < p.b) res = p.residual[g.lane * d + o], bias = L.out_bias != nullptr ? L.out_bias[o] : 0.0f;
    float acc[M];
    row_dot<W, M, G, H>(acc, static_cast<const W*>(L.out_proj) + o * e, xs, e, e, p.b, g.lane, head, o == g.warp);
    if (g.lane < p.b) p.residual[g.lane * d + o] = res + (lane_value(acc, g.lane) + bias);
  }
}

// Whether (value, id) comes before `best` in the greedy order: the larger value, the lower id among equal values,
// NaN after every number (argmax_kernel's order).
__device__ __forceinline__ bool greedy_before(float value, int32_t id, const GreedyKey& best) {
  if (isnan(value)) return false;
  if (isnan(best.value)) return true;
  return value > best.value || (value == best.value && id < best.id);
}

// Each row's greedy id from the warps' candidates (lane r: row r): the block's best per row into greedy_part, one
// more grid barrier, then block 0 (warp r: row r) picks among the blocks' candidates. The other blocks leave
// after their arrival; the barrier's count still grows by the grid size.
__device__ void choose_greedy(const DecodeStepParams& p, const GreedyKey& mine, GridBarrier& bar) {
  __shared__ GreedyKey keys[kWarps][kDecodeMaxRows];
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  if (lane < p.b) keys[warp][lane] = mine;
  __syncthreads();
  if (threadIdx.x < p.b) {
    GreedyKey k = keys[0][threadIdx.x];
    for (int w = 1; w < kWarps; ++w)
      if (greedy_before(keys[w][threadIdx.x].value, keys[w][threadIdx.x].id, k)) k = keys[w][threadIdx.x];
    p.greedy_part[threadIdx.x * gridDim.x + blockIdx.x] = k;
  }
  grid_arrive(bar);
  if (blockIdx.x != 0) return;
  grid_wait(bar);
  if (warp >= p.b) return;
  GreedyKey k{__int_as_float(0x7fc00000), int32_t(p.v)};
  for (int j = lane; j < int(gridDim.x); j += 32) {
    const float2 c = __ldcg(reinterpret_cast<const float2*>(p.greedy_part + warp * gridDim.x + j));
    if (greedy_before(c.x, __float_as_int(c.y), k)) k = GreedyKey{c.x, __float_as_int(c.y)};
  }
  for (int off = 16; off > 0; off >>= 1) {
    const GreedyKey o{__shfl_xor_sync(0xffffffffu, k.value, off), __shfl_xor_sync(0xffffffffu, k.id, off)};
    if (greedy_before(o.value, o.id, k)) k = o;
  }
  if (lane == 0) p.greedy[warp] = k.id < p.v ? k.id : 0;
}

// Phase F: logits = (xs · lm_headᵀ) · scale; the warp's next row asked of L1 as in phase A. With p.greedy, lane r
// keeps row r's best logit among the warp's columns, and the rows' greedy ids are chosen from them.
template <class W, int M, int G, int H>
__device__ void phase_head(const DecodeStepParams& p, const float* xs, float scale, const RowHead<W, H>& head,
                           GridBarrier& bar) {
  const Grid g = grid_position();
  GreedyKey best{__int_as_float(0x7fc00000), int32_t(p.v)};
  for (int64_t o = g.warp; o < p.v; o += g.warps) {
    float acc[M];
    if (o + g.warps < p.v)
      prefetch_l1_bytes(static_cast<const W*>(p.lm_head) + (o + g.warps) * p.d, p.d * int64_t(sizeof(W)), g.lane);
    row_dot<W, M, G, H>(acc, static_cast<const W*>(p.lm_head) + o * p.d, xs, p.d, p.d, p.b, g.lane, head, o == g.warp);
    if (g.lane >= p.b) continue;
    const float x = lane_value(acc, g.lane) * scale;
    p.logits[g.lane * p.v + o] = x;
    if (greedy_before(x, int32_t(o), best)) best = GreedyKey{x, int32_t(o)};
  }
  if (p.greedy != nullptr) choose_greedy(p, best, bar);
}

// ---- L2 requests for the next phase's first piece of work ----------------------------------------------------

// The warp's first row of the next product phase (w (rows, i)): its first pieces loaded, and with `whole` the
// row asked of L2 whole. out_proj's rows are not asked for whole: those 16.8 MB of requests (1.4B) queued ahead
// of the barrier's polls and delayed every block's exit from the barrier before phase D (1.4B batch 1 measured
// 1.757 → 1.724 ms/token without them; without in_proj's as well 1.731, without only in_proj's 1.763).
template <class W, int H>
__device__ void next_rows(RowHead<W, H>& head, const void* w, int64_t rows, int64_t i, bool whole) {
  const Grid g = grid_position();
  if (g.warp >= rows) return;
  const W* row = static_cast<const W*>(w) + g.warp * i;
  if (whole) prefetch_bytes(row, i * int64_t(sizeof(W)), g.lane);
  load_head(head, row, i, g.lane);
}

template <class W, int H>
__device__ void next_in(RowHead<W, H>& head, const DecodeStepParams& p, const DecodeLayer& L) {
  const Grid g = grid_position();
  if (g.warp < p.e && g.lane < p.b && p.k > 1) prefetch_l2(L.conv_state + (g.lane * p.e + g.warp) * (p.k - 1));
  next_rows(head, L.in_proj, 2 * p.e, p.d, /*whole=*/true);
}

// ---- the kernel ----------------------------------------------------------------------------------------------

template <class W, int M, int G, int H>
__global__ void __launch_bounds__(kThreads, 1) decode_step_kernel(DecodeStepParams p) {
  extern __shared__ float4 shared_rows[];
  float* xs = reinterpret_cast<float*>(shared_rows);
  int group = 1;
  while (group < 32 && group < p.n) group *= 2;
  // Fewer lanes per (row, channel), down to 4, where one lane each would take the grid more than one round.
  while (group > 4 && p.b * p.e * group > int64_t(gridDim.x) * kThreads) group /= 2;
  GridBarrier bar = grid_start(p.barrier);
  RowHead<W, H> head;
  NormWeights nw;
  load_norm(nw, p.n_layer > 0 ? p.layers[0].norm : p.norm_f, p.d);
  if (p.n_layer > 0) next_in(head, p, p.layers[0]);
  for (int64_t li = 0; li < p.n_layer; ++li) {
    const DecodeLayer& L = p.layers[li];
    const float scale = norm_rows<W, M>(xs, p, nw, li == 0);
    phase_in<W, M, G, H>(p, L, xs, scale, head);
    grid_arrive(bar);
    const XPieces<W> xpiece = xproj_pieces<W>(p, L, grid_position().warp, grid_position().lane);
    grid_wait(bar);
    phase_xproj<W, M>(p, L, xpiece);
    grid_arrive(bar);
    const ScanInputs<W> scan = scan_inputs<W>(p, L, int64_t(grid_position().warp) * 32 + grid_position().lane, group);
    grid_wait(bar);
    phase_scan<W, M>(p, L, xs, group, scan);
    grid_arrive(bar);
    next_rows(head, L.out_proj, p.d, p.e, /*whole=*/false);
    grid_wait(bar);
    phase_out<W, M, G, H>(p, L, xs, head);
    grid_arrive(bar);
    load_norm(nw, li + 1 < p.n_layer ? p.layers[li + 1].norm : p.norm_f, p.d);
    if (li + 1 < p.n_layer)
      next_in(head, p, p.layers[li + 1]);
    else
      next_rows(head, p.lm_head, p.v, p.d, /*whole=*/true);
    grid_wait(bar);
  }
  if (p.n_layer == 0) next_rows(head, p.lm_head, p.v, p.d, /*whole=*/true);
  const float scale = norm_rows<W, M>(xs, p, nw, p.n_layer == 0);
  phase_head<W, M, G, H>(p, xs, scale, head, bar);
}

using KernelFn = void (*)(DecodeStepParams);

// The products' pipelining (G pieces per lane in flight, H of them loaded ahead of a barrier), by batch and by
// the length of the model's rows. Where a row gives each lane 8 pieces or more (d ≥ 2,048, e.g. Mamba-1.4B), a
// head of 2 pieces asks less of the memory system while the grid waits at a barrier, and at batch 1 a group of 8
// keeps more of each row in flight; below that, the head of 4 covers a whole in_proj row (Mamba-130M: 3 pieces)
// and (4, 4) measured fastest (docs/PERFORMANCE.md).
template <class W>
KernelFn kernel_for_rows(int64_t b, int64_t d) {
  const bool long_rows = d >= 8 * 256;
  if (b <= 1) return long_rows ? decode_step_kernel<W, 1, 8, 2> : decode_step_kernel<W, 1, 4, 4>;
  if (b <= 2) return long_rows ? decode_step_kernel<W, 2, 4, 2> : decode_step_kernel<W, 2, 4, 4>;
  if (b <= 4) return long_rows ? decode_step_kernel<W, 4, 4, 2> : decode_step_kernel<W, 4, 4, 4>;
  return long_rows ? decode_step_kernel<W, 8, 4, 2> : decode_step_kernel<W, 8, 4, 4>;
}

// f32 weights (tests, exact comparisons) keep (4, 2): two 16-byte loads per piece, so the same registers as a
// half head of 4.
KernelFn kernel_for(const DecodeStepParams& p) {
  switch (p.w_dtype) {
    case DType::f32:
      if (p.b <= 1) return decode_step_kernel<float, 1, 4, 2>;
      if (p.b <= 2) return decode_step_kernel<float, 2, 4, 2>;
      if (p.b <= 4) return decode_step_kernel<float, 4, 4, 2>;
      return decode_step_kernel<float, 8, 4, 2>;
    case DType::f16: return kernel_for_rows<__half>(p.b, p.d);
    case DType::bf16: break;
  }
  return kernel_for_rows<__nv_bfloat16>(p.b, p.d);
}

int64_t shared_bytes(const DecodeStepParams& p) {
  const int64_t rows = std::max({p.d, p.e, padded4(p.r + 2 * p.n)});
  return p.b * rows * int64_t(sizeof(float));
}

constexpr int64_t kMaxSharedBytes = 200 * 1024;

}  // namespace

bool decode_step_supports(const DecodeStepParams& p, std::string* why) {
  if (p.b < 1 || p.b > kDecodeMaxRows)
    return refuse(why, "decode step: batch " + std::to_string(p.b) + " is outside 1.." + std::to_string(kDecodeMaxRows));
  if (p.d % 8 != 0 || p.e % 8 != 0)
    return refuse(why, "decode step: d_model and d_inner must be multiples of 8");
  if (p.d > kDecodeMaxD) return refuse(why, "decode step: d_model above " + std::to_string(kDecodeMaxD));
  if (p.k < 1 || p.n < 1 || p.r < 1) return refuse(why, "decode step: d_conv, d_state and dt_rank must be at least 1");
  if (p.k > kDecodeMaxWidth) return refuse(why, "decode step: d_conv above " + std::to_string(kDecodeMaxWidth));
  if (shared_bytes(p) > kMaxSharedBytes) return refuse(why, "decode step: b · d_inner is too large for shared memory");
  return true;
}

int64_t decode_step_part_bytes(const DecodeStepParams& p) {
  return (p.e + kDecodeSlice - 1) / kDecodeSlice * p.b * (p.r + 2 * p.n) * int64_t(sizeof(float));
}

int64_t decode_step_greedy_bytes(int blocks) { return kDecodeMaxRows * int64_t(blocks) * int64_t(sizeof(GreedyKey)); }

int decode_step_prepare(const DecodeStepParams& p) {
  const KernelFn fn = kernel_for(p);
  const int bytes = int(shared_bytes(p));
  CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  int device = 0, sms = 0, cooperative = 0, per_sm = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, size_t(bytes)));
  if (cooperative == 0 || per_sm < 1) return 0;
  return sms;
}

void decode_step_launch(const DecodeStepParams& params, int blocks, cudaStream_t stream) {
  DecodeStepParams p = params;
  // x_proj's slices: two pieces per lane where one would leave units for a second round of the grid's warps.
  const int64_t units = (p.r + 2 * p.n) * ((p.e + kDecodeSlice - 1) / kDecodeSlice);
  p.xpieces = units > int64_t(blocks) * kWarps ? 2 : 1;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeCooperative;
  attr.val.cooperative = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(shared_bytes(p));
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel_for(p), p));
  CUDA_CHECK_LAUNCH("decode_step_kernel", stream);
}

}  // namespace mambacpp::cuda
