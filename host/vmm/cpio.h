/* In-memory writer for the "newc" cpio format the kernel unpacks as initramfs. */
#ifndef PROVIUM_CPIO_H
#define PROVIUM_CPIO_H
#include <stddef.h>
#include <stdint.h>

#include "../util/util.h"

typedef struct {
    strbuf out;
    uint32_t next_ino;
    char **dirs; /* directories known to exist: added here or in the base archive */
    size_t ndirs;
} cpio_writer;

void cpio_init(cpio_writer *w);
/* Paths are archive paths without a leading slash ("provium/modules/x.ko");
 * a leading slash is stripped. */
void cpio_add_dir(cpio_writer *w, const char *path, unsigned mode);
/* Adds a directory entry (0755, root) for every parent of path ("a/b/c" ->
 * "a", "a/b") that is not known to exist yet. The kernel applies a directory
 * entry's mode and owner to a directory that already exists, so re-adding
 * /tmp or /home/user would change them: known directories are skipped. */
void cpio_add_parents(cpio_writer *w, const char *path);
/* Records the directories of the newc archive(s) in data (the initramfs this
 * one is appended to) as known. Concatenated archives and the zero padding
 * between them are followed; parsing stops at anything else (a compressed
 * archive), so directories past that point are not known. */
void cpio_know_dirs(cpio_writer *w, const void *data, size_t len);
void cpio_add_file(cpio_writer *w, const char *path, unsigned mode, const void *data, size_t len);
void cpio_add_symlink(cpio_writer *w, const char *path, const char *target);
/* Appends the trailer; the archive is w->out.s / w->out.len. */
void cpio_finish(cpio_writer *w);
void cpio_free(cpio_writer *w);
#endif
