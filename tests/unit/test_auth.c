/* test_auth: unit tests for keys, MACs, windows, passwords, sessions. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "wire.h"

#define S1 "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"
#define S2 "6fa459ea-ee8a-4ca4-894e-db77e160355e"

/* A valid key file line; the key is 32 zero bytes. */
#define ZERO_KEY_LINE                                                          \
	"ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"

static char tmpdir[64];

static int
setup_dir(void **state)
{
	(void)state;
	(void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_auth.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return auth_init() == AUTH_OK ? 0 : -1;
}

static int
teardown_dir(void **state)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	(void)state;
	if ((d = opendir(tmpdir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		(void)unlink(path);
	}
	(void)closedir(d);
	return rmdir(tmpdir);
}

/* A fresh path in the test directory. */
static void
tpath(char *out, size_t sz, const char *name)
{
	int r = snprintf(out, sz, "%s/%s", tmpdir, name);

	assert_true(r > 0 && (size_t)r < sz);
	(void)unlink(out);
}

static void
put_file(const char *path, const char *text, size_t len, mode_t mode)
{
	int fd;

	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* Entries of the test directory whose name contains s. */
static int
count_entries(const char *s)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	d = opendir(tmpdir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, s) != NULL)
			n++;
	(void)closedir(d);
	return n;
}

static void
make_cluster(struct auth_cluster *c, uint8_t fill)
{
	struct auth_key k;

	memset(k.k, fill, sizeof(k.k));
	assert_int_equal(auth_cluster_init(c, &k), AUTH_OK);
}

static double
now_s(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Errors. */

static void
strerror_should_be_distinct_for_every_code(void **state)
{
	int i, j;

	(void)state;
	for (i = 0; i < AUTH_NERR; i++) {
		assert_non_null(auth_strerror((enum auth_err)i));
		for (j = 0; j < i; j++)
			assert_string_not_equal(auth_strerror((enum auth_err)i),
			    auth_strerror((enum auth_err)j));
	}
	assert_string_equal(auth_strerror(AUTH_NERR), "unknown auth error");
	assert_string_equal(
	    auth_strerror((enum auth_err) - 1), "unknown auth error");
}

/* Key file. */

static void
key_write_then_read_should_round_trip_with_mode_0600(void **state)
{
	struct auth_key k, back;
	struct auth_error err;
	char path[PATH_MAX];
	struct stat st;

	(void)state;
	tpath(path, sizeof(path), "cluster.key");
	assert_int_equal(auth_key_generate(&k), AUTH_OK);
	assert_int_equal(auth_key_write(path, &k, &err), AUTH_OK);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, AUTH_KEY_TEXT - 1);
	assert_int_equal(auth_key_read(path, &back, &err), AUTH_OK);
	assert_memory_equal(k.k, back.k, sizeof(k.k));
	assert_int_equal(count_entries(".tmp"), 0);
	auth_key_wipe(&k);
	auth_key_wipe(&back);
}

static void
key_generate_should_give_different_keys(void **state)
{
	struct auth_key a, b;

	(void)state;
	assert_int_equal(auth_key_generate(&a), AUTH_OK);
	assert_int_equal(auth_key_generate(&b), AUTH_OK);
	assert_memory_not_equal(a.k, b.k, sizeof(a.k));
	assert_int_equal(auth_key_generate(NULL), AUTH_EARG);
}

static void
key_write_should_refuse_to_overwrite(void **state)
{
	struct auth_key k, back;
	struct auth_error err;
	char path[PATH_MAX];

	(void)state;
	tpath(path, sizeof(path), "exists.key");
	put_file(path, ZERO_KEY_LINE, strlen(ZERO_KEY_LINE), 0600);
	assert_int_equal(auth_key_generate(&k), AUTH_OK);
	assert_int_equal(auth_key_write(path, &k, &err), AUTH_EEXISTS);
	assert_non_null(strstr(err.text, path));
	assert_non_null(strstr(err.text, "not overwritten"));
	/* The old key is still there, byte for byte. */
	assert_int_equal(auth_key_read(path, &back, &err), AUTH_OK);
	memset(k.k, 0, sizeof(k.k));
	assert_memory_equal(k.k, back.k, sizeof(k.k));
	assert_int_equal(count_entries(".tmp"), 0);
	/* Even a dangling symlink is something not to replace. */
	tpath(path, sizeof(path), "link.key");
	assert_int_equal(symlink("/nonexistent/ringchat", path), 0);
	assert_int_equal(auth_key_write(path, &k, &err), AUTH_EEXISTS);
}

static void
key_write_should_fail_clearly_in_a_missing_directory(void **state)
{
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];

	(void)state;
	(void)snprintf(path, sizeof(path), "%s/no/such/dir/key", tmpdir);
	memset(k.k, 1, sizeof(k.k));
	assert_int_equal(auth_key_write(path, &k, &err), AUTH_EIO);
	assert_non_null(strstr(err.text, path));
	assert_int_equal(auth_key_write(path, &k, NULL), AUTH_EIO);
}

static void
key_read_should_refuse_a_file_others_can_access(void **state)
{
	static const mode_t modes[] = {0640, 0604, 0660, 0644, 0601, 0610};
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];
	size_t i;

	(void)state;
	tpath(path, sizeof(path), "open.key");
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		put_file(path, ZERO_KEY_LINE, strlen(ZERO_KEY_LINE), modes[i]);
		memset(k.k, 0x55, sizeof(k.k));
		assert_int_equal(auth_key_read(path, &k, &err), AUTH_EPERM);
		assert_non_null(strstr(err.text, path));
		assert_non_null(strstr(err.text, "too open"));
		assert_int_equal(k.k[0], 0x55); /* untouched */
	}
	put_file(path, ZERO_KEY_LINE, strlen(ZERO_KEY_LINE), 0400);
	assert_int_equal(auth_key_read(path, &k, &err), AUTH_OK);
}

static void
key_read_should_refuse_a_file_of_another_user(void **state)
{
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];

	(void)state;
	tpath(path, sizeof(path), "foreign.key");
	put_file(path, ZERO_KEY_LINE, strlen(ZERO_KEY_LINE), 0600);
	if (chown(path, 4242, (gid_t)-1) == -1)
		skip(); /* only root can give a file away */
	assert_int_equal(auth_key_read(path, &k, &err), AUTH_EPERM);
	assert_non_null(strstr(err.text, "uid 4242"));
}

static void
key_read_should_refuse_a_wrong_size(void **state)
{
	static const char *const texts[] = {
	    "",
	    "ringchat-cluster-key-v1 AAAA\n",
	    ZERO_KEY_LINE "\n",
	    ZERO_KEY_LINE "extra",
	    ("ringchat-cluster-key-v1 "
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
	};
	char big[4096];
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];
	size_t i;

	(void)state;
	tpath(path, sizeof(path), "size.key");
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		put_file(path, texts[i], strlen(texts[i]), 0600);
		assert_int_equal(auth_key_read(path, &k, &err), AUTH_EFORMAT);
		assert_non_null(strstr(err.text, path));
		assert_non_null(strstr(err.text, "wrong size"));
	}
	memset(big, 'A', sizeof(big));
	put_file(path, big, sizeof(big), 0600);
	assert_int_equal(auth_key_read(path, &k, &err), AUTH_EFORMAT);
	assert_non_null(strstr(err.text, "wrong size"));
}

