// The backward kernels of backward_kernels.h. Row work (RMSNorm, the softmax) takes one block per row with block
// reductions in a fixed tree; sums over rows (weight and bias gradients) one thread per column over a fixed block
// of rows, then one thread per column over the blocks; the conv1d backward one thread per 4 channels (16-byte
// accesses along the contiguous channels) walking a run of positions; the embedding gradient sorts the rows by
// id in one block, then adds each id's rows in row order. Accumulation is in f32 except the losses (double).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "core/cuda/check.h"
#include "ops/cuda/backward_kernels.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kColumnSumRows = 128;  // rows per partial sum of column_sum
constexpr int64_t kConvTokens = 32;      // positions per thread (and per dw partial sum) of the conv backward
constexpr int kConvThreads = 128;
constexpr int kFinishLanes = 32;  // partial sums of the conv weight gradient per output, added in a tree
constexpr int kEmbedColumns = 128;       // columns per embedding-gradient block
constexpr int kEmbedBuckets = 128;       // table rows are split by id % kEmbedBuckets among the blocks
constexpr int kEmbedIdsPerLoad = 1024;
constexpr int kXentThreads = 512;
constexpr int64_t kEmbedSortMax = 32768;  // rows sorted in one block: 128 KB of 32-bit keys in shared memory
constexpr int kSortThreads = 1024;

unsigned blocks_for(int64_t count, int per = kThreads) { return unsigned((count + per - 1) / per); }

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// V consecutive floats; V = 4 moves them in one 16-byte access (the address must be 16-byte aligned).
template <int V>
struct Vec {
  float a[V];
};
template <int V>
__device__ __forceinline__ Vec<V> load_vec(const float* p) {
  Vec<V> r;
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    r.a[0] = t.x, r.a[1] = t.y, r.a[2] = t.z, r.a[3] = t.w;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) r.a[i] = p[i];
  }
  return r;
}
template <int V>
__device__ __forceinline__ void store_vec(float* p, const Vec<V>& v) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v.a[0], v.a[1], v.a[2], v.a[3]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = v.a[i];
  }
}
template <int V>
__device__ __forceinline__ void store_half(void* dst, DType t, int64_t i, const Vec<V>& g) {
  if (t == DType::bf16) {
    __nv_bfloat16* d = static_cast<__nv_bfloat16*>(dst) + i;
    if constexpr (V == 4) {
      __nv_bfloat162 h[2] = {__floats2bfloat162_rn(g.a[0], g.a[1]), __floats2bfloat162_rn(g.a[2], g.a[3])};
      *reinterpret_cast<uint2*>(d) = *reinterpret_cast<const uint2*>(h);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) d[k] = __float2bfloat16_rn(g.a[k]);
    }
  } else {
    __half* d = static_cast<__half*>(dst) + i;
    if constexpr (V == 4) {
      __half2 h[2] = {__floats2half2_rn(g.a[0], g.a[1]), __floats2half2_rn(g.a[2], g.a[3])};
      *reinterpret_cast<uint2*>(d) = *reinterpret_cast<const uint2*>(h);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) d[k] = __float2half_rn(g.a[k]);
    }
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Sum (or max) of one value per thread of a block of kThreadsT threads, in a fixed tree; valid in every thread.
template <int kThreadsT, bool kMax>
__device__ float block_reduce(float x, float* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int half = kThreadsT / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) {
      const float o = shared[threadIdx.x + half];
      shared[threadIdx.x] = kMax ? fmaxf(shared[threadIdx.x], o) : shared[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

__global__ void column_partials(ColumnSumParams p) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  const int64_t r0 = int64_t(blockIdx.y) * kColumnSumRows, r1 = min(p.rows, r0 + kColumnSumRows);
  float acc = 0;
#pragma unroll 8  // the loads of 8 rows in flight at once; the adds stay in row order
  for (int64_t r = r0; r < r1; ++r) {
    float v = p.a[r * p.ld_a + c];
    if (p.b != nullptr) v *= p.b[r * p.ld_b + c];
    if (p.row_scale != nullptr) v *= p.row_scale[r];
    acc += v;
  }
  p.partials[int64_t(blockIdx.y) * p.cols + c] = acc;
}

__global__ void column_finish(ColumnSumParams p, int64_t chunks) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  float acc = 0;
#pragma unroll 16  // the loads of 16 partials in flight at once; the adds stay in order
  for (int64_t i = 0; i < chunks; ++i) acc += p.partials[i * p.cols + c];
  p.out[c] += acc;
}

