/* The repository's naming rules, shared by the routes, the repository and online learning: what a
 * model name may be, which file a path named when it was read, and how a version folder is
 * removed. */
#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve_impl.h"

bool kl__serve_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_-.", name[i]))
            return false;
    return true;
}

bool kl__file_id_of(const char *path, kl__file_id *id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    *id = (kl__file_id){.dev = (uint64_t)st.st_dev,
                        .ino = (uint64_t)st.st_ino,
                        .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
                        .size = (int64_t)st.st_size};
    return true;
}

bool kl__file_same(const kl__file_id *a, const kl__file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->mtime_ns == b->mtime_ns && a->size == b->size;
}

void kl__serve_remove_version(const char *dir)
{
    static const char *const files[] = {"model.h5", KL__ONLINE_MARKER, "run.json"};
    char p[PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        int n = snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (n > 0 && (size_t)n < sizeof p) /* a longer path names no file the system could open */
            unlink(p);
    }
    rmdir(dir);
}
