/* fuzz_statedir: libFuzzer target for chat.snap, chat.log and identity.json. */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay.h"
#include "store.h"
#include "uuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The state directory's files that fuzz_store does not cover, read from
 * a real directory as the daemon reads them.  An input is
 *
 *   [!] [CHAT.SNAP 0x1d] CHAT.LOG
 *
 * without 0x1d there is no chat.snap; an empty CHAT.LOG is no chat.log.
 * With the leading '!' every line of chat.log that looks like
 * "HEX16 TEXT" gets its right checksum, so that the fuzzer reaches the
 * ops.  The journal is loaded with callbacks that do what chat.c does
 * (relay_restore, relay_op_parse, relay_apply) and checked against an
 * independent reading of the file.  The whole input is also
 * identity.json.
 */
#define SNAP_SEP   '\x1d'
#define JOURNAL_NL '\x1f'
#define LINE_MAX_  4096 /* store.c's JOURNAL_LINE_MAX */
#define OPS_MAX	   512

struct rec {
	struct relay relay;
	bool apply;		 /* act as chat.c: restore and apply */
	size_t nops;		 /* op lines seen */
	size_t off[OPS_MAX + 1]; /* their texts, end to end in texts */
	char *texts;
	size_t cap;
	bool snap_seen, failed;
};

static struct relay_cfg cfg;
static char dir[PATH_MAX], dir2[PATH_MAX];
static char logp[PATH_MAX], snapp[PATH_MAX], idp[PATH_MAX];
static char *buf; /* the log as written */
static size_t bufcap;
static struct rec rec, rec2;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_statedir: %s: %s\n", what, detail);
	abort();
}

static void
cleanup(void)
{
	char p[PATH_MAX + 16];

	(void)snprintf(p, sizeof(p), "%s/chat.log", dir2);
	(void)unlink(p);
	(void)rmdir(dir2);
	(void)unlink(logp);
	(void)unlink(snapp);
	(void)unlink(idp);
	(void)rmdir(dir);
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	(void)snprintf(dir, sizeof(dir), "%s/fuzz_statedir.XXXXXX", tmp);
	(void)snprintf(dir2, sizeof(dir2), "%s/fuzz_statedir.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL || mkdtemp(dir2) == NULL)
		fail("mkdtemp", tmp);
	(void)snprintf(logp, sizeof(logp), "%s/chat.log", dir);
	(void)snprintf(snapp, sizeof(snapp), "%s/chat.snap", dir);
	(void)snprintf(idp, sizeof(idp), "%s/identity.json", dir);
	atexit(cleanup);
	relay_cfg_defaults(&cfg);
}

static void
put(const char *path, const char *data, size_t len)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) ==
		-1 ||
	    (len > 0 && write(fd, data, len) != (ssize_t)len) ||
	    close(fd) == -1)
		fail("write", path);
}

static void
rec_init(struct rec *r, bool apply)
{
	r->apply = apply;
	r->nops = 0;
	r->off[0] = 0;
	r->snap_seen = r->failed = false;
	if (relay_init(&r->relay, &cfg) != RELAY_OK)
		fail("relay", "init");
}

static int
on_snap(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct rec *r = arg;

	if (r->snap_seen || r->nops > 0)
		fail("load", "snapshot not first, or twice");
	r->snap_seen = true;
	if (text[len] != '\0')
		fail("load", "snapshot not NUL-terminated");
	if (r->apply && relay_restore(&r->relay, text, len) != RELAY_OK) {
		relay_drain(&r->relay);
		(void)snprintf(err->text, sizeof(err->text), "bad snapshot");
		r->failed = true;
		return -1;
	}
	relay_drain(&r->relay);
	return 0;
}

static int
on_op(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct rec *r = arg;
	struct relay_op op;
	enum relay_err e;
	size_t at = r->off[r->nops];

	if (r->nops == OPS_MAX)
		fail("load", "more ops than lines");
	if (len == 0 || memchr(text, JOURNAL_NL, len) != NULL)
		fail("load", "empty op, or 0x1f not turned back to newline");
	if (at + len > r->cap) {
		r->cap = (at + len) * 2;
		if ((r->texts = realloc(r->texts, r->cap)) == NULL)
			fail("realloc", "out of memory");
	}
	memcpy(r->texts + at, text, len);
	r->off[++r->nops] = at + len;
	if (!r->apply)
		return 0;
	e = relay_op_parse(&op, text, len) == -1 ? RELAY_EARG
						 : relay_apply(&r->relay, &op);
	relay_drain(&r->relay);
	if (e != RELAY_OK && e != RELAY_EOLD) {
		(void)snprintf(err->text, sizeof(err->text), "bad op");
		r->failed = true;
		return -1;
	}
	return 0;
}

