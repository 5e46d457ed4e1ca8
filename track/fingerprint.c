/* Data fingerprints: a file's size, modification time and SHA-256 (nettle). Hashing a data set
 * takes a while, so the hash is kept in the runs index, keyed by (path, size, mtime): a file that
 * has not changed is hashed once. */
#define _XOPEN_SOURCE 700 /* realpath, nftw */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "track/track_impl.h"

static kl_status hash_file(const char *path, char hex[65], kl_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kl_error_set(err, KL_EIO, "cannot read %s: %s", path, strerror(errno));
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    ssize_t got;
    while ((got = read(fd, buf, CHUNK)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0)
            sha256_update(&ctx, (size_t)got, buf);
    int e = errno;
    free(buf);
    close(fd);
    if (got < 0)
        return kl_error_set(err, KL_EIO, "cannot read %s: %s", path, strerror(e));
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof d, d);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return KL_OK;
}

static bool cache_get(kl_runs_index *ix, const char *path, const kl_fingerprint *fp, char hex[65])
{
    sqlite3_stmt *s = NULL;
    bool hit = false;
    if (sqlite3_prepare_v2(ix->db,
                           "SELECT sha256 FROM fingerprints WHERE path=?1 AND size=?2 AND "
                           "mtime_ns=?3",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, fp->size);
        sqlite3_bind_int64(s, 3, fp->mtime_ns);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 64) {
            memcpy(hex, sqlite3_column_text(s, 0), 65);
            hit = true;
        }
    }
    sqlite3_finalize(s);
    return hit;
}

static void cache_put(kl_runs_index *ix, const char *path, const kl_fingerprint *fp)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db,
                           "INSERT OR REPLACE INTO fingerprints(path, size, mtime_ns, sha256) "
                           "VALUES(?1, ?2, ?3, ?4)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, fp->size);
        sqlite3_bind_int64(s, 3, fp->mtime_ns);
        sqlite3_bind_text(s, 4, fp->sha256, 64, SQLITE_STATIC);
        sqlite3_step(s); /* a cache: a failed write costs a hash next time, nothing more */
    }
    sqlite3_finalize(s);
}

kl_status kl_fingerprint_file(kl_runs_index *cache, const char *path, kl_fingerprint *out,
                              kl_error *err)
{
    struct stat sb;
    memset(out, 0, sizeof *out);
    if (stat(path, &sb) != 0)
        return kl_error_set(err, KL_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return kl_error_set(err, KL_EINVAL, "%s: not a regular file", path);
    char abs[PATH_MAX];
    const char *key = realpath(path, abs) ? abs : path;
    out->size = (int64_t)sb.st_size;
    out->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if (cache && cache_get(cache, key, out, out->sha256)) {
        out->cached = true;
        return KL_OK;
    }
    kl_status st = hash_file(path, out->sha256, err);
    if (st == KL_OK && cache)
        cache_put(cache, key, out);
    return st;
}