static void
key_read_should_refuse_corrupt_content(void **state)
{
	static const char *const texts[] = {
	    /* wrong prefix or version */
	    "ringchat-cluster-key-v2 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	    "RINGCHAT-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	    /* characters outside base64url */
	    "ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+\n",
	    "ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAA\n",
	    "ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	    /* the last character's unused bits set: not canonical */
	    "ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB\n",
	    /* CRLF */
	    "ringchat-cluster-key-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
	};
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];
	size_t i;

	(void)state;
	tpath(path, sizeof(path), "corrupt.key");
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		put_file(path, texts[i], strlen(texts[i]), 0600);
		memset(k.k, 0x55, sizeof(k.k));
		if (auth_key_read(path, &k, &err) != AUTH_EFORMAT)
			fail_msg("accepted: %s", texts[i]);
		assert_non_null(strstr(err.text, path));
		assert_null(strstr(err.text, "wrong size"));
		assert_int_equal(k.k[31], 0x55);
	}
}

static void
key_read_should_report_an_unreadable_file(void **state)
{
	struct auth_key k;
	struct auth_error err;
	char path[PATH_MAX];

	(void)state;
	tpath(path, sizeof(path), "missing.key");
	assert_int_equal(auth_key_read(path, &k, &err), AUTH_EIO);
	assert_non_null(strstr(err.text, path));
	assert_non_null(strstr(err.text, "No such file"));
	assert_int_equal(auth_key_read(tmpdir, &k, &err), AUTH_EIO);
	assert_non_null(strstr(err.text, "not a regular file"));
	assert_int_equal(auth_key_read(path, &k, NULL), AUTH_EIO);
}

static void
key_parse_should_accept_a_line_without_newline(void **state)
{
	struct auth_key k;

	(void)state;
	assert_int_equal(
	    auth_key_parse(ZERO_KEY_LINE, strlen(ZERO_KEY_LINE) - 1, &k),
	    AUTH_OK);
	assert_int_equal(
	    auth_key_parse(ZERO_KEY_LINE, strlen(ZERO_KEY_LINE), &k), AUTH_OK);
	assert_int_equal(auth_key_parse(NULL, 0, &k), AUTH_EFORMAT);
	assert_int_equal(auth_key_parse(NULL, 1, &k), AUTH_EARG);
}

/* Derived keys. */

static void
cluster_init_should_derive_the_same_keys_everywhere(void **state)
{
	struct auth_cluster a, b, c;
	struct auth_key k;

	(void)state;
	make_cluster(&a, 7);
	make_cluster(&b, 7);
	make_cluster(&c, 8);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_not_equal(a.kx_pk, c.kx_pk, AUTH_PK_BYTES);
	assert_memory_not_equal(a.mac_key, c.mac_key, AUTH_KEY_BYTES);
	/* Every subkey differs from the others and from the key. */
	memset(k.k, 7, sizeof(k.k));
	assert_memory_not_equal(a.mac_key, a.field_key, AUTH_KEY_BYTES);
	assert_memory_not_equal(a.mac_key, a.kx_sk, AUTH_KEY_BYTES);
	assert_memory_not_equal(a.field_key, a.kx_sk, AUTH_KEY_BYTES);
	assert_memory_not_equal(a.mac_key, k.k, AUTH_KEY_BYTES);
	auth_cluster_wipe(&a);
	memset(&b, 0, sizeof(b));
	assert_memory_equal(&a, &b, sizeof(a));
}

static void
fingerprint_should_be_blake2b_128_in_groups(void **state)
{
	uint8_t pk[AUTH_PK_BYTES];
	char fp[AUTH_FP_SIZE], fp2[AUTH_FP_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(pk); i++)
		pk[i] = (uint8_t)i;
	/* b2sum -l 128 of the bytes 0..31 */
	auth_fingerprint(pk, fp);
	assert_string_equal(fp, "f39a:2cad:5841:1cd4:9f57:7e50:86b8:031f");
	assert_int_equal(strlen(fp), AUTH_FP_SIZE - 1);
	auth_fingerprint(pk, fp2);
	assert_string_equal(fp, fp2);
	pk[31] ^= 1;
	auth_fingerprint(pk, fp2);
	assert_string_not_equal(fp, fp2);
}

static void
pk_text_should_round_trip_and_be_strict(void **state)
{
	struct auth_cluster c;
	uint8_t back[AUTH_PK_BYTES];
	char text[AUTH_PK_TEXT], bad[AUTH_PK_TEXT + 8];

	(void)state;
	make_cluster(&c, 3);
	auth_pk_to_text(c.kx_pk, text);
	assert_int_equal(strlen(text), AUTH_PK_TEXT - 1);
	assert_int_equal(
	    strspn(text,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789-_"),
	    AUTH_PK_TEXT - 1);
	assert_int_equal(auth_pk_from_text(text, back), AUTH_OK);
	assert_memory_equal(back, c.kx_pk, AUTH_PK_BYTES);
	(void)snprintf(bad, sizeof(bad), "%.42s", text);
	assert_int_equal(auth_pk_from_text(bad, back), AUTH_EFORMAT);
	(void)snprintf(bad, sizeof(bad), "%sA", text);
	assert_int_equal(auth_pk_from_text(bad, back), AUTH_EFORMAT);
	(void)snprintf(bad, sizeof(bad), "%.42s/", text);
	assert_int_equal(auth_pk_from_text(bad, back), AUTH_EFORMAT);
}

/* Server-to-server MACs. */

static void
s2s_seal_should_keep_the_wire_format(void **state)
{
	static const char dg[] = "beat@" S2 "@@" S1 "@epoch=3@seq=42";
	struct auth_cluster c;
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len, plen;
	uint64_t ctr;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_s2s_seal(&c, S1, 123456789, dg, strlen(dg), out,
			     sizeof(out), &len),
	    AUTH_OK);
	assert_int_equal(len, strlen(dg) + strlen("@ctr=123456789@mac=") + 43);
	assert_memory_equal(out, dg, strlen(dg));
	assert_int_equal(wire_decode(&m, out, len), WIRE_OK);
	assert_int_equal(m.kind, WK_BEAT);
	assert_string_equal(m.from, S1);
	assert_string_equal(wire_get(&m, "seq"), "42");
	assert_string_equal(wire_get(&m, "ctr"), "123456789");
	assert_int_equal(strlen(wire_get(&m, "mac")), 43);
	assert_int_equal(m.ext[m.next - 1].key[0], 'm');

	assert_int_equal(
	    auth_s2s_verify(&c, S1, out, len, &ctr, &plen), AUTH_OK);
	assert_int_equal(ctr, 123456789);
	assert_int_equal(plen, strlen(dg));
}

static void
s2s_seal_should_work_in_place_and_at_the_limits(void **state)
{
	char buf[WIRE_MAX], ref[WIRE_MAX];
	struct auth_cluster c;
	size_t len, rlen, plen, n;
	uint64_t ctr;

	(void)state;
	make_cluster(&c, 1);
	n = (size_t)snprintf(buf, sizeof(buf), "bye@@@%s", S1);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 0, buf, n, ref, sizeof(ref), &rlen), AUTH_OK);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 0, buf, n, buf, sizeof(buf), &len), AUTH_OK);
	assert_int_equal(len, rlen);
	assert_memory_equal(buf, ref, len);

	/* The longest counter, and a datagram that just fits WIRE_MAX. */
	n = WIRE_MAX - AUTH_S2S_OVERHEAD;
	memset(buf, 'x', n);
	memcpy(buf, "repl@@@s", 8);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, UINT64_MAX, buf, n, buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(len, WIRE_MAX);
	assert_int_equal(
	    auth_s2s_verify(&c, S1, buf, len, &ctr, &plen), AUTH_OK);
	assert_true(ctr == UINT64_MAX);
	assert_int_equal(plen, n);
	memset(buf, 'x', n + 1);
	memcpy(buf, "repl@@@s", 8);
	assert_int_equal(auth_s2s_seal(&c, S1, UINT64_MAX, buf, n + 1, buf,
			     sizeof(buf), &len),
	    AUTH_ETOOBIG);
	/* A short output buffer is refused, not overrun. */
	assert_int_equal(auth_s2s_seal(&c, S1, 1, "bye@@@s", 7, ref, 20, &len),
	    AUTH_ETOOBIG);
}

