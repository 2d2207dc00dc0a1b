/*
 * safetensors.c — parse, map and write safetensors files.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/status.h"
#include "io/hugemap.h"

/* The format caps the header at 100 MB; anything larger is corrupt. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},         [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},         [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype t) { return t < ST_N_DTYPES ? st_dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return t < ST_N_DTYPES ? st_dtypes[t].size : 0; }

static int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) { *out = (st_dtype)i; return 1; }
    return 0;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* A JSON number that must be a non-negative integer below 2^53. */
static int st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int st_cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return (x->data > y->data) - (x->data < y->data);
}

/* Fills t from one header entry; data is the start of the data section. */
static dsc_status st_parse_entry(const cJSON *e, const char *fname, const uint8_t *data, size_t data_size,
                                 st_tensor *t) {
    const char *tn = e->string;
    if (!cJSON_IsObject(e)) return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", fname, tn);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': missing dtype", fname, tn);
    if (!st_dtype_parse(dt->valuestring, &t->dtype))
        return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", fname, tn, dt->valuestring);
    if (!cJSON_IsArray(sh)) return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': missing shape", fname, tn);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': %d dimensions (max %d)", fname, tn, nd, ST_MAX_DIMS);
    t->ndim = nd;
    size_t nbytes = st_dtype_size(t->dtype);
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!st_json_uint(cJSON_GetArrayItem(sh, i), &d) || d > INT64_MAX)
            return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': bad shape entry %d", fname, tn, i);
        t->shape[i] = (int64_t)d;
        if (!dsc_mul_size(nbytes, (size_t)d, &nbytes))
            return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': size overflows", fname, tn);
    }
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !st_json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !st_json_uint(cJSON_GetArrayItem(off, 1), &en))
        return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", fname, tn);
    if (b > en)
        return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", fname, tn,
                        (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] outside the %zu data bytes of the file",
                        fname, tn, (unsigned long long)b, (unsigned long long)en, data_size);
    if (en - b != nbytes)
        return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes, dtype and shape need %zu", fname,
                        tn, (unsigned long long)(en - b), nbytes);
    t->data = data + b;
    t->nbytes = nbytes;
    t->name = strdup(tn);
    return t->name ? DSC_OK : dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", fname);
}

/* Tensors may not share bytes; zero-sized ones are exempt. */
static dsc_status st_check_overlaps(st_file *f, const char *fname) {
    if (f->n_tensors < 2) return DSC_OK;
    st_tensor **by_off = malloc(sizeof *by_off * (size_t)f->n_tensors);
    if (!by_off) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", fname);
    for (int i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, st_cmp_offset);
    const st_tensor *prev = NULL;
    dsc_status s = DSC_OK;
    for (int i = 0; i < f->n_tensors && s == DSC_OK; i++) {
        const st_tensor *t = by_off[i];
        if (t->nbytes == 0) continue;
        if (prev && t->data < prev->data + prev->nbytes)
            s = dsc_fail(DSC_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", fname, prev->name, t->name);
        prev = t;
    }
    free(by_off);
    return s;
}

dsc_status st_parse(const uint8_t *buf, size_t size, const char *fname, st_file *f) {
    memset(f, 0, sizeof *f);
    if (size < 8) return dsc_fail(DSC_ERR_IO, "%s: truncated (%zu bytes, no safetensors header)", fname, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        return dsc_fail(DSC_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes)", fname,
                        (unsigned long long)hlen, size);
    /* cJSON before 1.7.17 can read one byte past the text it is given
     * (DaveGamble/cJSON#800); a header that ends the file would then read past
     * the mapping, so cJSON gets a NUL-terminated copy. */
    char *text = malloc((size_t)hlen + 1);
    if (!text) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory for a %llu-byte header", fname, (unsigned long long)hlen);
    memcpy(text, buf + 8, (size_t)hlen);
    text[hlen] = '\0';
    cJSON *root = fio_parse_json(text, (size_t)hlen);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        dsc_status s = dsc_fail(DSC_ERR_FORMAT, "%s: safetensors header is not a JSON object%s%s%s", fname,
                                root ? "" : " (", root ? "" : fio_json_error(), root ? "" : ")");
        cJSON_Delete(root);
        return s;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
    f->tensors = calloc(n ? (size_t)n : 1, sizeof *f->tensors);
    dsc_status s = f->tensors ? DSC_OK : dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", fname);
    for (const cJSON *e = root->child; e && s == DSC_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        s = st_parse_entry(e, fname, data, data_size, &f->tensors[f->n_tensors]);
        if (s == DSC_OK) f->n_tensors++;
    }
    cJSON_Delete(root);
    if (s == DSC_OK) {
        qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, st_cmp_name);
        for (int i = 1; i < f->n_tensors && s == DSC_OK; i++)
            if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
                s = dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s' appears twice", fname, f->tensors[i].name);
    }
    if (s == DSC_OK) s = st_check_overlaps(f, fname);
    if (s != DSC_OK) st_close(f);
    return s;
}

