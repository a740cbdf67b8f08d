/* store: the state files (identity, servers.json, users.json) and all JSON. */
#ifndef RINGCHAT_STORE_H
#define RINGCHAT_STORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ring.h"
#include "uuid.h"

/*
 * Only this module includes cJSON.h.  Every read parses with a length
 * and typed getters and rejects what does not match the schema in
 * docs/STATE.md; every write goes through store_write_atomic.
 *
 * Functions return 0 on success and -1 on failure with err->text set to
 * one line naming the file and, for a parse error, the line and column:
 * "servers.json:3:14: expected a string for \"name\"".  Readers return 1
 * (and leave the output empty) when the file does not exist.
 */

struct store_error {
	char text[512];
};

/* servers.json: the membership as this server knows it. */
struct servers_state {
	uint64_t version; /* bumped by every change */
	uint64_t epoch;	  /* epoch of `leader` */
	bool has_leader;
	struct uuid leader;
	struct member m[RING_MAX];
	size_t n;
};

#define USER_NAME_MAX  32 /* bytes of a user name, NUL included */
#define USER_ROOMS_MAX 16
#define ROOM_NAME_MAX  32 /* "#room", NUL included */

struct user {
	char name[USER_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
	bool online;
	char rooms[USER_ROOMS_MAX][ROOM_NAME_MAX];
	size_t nrooms;
	int64_t last_seen; /* seconds since the epoch; 0 = never */
	/* Argon2id hash of the password (auth_pw_hash); "" = none */
	char password[AUTH_PWHASH_SIZE];
};

/* users.json: the registered users. */
struct users_state {
	uint64_t version;
	struct user *u; /* reallocarray'd, n used of cap */
	size_t n, cap;
};

/*
 * mkstemp in the same directory, write, fsync, rename, fsync the dir;
 * mode 0644.  users.json and the chat journal, which hold password
 * hashes, are written the same way with mode 0600.
 */
int store_write_atomic(
    const char *path, const void *data, size_t len, struct store_error *);

int store_read_identity(const char *path, struct uuid *, char *name,
    size_t namesz, struct store_error *);
int store_write_identity(const char *path, const struct uuid *,
    const char *name, struct store_error *);

int store_read_servers(
    const char *path, struct servers_state *, struct store_error *);
int store_write_servers(
    const char *path, const struct servers_state *, struct store_error *);
/* Parses servers.json text already in memory (the --peers file too). */
int store_parse_servers(const char *name, const char *text, size_t len,
    struct servers_state *, struct store_error *);

void store_users_init(struct users_state *);
void store_users_free(struct users_state *);
/*
 * Appends a zeroed user, growing the array with reallocarray; NULL when
 * out of memory (the state is unchanged).  Pointers into s->u do not
 * survive the call.
 */
struct user *store_users_add(struct users_state *);
/* The user called name (byte-exact), NULL when none. */
struct user *store_users_find(struct users_state *, const char *name);
int
store_read_users(const char *path, struct users_state *, struct store_error *);
int store_write_users(
    const char *path, const struct users_state *, struct store_error *);
int store_parse_users(const char *name, const char *text, size_t len,
    struct users_state *, struct store_error *);

/*
 * The text store_write_servers/store_write_users would write (pretty,
 * ending with a newline), malloc'd, with its length in *len; NULL with
 * err->text set ("servers[2].name: too long ...") when the state breaks
 * the schema, so that nothing is written that a reader would refuse.
 */
char *store_format_servers(
    const struct servers_state *, size_t *len, struct store_error *);
char *store_format_users(
    const struct users_state *, size_t *len, struct store_error *);

/*
 * The chat journal in a state directory (docs/STATE.md): chat.snap, a
 * relay snapshot written atomically, and chat.log, the ops applied
 * since, appended one per line as "CHECKSUM OPTEXT" (CHECKSUM: FNV-1a 64
 * of OPTEXT, 16 lowercase hex digits).  Ops are written with write(2)
 * as they are applied (a kill -9 loses nothing written) and made
 * durable by store_journal_sync (fdatasync), which the daemon calls
 * before it acknowledges them.
 */
#define STORE_JOURNAL_BUF (64u << 10) /* appended lines kept before a write */

struct store_journal {
	int fd; /* chat.log, O_APPEND; -1 when closed */
	/* appended lines not written yet: one write(2) per wake-up */
	char wbuf[STORE_JOURNAL_BUF];
	size_t wlen;
	char log_path[PATH_MAX];
	char snap_path[PATH_MAX];
	uint64_t ops;	/* lines in chat.log */
	uint64_t bytes; /* its size */
	bool dirty;	/* written since the last sync */
	/* counters */
	uint64_t syncs, sync_us, compactions;
};

/*
 * Called with chat.snap's bytes (NUL-terminated), then with each op line
 * of chat.log in order; -1 (err set) stops the load.
 */
typedef int (*store_journal_cb)(
    void *arg, const char *text, size_t len, struct store_error *);

/*
 * Reads DIR's journal: snap_cb sees chat.snap when there is one, then
 * op_cb every op of chat.log.  A last line cut short (a crash in the
 * middle of a write) is dropped and *torn set; any other bad line is an
 * error naming the file and the line.  0 when read, 1 when neither file
 * exists, -1 on error (the files are left as they are).
 */
int store_journal_load(const char *dir, store_journal_cb snap_cb,
    store_journal_cb op_cb, void *arg, bool *torn, struct store_error *);
/*
 * Opens chat.log for appending; with truncate_torn, cuts it back to its
 * last whole line first (after a load that set torn).
 */
int store_journal_open(struct store_journal *, const char *dir,
    bool truncate_torn, struct store_error *);
/*
 * Adds an op as one line (a newline of the op is written as 0x1f, which
 * no op holds).  The line is buffered: store_journal_flush writes it.
 */
int store_journal_append(
    struct store_journal *, const char *text, size_t len, struct store_error *);
/* Writes the buffered lines (into the page cache: not durable yet). */
int store_journal_flush(struct store_journal *, struct store_error *);
/* Flushes, then fdatasync when something was written since the last. */
int store_journal_sync(struct store_journal *, struct store_error *);
/*
 * Replaces the journal by a snapshot: chat.snap written atomically, then
 * chat.log emptied.  A crash in between leaves the new snapshot and old
 * ops that the load skips (their versions are not above it).
 */
int store_journal_reset(
    struct store_journal *, const char *snap, size_t len, struct store_error *);
/* Flushes (errors ignored: the caller synced what mattered) and closes. */
void store_journal_close(struct store_journal *);

/* FNV-1a 64: the checksum of journal lines and snapshots. */
uint64_t store_fnv64(const void *, size_t);

/* One key/value of a flat JSON object line (events, client script mode). */
enum store_kv_type { KV_STR, KV_INT, KV_BOOL, KV_UINT };
struct store_kv {
	const char *key;
	enum store_kv_type type;
	const char *s;
	int64_t i;
	uint64_t u;
	bool b;
};
/*
 * Writes {"k":v,...} and a newline into out; -1 when it would not fit
 * (nothing is truncated), or when a key is NULL or a string is not
 * valid UTF-8.  A NULL KV_STR is written as null.
 */
int store_json_line(char *out, size_t outsz, const struct store_kv *, size_t n);
/*
 * The same line with one more member, key, after the others: a JSON
 * array of the nitems strings (the client's lists of names).  -1 as
 * above, or when an item is NULL or not valid UTF-8.
 */
int store_json_line_list(char *out, size_t outsz, const struct store_kv *,
    size_t n, const char *key, const char *const *items, size_t nitems);

/* What `status json` reports; ring entries come from ring. */
struct store_status {
	const char *name;
	const struct uuid *uuid;
	const char *role;
	uint64_t epoch;
	bool has_leader;
	const struct uuid *leader;
	const struct ring *ring; /* in ring order, with liveness */
	uint64_t servers_version;
	uint64_t users_version;
	int64_t uptime_ms;
	uint64_t bad_datagrams;
	uint64_t elections;
};
/* A malloc'd one-line JSON object (no newline), NULL on memory failure. */
char *store_status_json(const struct store_status *);

#endif