static void
s2s_seal_should_refuse_what_would_not_decode(void **state)
{
	char out[WIRE_MAX], dg[WIRE_MAX];
	struct auth_cluster c;
	size_t len, n;
	int i;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_s2s_seal(&c, S1, 1, "beat@@@s@ctr=1", 14, out,
			     sizeof(out), &len),
	    AUTH_EARG);
	assert_int_equal(auth_s2s_seal(&c, S1, 1, "beat@@@s@mac=1", 14, out,
			     sizeof(out), &len),
	    AUTH_EARG);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 1, "beat@@", 6, out, sizeof(out), &len),
	    AUTH_EARG);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 1, "", 0, out, sizeof(out), &len), AUTH_EARG);
	assert_int_equal(
	    auth_s2s_seal(&c, "", 1, "bye@@@s", 7, out, sizeof(out), &len),
	    AUTH_EARG);
	assert_int_equal(
	    auth_s2s_seal(NULL, S1, 1, "bye@@@s", 7, out, sizeof(out), &len),
	    AUTH_EARG);
	/* 15 extensions leave one slot: ctr and mac need two. */
	n = (size_t)snprintf(dg, sizeof(dg), "beat@@@s");
	for (i = 0; i < 15; i++)
		n += (size_t)snprintf(dg + n, sizeof(dg) - n, "@k%d=v", i);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 1, dg, n, out, sizeof(out), &len),
	    AUTH_ETOOBIG);
	n = (size_t)snprintf(dg, sizeof(dg), "beat@@@s");
	for (i = 0; i < 14; i++)
		n += (size_t)snprintf(dg + n, sizeof(dg) - n, "@k%d=v", i);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 1, dg, n, out, sizeof(out), &len), AUTH_OK);
}

static void
s2s_verify_should_reject_every_bit_flip(void **state)
{
	static const char dg[] = "leader@*@s1@" S1 "@epoch=9@leader=" S1;
	char out[WIRE_MAX], bad[WIRE_MAX];
	struct auth_cluster c;
	size_t len, i, plen;
	uint64_t ctr;
	enum auth_err e;
	int bit;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 77, dg, strlen(dg), out, sizeof(out), &len),
	    AUTH_OK);
	for (i = 0; i < len; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, out, len);
			bad[i] = (char)(bad[i] ^ (1 << bit));
			ctr = 0xdead;
			plen = 0xbeef;
			e = auth_s2s_verify(&c, S1, bad, len, &ctr, &plen);
			if (e == AUTH_OK)
				fail_msg(
				    "flip of bit %d at %zu accepted", bit, i);
			assert_true(e == AUTH_EBADMAC || e == AUTH_EMALFORMED ||
			    e == AUTH_ENOMAC);
			assert_true(ctr == 0xdead && plen == 0xbeef);
		}
	}
}

static void
s2s_verify_should_reject_every_truncation_and_extension(void **state)
{
	static const char dg[] = "repl@" S2 "@op@" S1 "@epoch=2@v=10";
	char out[WIRE_MAX + 8];
	struct auth_cluster c;
	size_t len, n, plen;
	uint64_t ctr;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 5, dg, strlen(dg), out, sizeof(out), &len),
	    AUTH_OK);
	for (n = 0; n < len; n++)
		assert_int_not_equal(
		    auth_s2s_verify(&c, S1, out, n, &ctr, &plen), AUTH_OK);
	/* Anything after the mac, even one more field, is refused. */
	memcpy(out + len, "@x=1", 4);
	assert_int_equal(auth_s2s_verify(&c, S1, out, len + 4, &ctr, &plen),
	    AUTH_EMALFORMED);
	out[len] = 'A';
	assert_int_not_equal(
	    auth_s2s_verify(&c, S1, out, len + 1, &ctr, &plen), AUTH_OK);
}

static void
s2s_verify_should_bind_key_and_sender(void **state)
{
	static const char dg[] = "voting@" S2 "@@" S1 "@epoch=4@cand=" S1;
	struct auth_cluster c, other;
	char out[WIRE_MAX];
	size_t len, plen;
	uint64_t ctr;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&other, 2);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 5, dg, strlen(dg), out, sizeof(out), &len),
	    AUTH_OK);
	assert_int_equal(
	    auth_s2s_verify(&other, S1, out, len, &ctr, &plen), AUTH_EBADMAC);
	assert_int_equal(
	    auth_s2s_verify(&c, S2, out, len, &ctr, &plen), AUTH_EBADMAC);
	assert_int_equal(
	    auth_s2s_verify(&c, S1, out, len, &ctr, &plen), AUTH_OK);
}

static void
s2s_verify_should_tell_missing_from_malformed(void **state)
{
	static const char *const malformed[] = {
	    /* mac not last */
	    "beat@@@s@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@x=1",
	    /* mac too short or long */
	    "beat@@@s@ctr=1@mac=AAAA",
	    "beat@@@s@ctr=1@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    /* mac not base64url, or not canonical */
	    "beat@@@s@ctr=1@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
	    "beat@@@s@ctr=1@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
	    /* no ctr, empty ctr, ctr not just before the mac */
	    "beat@@@s@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "beat@@@s@ctr=@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "beat@@@s@ctr=1@x=2@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "beat@@@s@ctr=-1@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "beat@@@s@ctr=1 @mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "1@mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    /* over 2^64 - 1, and 21 digits */
	    ("beat@@@s@ctr=18446744073709551616@mac="
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
	    ("beat@@@s@ctr=000000000000000000001@mac="
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
	};
	struct auth_cluster c;
	size_t i, plen;
	uint64_t ctr;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(
	    auth_s2s_verify(&c, S1, "beat@@@s@epoch=1", 16, &ctr, &plen),
	    AUTH_ENOMAC);
	assert_int_equal(
	    auth_s2s_verify(&c, S1, "", 0, &ctr, &plen), AUTH_ENOMAC);
	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		if (auth_s2s_verify(&c, S1, malformed[i], strlen(malformed[i]),
			&ctr, &plen) != AUTH_EMALFORMED)
			fail_msg("not malformed: %s", malformed[i]);
	/* Well-formed, wrong MAC; 20 digits with leading zeros are fine. */
	assert_int_equal(auth_s2s_verify(&c, S1,
			     ("beat@@@s@ctr=00000000000000000001@mac="
			      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
			     81, &ctr, &plen),
	    AUTH_EBADMAC);
}

static void
s2s_open_should_drop_replays_and_old_counters(void **state)
{
	static const char dg[] = "beat@" S2 "@@" S1 "@epoch=1@seq=1";
	char a[WIRE_MAX], b[WIRE_MAX], old[WIRE_MAX], forged[WIRE_MAX];
	size_t alen, blen, oldlen, plen;
	struct auth_cluster c, other;
	struct auth_window w;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&other, 2);
	auth_window_init(&w);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 5000, dg, strlen(dg), a, sizeof(a), &alen),
	    AUTH_OK);
	assert_int_equal(
	    auth_s2s_seal(&c, S1, 4999, dg, strlen(dg), b, sizeof(b), &blen),
	    AUTH_OK);
	assert_int_equal(auth_s2s_seal(&c, S1, 5000 - AUTH_WINDOW_BITS, dg,
			     strlen(dg), old, sizeof(old), &oldlen),
	    AUTH_OK);

	assert_int_equal(auth_s2s_open(&c, S1, &w, 0, a, alen, &plen), AUTH_OK);
	assert_int_equal(plen, strlen(dg));
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 0, a, alen, &plen), AUTH_EREPLAY);
	assert_int_equal(auth_s2s_open(&c, S1, &w, 0, b, blen, &plen), AUTH_OK);
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 0, b, blen, &plen), AUTH_EREPLAY);
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 0, old, oldlen, &plen), AUTH_ETOOOLD);

	/* A forgery with a huge counter moves nothing. */
	assert_int_equal(auth_s2s_seal(&other, S1, UINT64_MAX - 1, dg,
			     strlen(dg), forged, sizeof(forged), &blen),
	    AUTH_OK);
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 0, forged, blen, &plen), AUTH_EBADMAC);
	assert_true(w.top == 5000);

	/* Below the floor is too old even in an empty window. */
	auth_window_init(&w);
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 5001, a, alen, &plen), AUTH_ETOOOLD);
	assert_false(w.any);
	assert_int_equal(
	    auth_s2s_open(&c, S1, &w, 5000, a, alen, &plen), AUTH_OK);
}