__global__ void embedding_grad_kernel(EmbeddingGradParams p) {
  __shared__ int32_t ids[kEmbedIdsPerLoad];
  const int64_t c = int64_t(blockIdx.x) * kEmbedColumns + threadIdx.x;
  const int bucket = int(blockIdx.y), buckets = int(gridDim.y);
  for (int64_t r0 = 0; r0 < p.m; r0 += kEmbedIdsPerLoad) {
    const int count = int(min(int64_t(kEmbedIdsPerLoad), p.m - r0));
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += blockDim.x) ids[i] = p.ids[r0 + i];
    __syncthreads();
    if (c >= p.d) continue;
    for (int i = 0; i < count; ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= p.v || id % buckets != bucket) continue;
      p.dtable[int64_t(id) * p.d + c] += p.dout[(r0 + i) * p.ld_dout + c];
    }
  }
}

__global__ void rmsnorm_grad_kernel(RmsNormGradParams p) {
  __shared__ float shared[kThreads];
  const int64_t r = blockIdx.x;
  const float* res = p.residual + r * p.ld_residual;
  const float* dout = p.dout + r * p.ld_dout;
  float sq = 0, dot = 0;
  for (int64_t c = threadIdx.x; c < p.d; c += kThreads) {
    const float x = res[c];
    sq += x * x;
    dot += dout[c] * p.w[c] * x;
  }
  sq = block_reduce<kThreads, false>(sq, shared);
  dot = block_reduce<kThreads, false>(dot, shared);
  const float s = 1.0f / sqrtf(sq / float(p.d) + p.eps);
  const float coef = s * s * s * dot / float(p.d);
  float* dres = p.dresidual + r * p.ld_dresidual;
  for (int64_t c = threadIdx.x; c < p.d; c += kThreads) {
    const float v = dres[c] + (s * (dout[c] * p.w[c]) - coef * res[c]);
    dres[c] = v;
    if (p.dresidual_half == nullptr) continue;
    const int64_t at = r * p.ld_dresidual_half + c;
    if (p.half_dtype == DType::bf16)
      static_cast<__nv_bfloat16*>(p.dresidual_half)[at] = __float2bfloat16_rn(v);
    else
      static_cast<__half*>(p.dresidual_half)[at] = __float2half_rn(v);
  }
  if (p.row_scale != nullptr && threadIdx.x == 0) p.row_scale[r] = s;
}

// xx[s] of batch row bi, channels c0 .. c0+V-1: state_in for s < k-1, then x.
template <int V>
__device__ __forceinline__ Vec<V> conv_input(const ConvGradParams& p, int64_t bi, int64_t s, int64_t c0) {
  const int64_t km1 = p.k - 1;
  if (s >= km1) return load_vec<V>(p.x + bi * p.x_sb + (s - km1) * p.x_sl + c0);
  Vec<V> r;
#pragma unroll
  for (int i = 0; i < V; ++i) r.a[i] = p.state_in != nullptr ? p.state_in[(bi * p.e + c0 + i) * km1 + s] : 0.0f;
  return r;
}

// One thread per V channels and kConvTokens positions q of one batch row, walking q upwards with the last K inputs
// and the last K values of dpre = dout·act'(pre) in registers. dxx[q] = Σ_j w[j]·dpre[q − j] needs dpre up to
// q + k − 1 for dx[q], so each run computes dpre k − 1 positions past its end (zero past l). dw and dbias are
// summed over the run's own positions into partials[run][c][0 .. k], added in a fixed order by conv_dw_finish.
template <int K, int V>
__global__ void conv_grad_kernel(ConvGradParams p) {
  const int64_t c0 = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (c0 >= p.e) return;
  const int64_t runs = (p.l + kConvTokens - 1) / kConvTokens, run = blockIdx.x;
  const int64_t bi = run / runs, t0 = (run % runs) * kConvTokens, t1 = min(p.l, t0 + kConvTokens);
  constexpr int km1 = K - 1;
  float w[K][V], bias[V], xs[K][V], dp[K][V] = {}, acc[K + 1][V] = {};
#pragma unroll
  for (int i = 0; i < V; ++i) {
    bias[i] = p.bias != nullptr ? p.bias[c0 + i] : 0.0f;
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][i] = p.w[(c0 + i) * K + j];
  }
