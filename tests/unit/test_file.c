/* runtime/file.c, the one whole-file reader: contents and length exactly (empty files, files past
 * the first buffer and past one block), the NUL after them, refusals that name the file, and a
 * polled read that a poll ends; kl__mkdirs, the one mkdir -p; and kl__csv_put_field
 * (runtime/csv.c), the one writer of a CSV field. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "runtime/csv.h"
#include "runtime/file.h"

static char dir[64];

static const char *in_dir(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Writes n bytes of a repeating pattern (a NUL among them) to name; returns its path. */
static const char *write_pattern(const char *name, size_t n)
{
    const char *p = in_dir(name);
    FILE *f = fopen(p, "wb");
    for (size_t i = 0; f && i < n; i++)
        fputc((int)(i % 251), f);
    if (f)
        fclose(f);
    return p;
}

static bool is_pattern(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] != i % 251)
            return false;
    return s[n] == '\0';
}

static void read_sizes(size_t n)
{
    kl_error err = {0};
    size_t len = 1;
    char *s = kl__file_read(write_pattern("f.bin", n), "test file", &len, &err);
    CHECK(s != NULL);
    CHECK(len == n);
    CHECK(s && is_pattern(s, n));
    free(s);
}

static void test_small_and_empty(void)
{
    read_sizes(0);
    read_sizes(1);
    read_sizes(5000);
}

static void test_past_first_buffer(void)
{
    read_sizes((1 << 16) - 1); /* exactly the first buffer with its NUL */
    read_sizes(1 << 16);
    read_sizes(300001);
}

static void test_refused(void)
{
    kl_error err = {0};
    size_t len = 7;
    CHECK(kl__file_read(in_dir("absent.yaml"), "sweep file", &len, &err) == NULL);
    CHECK(err.status == KL_EIO);
    CHECK(strstr(err.msg, "cannot read sweep file ") && strstr(err.msg, "absent.yaml"));
    CHECK(kl__file_read(dir, "config", &len, &err) == NULL); /* a folder */
    CHECK(err.status == KL_EIO && strstr(err.msg, "cannot read config "));
    CHECK(kl__file_read(in_dir("absent.yaml"), "x", &len, NULL) == NULL); /* err may be NULL */
}

static int polls, stop_at;

static kl_status poll(const char *path, kl_error *err)
{
    return ++polls == stop_at ? kl_error_set(err, KL_ESTOPPED, "stopped reading %s", path) : KL_OK;
}

static void test_polled(void)
{
    size_t n = KL__FILE_BLOCK_BYTES + 1000, len = 0;
    const char *p = write_pattern("big.bin", n);
    kl_error err = {0};
    polls = 0;
    stop_at = 0;
    char *s = kl__file_read_polled(p, "CSV file", poll, &len, &err);
    CHECK(s && len == n && is_pattern(s, n));
    CHECK(polls >= 2); /* a poll before every block */
    free(s);
    polls = 0;
    stop_at = 2;
    CHECK(kl__file_read_polled(p, "CSV file", poll, &len, &err) == NULL);
    CHECK(err.status == KL_ESTOPPED && strstr(err.msg, "big.bin"));
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Every missing folder is made, existing ones (and a trailing or doubled slash) are no error, and
 * a path through a file fails with errno set. */
static void test_mkdirs(void)
{
    char p[256];
    snprintf(p, sizeof p, "%s", in_dir("a/b//c/"));
    CHECK(kl__mkdirs(p) == 0);
    CHECK(is_dir(in_dir("a")) && is_dir(in_dir("a/b")) && is_dir(in_dir("a/b/c")));
    CHECK(kl__mkdirs(p) == 0);
    snprintf(p, sizeof p, "%s", in_dir("a/b"));
    CHECK(kl__mkdirs(p) == 0);
    write_pattern("plain", 3);
    snprintf(p, sizeof p, "%s", in_dir("plain/d"));
    errno = 0;
    CHECK(kl__mkdirs(p) == -1 && errno == ENOTDIR);
    CHECK(kl__mkdirs("") == -1 && errno == ENOENT);
    unlink(in_dir("plain"));
    rmdir(in_dir("a/b/c"));
    rmdir(in_dir("a/b"));
    rmdir(in_dir("a"));
}

/* The field as kl__csv_put_field writes it. */
static bool field_is(const char *prefix, const char *s, const char *want)
{
    char *got = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&got, &n);
    if (!f)
        return false;
    kl__csv_put_field(f, prefix, s);
    fclose(f);
    bool ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "    field (%s, %s): got [%s], want [%s]\n", prefix, s, got, want);
    free(got);
    return ok;
}

/* Plain text as it is; a comma, a quote, a line break (CR too) or an edge blank (space or tab,
 * which CSV readers trim) quoted, with quotes doubled and the prefix inside the quotes. */
static void test_csv_field(void)
{
    CHECK(field_is("", "adam", "adam"));
    CHECK(field_is("p_", "T-shirt/top", "p_T-shirt/top"));
    CHECK(field_is("", "", ""));
    CHECK(field_is("", "a,b", "\"a,b\""));
    CHECK(field_is("p_", "say \"hi\"", "\"p_say \"\"hi\"\"\""));
    CHECK(field_is("", "two\nlines", "\"two\nlines\""));
    CHECK(field_is("", "cr\r", "\"cr\r\""));
    CHECK(field_is("", " lead", "\" lead\""));
    CHECK(field_is("", "trail\t", "\"trail\t\""));
    CHECK(field_is("", "in side", "in side"));
}

static const check_case cases[] = {
    CHECK_CASE(test_small_and_empty), CHECK_CASE(test_past_first_buffer),
    CHECK_CASE(test_refused),         CHECK_CASE(test_polled),
    CHECK_CASE(test_mkdirs),          CHECK_CASE(test_csv_field),
};

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "/tmp/kiln-test-file-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    int rc = check_run("test_file", cases, CHECK_NCASES(cases), argc, argv);
    unlink(in_dir("f.bin"));
    unlink(in_dir("big.bin"));
    rmdir(dir);
    return rc;
}