/* Replay window. */

static void
window_should_accept_once_in_any_order_within_the_window(void **state)
{
	struct auth_window w;
	uint64_t top = 100000, i;

	(void)state;
	auth_window_init(&w);
	assert_int_equal(auth_window_check(&w, 0, 0), AUTH_OK);
	auth_window_update(&w, top);
	assert_int_equal(auth_window_check(&w, top, 0), AUTH_EREPLAY);
	/* Every older counter in the window, newest first, once each. */
	for (i = 1; i < AUTH_WINDOW_BITS; i++) {
		assert_int_equal(auth_window_check(&w, top - i, 0), AUTH_OK);
		auth_window_update(&w, top - i);
		assert_int_equal(
		    auth_window_check(&w, top - i, 0), AUTH_EREPLAY);
	}
	assert_int_equal(
	    auth_window_check(&w, top - AUTH_WINDOW_BITS, 0), AUTH_ETOOOLD);
	assert_int_equal(auth_window_check(&w, 0, 0), AUTH_ETOOOLD);
	/* Ahead by one: accepted, and the oldest slides out. */
	assert_int_equal(auth_window_check(&w, top + 1, 0), AUTH_OK);
	auth_window_update(&w, top + 1);
	assert_int_equal(
	    auth_window_check(&w, top + 1 - AUTH_WINDOW_BITS, 0), AUTH_ETOOOLD);
	assert_int_equal(auth_window_check(&w, top, 0), AUTH_EREPLAY);
	assert_int_equal(
	    auth_window_check(&w, top + 2 - AUTH_WINDOW_BITS, 0), AUTH_EREPLAY);
}

static void
window_should_forget_nothing_wrongly_when_jumping_ahead(void **state)
{
	struct auth_window w;

	(void)state;
	auth_window_init(&w);
	auth_window_update(&w, 10);
	auth_window_update(&w, 8);
	/* Ahead by less than the window: 8 slides out, 10 stays seen. */
	auth_window_update(&w, 10 + AUTH_WINDOW_BITS - 1);
	assert_int_equal(auth_window_check(&w, 8, 0), AUTH_ETOOOLD);
	assert_int_equal(auth_window_check(&w, 10, 0), AUTH_EREPLAY);
	assert_int_equal(auth_window_check(&w, 11, 0), AUTH_OK);
	/* 8's slot now stands for 8 + BITS, skipped, so unseen. */
	assert_int_equal(
	    auth_window_check(&w, 8 + AUTH_WINDOW_BITS, 0), AUTH_OK);
	/* Far ahead: all cleared, the old top too old. */
	auth_window_update(&w, UINT64_C(1) << 40);
	assert_int_equal(
	    auth_window_check(&w, 10 + AUTH_WINDOW_BITS - 1, 0), AUTH_ETOOOLD);
	assert_int_equal(
	    auth_window_check(&w, (UINT64_C(1) << 40) - 1, 0), AUTH_OK);
	/*
	 * An update outside the window must not mark the live counter
	 * that shares its slot (top - 1 here).
	 */
	auth_window_update(&w, (UINT64_C(1) << 40) - AUTH_WINDOW_BITS - 1);
	assert_int_equal(
	    auth_window_check(&w, (UINT64_C(1) << 40) - 1, 0), AUTH_OK);
	/* The extremes. */
	auth_window_update(&w, UINT64_MAX);
	assert_int_equal(auth_window_check(&w, UINT64_MAX, 0), AUTH_EREPLAY);
	assert_int_equal(
	    auth_window_check(&w, UINT64_MAX - 1, UINT64_MAX), AUTH_ETOOOLD);
	assert_int_equal(auth_window_check(NULL, 1, 0), AUTH_EARG);
}

/* The window against a model that remembers every counter. */
static void
window_should_match_a_model_on_random_traffic(void **state)
{
	enum { SPAN = 1 << 20, STEPS = 200000 };
	static bool seen[SPAN];
	struct auth_window w;
	uint64_t top = 0, ctr;
	bool any = false;
	enum auth_err got, want;
	int i;

	(void)state;
	memset(seen, 0, sizeof(seen));
	srandom(8);
	auth_window_init(&w);
	for (i = 0; i < STEPS; i++) {
		/* Mostly near the top, sometimes far behind or ahead. */
		ctr = top + (uint64_t)(random() % 8);
		if (random() % 3 == 0)
			ctr = ctr > 1400 ? ctr - (uint64_t)(random() % 1400)
					 : ctr;
		if (random() % 1000 == 0)
			ctr += 500 + (uint64_t)(random() % 2000);
		if (ctr >= SPAN)
			break;
		if (any && ctr <= top && top - ctr >= AUTH_WINDOW_BITS)
			want = AUTH_ETOOOLD;
		else if (seen[ctr])
			want = AUTH_EREPLAY;
		else
			want = AUTH_OK;
		got = auth_window_check(&w, ctr, 0);
		if (got != want)
			fail_msg("step %d ctr %" PRIu64 " top %" PRIu64
				 ": got %s, want %s",
			    i, ctr, top, auth_strerror(got),
			    auth_strerror(want));
		if (got == AUTH_OK) {
			auth_window_update(&w, ctr);
			seen[ctr] = true;
			if (!any || ctr > top)
				top = ctr;
			any = true;
		}
	}
}

/* Sender counters. */

static void
counter_should_rise_across_restarts_and_clock_steps(void **state)
{
	struct auth_ctr a, b;
	uint64_t t = UINT64_C(1700000000123), v, prev, last;
	int i;

	(void)state;
	auth_ctr_init(&a, t);
	assert_int_equal(auth_ctr_next(&a, t, &v), AUTH_OK);
	assert_true(v >> AUTH_CTR_SHIFT == t / 1000);
	prev = v;
	for (i = 0; i < 1000; i++) {
		assert_int_equal(auth_ctr_next(&a, t, &v), AUTH_OK);
		assert_true(v == prev + 1);
		prev = v;
	}
	/* The clock steps back: still rising. */
	assert_int_equal(auth_ctr_next(&a, t - 60000, &v), AUTH_OK);
	assert_true(v == prev + 1);
	last = v;
	/* A restart one millisecond later starts above the old run. */
	auth_ctr_init(&b, t + 1);
	assert_int_equal(auth_ctr_next(&b, t + 1, &v), AUTH_OK);
	assert_true(v > last);
	/* A new second: the counter moves up to it. */
	assert_int_equal(auth_ctr_next(&b, t + 1000, &v), AUTH_OK);
	assert_true(v == ((t + 1000) / 1000) << AUTH_CTR_SHIFT);
	/* The start is inside its second, whatever the millisecond. */
	auth_ctr_init(&b, UINT64_C(1700000000999));
	assert_true(b.next >> AUTH_CTR_SHIFT == UINT64_C(1700000000));
	/* The floor: a sender skew_ms behind is not too old. */
	assert_true(auth_ctr_floor(t, 600000) ==
	    ((t - 600000) / 1000) << AUTH_CTR_SHIFT);
	assert_true(auth_ctr_floor(5, 600000) == 0);
	/* The end of the counter. */
	a.next = UINT64_MAX - 1;
	assert_int_equal(auth_ctr_next(&a, t, &v), AUTH_OK);
	assert_int_equal(auth_ctr_next(&a, t, &v), AUTH_EEXHAUSTED);
	assert_int_equal(auth_ctr_next(&a, t, NULL), AUTH_EARG);
}

