/* CUDA emulator: the two cudaDataType values the kernels use (values as in CUDA's library_types.h). */
#ifndef TL_CUDA_EMU_LIBRARY_TYPES_H
#define TL_CUDA_EMU_LIBRARY_TYPES_H
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
#endif