#pragma unroll
  for (int j = 0; j < km1; ++j) {
    const Vec<V> v = conv_input<V>(p, bi, t0 + j, c0);
#pragma unroll
    for (int i = 0; i < V; ++i) xs[j + 1][i] = v.a[i];
  }
  const int64_t q_end = min(t1 + km1, p.l + km1);
  for (int64_t q = t0; q < q_end; ++q) {
#pragma unroll
    for (int j = 0; j < km1; ++j)
#pragma unroll
      for (int i = 0; i < V; ++i) dp[j][i] = dp[j + 1][i], xs[j][i] = xs[j + 1][i];
    if (q < p.l) {
      const Vec<V> xv = load_vec<V>(p.x + bi * p.x_sb + q * p.x_sl + c0);
      const Vec<V> g = load_vec<V>(p.dout + bi * p.dout_sb + q * p.dout_sl + c0);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        xs[km1][i] = xv.a[i];
        float d = g.a[i];
        if (p.silu) {
          float pre = bias[i];
#pragma unroll
          for (int j = 0; j < K; ++j) pre += w[j][i] * xs[j][i];
          const float sg = sigmoid(pre);
          d = d * sg * (1.0f + pre * (1.0f - sg));
        }
        dp[km1][i] = d;
        if (q < t1) {
#pragma unroll
          for (int j = 0; j < K; ++j) acc[j][i] += d * xs[j][i];
          acc[K][i] += d;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) dp[km1][i] = 0.0f;
    }
    const bool to_dx = q - km1 >= t0, to_state = t0 == 0 && q < km1 && p.dstate_in != nullptr;
    if (!to_dx && !to_state) continue;
    Vec<V> out;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      float s = 0;
#pragma unroll
      for (int j = 0; j < K; ++j) s += w[j][i] * dp[km1 - j][i];
      out.a[i] = s;
    }
    if (to_dx) {
      const int64_t at = bi * p.dx_sb + (q - km1) * p.dx_sl + c0;
      if (p.dx_half != nullptr)
        store_half<V>(p.dx_half, p.half_dtype, at, out);
      else
        store_vec<V>(p.dx + at, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) p.dstate_in[(bi * p.e + c0 + i) * km1 + q] = out.a[i];
    }
  }
  if (p.dw == nullptr && p.dbias == nullptr) return;
  float* part = p.partials + (run * p.e + c0) * (K + 1);
#pragma unroll
  for (int i = 0; i < V; ++i)
#pragma unroll
    for (int j = 0; j <= K; ++j) part[i * (K + 1) + j] = acc[j][i];
}