/* Encrypted fields. */

static void
field_should_round_trip_and_reject_tampering(void **state)
{
	static const char msg[] = "msg@#lobby@hello, secret world@alice";
	char text[WIRE_MAX + 1], bad[WIRE_MAX + 1];
	char out[WIRE_MAX];
	struct auth_cluster c, other;
	size_t tlen, olen, i;
	int bit;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&other, 2);
	assert_int_equal(auth_field_seal(&c, "repl", 4, msg, strlen(msg), text,
			     sizeof(text), &tlen),
	    AUTH_OK);
	assert_int_equal(strlen(text), tlen);
	assert_null(strstr(text, "hello"));
	/* Nothing wire.c would escape. */
	assert_int_equal(
	    strspn(text,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789-_"),
	    tlen);
	assert_int_equal(
	    auth_field_open(&c, "repl", 4, text, tlen, out, sizeof(out), &olen),
	    AUTH_OK);
	assert_int_equal(olen, strlen(msg));
	assert_memory_equal(out, msg, olen);

	assert_int_equal(
	    auth_field_open(&c, "snap", 4, text, tlen, out, sizeof(out), &olen),
	    AUTH_EBADMAC);
	assert_int_equal(auth_field_open(&other, "repl", 4, text, tlen, out,
			     sizeof(out), &olen),
	    AUTH_EBADMAC);
	for (i = 0; i < tlen; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, text, tlen);
			bad[i] = (char)(bad[i] ^ (1 << bit));
			olen = 4242;
			assert_int_not_equal(auth_field_open(&c, "repl", 4, bad,
						 tlen, out, sizeof(out), &olen),
			    AUTH_OK);
			assert_int_equal(olen, 4242);
		}
	for (i = 0; i < tlen; i++)
		assert_int_not_equal(auth_field_open(&c, "repl", 4, text, i,
					 out, sizeof(out), &olen),
		    AUTH_OK);
	/* Too small an output: refused before decrypting. */
	assert_int_equal(auth_field_open(&c, "repl", 4, text, tlen, out,
			     strlen(msg) - 1, &olen),
	    AUTH_ETOOBIG);
	/* Two seals of the same text differ (random nonce). */
	assert_int_equal(auth_field_seal(&c, NULL, 0, msg, strlen(msg), bad,
			     sizeof(bad), &olen),
	    AUTH_OK);
	assert_memory_not_equal(bad, text, 16);
	/* The empty field, and one too big. */
	assert_int_equal(
	    auth_field_seal(&c, NULL, 0, "", 0, text, sizeof(text), &tlen),
	    AUTH_OK);
	assert_int_equal(
	    auth_field_open(&c, NULL, 0, text, tlen, NULL, 0, &olen), AUTH_OK);
	assert_int_equal(olen, 0);
	memset(out, 'a', sizeof(out));
	assert_int_equal(
	    auth_field_seal(&c, NULL, 0, out, 1100, text, sizeof(text), &tlen),
	    AUTH_ETOOBIG);
}

/* Passwords. */

