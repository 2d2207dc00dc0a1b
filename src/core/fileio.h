/*
 * fileio.h — small file helpers shared by the checkpoint readers and
 * writers; every failure records a one-line message naming the path.
 */
#ifndef DSC_CORE_FILEIO_H
#define DSC_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dsc.h"

#define FIO_PATH_MAX 4096

/* out (FIO_PATH_MAX bytes) = dir/name. */
dsc_status fio_join(char *out, const char *dir, const char *name);
int fio_exists(const char *path);

/* mkdir -p; an existing path must be a directory. */
dsc_status fio_mkdirs(const char *dir);

/* Opens a regular file for reading (a FIFO or a device is refused without
 * blocking on it; a directory is named as one). */
dsc_status fio_open_read(const char *path, FILE **out);
int fio_open_fd(const char *path, dsc_status *s);

/* Creates (or empties; with append, extends) a file for writing. A FIFO
 * that nothing reads is refused at once instead of blocking the open. */
int fio_create_fd(const char *path, int append, dsc_status *s);

/* A checkpoint's file, new: a regular file or a symbolic link at path is
 * unlinked first, so a link to another checkpoint's file (cp -al, cp -rs)
 * is replaced, never written through. Then as fio_create_fd. */
int fio_replace_fd(const char *path, dsc_status *s);
dsc_status fio_create(const char *path, int append, FILE **out);

/* One JSON value that is the whole text (white space around it allowed):
 * NULL for malformed JSON, for bytes after the value (which a JSON reader
 * that stops at the first value would take silently) and for a key that
 * appears twice in one object (readers differ on which value it means);
 * fio_json_error() then says which, in this thread, until the next call. */
struct cJSON *fio_parse_json(const char *text, size_t len);
const char *fio_json_error(void);

/* Whether a string of the JSON text holds the escape \u0000: C strings
 * (cJSON's too) would end there and silently drop the rest. */
int fio_json_has_nul(const char *text, size_t len);

/* Whole file into a new NUL-terminated buffer of *len bytes; files larger
 * than max bytes are refused as not what they claim to be. */
dsc_status fio_read_file(const char *path, size_t max, char **out, size_t *len);

/* All n bytes at offset off, retrying short writes. */
dsc_status fio_pwrite_all(int fd, const void *buf, size_t n, uint64_t off, const char *path);

/* Fails, naming dir, what and both sizes, when dir's file system has less
 * room than need bytes; reclaim: bytes of files there that the writing
 * will replace (their space comes back). Where statvfs cannot tell, OK. */
dsc_status fio_check_space(const char *dir, uint64_t need, uint64_t reclaim, const char *what);

/* The bytes a file at path holds that unlinking it would free (a regular
 * file with no other links), else 0. */
uint64_t fio_freed_bytes(const char *path);

/* Creates or replaces path with len bytes of text (fio_write_text through
 * fio_create_fd, fio_replace_text through fio_replace_fd). */
dsc_status fio_write_text(const char *path, const char *text, size_t len);
dsc_status fio_replace_text(const char *path, const char *text, size_t len);

#endif