// Block (32, kFinishLanes): threadIdx.x picks an output (c, j) of dw (j < k) or dbias (j = k), threadIdx.y sums
// the runs y, y + kFinishLanes, … in order; the lanes' sums are then added in a fixed tree.
__global__ void conv_dw_finish(ConvGradParams p, int64_t runs) {
  __shared__ float shared[kFinishLanes][33];
  const int64_t i = int64_t(blockIdx.x) * 32 + threadIdx.x, per = p.e * (p.k + 1);
  float acc = 0;
  if (i < per)
    for (int64_t r = threadIdx.y; r < runs; r += kFinishLanes) acc += p.partials[r * per + i];
  shared[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  for (int half = kFinishLanes / 2; half > 0; half /= 2) {
    if (int(threadIdx.y) < half) shared[threadIdx.y][threadIdx.x] += shared[threadIdx.y + half][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y != 0 || i >= per) return;
  const int64_t c = i / (p.k + 1), j = i % (p.k + 1);
  if (j < p.k && p.dw != nullptr) p.dw[c * p.k + j] += shared[0][threadIdx.x];
  if (j == p.k && p.dbias != nullptr) p.dbias[c] += shared[0][threadIdx.x];
}

// (max, Σ exp(x − max)) of two parts merged; an empty part has max −∞ and sum 0.
__device__ __forceinline__ void merge_max_sum(float& mx, float& sum, float om, float os) {
  const float m = fmaxf(mx, om);
  if (m == -INFINITY) return;
  sum = (mx == -INFINITY ? 0.0f : sum * expf(mx - m)) + (om == -INFINITY ? 0.0f : os * expf(om - m));
  mx = m;
}

// Merges every thread's (max, sum) over the block in a fixed pattern (warp butterflies, then the warps' results
// in one warp); every thread receives the totals.
__device__ void block_max_sum(float& mx, float& sum, float* shared_m, float* shared_s) {
  for (int o = 16; o > 0; o >>= 1)
    merge_max_sum(mx, sum, __shfl_xor_sync(0xffffffffu, mx, o), __shfl_xor_sync(0xffffffffu, sum, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) shared_m[warp] = mx, shared_s[warp] = sum;
  __syncthreads();
  mx = lane < warps ? shared_m[lane] : -INFINITY, sum = lane < warps ? shared_s[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1)
    merge_max_sum(mx, sum, __shfl_xor_sync(0xffffffffu, mx, o), __shfl_xor_sync(0xffffffffu, sum, o));
}


// One block per row, V logits per access: one pass for the running max and the sum of exponentials (rescaled
// when the max grows), one pass that writes the gradient.
template <int V>
__global__ void softmax_xent_kernel(SoftmaxXentParams p) {
  __shared__ float shared_m[32], shared_s[32];
  const int64_t r = blockIdx.x;
  float* row = p.logits + r * p.v;
  const int32_t target = p.targets[r];
  const bool skip = target < 0 || target >= p.v;
  const float xt = skip || threadIdx.x != 0 ? 0.0f : row[target];
  float mx = -INFINITY, total = 0;
  if (!skip)
    for (int64_t c = int64_t(threadIdx.x) * V; c < p.v; c += kXentThreads * V) {
      const Vec<V> x = load_vec<V>(row + c);
      float m = x.a[0];
#pragma unroll
      for (int i = 1; i < V; ++i) m = fmaxf(m, x.a[i]);
      if (m > mx) total = mx == -INFINITY ? 0.0f : total * expf(mx - m), mx = m;
#pragma unroll
      for (int i = 0; i < V; ++i) total += expf(x.a[i] - mx);
    }
  block_max_sum(mx, total, shared_m, shared_s);  // its barrier orders the read of row[target] before the writes
  if (threadIdx.x == 0)
    p.loss[r] = target < 0 ? 0.0 : target >= p.v ? double(NAN) : log(double(total)) - double(xt - mx);
  const float inv = skip ? 0.0f : p.scale / total;
  for (int64_t c = int64_t(threadIdx.x) * V; c < p.v; c += kXentThreads * V) {
    Vec<V> g;
    if (skip) {
#pragma unroll
      for (int i = 0; i < V; ++i) g.a[i] = 0.0f;
    } else {
      g = load_vec<V>(row + c);
#pragma unroll
      for (int i = 0; i < V; ++i) g.a[i] = expf(g.a[i] - mx) * inv;
    }
    if (target >= c && target < c + V) g.a[target - c] -= p.scale;
    if (p.grad_half == nullptr)
      store_vec<V>(row + c, g);
    else
      store_half<V>(p.grad_half, p.half_dtype, r * p.v + c, g);
  }
}

// One block: each thread sums a strided slice in order, then a fixed tree.
__global__ void sum_doubles_kernel(double* out, const double* in, int64_t n) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) acc += in[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

// Sorts the keys (id << bits | row) of the m rows (UINT32_MAX for ids outside [0, v) and the padding to n, a
// power of two) in shared memory with a bitonic network, and writes the first m to p.sorted.
__global__ void embedding_sort_kernel(EmbeddingGradParams p, int bits, int n) {
  extern __shared__ uint32_t keys[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    uint32_t key = UINT32_MAX;
    if (i < p.m) {
      const int32_t id = p.ids[i];
      if (id >= 0 && id < p.v) key = (uint32_t(id) << bits) | uint32_t(i);
    }
    keys[i] = key;
  }
  __syncthreads();
  for (int size = 2; size <= n; size <<= 1)
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
        const uint32_t a = keys[lo], b = keys[hi];
        if ((a > b) == ((lo & size) == 0)) keys[lo] = b, keys[hi] = a;
      }
      __syncthreads();
    }
  for (int i = threadIdx.x; i < p.m; i += blockDim.x) p.sorted[i] = keys[i];
}

// Block x = a sorted position; the first position of each id adds that id's rows, in row order, to its table row
// (V columns per thread of block y's columns).
template <int V>
__global__ void embedding_apply_kernel(EmbeddingGradParams p, int bits) {
  const int64_t i = blockIdx.x;
  const uint32_t key = p.sorted[i];
  if (key == UINT32_MAX) return;
  const uint32_t id = key >> bits, mask = (uint32_t(1) << bits) - 1;
  if (i > 0 && (p.sorted[i - 1] >> bits) == id) return;
  const int64_t c0 = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (c0 >= p.d) return;
  float* dst = p.dtable + int64_t(id) * p.d + c0;
  Vec<V> acc = load_vec<V>(dst);
  for (int64_t j = i; j < p.m; ++j) {
    const uint32_t kj = p.sorted[j];
    if (kj == UINT32_MAX || (kj >> bits) != id) break;
    const Vec<V> g = load_vec<V>(p.dout + int64_t(kj & mask) * p.ld_dout + c0);
#pragma unroll
    for (int k = 0; k < V; ++k) acc.a[k] += g.a[k];
  }
  store_vec<V>(dst, acc);
}

}  // namespace