static void
pw_hash_should_verify_the_right_password_only(void **state)
{
	char hash[AUTH_PWHASH_SIZE], hash2[AUTH_PWHASH_SIZE];
	double t0, t1;

	(void)state;
	t0 = now_s();
	assert_int_equal(auth_pw_hash("correct horse", 13, hash), AUTH_OK);
	t1 = now_s();
	print_message("auth_pw_hash: %.1f ms (%s)\n", (t1 - t0) * 1e3, hash);
	assert_int_equal(
	    strncmp(hash, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
	assert_int_equal(auth_pw_hash_check(hash), AUTH_OK);
	assert_false(auth_pw_needs_rehash(hash));
	t0 = now_s();
	assert_int_equal(auth_pw_verify(hash, "correct horse", 13), AUTH_OK);
	t1 = now_s();
	print_message("auth_pw_verify: %.1f ms\n", (t1 - t0) * 1e3);
	assert_int_equal(
	    auth_pw_verify(hash, "correct horsf", 13), AUTH_EPW_WRONG);
	assert_int_equal(
	    auth_pw_verify(hash, "correct horse", 12), AUTH_EPW_WRONG);
	assert_int_equal(auth_pw_verify(hash, "", 0), AUTH_EPW_LENGTH);
	/* Salted: the same password hashes differently. */
	assert_int_equal(auth_pw_hash("correct horse", 13, hash2), AUTH_OK);
	assert_string_not_equal(hash, hash2);
}

static void
pw_hash_should_refuse_bad_lengths(void **state)
{
	char hash[AUTH_PWHASH_SIZE], pw[AUTH_PW_MAX + 1];

	(void)state;
	memset(hash, 'Z', sizeof(hash));
	assert_int_equal(auth_pw_hash("", 0, hash), AUTH_EPW_LENGTH);
	memset(pw, 'p', sizeof(pw));
	assert_int_equal(
	    auth_pw_hash(pw, AUTH_PW_MAX + 1, hash), AUTH_EPW_LENGTH);
	assert_int_equal(hash[0], 'Z');
	assert_int_equal(auth_pw_hash(NULL, 1, hash), AUTH_EARG);
}

static void
pw_verify_should_refuse_malformed_or_costly_hashes(void **state)
{
	static const char *const bad[] = {
	    "",
	    "plain text",
	    ("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0",
	    "$argon2id$v=19$m=,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
	    ("$argon2id$v=19$m=19456,t=2,p=2$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	    /* 4 GiB or 1000 passes: refused before anything is allocated */
	    ("$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	    ("$argon2id$v=19$m=19456,t=1000,p=1$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	    ("$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	    ("$argon2id$v=19$m=99999999999,t=2,p=1$c2FsdHNhbHRzYWx0$"
	     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
	};
	char unterminated[AUTH_PWHASH_SIZE + 8];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (auth_pw_verify(bad[i], "pw", 2) != AUTH_EPW_HASH)
			fail_msg("accepted hash: %s", bad[i]);
		assert_true(auth_pw_needs_rehash(bad[i]));
	}
	memset(unterminated, 'a', sizeof(unterminated));
	memcpy(unterminated, "$argon2id$v=19$m=19456,t=2,p=1$", 31);
	unterminated[sizeof(unterminated) - 1] = '\0';
	assert_int_equal(auth_pw_hash_check(unterminated), AUTH_EPW_HASH);
	assert_int_equal(auth_pw_verify(NULL, "pw", 2), AUTH_EARG);
}

static void
pw_needs_rehash_should_notice_another_cost(void **state)
{
	/* libsodium's "interactive" cost, password "correct horse". */
	static const char interactive[] =
	    "$argon2id$v=19$m=65536,t=2,p=1$Z+AzAxbnxw22CxWsqHDJLA$"
	    "sTADIaCo1VvtvSl2fz+W7oWeI2+KqyV+f7IDWmDPYVs";

	(void)state;
	assert_int_equal(auth_pw_hash_check(interactive), AUTH_OK);
	assert_true(auth_pw_needs_rehash(interactive));
	assert_int_equal(auth_pw_verify(interactive, "pw", 2), AUTH_EPW_WRONG);
	assert_int_equal(
	    auth_pw_verify(interactive, "correct horse", 13), AUTH_OK);
}

static void
pw_delay_should_grow_and_be_capped(void **state)
{
	uint32_t prev = 0, d, n;

	(void)state;
	assert_int_equal(auth_pw_delay_ms(0), 0);
	assert_int_equal(auth_pw_delay_ms(1), AUTH_DELAY_BASE_MS);
	assert_int_equal(auth_pw_delay_ms(2), 2 * AUTH_DELAY_BASE_MS);
	for (n = 1; n < 100; n++) {
		d = auth_pw_delay_ms(n);
		assert_true(d >= prev && d <= AUTH_DELAY_MAX_MS);
		prev = d;
	}
	assert_int_equal(auth_pw_delay_ms(7), AUTH_DELAY_MAX_MS);
	assert_int_equal(auth_pw_delay_ms(UINT32_MAX), AUTH_DELAY_MAX_MS);
}

/* Sessions. */

static void
kx_both_sides_should_agree(void **state)
{
	static const char up[] = "msg@#lobby@hello@alice@cid=1";
	static const char down[] = "msg@alice@hi there@bob@id=7";
	struct auth_session cl, sv, sv2;
	struct auth_cluster c;
	uint8_t buf[WIRE_MAX], pk[AUTH_PK_BYTES];
	char out[WIRE_MAX];
	size_t len, olen;
	uint64_t epoch;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_session_client(&cl, c.kx_pk), AUTH_OK);
	assert_int_equal(
	    auth_session_server(&sv, &c, cl.client_pk, 3), AUTH_OK);
	assert_memory_equal(cl.kx_tx, sv.kx_rx, AUTH_KEY_BYTES);
	assert_memory_equal(cl.kx_rx, sv.kx_tx, AUTH_KEY_BYTES);
	assert_memory_not_equal(cl.kx_rx, cl.kx_tx, AUTH_KEY_BYTES);

	assert_int_equal(
	    auth_session_seal(&cl, 3, up, strlen(up), buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(len, strlen(up) + AUTH_SESSION_OVERHEAD);
	assert_true(auth_session_is_sealed(buf, len));
	assert_false(auth_session_is_sealed(up, strlen(up)));
	assert_null(memmem(buf, len, "hello", 5));
	assert_int_equal(auth_session_peek(buf, len, pk, &epoch), AUTH_OK);
	assert_memory_equal(pk, cl.client_pk, AUTH_PK_BYTES);
	assert_int_equal(epoch, 3);
	assert_int_equal(
	    auth_session_open(&sv, buf, len, out, sizeof(out), &olen), AUTH_OK);
	assert_int_equal(olen, strlen(up));
	assert_memory_equal(out, up, olen);

	assert_int_equal(auth_session_seal(&sv, 3, down, strlen(down), buf,
			     sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&cl, buf, len, out, sizeof(out), &olen), AUTH_OK);
	assert_memory_equal(out, down, olen);
	assert_true(cl.rx_set && cl.rx_epoch == 3);
	/* A datagram does not open in the direction it was sent. */
	assert_int_equal(
	    auth_session_server(&sv2, &c, cl.client_pk, 3), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv2, buf, len, out, sizeof(out), &olen),
	    AUTH_EBADMAC);
	auth_session_wipe(&cl);
	auth_session_wipe(&sv);
	auth_session_wipe(&sv2);
}

static void
session_should_refuse_a_replayed_or_reused_nonce(void **state)
{
	struct auth_session cl, sv;
	struct auth_cluster c;
	uint8_t a[WIRE_MAX], b[WIRE_MAX];
	char out[WIRE_MAX];
	size_t alen, blen, olen;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_session_client(&cl, c.kx_pk), AUTH_OK);
	assert_int_equal(
	    auth_session_server(&sv, &c, cl.client_pk, 1), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&cl, 1, "one", 3, a, sizeof(a), &alen), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, a, alen, out, sizeof(out), &olen), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, a, alen, out, sizeof(out), &olen),
	    AUTH_EREPLAY);
	/* The same counter again (a sender bug): refused as well. */
	cl.tx_ctr = 0;
	assert_int_equal(
	    auth_session_seal(&cl, 1, "two", 3, b, sizeof(b), &blen), AUTH_OK);
	assert_memory_not_equal(a + 42, b + 42, 16); /* random half differs */
	assert_int_equal(
	    auth_session_open(&sv, b, blen, out, sizeof(out), &olen),
	    AUTH_EREPLAY);
	/* Out of order within the window: fine, once. */
	cl.tx_ctr = 10;
	assert_int_equal(
	    auth_session_seal(&cl, 1, "ten", 3, a, sizeof(a), &alen), AUTH_OK);
	cl.tx_ctr = 5;
	assert_int_equal(
	    auth_session_seal(&cl, 1, "five", 4, b, sizeof(b), &blen), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, a, alen, out, sizeof(out), &olen), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, b, blen, out, sizeof(out), &olen), AUTH_OK);
	assert_memory_equal(out, "five", 4);
	assert_int_equal(
	    auth_session_open(&sv, b, blen, out, sizeof(out), &olen),
	    AUTH_EREPLAY);
	/* Exhausted: no wrap to zero. */
	cl.tx_ctr = UINT64_MAX;
	assert_int_equal(auth_session_seal(&cl, 1, "x", 1, a, sizeof(a), &alen),
	    AUTH_EEXHAUSTED);
}

static void
session_should_reject_every_bit_flip_and_truncation(void **state)
{
	static const char msg[] = "ok@alice@registered@server@id=9";
	struct auth_session cl, sv, cl0;
	struct auth_cluster c;
	uint8_t buf[WIRE_MAX], bad[WIRE_MAX];
	char out[WIRE_MAX];
	size_t len, i, olen;
	enum auth_err e;
	int bit;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_session_client(&cl, c.kx_pk), AUTH_OK);
	assert_int_equal(
	    auth_session_server(&sv, &c, cl.client_pk, 5), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&sv, 5, msg, strlen(msg), buf, sizeof(buf), &len),
	    AUTH_OK);
	cl0 = cl;
	for (i = 0; i < len; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1 << bit);
			olen = 4242;
			e = auth_session_open(
			    &cl, bad, len, out, sizeof(out), &olen);
			if (e == AUTH_OK)
				fail_msg(
				    "flip of bit %d at %zu accepted", bit, i);
			assert_int_equal(olen, 4242);
			/* A failure changes nothing in the session. */
			assert_memory_equal(&cl, &cl0, sizeof(cl));
		}
	for (i = 0; i < len; i++)
		assert_int_not_equal(
		    auth_session_open(&cl, buf, i, out, sizeof(out), &olen),
		    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&cl, buf, len, out, sizeof(out), &olen), AUTH_OK);
	assert_memory_equal(out, msg, olen);
}

