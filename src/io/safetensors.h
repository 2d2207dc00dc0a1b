/*
 * safetensors.h — memory-mapped safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the tensor bytes; offsets are relative to the end of the header.
 * Every offset, shape and size is checked against the file before use.
 */
#ifndef DSC_IO_SAFETENSORS_H
#define DSC_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_N_DTYPES
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;                 /* owned by the st_file                     */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const uint8_t *data;        /* borrowed from the mapping                */
    size_t nbytes;
} st_tensor;

typedef struct {
    char *path;
    uint8_t *map;               /* whole file, read-only; NULL for memory parses */
    size_t size;
    st_tensor *tensors;         /* sorted by name                          */
    int n_tensors;
} st_file;

const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t);

/* Maps path and parses its header. On failure f is zeroed and nothing stays
 * mapped. `what` is only used in messages. */
dsc_status st_open(const char *path, st_file *f);

/* Parses a safetensors image already in memory (buf must outlive f); the
 * entry point of the fuzzer. name is used in messages. */
dsc_status st_parse(const uint8_t *buf, size_t size, const char *name, st_file *f);

void st_close(st_file *f);

/* A file of weights cached in small pages, dropped from the page cache and
 * read again in 2 MiB ones where this kernel can (hugemap.h); 1 when done. */
int st_reread_small(const st_file *f);

/* Binary search by name; NULL if absent. */
const st_tensor *st_find(const st_file *f, const char *name);

/* Number of elements (product of the shape); the shapes were checked at parse
 * time so this cannot overflow. */
int64_t st_numel(const st_tensor *t);

/* Header of a file being written: entries in file order, then the JSON text
 * (with "__metadata__": {"format": "pt"} as torch writes). */
typedef struct st_header st_header;
st_header *st_header_new(void);                         /* NULL when out of memory */
int st_header_add(st_header *h, const char *name, st_dtype dt, int ndim, const int64_t *shape, uint64_t begin,
                  uint64_t end);                        /* 0 when out of memory    */
char *st_header_finish(st_header *h);                   /* frees h; malloc'd text or NULL */

/* The spaces (JSON whitespace) after a header of hl bytes that start the
 * data on a 64-byte boundary of the file, so that a mapped tensor's rows
 * meet the kernels' 32-byte loads on line boundaries (loads spanning two
 * lines: 0.93-0.99x); at most 63, in st_header_spaces. */
size_t st_header_pad(size_t hl);
extern const char st_header_spaces[64];

/* The order in which a writer places tensors in a file: first those whose
 * size is a multiple of 64 bytes (each then starts 64-byte aligned), then
 * the others; within each, 8-byte dtypes, then 4, 2, 1 (each tensor aligned
 * to its element). Rank 0..7 of a tensor of nbytes bytes of dtype dt. */
static inline int st_place_rank(uint64_t nbytes, st_dtype dt) {
    const size_t es = st_dtype_size(dt);
    return (nbytes % 64 ? 4 : 0) + (es >= 8 ? 0 : es >= 4 ? 1 : es >= 2 ? 2 : 3);
}

#endif