/* A line "HEX16 TEXT" with its checksum right, as journal_line checks. */
static bool
line_ok(const char *p, size_t n)
{
	uint64_t want = 0;
	size_t i;

	if (n < 18 || n > LINE_MAX_ || p[16] != ' ')
		return false;
	for (i = 0; i < 16; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			want = want << 4 | (uint64_t)(p[i] - '0');
		else if (p[i] >= 'a' && p[i] <= 'f')
			want = want << 4 | (uint64_t)(p[i] - 'a' + 10);
		else
			return false;
	}
	return store_fnv64(p + 17, n - 17) == want;
}

static void
fix_checksums(char *p, size_t n)
{
	char *end = p + n, *nl;
	char hex[17];

	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (nl - p >= 18 && p[16] == ' ') {
			(void)snprintf(hex, sizeof(hex), "%016llx",
			    (unsigned long long)store_fnv64(
				p + 17, (size_t)(nl - p - 17)));
			memcpy(p, hex, 16);
		}
	}
}

/*
 * The independent reading: the whole lines with a right checksum, in
 * order, up to a bad one.  A bad last line, or one without its newline,
 * is torn; a bad line before the last is damage (returns -1).
 */
static int
expect(const char *log, size_t len, struct rec *want, bool *torn)
{
	const char *p, *end = log + len, *nl;
	size_t n, i, at;

	*torn = false;
	want->nops = 0;
	want->off[0] = 0;
	for (p = log; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (!line_ok(p, n)) {
			if (nl == NULL || nl + 1 == end) {
				*torn = true;
				return 0;
			}
			return -1;
		}
		if (nl == NULL) {
			*torn = true;
			return 0;
		}
		if (want->nops == OPS_MAX)
			fail("expect", "more lines than OPS_MAX");
		at = want->off[want->nops];
		if (at + n > want->cap) {
			want->cap = (at + n) * 2;
			if ((want->texts = realloc(want->texts, want->cap)) ==
			    NULL)
				fail("realloc", "out of memory");
		}
		for (i = 0; i < n - 17; i++)
			want->texts[at + i] =
			    p[17 + i] == JOURNAL_NL ? '\n' : p[17 + i];
		want->off[++want->nops] = at + n - 17;
	}
	return 0;
}

static bool
same_prefix(const struct rec *a, const struct rec *b, size_t n)
{
	return a->nops >= n && b->nops >= n &&
	    (n == 0 ||
		(a->off[n] == b->off[n] &&
		    memcmp(a->texts, b->texts, a->off[n]) == 0));
}

static void
check_error(const struct store_error *err, const char *path)
{
	if (strncmp(err->text, path, strlen(path)) != 0 ||
	    strchr(err->text, '\n') != NULL)
		fail("error does not name the file in one line", err->text);
}

/* What was loaded, journaled again, reads back the same. */
static void
check_rejournal(const struct rec *got)
{
	struct store_journal j;
	struct store_error err;
	bool torn;
	size_t i;

	(void)snprintf(err.text, sizeof(err.text), "%s/chat.log", dir2);
	(void)unlink(err.text);
	if (store_journal_open(&j, dir2, false, &err) == -1)
		fail("journal open", err.text);
	for (i = 0; i < got->nops; i++)
		if (store_journal_append(&j, got->texts + got->off[i],
			got->off[i + 1] - got->off[i], &err) == -1)
			fail("journal append refused a loaded op", err.text);
	if (store_journal_flush(&j, &err) == -1)
		fail("journal flush", err.text);
	store_journal_close(&j);
	rec_init(&rec2, false);
	if (store_journal_load(dir2, on_snap, on_op, &rec2, &torn, &err) != 0 ||
	    torn || rec2.nops != got->nops ||
	    !same_prefix(&rec2, got, got->nops))
		fail("journal", "ops appended do not read back the same");
	relay_free(&rec2.relay);
}