static void
session_should_continue_on_a_new_leader(void **state)
{
	struct auth_session cl, old, neu, ghost;
	struct auth_cluster c, rogue;
	uint8_t buf[WIRE_MAX], stale[WIRE_MAX], fake[WIRE_MAX];
	char out[WIRE_MAX];
	size_t len, slen, flen, olen;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&rogue, 9);
	assert_int_equal(auth_session_client(&cl, c.kx_pk), AUTH_OK);
	assert_int_equal(
	    auth_session_server(&old, &c, cl.client_pk, 4), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&old, 4, "a", 1, stale, sizeof(stale), &slen),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&cl, stale, slen, out, sizeof(out), &olen),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&old, 4, "b", 1, stale, sizeof(stale), &slen),
	    AUTH_OK);

	/* A rogue without the key claims epoch 99: nothing moves. */
	assert_int_equal(
	    auth_session_server(&ghost, &rogue, cl.client_pk, 99), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&ghost, 99, "x", 1, fake, sizeof(fake), &flen),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&cl, fake, flen, out, sizeof(out), &olen),
	    AUTH_EBADMAC);
	assert_true(cl.rx_epoch == 4);

	/* The old leader dies; a new one, at epoch 5, knows only the key. */
	assert_int_equal(
	    auth_session_server(&neu, &c, cl.client_pk, 5), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&cl, 5, "up", 2, buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&neu, buf, len, out, sizeof(out), &olen),
	    AUTH_OK);
	assert_memory_equal(out, "up", 2);
	/* ...and the old leader refuses what is meant for the new. */
	assert_int_equal(
	    auth_session_open(&old, buf, len, out, sizeof(out), &olen),
	    AUTH_EEPOCH);
	assert_int_equal(
	    auth_session_seal(&neu, 5, "down", 4, buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&cl, buf, len, out, sizeof(out), &olen), AUTH_OK);
	assert_true(cl.rx_epoch == 5);
	/* Once epoch 5 is proved, the old leader's datagrams are stale. */
	assert_int_equal(
	    auth_session_open(&cl, stale, slen, out, sizeof(out), &olen),
	    AUTH_EEPOCH);
	assert_int_equal(
	    auth_session_seal(&cl, 4, "x", 1, buf, sizeof(buf), &len),
	    AUTH_EEPOCH);
	assert_int_equal(
	    auth_session_seal(&neu, 4, "x", 1, buf, sizeof(buf), &len),
	    AUTH_EEPOCH);
}

static void
session_should_refuse_other_sessions_and_bad_input(void **state)
{
	struct auth_session cl, cl2, sv;
	struct auth_cluster c;
	uint8_t buf[WIRE_MAX], zero[AUTH_PK_BYTES], pk[AUTH_PK_BYTES];
	char out[WIRE_MAX], big[WIRE_MAX];
	size_t len, olen;
	uint64_t epoch;

	(void)state;
	make_cluster(&c, 1);
	assert_int_equal(auth_session_client(&cl, c.kx_pk), AUTH_OK);
	assert_int_equal(auth_session_client(&cl2, c.kx_pk), AUTH_OK);
	assert_memory_not_equal(cl.client_pk, cl2.client_pk, AUTH_PK_BYTES);
	assert_int_equal(
	    auth_session_server(&sv, &c, cl.client_pk, 1), AUTH_OK);
	assert_int_equal(
	    auth_session_seal(&cl2, 1, "x", 1, buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, buf, len, out, sizeof(out), &olen),
	    AUTH_ESESSION);
	assert_int_equal(
	    auth_session_seal(&cl, 2, "x", 1, buf, sizeof(buf), &len), AUTH_OK);
	assert_int_equal(
	    auth_session_open(&sv, buf, len, out, sizeof(out), &olen),
	    AUTH_EEPOCH);

	/* The largest plaintext fits a datagram; one byte more does not. */
	memset(big, 'a', sizeof(big));
	assert_int_equal(
	    auth_session_seal(&cl, 1, big, WIRE_MAX - AUTH_SESSION_OVERHEAD,
		buf, sizeof(buf), &len),
	    AUTH_OK);
	assert_int_equal(len, WIRE_MAX);
	assert_int_equal(
	    auth_session_open(&sv, buf, len, out, 10, &olen), AUTH_ETOOBIG);
	assert_int_equal(
	    auth_session_open(&sv, buf, len, out, sizeof(out), &olen), AUTH_OK);
	assert_int_equal(olen, WIRE_MAX - AUTH_SESSION_OVERHEAD);
	assert_int_equal(
	    auth_session_seal(&cl, 1, big, WIRE_MAX - AUTH_SESSION_OVERHEAD + 1,
		buf, sizeof(buf), &len),
	    AUTH_ETOOBIG);
	assert_int_equal(
	    auth_session_seal(&cl, 1, big, 10, buf, 10, &len), AUTH_ETOOBIG);

	/* Not session datagrams at all. */
	assert_int_equal(
	    auth_session_open(&sv, "msg@a@b@c", 9, out, sizeof(out), &olen),
	    AUTH_EMALFORMED);
	assert_int_equal(
	    auth_session_peek("msg@a@b@c", 9, pk, &epoch), AUTH_EMALFORMED);
	memset(buf, 0, sizeof(buf));
	buf[0] = 0xff;
	buf[1] = 0x02;
	assert_int_equal(
	    auth_session_peek(buf, 100, pk, &epoch), AUTH_EMALFORMED);

	/* A public key that is not a point to agree on. */
	memset(zero, 0, sizeof(zero));
	assert_int_equal(auth_session_client(&cl2, zero), AUTH_EKX);
	assert_int_equal(auth_session_server(&sv, &c, zero, 1), AUTH_EKX);
}

/* Trust on first use. */

static void
pin_should_be_set_on_first_use_then_checked(void **state)
{
	struct auth_cluster c, other;
	struct auth_error err;
	char path[PATH_MAX], fp[AUTH_FP_SIZE];
	bool pinned;
	struct stat st;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&other, 2);
	tpath(path, sizeof(path), "known_clusters");
	pinned = false;
	assert_int_equal(
	    auth_pin_check(path, "lan:45960", c.kx_pk, &pinned, &err), AUTH_OK);
	assert_true(pinned);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(
	    auth_pin_check(path, "lan:45960", c.kx_pk, &pinned, &err), AUTH_OK);
	assert_false(pinned);

	assert_int_equal(
	    auth_pin_check(path, "lan:45960", other.kx_pk, &pinned, &err),
	    AUTH_EPIN_MISMATCH);
	assert_non_null(strstr(err.text, path));
	assert_non_null(strstr(err.text, "lan:45960"));
	auth_fingerprint(c.kx_pk, fp);
	assert_non_null(strstr(err.text, fp));
	auth_fingerprint(other.kx_pk, fp);
	assert_non_null(strstr(err.text, fp));

	/* Another cluster gets its own line; the first is kept. */
	assert_int_equal(
	    auth_pin_check(path, "office", other.kx_pk, &pinned, &err),
	    AUTH_OK);
	assert_true(pinned);
	assert_int_equal(
	    auth_pin_check(path, "lan:45960", c.kx_pk, &pinned, &err), AUTH_OK);
	assert_false(pinned);
	assert_int_equal(
	    auth_pin_check(path, "office", other.kx_pk, &pinned, &err),
	    AUTH_OK);
	assert_false(pinned);
	assert_int_equal(count_entries(".tmp"), 0);
	assert_int_equal(
	    auth_pin_check(path, "bad label", c.kx_pk, &pinned, &err),
	    AUTH_EARG);
}

static void
pin_should_refuse_a_corrupt_file(void **state)
{
	static const char corrupt[] = "# comment\n"
				      "\n"
				      "office AAAA\n";
	struct auth_cluster c;
	struct auth_error err;
	char path[PATH_MAX];
	bool pinned;

	(void)state;
	make_cluster(&c, 1);
	tpath(path, sizeof(path), "pins_corrupt");
	put_file(path, corrupt, strlen(corrupt), 0644);
	assert_int_equal(
	    auth_pin_check(path, "lan", c.kx_pk, &pinned, &err), AUTH_EFORMAT);
	assert_non_null(strstr(err.text, path));
	assert_non_null(strstr(err.text, ":3:"));
}