int64_t column_sum_partials(int64_t rows, int64_t cols) {
  return (rows + kColumnSumRows - 1) / kColumnSumRows * cols;
}

void column_sum_launch(const ColumnSumParams& p, cudaStream_t stream) {
  const int64_t chunks = (p.rows + kColumnSumRows - 1) / kColumnSumRows;
  if (chunks == 0 || p.cols == 0) return;
  column_partials<<<dim3(blocks_for(p.cols), unsigned(chunks)), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("column_partials", stream);
  column_finish<<<blocks_for(p.cols), kThreads, 0, stream>>>(p, chunks);
  CUDA_CHECK_LAUNCH("column_finish", stream);
}

// The bits that hold a row index below m (at least 1), or 0 when the sort does not apply: more rows than fit in
// shared memory, or keys (id << bits | row) that do not fit in 32 bits below the UINT32_MAX sentinel.
int embedding_sort_bits(const EmbeddingGradParams& p) {
  if (p.m > kEmbedSortMax || p.sorted == nullptr) return 0;
  int bits = 1;
  while ((int64_t(1) << bits) < p.m) ++bits;
  return (uint64_t(p.v) << bits) <= uint64_t(UINT32_MAX) ? bits : 0;
}

void embedding_grad_launch(const EmbeddingGradParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.d == 0 || p.v == 0) return;
  const int bits = embedding_sort_bits(p);
  if (bits == 0) {
    const unsigned buckets = unsigned(p.v < kEmbedBuckets ? p.v : kEmbedBuckets);
    embedding_grad_kernel<<<dim3(blocks_for(p.d, kEmbedColumns), buckets), kEmbedColumns, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("embedding_grad_kernel", stream);
    return;
  }
  const int n = 1 << bits;
  static const bool raised = [] {
    CUDA_CHECK(cudaFuncSetAttribute(embedding_sort_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kEmbedSortMax * 4)));
    return true;
  }();
  (void)raised;
  embedding_sort_kernel<<<1, kSortThreads, size_t(n) * 4, stream>>>(p, bits, n);
  CUDA_CHECK_LAUNCH("embedding_sort_kernel", stream);
  const bool vec = p.d % 4 == 0 && p.ld_dout % 4 == 0 && aligned16(p.dtable) && aligned16(p.dout);
  const int v = vec ? 4 : 1;
  const dim3 grid(unsigned(p.m), blocks_for((p.d + v - 1) / v, kEmbedColumns));
  if (vec)
    embedding_apply_kernel<4><<<grid, kEmbedColumns, 0, stream>>>(p, bits);
  else
    embedding_apply_kernel<1><<<grid, kEmbedColumns, 0, stream>>>(p, bits);
  CUDA_CHECK_LAUNCH("embedding_apply_kernel", stream);
}

