// Marks per-element helpers that CPU code and CUDA/HIP device code share.
#pragma once
#if defined(__CUDACC__) || defined(__HIPCC__)
#define CONDENSE_HD __host__ __device__ inline
#else
#define CONDENSE_HD inline
#endif