dsc_status st_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    dsc_status s0;
    const int fd = fio_open_fd(path, &s0);
    if (fd < 0) return s0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return dsc_fail(DSC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return dsc_fail(DSC_ERR_IO, "%s: truncated (%zu bytes, no safetensors header)", path, size);
    }
    void *map = hm_map(fd, size);
    close(fd);
    if (map == MAP_FAILED) return dsc_fail(DSC_ERR_NOMEM, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
    dsc_status s = st_parse(map, size, path, f);
    if (s != DSC_OK) {
        munmap(map, size);
        return s;
    }
    f->map = map;
    f->size = size;
    f->path = strdup(path);
    if (!f->path) {
        st_close(f);
        return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    }
    return DSC_OK;
}

int st_reread_small(const st_file *f) {
    if (!f->map || f->size < HM_MIN_BYTES) return 0;
    const int fd = open(f->path, O_RDONLY);
    if (fd < 0) return 0;
    const int r = hm_reread_small(fd, f->size);
    close(fd);
    return r;
}

void st_close(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

struct st_header {
    cJSON *root;
};

st_header *st_header_new(void) {
    st_header *h = malloc(sizeof *h);
    if (!h) return NULL;
    h->root = cJSON_CreateObject();
    cJSON *meta = h->root ? cJSON_AddObjectToObject(h->root, "__metadata__") : NULL;
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) {
        cJSON_Delete(h->root);
        free(h);
        return NULL;
    }
    return h;
}

int st_header_add(st_header *h, const char *name, st_dtype dt, int ndim, const int64_t *shape, uint64_t begin,
                  uint64_t end) {
    cJSON *e = cJSON_AddObjectToObject(h->root, name);
    cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
    cJSON *of = sh ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
    if (!of || !cJSON_AddStringToObject(e, "dtype", st_dtype_name(dt))) return 0;
    for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)begin));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)end));
    return 1;
}

const char st_header_spaces[64] = "                                                                ";

size_t st_header_pad(size_t hl) {
    return (size_t)(64 - (8 + hl) % 64) % 64;
}

char *st_header_finish(st_header *h) {
    if (!h) return NULL;
    char *text = cJSON_PrintUnformatted(h->root);
    cJSON_Delete(h->root);
    free(h);
    return text;
}

/* Bytes of a view whose dtype name was already checked. */
static size_t st_view_bytes(const dsc_tensor_view *v) {
    st_dtype dt = ST_U8;
    st_dtype_parse(v->dtype, &dt);
    size_t nb = st_dtype_size(dt);
    for (int d = 0; d < v->ndim; d++) nb *= (size_t)v->shape[d];
    return nb;
}

