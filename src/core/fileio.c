/*
 * fileio.c — file helpers (POSIX).
 */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/status.h"

dsc_status fio_join(char *out, const char *dir, const char *name) {
    int n = snprintf(out, FIO_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= FIO_PATH_MAX) return dsc_fail(DSC_ERR_ARG, "%s: path too long", dir);
    return DSC_OK;
}

int fio_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

dsc_status fio_mkdirs(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? DSC_OK : dsc_fail(DSC_ERR_IO, "%s: exists and is not a directory", dir);
    char p[FIO_PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return dsc_fail(DSC_ERR_ARG, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        char ch = *s;
        if (ch != '/' && ch != '\0') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return dsc_fail(DSC_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
        *s = ch;
        if (!ch) break;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dsc_fail(DSC_ERR_IO, "%s: cannot create directory: a component is not a directory", dir);
    return DSC_OK;
}

/* A descriptor of the regular file at path, opened without blocking (a
 * FIFO's open would wait for a writer), or -1 with *s set. */
int fio_open_fd(const char *path, dsc_status *s) {
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        *s = dsc_fail(DSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb = {0};
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        *s = dsc_fail(DSC_ERR_IO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *s = DSC_OK;
    return fd;
}

dsc_status fio_open_read(const char *path, FILE **out) {
    dsc_status s;
    const int fd = fio_open_fd(path, &s);
    if (fd < 0) return s;
    if (!(*out = fdopen(fd, "rb"))) {
        close(fd);
        return dsc_fail(DSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    return DSC_OK;
}

dsc_status fio_read_file(const char *path, size_t max, char **out, size_t *len) {
    FILE *fp;
    dsc_status s = fio_open_read(path, &fp);
    if (s) return s;
    size_t cap = 1 << 14, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, fp);
        if (n < cap) break;
        if (cap >= max) {
            free(b);
            fclose(fp);
            return dsc_fail(DSC_ERR_FORMAT, "%s: larger than %zu MiB", path, max >> 20);
        }
        char *nb = realloc(b, (cap *= 2) + 1);
        if (!nb) free(b);
        b = nb;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!b) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    if (err) {
        free(b);
        return dsc_fail(DSC_ERR_IO, "%s: read error (%s)", path, strerror(errno ? errno : EIO));
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return DSC_OK;
}

dsc_status fio_pwrite_all(int fd, const void *buf, size_t n, uint64_t off, const char *path) {
    const uint8_t *b = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return dsc_fail(DSC_ERR_IO, "%s: write failed: %s", path, w < 0 ? strerror(errno) : "no space");
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return DSC_OK;
}

int fio_create_fd(const char *path, int append, dsc_status *s) {
    /* O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of
     * blocking the open until a reader comes */
    const int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        *s = errno == ENXIO ? dsc_fail(DSC_ERR_IO, "%s: a FIFO that nothing reads", path)
                            : dsc_fail(DSC_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *s = DSC_OK;
    return fd;
}

dsc_status fio_create(const char *path, int append, FILE **out) {
    dsc_status s;
    *out = NULL;
    const int fd = fio_create_fd(path, append, &s);
    if (fd < 0) return s;
    if (!(*out = fdopen(fd, append ? "ab" : "wb"))) {
        s = dsc_fail(DSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return s;
}

static void human_bytes(char *out, size_t cap, double b) {
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (b >= 1000 && u < 5) b /= 1000, u++;
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

dsc_status fio_check_space(const char *dir, uint64_t need, uint64_t reclaim, const char *what) {
    struct statvfs v;
    char at[FIO_PATH_MAX];
    snprintf(at, sizeof at, "%s", dir);
    while (statvfs(at, &v) != 0) { /* a directory not made yet: the nearest one that is */
        char *slash = strrchr(at, '/');
        if (errno != ENOENT || !strcmp(at, ".") || !strcmp(at, "/")) return DSC_OK;
        if (!slash) snprintf(at, sizeof at, ".");
        else if (slash == at) slash[1] = 0;
        else *slash = 0;
    }
    const double avail = (double)v.f_bavail * (double)v.f_frsize + (double)reclaim;
    if ((double)need <= avail) return DSC_OK;
    char a[32], b[32];
    human_bytes(a, sizeof a, (double)need);
    human_bytes(b, sizeof b, avail);
    return dsc_fail(DSC_ERR_IO, "%s: %s needs %s, and its file system has %s free", dir, what, a, b);
}

uint64_t fio_freed_bytes(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1 ? (uint64_t)sb.st_size : 0;
}

int fio_replace_fd(const char *path, dsc_status *s) {
    struct stat sb;
    if (lstat(path, &sb) == 0 && (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) && unlink(path) != 0) {
        *s = dsc_fail(DSC_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
        return -1;
    }
    return fio_create_fd(path, 0, s);
}

static dsc_status write_text(const char *path, const char *text, size_t len, int replace) {
    dsc_status s;
    int fd = replace ? fio_replace_fd(path, &s) : fio_create_fd(path, 0, &s);
    if (fd < 0) return s;
    s = fio_pwrite_all(fd, text, len, 0, path);
    if (close(fd) != 0 && !s) s = dsc_fail(DSC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return s;
}

dsc_status fio_write_text(const char *path, const char *text, size_t len) { return write_text(path, text, len, 0); }

dsc_status fio_replace_text(const char *path, const char *text, size_t len) { return write_text(path, text, len, 1); }

static _Thread_local char json_why[200];

const char *fio_json_error(void) { return json_why; }

typedef struct {
    uint64_t hash;
    const char *name;
} json_key;

static int key_cmp(const void *a, const void *b) {
    const json_key *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The first name that appears twice in one object of v (NULL if none).
 * Readers differ on which value such a key means (cJSON takes the first,
 * Python's json the last). Objects of many keys (a tokenizer's vocabulary)
 * are sorted by a hash of the names, so the check stays linear-ish. cJSON
 * caps the nesting depth, which bounds the recursion. */
static const char *json_dup_key(const cJSON *v, json_key **scratch, size_t *cap) {
    if (!v || !(cJSON_IsObject(v) || cJSON_IsArray(v))) return NULL;
    size_t n = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *d = json_dup_key(c, scratch, cap);
        if (d) return d;
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2) return NULL;
    if (n <= 16) {
        for (const cJSON *a = v->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string)) return a->string;
        return NULL;
    }
    if (n > *cap) {
        json_key *k = realloc(*scratch, n * sizeof *k);
        if (!k) return NULL; /* out of memory: no verdict */
        *scratch = k, *cap = n;
    }
    json_key *k = *scratch;
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        const char *name = c->string ? c->string : "";
        for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
        k[i++] = (json_key){h, name};
    }
    qsort(k, n, sizeof *k, key_cmp);
    for (i = 1; i < n; i++)
        if (k[i].hash == k[i - 1].hash && !strcmp(k[i].name, k[i - 1].name)) return k[i].name;
    return NULL;
}

cJSON *fio_parse_json(const char *text, size_t len) {
    const char *end = NULL;
    json_why[0] = 0;
    cJSON *root = text && len ? cJSON_ParseWithLengthOpts(text, len, &end, 0) : NULL;
    if (!root) {
        size_t at = text && end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        snprintf(json_why, sizeof json_why, len ? "invalid JSON near byte %zu" : "empty", at);
        return NULL;
    }
    const char *e = end;
    while (e < text + len && (*e == ' ' || *e == '\n' || *e == '\r' || *e == '\t')) e++;
    if (e != text + len) {
        snprintf(json_why, sizeof json_why, "bytes after the JSON value, at byte %zu", (size_t)(end - text));
        cJSON_Delete(root);
        return NULL;
    }
    json_key *scratch = NULL;
    size_t cap = 0;
    const char *dup = json_dup_key(root, &scratch, &cap);
    if (dup) snprintf(json_why, sizeof json_why, "key \"%.80s\" appears twice in one object", dup);
    free(scratch);
    if (!dup) return root;
    cJSON_Delete(root);
    return NULL;
}

int fio_json_has_nul(const char *text, size_t len) {
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') in_string = !in_string;
        else if (in_string && text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && !memcmp(text + i + 2, "0000", 4)) return 1;
            i++; /* the escaped character, a quote or a backslash included */
        }
    }
    return 0;
}
