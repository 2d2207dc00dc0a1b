/*
 * hugemap.c — see hugemap.h.
 */
#include "io/hugemap.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HM_PAGE ((size_t)2 << 20)

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

void *hm_map(int fd, size_t size) {
    if (size < HM_MIN_BYTES) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    /* Reserve size + 2 MiB of address space, map the file at its first 2 MiB
     * boundary and give back the rest. */
    uint8_t *r = mmap(NULL, size + HM_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    uint8_t *a = (uint8_t *)(((uintptr_t)r + HM_PAGE - 1) & ~(uintptr_t)(HM_PAGE - 1));
    void *m = mmap(a, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (m == MAP_FAILED) {
        munmap(r, size + HM_PAGE);
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), end = ((uintptr_t)a + size + page - 1) & ~(page - 1);
    if (a > r) munmap(r, (size_t)(a - r));
    if ((uintptr_t)r + size + HM_PAGE > end) munmap((void *)end, (uintptr_t)r + size + HM_PAGE - end);
    madvise(m, size, MADV_HUGEPAGE); /* a hint: without THP the mapping still works */
    return m;
}

/* Faults [map, map + size) in: MADV_POPULATE_READ (Linux 5.14), else a read
 * of every page. */
static void populate(const uint8_t *map, size_t size) {
    if (madvise((void *)map, size, MADV_POPULATE_READ) == 0) return;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < size; i += 4096) sink ^= map[i];
    (void)sink;
}

int hm_resident(const void *map, size_t *resident, size_t *huge) {
    FILE *fp = fopen("/proc/self/smaps", "r");
    if (!fp) return -1;
    char line[512];
    int in = 0, found = 0;
    size_t rss = 0, pmd = 0;
    while (fgets(line, sizeof line, fp)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in) break; /* the next mapping */
            in = lo == (uintptr_t)map;
            found |= in;
            continue;
        }
        if (!in) continue;
        unsigned long kb;
        if (sscanf(line, "Rss: %lu kB", &kb) == 1) rss = (size_t)kb << 10;
        else if (sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1 || sscanf(line, "ShmemPmdMapped: %lu kB", &kb) == 1 ||
                 sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
            pmd += (size_t)kb << 10;
    }
    fclose(fp);
    if (!found) return -1;
    *resident = rss;
    *huge = pmd;
    return 0;
}

/* 1 when 2 MiB of fd at off (a multiple of 2 MiB), faulted in through an
 * aligned MADV_HUGEPAGE mapping of its own, is mapped by a 2 MiB page; 0
 * when it is not; -1 when that cannot be told. */
static int probe(int fd, size_t off) {
    uint8_t *r = mmap(NULL, 2 * HM_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return -1;
    uint8_t *a = (uint8_t *)(((uintptr_t)r + HM_PAGE - 1) & ~(uintptr_t)(HM_PAGE - 1));
    int res = -1;
    if (mmap(a, HM_PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, (off_t)off) != MAP_FAILED &&
        madvise(a, HM_PAGE, MADV_HUGEPAGE) == 0) {
        populate(a, HM_PAGE);
        size_t rss, huge;
        if (hm_resident(a, &rss, &huge) == 0) res = huge >= HM_PAGE;
    }
    munmap(r, 2 * HM_PAGE);
    return res;
}

int hm_reread_small(int fd, size_t size) {
    if (size < HM_MIN_BYTES + HM_PAGE) return 0;
    /* 2 MiB at 1/32, 3/32, ... 31/32 of the file: a file may be cached in
     * part, in pages of either size. */
    size_t off = 0;
    int small = 0;
    for (int i = 1; i < 32 && !small; i += 2) {
        off = (size / 32 * (size_t)i) & ~(HM_PAGE - 1);
        const int p = probe(fd, off);
        if (p < 0) return 0; /* cannot be told here */
        small = p == 0;
    }
    if (!small) return 0; /* on 2 MiB pages already */
    /* Small pages there: dropped and read again, does this kernel do better?
     * (Pages not yet written back cannot be dropped: a file written just
     * before is synced first.) */
    if (fdatasync(fd) != 0 || posix_fadvise(fd, (off_t)off, (off_t)HM_PAGE, POSIX_FADV_DONTNEED) != 0 ||
        probe(fd, off) != 1)
        return 0;
    /* Read back by the faults of the weights actually used (each brings a
     * 2 MiB folio in), so that only those become resident. */
    return posix_fadvise(fd, 0, (off_t)size, POSIX_FADV_DONTNEED) == 0;
}