static int st_view_rank(const dsc_tensor_view *v) {
    st_dtype dt = ST_U8;
    st_dtype_parse(v->dtype, &dt);
    return st_place_rank(st_view_bytes(v), dt);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The views as the header promises them: named once each, a known dtype,
 * 0-8 dimensions none negative, a size that fits, data where there is any. */
static dsc_status st_check_views(const char *path, const dsc_tensor_view *t, int n) {
    if (n < 0 || (n > 0 && !t)) return dsc_fail(DSC_ERR_ARG, "%s: %d tensors%s", path, n, n > 0 ? " and no array" : "");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const dsc_tensor_view *v = &t[i];
        st_dtype dt;
        size_t nb;
        if (!v->name || !v->name[0] || !strcmp(v->name, "__metadata__"))
            return dsc_fail(DSC_ERR_ARG, "%s: tensor %d: the name '%s' cannot be a tensor's", path, i,
                            v->name ? v->name : "(null)");
        if (!v->dtype || !st_dtype_parse(v->dtype, &dt))
            return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s': unknown dtype '%s'", path, v->name,
                            v->dtype ? v->dtype : "(null)");
        if (v->ndim < 0 || v->ndim > 8)
            return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s': ndim %d is not in [0, 8]", path, v->name, v->ndim);
        nb = st_dtype_size(dt);
        for (int d = 0; d < v->ndim; d++)
            if (v->shape[d] < 0 || !dsc_mul_size(nb, (size_t)v->shape[d], &nb) || nb > (size_t)1 << 53)
                return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s': dimension %d is %lld%s", path, v->name, d,
                                (long long)v->shape[d], v->shape[d] < 0 ? "" : ", too large for the data to be addressed");
        if (nb > 0 && !v->data) return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s': no data", path, v->name);
        total += nb;
        if (total > (size_t)1 << 53) /* offsets are JSON numbers: exact up to 2^53 */
            return dsc_fail(DSC_ERR_ARG, "%s: the tensors hold more than 2^53 bytes", path);
    }
    const char **names = malloc(sizeof *names * (size_t)(n ? n : 1));
    if (!names) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) {
            dsc_status s = dsc_fail(DSC_ERR_ARG, "%s: two tensors named '%s'", path, names[i]);
            free(names);
            return s;
        }
    free(names);
    return DSC_OK;
}

dsc_status dsc_safetensors_write(const char *path, const dsc_tensor_view *t, int n, const char *meta_key,
                                 const char *meta_value) {
    if (!path || !path[0]) return dsc_fail(DSC_ERR_ARG, "safetensors: no output path");
    dsc_status vs = st_check_views(path, t, n);
    if (vs) return vs;
    cJSON *root = cJSON_CreateObject();
    if (!root) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    if (meta_key) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (m) cJSON_AddStringToObject(m, meta_key, meta_value ? meta_value : "");
    }
    for (int i = 0; i < n; i++) {
        st_dtype dt;
        if (!st_dtype_parse(t[i].dtype, &dt)) {
            cJSON_Delete(root);
            return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s': unknown dtype '%s'", path, t[i].name, t[i].dtype);
        }
    }
    size_t off = 0;
    for (int rank = 0; rank < 8; rank++) /* the data in st_place_rank's order */
        for (int i = 0; i < n; i++) {
            size_t nb = st_view_bytes(&t[i]);
            if (st_view_rank(&t[i]) != rank) continue;
            cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
            cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
            cJSON *of = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
            if (!of) {
                cJSON_Delete(root);
                return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
            }
            cJSON_AddStringToObject(e, "dtype", t[i].dtype);
            for (int d = 0; d < t[i].ndim; d++) {
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
            }
            cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
            cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
            off += nb;
        }
    char *hdr = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!hdr) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t hl = strlen(hdr), padded = hl + st_header_pad(hl);
    FILE *fp;
    dsc_status cs = fio_create(path, 0, &fp);
    if (cs) {
        free(hdr);
        return cs;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hdr, 1, hl, fp) == hl;
    ok = ok && fwrite(st_header_spaces, 1, padded - hl, fp) == padded - hl;
    free(hdr);
    for (int rank = 0; rank < 8; rank++)
        for (int i = 0; i < n && ok; i++) {
            size_t nb = st_view_bytes(&t[i]);
            if (st_view_rank(&t[i]) == rank) ok = nb == 0 || fwrite(t[i].data, 1, nb, fp) == nb;
        }
    if (fclose(fp) != 0) ok = 0;
    return ok ? DSC_OK : dsc_fail(DSC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}