static void
pin_find_should_parse_strictly(void **state)
{
	char text[512], pktext[AUTH_PK_TEXT];
	struct auth_cluster c;
	uint8_t pk[AUTH_PK_BYTES];
	size_t line;
	bool found;

	(void)state;
	make_cluster(&c, 1);
	auth_pk_to_text(c.kx_pk, pktext);
	/* Last line without a newline: fine. */
	(void)snprintf(text, sizeof(text), "# x\nlan %s", pktext);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "lan", pk, &found, &line),
	    AUTH_OK);
	assert_true(found);
	assert_memory_equal(pk, c.kx_pk, AUTH_PK_BYTES);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "la", pk, &found, &line),
	    AUTH_OK);
	assert_false(found);
	/* The same label twice. */
	(void)snprintf(text, sizeof(text), "lan %s\nlan %s\n", pktext, pktext);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "lan", pk, &found, &line),
	    AUTH_EFORMAT);
	assert_int_equal(line, 2);
	/* Two spaces, a trailing space, a bad label, a NUL. */
	(void)snprintf(text, sizeof(text), "lan  %s\n", pktext);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "lan", pk, &found, &line),
	    AUTH_EFORMAT);
	(void)snprintf(text, sizeof(text), "lan %s \n", pktext);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "lan", pk, &found, &line),
	    AUTH_EFORMAT);
	(void)snprintf(text, sizeof(text), "l/n %s\n", pktext);
	assert_int_equal(
	    auth_pin_find(text, strlen(text), "lan", pk, &found, &line),
	    AUTH_EFORMAT);
	assert_int_equal(
	    auth_pin_find("lan\0", 4, "lan", pk, &found, &line), AUTH_EFORMAT);
	assert_int_equal(
	    auth_pin_find("", 0, "", pk, &found, &line), AUTH_EARG);
	assert_int_equal(
	    auth_pin_find(NULL, 0, "lan", pk, &found, &line), AUTH_OK);
	assert_false(found);
}

static void
box_should_round_trip_and_refuse_any_change(void **state)
{
	const char dg[] =
	    "repl@" S2 "@op text with a secret@" S1 "@epoch=2@v=7@n=1";
	struct auth_cluster c, other;
	uint8_t sender[16], got[16], box[WIRE_MAX];
	char out[WIRE_MAX];
	uint64_t ctr;
	size_t len, olen, i;

	(void)state;
	make_cluster(&c, 1);
	make_cluster(&other, 2);
	memset(sender, 0xab, sizeof(sender));
	assert_int_equal(auth_s2s_box(&c, sender, 1234, dg, strlen(dg), box,
			     sizeof(box), &len),
	    AUTH_OK);
	assert_int_equal(len, strlen(dg) + AUTH_BOX_OVERHEAD);
	assert_true(auth_s2s_is_boxed(box, len));
	assert_null(memmem(box, len, "secret", 6)); /* encrypted */
	assert_int_equal(
	    auth_s2s_unbox(&c, box, len, got, &ctr, out, sizeof(out), &olen),
	    AUTH_OK);
	assert_int_equal(ctr, 1234);
	assert_memory_equal(got, sender, 16);
	assert_int_equal(olen, strlen(dg));
	assert_memory_equal(out, dg, olen);
	/* Another cluster's key, every single bit flipped, truncation. */
	assert_int_equal(auth_s2s_unbox(&other, box, len, got, &ctr, out,
			     sizeof(out), &olen),
	    AUTH_EBADMAC);
	for (i = 2; i < len * 8; i++) {
		box[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_not_equal(auth_s2s_unbox(&c, box, len, got, &ctr,
					 out, sizeof(out), &olen),
		    AUTH_OK);
		box[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	for (i = 0; i < len; i++)
		assert_int_not_equal(auth_s2s_unbox(&c, box, i, got, &ctr, out,
					 sizeof(out), &olen),
		    AUTH_OK);
	/* Output too small, input too big. */
	assert_int_equal(auth_s2s_unbox(&c, box, len, got, &ctr, out, 3, &olen),
	    AUTH_ETOOBIG);
	memset(out, 'x', sizeof(out));
	assert_int_equal(
	    auth_s2s_box(&c, sender, 1, out, WIRE_MAX - AUTH_BOX_OVERHEAD + 1,
		box, sizeof(box), &len),
	    AUTH_ETOOBIG);
	assert_int_equal(
	    auth_s2s_box(&c, sender, 1, out, WIRE_MAX - AUTH_BOX_OVERHEAD, box,
		sizeof(box), &len),
	    AUTH_OK);
	assert_int_equal(len, WIRE_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(strerror_should_be_distinct_for_every_code),
	    cmocka_unit_test(
		key_write_then_read_should_round_trip_with_mode_0600),
	    cmocka_unit_test(key_generate_should_give_different_keys),
	    cmocka_unit_test(key_write_should_refuse_to_overwrite),
	    cmocka_unit_test(
		key_write_should_fail_clearly_in_a_missing_directory),
	    cmocka_unit_test(key_read_should_refuse_a_file_others_can_access),
	    cmocka_unit_test(key_read_should_refuse_a_file_of_another_user),
	    cmocka_unit_test(key_read_should_refuse_a_wrong_size),
	    cmocka_unit_test(key_read_should_refuse_corrupt_content),
	    cmocka_unit_test(key_read_should_report_an_unreadable_file),
	    cmocka_unit_test(key_parse_should_accept_a_line_without_newline),
	    cmocka_unit_test(
		cluster_init_should_derive_the_same_keys_everywhere),
	    cmocka_unit_test(fingerprint_should_be_blake2b_128_in_groups),
	    cmocka_unit_test(pk_text_should_round_trip_and_be_strict),
	    cmocka_unit_test(s2s_seal_should_keep_the_wire_format),
	    cmocka_unit_test(s2s_seal_should_work_in_place_and_at_the_limits),
	    cmocka_unit_test(s2s_seal_should_refuse_what_would_not_decode),
	    cmocka_unit_test(s2s_verify_should_reject_every_bit_flip),
	    cmocka_unit_test(
		s2s_verify_should_reject_every_truncation_and_extension),
	    cmocka_unit_test(s2s_verify_should_bind_key_and_sender),
	    cmocka_unit_test(s2s_verify_should_tell_missing_from_malformed),
	    cmocka_unit_test(s2s_open_should_drop_replays_and_old_counters),
	    cmocka_unit_test(
		window_should_accept_once_in_any_order_within_the_window),
	    cmocka_unit_test(
		window_should_forget_nothing_wrongly_when_jumping_ahead),
	    cmocka_unit_test(window_should_match_a_model_on_random_traffic),
	    cmocka_unit_test(
		counter_should_rise_across_restarts_and_clock_steps),
	    cmocka_unit_test(field_should_round_trip_and_reject_tampering),
	    cmocka_unit_test(pw_hash_should_verify_the_right_password_only),
	    cmocka_unit_test(pw_hash_should_refuse_bad_lengths),
	    cmocka_unit_test(
		pw_verify_should_refuse_malformed_or_costly_hashes),
	    cmocka_unit_test(pw_needs_rehash_should_notice_another_cost),
	    cmocka_unit_test(pw_delay_should_grow_and_be_capped),
	    cmocka_unit_test(kx_both_sides_should_agree),
	    cmocka_unit_test(session_should_refuse_a_replayed_or_reused_nonce),
	    cmocka_unit_test(
		session_should_reject_every_bit_flip_and_truncation),
	    cmocka_unit_test(session_should_continue_on_a_new_leader),
	    cmocka_unit_test(
		session_should_refuse_other_sessions_and_bad_input),
	    cmocka_unit_test(pin_should_be_set_on_first_use_then_checked),
	    cmocka_unit_test(pin_should_refuse_a_corrupt_file),
	    cmocka_unit_test(pin_find_should_parse_strictly),
	    cmocka_unit_test(box_should_round_trip_and_refuse_any_change),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