/* A torn journal cut back to its whole lines loads the same, untorn. */
static void
check_truncate(const struct rec *got)
{
	struct store_journal j;
	struct store_error err;
	bool torn;

	if (store_journal_open(&j, dir, true, &err) == -1)
		fail("journal open to truncate", err.text);
	store_journal_close(&j);
	rec_init(&rec2, false);
	if (store_journal_load(dir, on_snap, on_op, &rec2, &torn, &err) == -1 ||
	    torn || rec2.nops != got->nops ||
	    !same_prefix(&rec2, got, got->nops))
		fail("journal", "cut back, it loads other ops");
	relay_free(&rec2.relay);
}

static void
fuzz_journal(const char *in, size_t size)
{
	static struct rec want;
	struct store_error err;
	const char *sep, *log;
	bool fix = size > 0 && in[0] == '!', torn, wtorn, has_log;
	size_t loglen, snaplen = 0;
	int rv, wrv;

	if (fix) {
		in++;
		size--;
	}
	sep = memchr(in, SNAP_SEP, size);
	log = sep != NULL ? sep + 1 : in;
	loglen = size - (size_t)(log - in);
	if (buf == NULL || loglen > bufcap) {
		bufcap = loglen * 2 + 1;
		if ((buf = realloc(buf, bufcap)) == NULL)
			fail("realloc", "out of memory");
	}
	memcpy(buf, log, loglen);
	if (fix)
		fix_checksums(buf, loglen);
	if (sep != NULL) {
		snaplen = (size_t)(sep - in);
		put(snapp, in, snaplen);
	} else
		(void)unlink(snapp);
	if ((has_log = loglen > 0))
		put(logp, buf, loglen);
	else
		(void)unlink(logp);

	rec_init(&rec, true);
	memset(&err, 0, sizeof(err));
	rv = store_journal_load(dir, on_snap, on_op, &rec, &torn, &err);
	wrv = expect(buf, loglen, &want, &wtorn);
	if (sep == NULL && !has_log) {
		if (rv != 1 || rec.snap_seen || rec.nops != 0)
			fail("load", "no files, yet not 1");
		goto out;
	}
	if (rec.snap_seen != (sep != NULL))
		fail("load", "snapshot not handed over");
	if (rec.failed) {
		/* Stopped by a callback: at the op (or snapshot) it refused. */
		if (rv != -1 || !same_prefix(&rec, &want, rec.nops))
			fail("load", "went on after a callback refused");
		check_error(&err, rec.nops > 0 ? logp : snapp);
		goto out;
	}
	if (rv != wrv || (rv == 0 && torn != wtorn) ||
	    !same_prefix(&rec, &want, want.nops) || rec.nops != want.nops) {
		fprintf(stderr,
		    "rv %d want %d, torn %d want %d, ops %zu want "
		    "%zu\n",
		    rv, wrv, torn, wtorn, rec.nops, want.nops);
		fail("load", "disagrees with the file");
	}
	if (rv == -1) {
		check_error(&err, logp);
		goto out;
	}
	check_rejournal(&rec);
	if (torn)
		check_truncate(&rec);
out:
	relay_free(&rec.relay);
}

static void
fuzz_identity(const char *in, size_t size)
{
	char name[RING_NAME_MAX], name0[RING_NAME_MAX];
	struct store_error err;
	struct uuid u, u0;
	size_t n, i;
	int r;

	put(idp, in, size);
	memset(&u, 0xa5, sizeof(u));
	memset(name, 0xa5, sizeof(name));
	u0 = u;
	memcpy(name0, name, sizeof(name));
	memset(&err, 0, sizeof(err));
	r = store_read_identity(idp, &u, name, sizeof(name), &err);
	if (r == -1) {
		check_error(&err, idp);
		if (memcmp(&u, &u0, sizeof(u)) != 0 ||
		    memcmp(name, name0, sizeof(name)) != 0)
			fail("identity", "refused, but wrote");
		return;
	}
	if (r != 0)
		fail("identity", "exists, yet not read");
	n = strnlen(name, sizeof(name));
	if (n == 0 || n == sizeof(name))
		fail("identity", "name empty or not terminated");
	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			fail("identity", "control character in the name");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (dir[0] == '\0')
		setup();
	fuzz_journal((const char *)data, size);
	fuzz_identity((const char *)data, size);
	return 0;
}
