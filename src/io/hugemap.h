/*
 * hugemap.h — read-only file mappings on 2 MiB pages where the kernel can.
 *
 * Decode reads about a gigabyte of weights per token of a V2-Lite-sized
 * model. On 4 KiB pages that is 250 000 TLB misses per token; on 2 MiB pages,
 * 500. Linux maps a file by 2 MiB pages when the mapping is aligned to 2 MiB
 * and the page cache holds the file in 2 MiB folios, which it allocates for
 * mappings marked MADV_HUGEPAGE (filesystems with large folios: ext4 from
 * 6.16, xfs, tmpfs). A file already cached in small folios (just written, or
 * read by something else first) stays in them until it is dropped and read
 * again.
 */
#ifndef DSC_IO_HUGEMAP_H
#define DSC_IO_HUGEMAP_H

#include <stddef.h>

/* Files smaller than this are mapped plainly and never re-read. */
#define HM_MIN_BYTES ((size_t)64 << 20)

/* size bytes of fd mapped read-only at a 2 MiB-aligned address, marked
 * MADV_HUGEPAGE; MAP_FAILED (errno set) on failure. munmap(map, size) frees it. */
void *hm_map(int fd, size_t size);

/* When probes (2 MiB at 16 places spread over the file) show that this
 * kernel would map fd by 2 MiB pages but the page cache holds some of it in
 * small ones: syncs fd and drops its cached pages (those mapped by any
 * process stay, so call it before reading through the hm_map mapping of
 * fd), so that faults through that mapping read it again in 2 MiB folios. Returns
 * 1 when it dropped them, 0 otherwise (small file, on 2 MiB pages already,
 * or not possible here). */
int hm_reread_small(int fd, size_t size);

/* Resident bytes of the mapping starting at map and those on 2 MiB pages,
 * from /proc/self/smaps; -1 where that cannot be read. */
int hm_resident(const void *map, size_t *resident, size_t *huge);

#endif