void rmsnorm_grad_launch(const RmsNormGradParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.d == 0) return;
  rmsnorm_grad_kernel<<<unsigned(p.m), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("rmsnorm_grad_kernel", stream);
}

int64_t conv_grad_partials(int64_t b, int64_t l, int64_t e, int64_t k) {
  return b * ((l + kConvTokens - 1) / kConvTokens) * e * (k + 1);
}

template <int K, int V>
void conv_grad_run(const ConvGradParams& p, cudaStream_t stream) {
  const int64_t runs = p.b * ((p.l + kConvTokens - 1) / kConvTokens), groups = (p.e + V - 1) / V;
  conv_grad_kernel<K, V><<<dim3(unsigned(runs), blocks_for(groups, kConvThreads)), kConvThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("conv_grad_kernel", stream);
}

template <int V>
void conv_grad_width(const ConvGradParams& p, cudaStream_t stream) {
  switch (p.k) {
    case 1: return conv_grad_run<1, V>(p, stream);
    case 2: return conv_grad_run<2, V>(p, stream);
    case 3: return conv_grad_run<3, V>(p, stream);
    case 4: return conv_grad_run<4, V>(p, stream);
    case 5: return conv_grad_run<5, V>(p, stream);
    case 6: return conv_grad_run<6, V>(p, stream);
    case 7: return conv_grad_run<7, V>(p, stream);
    default: return conv_grad_run<8, V>(p, stream);  // conv1d_backward_cuda_supports limits k to 1..8
  }
}

void conv_grad_launch(const ConvGradParams& p, cudaStream_t stream) {
  if (p.b * p.l * p.e == 0) return;
  const bool vec = p.e % 4 == 0 && p.x_sb % 4 == 0 && p.x_sl % 4 == 0 && p.dout_sb % 4 == 0 && p.dout_sl % 4 == 0 &&
                   p.dx_sb % 4 == 0 && p.dx_sl % 4 == 0 && aligned16(p.x) && aligned16(p.dout) && aligned16(p.dx) &&
                   uintptr_t(p.dx_half) % 8 == 0;
  if (vec)
    conv_grad_width<4>(p, stream);
  else
    conv_grad_width<1>(p, stream);
  if (p.dw == nullptr && p.dbias == nullptr) return;
  const int64_t runs = p.b * ((p.l + kConvTokens - 1) / kConvTokens);
  conv_dw_finish<<<blocks_for(p.e * (p.k + 1), 32), dim3(32, kFinishLanes), 0, stream>>>(p, runs);
  CUDA_CHECK_LAUNCH("conv_dw_finish", stream);
}

void softmax_xent_launch(const SoftmaxXentParams& p, cudaStream_t stream) {
  if (p.m == 0) return;
  const bool vec = p.v % 4 == 0 && aligned16(p.logits) && (p.grad_half == nullptr || uintptr_t(p.grad_half) % 8 == 0);
  if (vec)
    softmax_xent_kernel<4><<<unsigned(p.m), kXentThreads, 0, stream>>>(p);
  else
    softmax_xent_kernel<1><<<unsigned(p.m), kXentThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("softmax_xent_kernel", stream);
}

void sum_doubles_launch(double* out, const double* in, int64_t n, cudaStream_t stream) {
  sum_doubles_kernel<<<1, kThreads, 0, stream>>>(out, in, n);
  CUDA_CHECK_LAUNCH("sum_doubles_kernel", stream);
}

}  // namespace mambacpp::cuda
