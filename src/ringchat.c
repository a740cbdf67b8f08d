/* ringchat: the chat client: options, socket, terminal and one poll loop. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include "auth.h"
#include "client.h"
#include "loop.h"
#include "net.h"
#include "sess.h"
#include "store.h"
#include "uuid.h"
#include "wire.h"

#define DEFAULT_DISC_PORT 45960
#define COLLECT_MS	  200  /* broadcast: wait this long for newer leaders */
#define RX_BURST	  64   /* datagrams read per wake-up */
#define INPUT_MAX	  4096 /* bytes of one command line */
#define JSON_LINE_MAX	  16384 /* one event; a message is at most ~7 KiB */

/* Exit codes, as ringchat(1) documents them. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1, /* the server refused the session, or a local failure */
	EXIT_USAGE = 2,
	EXIT_NOSERVER = 3, /* no server (or no live leader) in time */
	EXIT_TAKEN = 4,	   /* the name is registered from another address */
	EXIT_UNACKED = 5   /* messages still unacknowledged at the end */
};

enum mode { MODE_CHAT, MODE_WHERE, MODE_VOTE };

/* Colours (SGR), used only when the terminal has them. */
#define C_DIM	 "\033[2m"
#define C_ROOM	 "\033[36m"
#define C_FROM	 "\033[1;32m"
#define C_DIRECT "\033[1;35m"
#define C_ERR	 "\033[31m"
#define C_OFF	 "\033[0m"

/* Everything the client process holds; one instance, file-static. */
struct ringchat {
	struct client cl;
	struct loop loop;
	enum mode mode;
	int fd;
	struct net_iface ifc;
	uint16_t disc_port;
	struct sockaddr_in disc; /* broadcast:discovery port, or --server */
	bool have_server;
	int64_t timeout_ms; /* 0: wait forever */
	int64_t vote_deadline;
	int exit_code;

	bool json;	  /* one JSON line per event */
	bool interactive; /* a terminal and libedit; else script mode */
	bool color;
	bool reading;	   /* stdin is in the poll set */
	bool eof;	   /* no more commands: quit when they are done */
	bool rl_on;	   /* the prompt is on screen: print around it */
	bool rl_installed; /* libedit has the terminal */
	char *rl_line;	   /* the line libedit just finished */
	bool rl_got;
	char prompt[ROOM_NAME_MAX + 8];
	char in[INPUT_MAX + 1]; /* script mode: bytes not yet a full line */
	size_t inlen;
	bool skipping; /* dropping the rest of an overlong line */

	/*
	 * A keyed cluster: its public key (pinned on first use under
	 * `label` in the known-clusters file) and the session with it.
	 * Everything to the leader goes sealed; in clear only `where`,
	 * `vote` and, from servers, leader hints.
	 */
	bool keyed;
	uint8_t cluster_pk[AUTH_PK_BYTES];
	struct auth_session as;
	const char *label;
	char pins[PATH_MAX];
	char pw[CLIENT_PW_MAX + 2]; /* RINGCHAT_PASSWORD or --password-file */
	size_t pwlen;
	bool have_pw;
	bool said_mismatch, said_plain, said_open;
	uint64_t refused_plain, refused_sealed;
};

static struct ringchat rc;
static volatile sig_atomic_t got_quit, got_winch;

static void __attribute__((noreturn)) usage(int code)
{
	fprintf(code == 0 ? stdout : stderr,
	    "usage: ringchat --user NAME [--iface IF] [--discovery-port PORT]\n"
	    "                [--server HOST:PORT] [--timeout SEC] [--alive-ms MS]\n"
	    "                [--json] [--where | --vote] [--cluster NAME]\n"
	    "                [--known-clusters FILE] [--password-file FILE]\n"
	    "\n"
	    "  --user NAME            your user name (registered on first use)\n"
	    "  --iface IF             interface to look for servers on (default: loopback)\n"
	    "  --discovery-port PORT  the servers' broadcast port (default %u)\n"
	    "  --server HOST:PORT     ask this server where the leader is instead of\n"
	    "                         broadcasting\n"
	    "  --timeout SEC          give up when no server answers by then, and wait at\n"
	    "                         most this long for acknowledgements at the end\n"
	    "                         (default 10; 0: wait forever)\n"
	    "  --alive-ms MS          keepalive interval (default 1000); 3 unanswered mean\n"
	    "                         the leader is gone\n"
	    "  --json                 script mode: commands line by line on stdin, one JSON\n"
	    "                         line per event on stdout (default when stdin is not\n"
	    "                         a terminal)\n"
	    "  --where                print the leader and exit\n"
	    "  --vote                 ask the servers to elect a leader now\n"
	    "  --cluster NAME         the name the cluster's key is pinned under\n"
	    "                         (default: lan)\n"
	    "  --known-clusters FILE  pinned cluster keys (default:\n"
	    "                         ~/.config/ringchat/known_clusters)\n"
	    "  --password-file FILE   the password, on the file's first line (else\n"
	    "                         RINGCHAT_PASSWORD, else asked at the terminal);\n"
	    "                         sent only inside an encrypted session\n"
	    "  -h, --help             this text\n"
	    "\n"
	    "Commands: /msg USER|#ROOM|* TEXT, /join #ROOM, /part [#ROOM], /rooms,\n"
	    "/who [#ROOM], /users, /vote, /status, /help, /quit; other text goes to\n"
	    "the current room.\n",
	    DEFAULT_DISC_PORT);
	exit(code);
}

static void
on_signal(int sig)
{
	if (sig == SIGWINCH)
		got_winch = 1;
	else
		got_quit++;
}

/* ---- output ------------------------------------------------------------- */

static void
out_flush(void)
{
	if (fflush(stdout) == EOF && errno == EPIPE)
		exit(EXIT_FAIL); /* nobody reads what we say */
}

static void
json_emit(const char *event, const struct store_kv *kv, size_t n)
{
	struct store_kv all[12];
	char line[JSON_LINE_MAX];
	size_t i;

	memset(all, 0, sizeof(all));
	all[0].key = "event";
	all[0].type = KV_STR;
	all[0].s = event;
	for (i = 0; i < n && i + 1 < sizeof(all) / sizeof(all[0]); i++)
		all[i + 1] = kv[i];
	if (store_json_line(line, sizeof(line), all, i + 1) == -1) {
		warnx("%s event too large to print", event);
		return;
	}
	fputs(line, stdout);
	out_flush();
}

static struct store_kv
kv_str(const char *key, const char *s)
{
	struct store_kv kv = {.key = key, .type = KV_STR, .s = s};

	return kv;
}

static struct store_kv
kv_u64(const char *key, uint64_t u)
{
	struct store_kv kv = {.key = key, .type = KV_UINT, .u = u};

	return kv;
}

/* Columns the text takes on the terminal (the locale's idea of it). */
static int
columns(const char *s, size_t len)
{
	mbstate_t st;
	size_t i = 0, k;
	int cols = 0, w;
	wchar_t wc;

	memset(&st, 0, sizeof(st));
	while (i < len) {
		k = mbrtowc(&wc, s + i, len - i, &st);
		if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
			memset(&st, 0, sizeof(st));
			i++;
			cols++;
			continue;
		}
		i += k;
		if ((w = wcwidth(wc)) > 0)
			cols += w;
	}
	return cols;
}

/*
 * Erases the prompt and the line being typed (it may wrap), leaving the
 * cursor at the start of the row the prompt began on.  libedit keeps the
 * text and the cursor in its own buffer, which we never touch:
 * rl_forced_update_display draws them again from there, byte for byte.
 */
static void
rl_erase(void)
{
	int rows = 0, cols = 0, up = 0, point = rl_point;

	rl_get_screen_size(&rows, &cols);
	if (rl_line_buffer == NULL || point < 0)
		point = 0;
	if (cols > 0)
		up = (columns(rc.prompt, strlen(rc.prompt)) +
			 columns(rl_line_buffer, (size_t)point)) /
		    cols;
	fputs("\r", stdout);
	if (up > 0)
		printf("\033[%dA", up);
	fputs("\033[J", stdout);
}

/* One line for the user, above the prompt when it is on screen. */
static void
ui_line(const char *s)
{
	if (rc.rl_on)
		rl_erase();
	fputs(s, stdout);
	fputs("\n", stdout);
	out_flush();
	if (rc.rl_on)
		rl_forced_update_display();
}

/* printf-style ui_line; the colours only when the terminal has them. */
static void __attribute__((format(printf, 2, 3)))
ui_say(const char *color, const char *fmt, ...)
{
	char text[2048], line[2100];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (rc.color && color != NULL) {
		(void)snprintf(
		    line, sizeof(line), "%s%s%s", color, text, C_OFF);
		ui_line(line);
	} else {
		ui_line(text);
	}
}

/*
 * Text from the network for the terminal: control characters (C0 but
 * tab and newline, DEL, C1) become '?', so nobody can move our cursor
 * or recolour the screen; newlines are indented under the first line.
 */
static char *
sanitize(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	char *out;

	if ((out = reallocarray(NULL, n + 1, 5)) == NULL)
		return NULL;
	for (; *p != '\0'; p++) {
		if (*p == '\n') {
			memcpy(out + o, "\n    ", 5);
			o += 5;
		} else if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			out[o++] = '?';
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			out[o++] = '?';
			p++;
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return out;
}

static void
time_now(char *human, size_t hsz, char *iso, size_t isz)
{
	struct timespec ts;
	struct tm tm;
	char b[32];

	/* Wall time to show, never for timers. */
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(human, hsz, "%H:%M:%S", &tm);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	(void)snprintf(
	    iso, isz, "%s.%03dZ", b, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void
show_message(const struct client_out *o)
{
	char human[16], iso[40], *text;
	const char *room = o->to;
	struct store_kv kv[7];

	time_now(human, sizeof(human), iso, sizeof(iso));
	if (rc.json) {
		kv[0] = kv_u64("id", o->id);
		kv[1] = kv_u64("seq", o->seq);
		kv[2] = kv_str("from", o->from);
		kv[3] = kv_str("to", o->to);
		kv[4] = kv_str("text", o->text != NULL ? o->text : "");
		kv[5] = kv_str("time", iso);
		json_emit("message", kv, 6);
		return;
	}
	if ((text = sanitize(o->text != NULL ? o->text : "")) == NULL)
		return;
	if (room[0] == '#' || strcmp(room, "*") == 0)
		ui_say(NULL, "%s%s%s %s%s%s %s<%s>%s %s", rc.color ? C_DIM : "",
		    human, rc.color ? C_OFF : "", rc.color ? C_ROOM : "", room,
		    rc.color ? C_OFF : "", rc.color ? C_FROM : "", o->from,
		    rc.color ? C_OFF : "", text);
	else
		ui_say(NULL, "%s%s%s %s*%s*%s %s", rc.color ? C_DIM : "", human,
		    rc.color ? C_OFF : "", rc.color ? C_DIRECT : "", o->from,
		    rc.color ? C_OFF : "", text);
	free(text);
}

/* An error of ours or the server's, for the user. */
static void
show_error(const char *code, const char *text, bool has_cid, uint64_t cid)
{
	struct store_kv kv[3];

	if (rc.json) {
		kv[0] = kv_str("code", code);
		kv[1] = kv_str("message", text);
		kv[2] = kv_u64("cid", cid);
		json_emit("error", kv, has_cid ? 3 : 2);
	} else {
		ui_say(C_ERR, "error: %s", text);
	}
}

static void
show_list(const struct client_out *o)
{
	const char *text = o->text != NULL ? o->text : "";
	char **names = NULL, *copy = NULL, *p, *line = NULL;
	size_t n = 0, cap = 0, len = 256;
	struct store_kv kv[2];

	if (!rc.json) {
		if (strcmp(o->what, "who") == 0)
			ui_say(NULL, "who %s: %s", o->to,
			    *text ? text : "(nobody)");
		else
			ui_say(
			    NULL, "%s: %s", o->what, *text ? text : "(none)");
		return;
	}
	/* The names as a JSON array; the relay separates them by spaces. */
	if ((copy = strdup(text)) == NULL)
		goto out;
	for (p = strtok(copy, " "); p != NULL; p = strtok(NULL, " ")) {
		if (n == cap) {
			char **nn;

			cap = cap == 0 ? 64 : cap * 2;
			if ((nn = reallocarray(names, cap, sizeof(*nn))) ==
			    NULL)
				goto out;
			names = nn;
		}
		names[n++] = p;
		len += strlen(p) * 6 + 4; /* worst case: every byte \u00XX */
	}
	kv[0] = kv_str("event", "list");
	kv[1] = kv_str("what", o->what);
	if ((line = malloc(len + 64)) == NULL ||
	    store_json_line_list(line, len + 64, kv, 2, "names",
		(const char *const *)names, n) == -1)
		goto out;
	fputs(line, stdout);
	out_flush();
out:
	free(line);
	free(names);
	free(copy);
}

static void
show_leader(const char *event, const struct client_leader *l, uint64_t n)
{
	char id[UUID_STRLEN + 1];
	struct store_kv kv[6];

	uuid_format(&l->uuid, id);
	if (rc.json) {
		kv[0] = kv_str("leader", id);
		kv[1] = kv_str("name", l->name);
		kv[2] = kv_str("addr", l->addr);
		kv[3] = kv_u64("port", l->port);
		kv[4] = kv_u64("epoch", l->epoch);
		kv[5] = kv_u64("resent", n);
		json_emit(event, kv, strcmp(event, "reconnected") == 0 ? 6 : 5);
		return;
	}
	if (strcmp(event, "reconnected") == 0)
		ui_say(C_DIM, "reconnected to %s at %s:%u (epoch %llu)%s",
		    l->name[0] ? l->name : id, l->addr, l->port,
		    (unsigned long long)l->epoch,
		    n > 0 ? ", sending again what was not acknowledged" : "");
	else if (rc.mode == MODE_WHERE)
		ui_say(NULL, "leader %s (%s) at %s:%u, epoch %llu", l->name, id,
		    l->addr, l->port, (unsigned long long)l->epoch);
	else
		ui_say(C_DIM, "leader %s at %s:%u (epoch %llu)",
		    l->name[0] ? l->name : id, l->addr, l->port,
		    (unsigned long long)l->epoch);
}

static void
no_server(const struct client_out *o)
{
	char b[INET_ADDRSTRLEN], text[512];
	const char *why = o->text != NULL ? o->text : "no server answered";

	if (rc.have_server)
		(void)snprintf(text, sizeof(text),
		    "no leader found through %s:%u after %llu s: %s",
		    inet_ntop(AF_INET, &rc.disc.sin_addr, b, sizeof(b)),
		    ntohs(rc.disc.sin_port), (unsigned long long)(o->n / 1000),
		    why);
	else
		(void)snprintf(text, sizeof(text),
		    "no leader found on %s (broadcast %s, discovery port %u) "
		    "after %llu s: %s",
		    rc.ifc.name,
		    inet_ntop(AF_INET, &rc.ifc.bcast, b, sizeof(b)),
		    rc.disc_port, (unsigned long long)(o->n / 1000), why);
	/* A user at a terminal who was chatting may wait on; others stop. */
	if (rc.interactive && rc.cl.ever_online && !rc.cl.quitting) {
		show_error("no_server", text, false, 0);
		ui_say(C_DIM, "still looking...");
		return;
	}
	if (rc.json)
		show_error("no_server", text, false, 0);
	warnx("%s", text);
	rc.exit_code = EXIT_NOSERVER;
	loop_stop(&rc.loop);
}

/* The prompt names the current room. */
static void
set_prompt(void)
{
	const char *room = client_room(&rc.cl);
	char p[sizeof(rc.prompt)];

	(void)snprintf(p, sizeof(p), "%s> ", room != NULL ? room : rc.cl.user);
	if (strcmp(p, rc.prompt) == 0)
		return;
	if (rc.rl_on)
		rl_erase(); /* measured with the old prompt */
	(void)strlcpy(rc.prompt, p, sizeof(rc.prompt));
	if (rc.rl_on) {
		rl_set_prompt(rc.prompt);
		out_flush();
		rl_forced_update_display();
	}
}

/* ---- the session's outputs ---------------------------------------------- */

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
send_out(const struct client_out *o)
{
	char sealed[WIRE_MAX];
	struct sockaddr_in to;
	size_t len;

	if (o->discovery)
		to = rc.disc;
	else if (net_sockaddr(&to, o->addr, o->port) == -1)
		return;
	/* A lost datagram is the protocol's business: it resends. */
	if (!rc.keyed || o->discovery) {
		(void)net_send(rc.fd, &to, o->data, o->len);
		return;
	}
	/* To the leader: in the session, under the leader's epoch. */
	sess_ctr_bump(&rc.as, (uint64_t)wall_ms());
	if (auth_session_seal(&rc.as, rc.cl.leader.epoch, o->data, o->len,
		sealed, sizeof(sealed), &len) != AUTH_OK)
		return; /* over WIRE_MAX: the client's checks prevent it */
	(void)net_send(rc.fd, &to, sealed, len);
}

static void
show_event(const struct client_out *o)
{
	struct store_kv kv[3];

	switch (o->ev) {
	case CE_LEADER:
		show_leader("leader", &o->leader, 0);
		break;
	case CE_READY:
		if (rc.json) {
			kv[0] = kv_str("user", rc.cl.user);
			json_emit("ready", kv, 1);
		} else {
			ui_say(C_DIM,
			    "logged in as %s; /help lists the commands",
			    rc.cl.user);
		}
		break;
	case CE_RECONNECTED:
		show_leader("reconnected", &o->leader, o->n);
		break;
	case CE_LOST:
		if (rc.json) {
			char id[UUID_STRLEN + 1];

			kv[0] =
			    kv_str("leader", uuid_format(&o->leader.uuid, id));
			kv[1] = kv_str("name", o->leader.name);
			kv[2] = kv_str("reason", o->text);
			json_emit("leader_lost", kv, 3);
		} else {
			ui_say(C_DIM,
			    "leader %s lost (%s): looking for the next",
			    o->leader.name, o->text != NULL ? o->text : "");
		}
		break;
	case CE_MESSAGE:
		show_message(o);
		break;
	case CE_SENT:
	case CE_ACKED:
		if (!rc.json)
			break; /* the line typed is on screen already */
		kv[0] = kv_u64("cid", o->cid);
		if (o->ev == CE_SENT) {
			kv[1] = kv_str("to", o->to);
			json_emit("sent", kv, 2);
		} else {
			kv[1] = kv_u64("id", o->id);
			json_emit("acknowledged", kv, 2);
		}
		break;
	case CE_ERROR:
		if (o->fatal) {
			if (rc.json)
				show_error(o->code, o->text, false, 0);
			warnx("%s: %s", rc.cl.user, o->text);
			rc.exit_code = strcmp(o->code, "name_taken") == 0
			    ? EXIT_TAKEN
			    : EXIT_FAIL;
			break;
		}
		show_error(o->code, o->text != NULL ? o->text : o->code,
		    o->has_cid, o->cid);
		if (strcmp(o->code, "unacknowledged") == 0)
			rc.exit_code = EXIT_UNACKED;
		break;
	case CE_LIST:
		show_list(o);
		break;
	case CE_JOINED:
	case CE_PARTED:
		if (rc.json) {
			kv[0] = kv_str("room", o->to);
			json_emit(
			    o->ev == CE_JOINED ? "joined" : "parted", kv, 1);
		} else {
			ui_say(C_DIM, "%s %s",
			    o->ev == CE_JOINED ? "joined" : "left", o->to);
			set_prompt();
		}
		break;
	case CE_VOTE:
		if (rc.json) {
			kv[0] = kv_str("message", o->text);
			json_emit("vote", kv, 1);
		} else {
			ui_say(C_DIM, "election requested: %s", o->text);
		}
		if (rc.mode == MODE_VOTE)
			loop_stop(&rc.loop);
		break;
	case CE_NO_SERVER:
		no_server(o);
		break;
	case CE_BYE:
		if (rc.json)
			json_emit("bye", NULL, 0);
		else
			ui_say(NULL, "bye");
		break;
	}
}

static void line_handler(char *);

static void
rl_start(void)
{
	rl_callback_handler_install(rc.prompt, line_handler);
	rc.rl_installed = rc.rl_on = true;
}

/* Gives the terminal back as it was. */
static void
rl_stop(void)
{
	if (rc.rl_installed)
		rl_callback_handler_remove();
	rc.rl_installed = rc.rl_on = false;
}

/* Reads stdin only while there is room for what it may ask. */
static void on_stdin(struct loop *, int, void *);

static void
update_reading(void)
{
	bool want = rc.mode == MODE_CHAT && rc.cl.ever_online && !rc.eof &&
	    !rc.cl.quitting && rc.cl.state != CS_DONE &&
	    !client_queue_full(&rc.cl);

	if (want == rc.reading)
		return;
	if (want)
		(void)loop_add_fd(&rc.loop, STDIN_FILENO, 1, on_stdin, NULL);
	else
		loop_del_fd(&rc.loop, STDIN_FILENO);
	rc.reading = want;
	if (rc.interactive && want && !rc.rl_installed) {
		set_prompt();
		rl_start();
	}
}

/* Carries out what the session asked for, then checks whether it ended. */
static void
flush(void)
{
	size_t i;

	for (i = 0; i < rc.cl.nout; i++) {
		const struct client_out *o = &rc.cl.out[i];

		if (o->type == CO_SEND)
			send_out(o);
		else
			show_event(o);
	}
	client_drain(&rc.cl);
	if (rc.cl.state == CS_DONE) {
		if (rc.mode == MODE_WHERE && rc.cl.leader.known)
			rc.exit_code = EXIT_OK;
		loop_stop(&rc.loop);
	}
	update_reading();
}

/* ---- commands ----------------------------------------------------------- */

static const char help_text[] =
    "/msg USER TEXT    a direct message (USER may be #room, or * for everyone)\n"
    "/join #ROOM       join (or create) a room; it becomes the current one\n"
    "/part [#ROOM]     leave a room (default: the current one)\n"
    "/rooms            list the rooms\n"
    "/who [#ROOM]      list a room's members (default: the current one)\n"
    "/users            list the users online\n"
    "/vote             ask the servers to elect a leader\n"
    "/status           the leader, the connection, what is unacknowledged\n"
    "/help             this text\n"
    "/quit             log out once everything sent is acknowledged\n"
    "TEXT              to the current room (//TEXT sends /TEXT)";

static int64_t
quit_deadline(int64_t now)
{
	return rc.timeout_ms == 0 ? INT64_MAX : now + rc.timeout_ms;
}

static void
show_status(void)
{
	const struct client *c = &rc.cl;
	const char *room = client_room(c);
	char id[UUID_STRLEN + 1] = "";
	struct store_kv kv[9];

	if (c->leader.known)
		uuid_format(&c->leader.uuid, id);
	if (rc.json) {
		kv[0] = kv_str("state", client_state_name(c->state));
		kv[1] = kv_str("leader", c->leader.known ? id : NULL);
		kv[2] = kv_str("name", c->leader.known ? c->leader.name : NULL);
		kv[3] = kv_str("addr", c->leader.known ? c->leader.addr : NULL);
		kv[4] = kv_u64("port", c->leader.known ? c->leader.port : 0);
		kv[5] = kv_u64("epoch", c->leader.known ? c->leader.epoch : 0);
		kv[6] = kv_u64("unacknowledged", client_unacked(c));
		kv[7] = kv_str("room", room);
		kv[8] = kv_u64("failovers", c->failovers);
		json_emit("status", kv, 9);
		return;
	}
	if (c->leader.known)
		ui_say(NULL, "%s, leader %s (%s) at %s:%u, epoch %llu",
		    client_state_name(c->state), c->leader.name, id,
		    c->leader.addr, c->leader.port,
		    (unsigned long long)c->leader.epoch);
	else
		ui_say(NULL, "%s, no leader", client_state_name(c->state));
	ui_say(NULL,
	    "%zu message%s not acknowledged yet; room %s; %llu failover%s",
	    client_unacked(c), client_unacked(c) == 1 ? "" : "s",
	    room != NULL ? room : "(none)", (unsigned long long)c->failovers,
	    c->failovers == 1 ? "" : "s");
}

static void
quit(int64_t now)
{
	size_t n = client_unacked(&rc.cl);

	rc.eof = true;
	if (!rc.json && n > 0)
		ui_say(C_DIM, "waiting for %zu message%s to be acknowledged", n,
		    n == 1 ? "" : "s");
	client_quit(&rc.cl, now, quit_deadline(now));
}

/* Splits off the first word of *s (NUL-terminating it); NULL if none. */
static char *
word(char **s)
{
	char *w = *s + strspn(*s, " \t"), *e;

	if (*w == '\0')
		return NULL;
	e = w + strcspn(w, " \t");
	if (*e != '\0')
		*e++ = '\0';
	*s = e + strspn(e, " \t");
	return w;
}

static void
command(char *line, int64_t now)
{
	char *rest, *cmd, *arg;
	size_t len = strlen(line);

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (strspn(line, " \t") == len)
		return;
	if (line[0] != '/' || line[1] == '/') {
		(void)client_say(&rc.cl, now, line[0] == '/' ? line + 1 : line);
		return;
	}
	rest = line;
	cmd = word(&rest);
	if (strcmp(cmd, "/msg") == 0) {
		if ((arg = word(&rest)) == NULL || *rest == '\0')
			show_error("usage", "usage: /msg USER TEXT", false, 0);
		else
			(void)client_send(&rc.cl, now, arg, rest);
	} else if (strcmp(cmd, "/join") == 0) {
		if ((arg = word(&rest)) == NULL)
			show_error("usage", "usage: /join #ROOM", false, 0);
		else
			(void)client_join(&rc.cl, now, arg);
	} else if (strcmp(cmd, "/part") == 0) {
		(void)client_part(&rc.cl, now, word(&rest));
	} else if (strcmp(cmd, "/rooms") == 0) {
		(void)client_list(&rc.cl, now, WK_ROOMS, NULL);
	} else if (strcmp(cmd, "/who") == 0) {
		(void)client_list(&rc.cl, now, WK_WHO, word(&rest));
	} else if (strcmp(cmd, "/users") == 0) {
		(void)client_list(&rc.cl, now, WK_USERS, NULL);
	} else if (strcmp(cmd, "/vote") == 0) {
		client_vote(&rc.cl, now);
	} else if (strcmp(cmd, "/status") == 0) {
		show_status();
	} else if (strcmp(cmd, "/help") == 0) {
		if (rc.json) {
			struct store_kv kv = kv_str("text", help_text);

			json_emit("help", &kv, 1);
		} else {
			ui_line(help_text);
		}
	} else if (strcmp(cmd, "/quit") == 0) {
		quit(now);
	} else {
		show_error("unknown_command",
		    "unknown command; /help lists them", false, 0);
	}
}

/* ---- input -------------------------------------------------------------- */

/* libedit calls this from rl_callback_read_char with a finished line. */
static void
line_handler(char *line)
{
	rc.rl_got = true;
	rc.rl_line = line;
}

static void
interactive_input(int64_t now)
{
	char *line;

	rl_callback_read_char();
	if (!rc.rl_got)
		return;
	rc.rl_got = false;
	line = rc.rl_line;
	rc.rl_line = NULL;
	/* libedit left the cursor on a fresh line: print plainly. */
	rc.rl_on = false;
	if (line == NULL) {
		fputs("\n", stdout); /* after libedit's ^D */
		quit(now);
	} else {
		if (line[0] != '\0')
			add_history(line);
		command(line, now);
		free(line);
		set_prompt(); /* /join and /part change the room at once */
	}
	/* libedit shows a new prompt only when the handler is installed again.
	 */
	if (!rc.eof && rc.cl.state != CS_DONE)
		rl_start();
	else
		rl_stop();
}

/* Script mode: the complete lines buffered, as long as there is room. */
static void
script_lines(int64_t now)
{
	char *nl;
	size_t k;

	while (rc.inlen > 0 && !client_queue_full(&rc.cl) &&
	    rc.cl.state != CS_DONE && !rc.cl.quitting &&
	    (nl = memchr(rc.in, '\n', rc.inlen)) != NULL) {
		*nl = '\0';
		k = (size_t)(nl - rc.in) + 1;
		if (memchr(rc.in, '\0', k - 1) != NULL)
			show_error(
			    "bad_body", "a NUL byte in the input", false, 0);
		else
			command(rc.in, now);
		memmove(rc.in, rc.in + k, rc.inlen - k);
		rc.inlen -= k;
	}
	if (rc.eof && !rc.cl.quitting && rc.cl.state != CS_DONE &&
	    !client_queue_full(&rc.cl)) {
		if (rc.inlen > 0) { /* a last line without a newline */
			rc.in[rc.inlen] = '\0';
			rc.inlen = 0;
			command(rc.in, now);
		}
		client_quit(&rc.cl, now, quit_deadline(now));
	}
}

static void
script_input(int64_t now)
{
	ssize_t n;
	char *nl;

	/* Full of lines that wait for the queue: reading 0 is not EOF. */
	if (rc.inlen < INPUT_MAX) {
		n = read(STDIN_FILENO, rc.in + rc.inlen, INPUT_MAX - rc.inlen);
		if (n == -1) {
			if (errno == EINTR || errno == EAGAIN)
				return;
			warn("stdin");
			n = 0;
		}
		if (n == 0) {
			rc.eof = true;
			rc.skipping = false;
		}
		rc.inlen += (size_t)n;
	}
	if (rc.skipping) {
		if ((nl = memchr(rc.in, '\n', rc.inlen)) == NULL) {
			rc.inlen = 0;
			return;
		}
		rc.skipping = false;
		rc.inlen -= (size_t)(nl + 1 - rc.in);
		memmove(rc.in, nl + 1, rc.inlen);
	}
	if (rc.inlen == INPUT_MAX && memchr(rc.in, '\n', rc.inlen) == NULL) {
		show_error("too_long",
		    "input line longer than 4096 bytes: "
		    "ignored",
		    false, 0);
		rc.inlen = 0;
		rc.skipping = true;
	}
	script_lines(now);
}

static void
on_stdin(struct loop *l, int fd, void *arg)
{
	int64_t now = loop_now_ms();

	(void)l;
	(void)fd;
	(void)arg;
	if (rc.interactive)
		interactive_input(now);
	else
		script_input(now);
	flush();
}

/* ---- the cluster's key and the session --------------------------------- */

/* The known-clusters file: --known-clusters, or under XDG_CONFIG_HOME. */
static void
pins_default(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char dir[PATH_MAX], *slash;
	int r;

	if (xdg != NULL && xdg[0] == '/')
		r = snprintf(dir, sizeof(dir), "%s/ringchat", xdg);
	else if (home != NULL && home[0] == '/')
		r = snprintf(dir, sizeof(dir), "%s/.config/ringchat", home);
	else
		errx(EXIT_FAIL, "no HOME: give --known-clusters FILE");
	if (r < 0 || (size_t)r >= sizeof(dir) ||
	    snprintf(rc.pins, sizeof(rc.pins), "%s/known_clusters", dir) >=
		(int)sizeof(rc.pins))
		errx(EXIT_FAIL, "known clusters: path too long");
	/* ~/.config, then ~/.config/ringchat: private, like the file. */
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		err(EXIT_FAIL, "mkdir %s", dir);
	*slash = '/';
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		err(EXIT_FAIL, "mkdir %s", dir);
}

/* The password from --password-file's first line or RINGCHAT_PASSWORD. */
static void
password_load(const char *file)
{
	const char *env = getenv("RINGCHAT_PASSWORD");
	FILE *f;
	size_t n;

	if (file != NULL) {
		if ((f = fopen(file, "r")) == NULL)
			err(EXIT_USAGE, "--password-file %s", file);
		if (fgets(rc.pw, sizeof(rc.pw), f) == NULL)
			rc.pw[0] = '\0';
		fclose(f);
		n = strcspn(rc.pw, "\r\n");
		if (n == CLIENT_PW_MAX + 1)
			errx(EXIT_USAGE, "--password-file %s: over %d bytes",
			    file, CLIENT_PW_MAX);
		rc.pw[n] = '\0';
	} else if (env != NULL) {
		if (strlcpy(rc.pw, env, sizeof(rc.pw)) > CLIENT_PW_MAX)
			errx(EXIT_USAGE, "RINGCHAT_PASSWORD: over %d bytes",
			    CLIENT_PW_MAX);
	} else {
		return;
	}
	rc.pwlen = strlen(rc.pw);
	if (rc.pwlen == 0)
		errx(EXIT_USAGE, "the password is empty");
	rc.have_pw = true;
}

/* Asks at the terminal, without echo. */
static void
password_prompt(void)
{
	struct termios old, quiet;
	size_t n;

	fputs("password (empty: none): ", stdout);
	out_flush();
	if (tcgetattr(STDIN_FILENO, &old) == -1)
		return;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	if (fgets(rc.pw, sizeof(rc.pw), stdin) == NULL)
		rc.pw[0] = '\0';
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputs("\n", stdout);
	n = strcspn(rc.pw, "\r\n");
	rc.pw[n] = '\0';
	if (n > CLIENT_PW_MAX)
		errx(EXIT_USAGE, "password over %d bytes", CLIENT_PW_MAX);
	rc.pwlen = n;
	rc.have_pw = n > 0;
}

static void
say_cluster(const char *what, const char *fp)
{
	struct store_kv kv[3] = {kv_str("cluster", rc.label),
	    kv_str("fingerprint", fp), kv_str("file", rc.pins)};

	if (rc.json)
		json_emit(what, kv, 3);
	else if (strcmp(what, "pinned") == 0)
		ui_say(C_DIM,
		    "cluster '%s': key pinned on first use, fingerprint %s; "
		    "ask the operator to confirm it (ringchatd ctl status)",
		    rc.label, fp);
	else
		ui_say(C_DIM, "cluster '%s': key %s as pinned", rc.label, fp);
}

/*
 * A plain leader answer: may it be used?  It names the cluster's key
 * (pk) when the cluster has one: the first time that key is pinned under
 * the label, later it must be the pinned one.  Once keyed, an answer
 * without the key or with another is ignored (an impostor, or a
 * downgrade); an answer from an open cluster is used as it is.
 */
static bool
cluster_offer(const struct wire_msg *m)
{
	const char *text = wire_get(m, "pk");
	uint8_t pk[AUTH_PK_BYTES];
	char fp[AUTH_FP_SIZE];
	struct auth_error e;
	bool pinned = false;
	enum auth_err ae;

	if (text == NULL) {
		if (rc.keyed)
			return false;
		if (rc.have_pw && !rc.said_open) {
			rc.said_open = true;
			warnx("the cluster runs open (no key): the password "
			      "is not sent, and anyone on the LAN can read "
			      "the chat and speak as you");
		}
		return true;
	}
	if (auth_pk_from_text(text, pk) != AUTH_OK)
		return false;
	if (rc.keyed)
		return memcmp(pk, rc.cluster_pk, sizeof(pk)) == 0;
	if (rc.pins[0] == '\0')
		pins_default();
	ae = auth_pin_check(rc.pins, rc.label, pk, &pinned, &e);
	if (ae == AUTH_EPIN_MISMATCH) {
		if (!rc.said_mismatch) {
			rc.said_mismatch = true;
			warnx("%s: ignored (an impostor, or the operator "
			      "changed the key: then remove the line '%s')",
			    e.text, rc.label);
		}
		return false;
	}
	if (ae != AUTH_OK)
		errx(EXIT_FAIL, "%s", e.text);
	if (auth_session_client(&rc.as, pk) != AUTH_OK)
		errx(EXIT_FAIL, "cannot make a session key");
	{
		struct auth_ctr ctr;

		/* Counters above any this key could have used: it is new. */
		auth_ctr_init(&ctr, (uint64_t)wall_ms());
		rc.as.tx_ctr = ctr.next;
	}
	memcpy(rc.cluster_pk, pk, sizeof(pk));
	rc.keyed = true;
	auth_fingerprint(pk, fp);
	say_cluster(pinned ? "pinned" : "cluster", fp);
	if (!rc.have_pw && rc.interactive && rc.mode == MODE_CHAT)
		password_prompt();
	if (rc.have_pw && client_set_password(&rc.cl, rc.pw, rc.pwlen) == -1)
		errx(EXIT_USAGE, "the password: 1 to %d bytes, no NUL",
		    CLIENT_PW_MAX);
	explicit_bzero(rc.pw, sizeof(rc.pw));
	return true;
}

/* One datagram read: opened when sealed, checked when plain. */
static void
on_datagram(const char *buf, size_t n, const struct sockaddr_in *from)
{
	char inner[WIRE_MAX], addr[INET_ADDRSTRLEN];
	struct wire_msg m;
	size_t len;

	if (inet_ntop(AF_INET, &from->sin_addr, addr, sizeof(addr)) == NULL)
		return;
	if (auth_session_is_sealed(buf, n)) {
		if (!rc.keyed ||
		    auth_session_open(&rc.as, buf, n, inner, sizeof(inner),
			&len) != AUTH_OK ||
		    wire_decode(&m, inner, len) != WIRE_OK) {
			rc.refused_sealed++;
			return;
		}
	} else {
		if (wire_decode(&m, buf, n) != WIRE_OK)
			return;
		if (m.kind == WK_LEADER && !cluster_offer(&m))
			return;
		/*
		 * Online in a session, a new leader proves itself with a
		 * sealed announcement: a plain one (anyone's) is not followed.
		 */
		if (rc.keyed && m.kind == WK_LEADER &&
		    rc.cl.state == CS_ONLINE) {
			rc.refused_plain++;
			return;
		}
		if (rc.keyed && !sess_plain_ok(&m)) {
			/* Unauthenticated: anyone on the LAN could have sent
			 * it. */
			rc.refused_plain++;
			return;
		}
	}
	client_on_datagram(
	    &rc.cl, loop_now_ms(), &m, addr, ntohs(from->sin_port));
}

static void
on_socket(struct loop *l, int fd, void *arg)
{
	char buf[WIRE_MAX + 1];
	struct sockaddr_in from;
	int i;

	(void)l;
	(void)arg;
	for (i = 0; i < RX_BURST; i++) {
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC,
		    (struct sockaddr *)&from, &flen);

		if (n == -1)
			break; /* drained */
		/* Anything oversize, malformed or not IPv4 is not for us. */
		if ((size_t)n > WIRE_MAX || flen != sizeof(from) ||
		    from.sin_family != AF_INET)
			continue;
		on_datagram(buf, (size_t)n, &from);
	}
	flush();
}

static int64_t
next_deadline(void *arg)
{
	int64_t next = client_next_deadline(&rc.cl);

	(void)arg;
	if (rc.mode == MODE_VOTE && rc.vote_deadline < next)
		next = rc.vote_deadline;
	return next;
}

static void
on_tick(struct loop *l, int64_t now, void *arg)
{
	(void)arg;
	if (got_winch) {
		got_winch = 0;
		if (rc.rl_on)
			rl_resize_terminal();
	}
	if (got_quit > 1) {
		rc.exit_code = EXIT_FAIL; /* asked twice: no more waiting */
		loop_stop(l);
		return;
	}
	if (got_quit == 1 && !rc.eof) {
		if (rc.mode != MODE_CHAT) {
			rc.exit_code = EXIT_FAIL;
			loop_stop(l);
			return;
		}
		if (rc.rl_on) {
			rl_stop();
			fputs("\n", stdout);
		}
		quit(now);
	}
	if (rc.mode == MODE_VOTE && now >= rc.vote_deadline) {
		warnx("no server acknowledged the election request");
		rc.exit_code = EXIT_NOSERVER;
		loop_stop(l);
		return;
	}
	client_tick(&rc.cl, now);
	/* Lines read but held back (a full queue, or read with the EOF). */
	if (!rc.interactive && rc.mode == MODE_CHAT && rc.cl.ever_online)
		script_lines(now);
	flush();
}

/* ---- set-up ------------------------------------------------------------- */

static void
setup_terminal(void)
{
	const char *term = getenv("TERM"), *nocolor = getenv("NO_COLOR");
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	if (!rc.interactive)
		return;
	sa.sa_handler = on_signal;
	(void)sigaction(SIGWINCH, &sa, NULL);
	/* libedit needs the locale to edit UTF-8 as characters. */
	(void)setlocale(LC_CTYPE, "");
	rc.color = isatty(STDOUT_FILENO) && term != NULL && term[0] != '\0' &&
	    strcmp(term, "dumb") != 0 &&
	    (nocolor == NULL || nocolor[0] == '\0');
	rl_readline_name = "ringchat";
	stifle_history(1000);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
	    {"user", required_argument, NULL, 'u'},
	    {"iface", required_argument, NULL, 'i'},
	    {"discovery-port", required_argument, NULL, 'd'},
	    {"server", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"alive-ms", required_argument, NULL, 'a'},
	    {"json", no_argument, NULL, 'j'}, {"where", no_argument, NULL, 'w'},
	    {"vote", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
	    {"cluster", required_argument, NULL, 'C'},
	    {"known-clusters", required_argument, NULL, 'K'},
	    {"password-file", required_argument, NULL, 'P'},
	    {NULL, 0, NULL, 0}};
	struct client_cfg cfg;
	const char *iface = NULL, *errstr, *user = NULL, *pwfile = NULL;
	char errbuf[256], ip[INET_ADDRSTRLEN];
	struct sockaddr_in server;
	bool where = false, vote = false;
	uint16_t sport;
	int64_t now;
	int ch;

	memset(&rc, 0, sizeof(rc));
	rc.disc_port = DEFAULT_DISC_PORT;
	rc.timeout_ms = 10000;
	client_cfg_defaults(&cfg);
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			user = optarg;
			if (optarg[0] == '\0' ||
			    strlen(optarg) >= USER_NAME_MAX)
				errx(EXIT_USAGE, "--user: 1 to %d bytes",
				    USER_NAME_MAX - 1);
			break;
		case 'i':
			iface = optarg;
			break;
		case 'd':
			rc.disc_port =
			    (uint16_t)strtonum(optarg, 1, 65535, &errstr);
			if (errstr != NULL)
				errx(EXIT_USAGE, "--discovery-port %s: %s",
				    optarg, errstr);
			break;
		case 's':
			if (net_parse_hostport(
				optarg, ip, sizeof(ip), &sport) == -1 ||
			    net_sockaddr(&server, ip, sport) == -1)
				errx(EXIT_USAGE,
				    "--server %s: expected A.B.C.D:PORT",
				    optarg);
			rc.have_server = true;
			break;
		case 't':
			rc.timeout_ms =
			    strtonum(optarg, 0, 86400, &errstr) * 1000;
			if (errstr != NULL)
				errx(EXIT_USAGE, "--timeout %s: %s", optarg,
				    errstr);
			break;
		case 'a':
			cfg.alive_ms = strtonum(optarg, 50, 60000, &errstr);
			if (errstr != NULL)
				errx(EXIT_USAGE, "--alive-ms %s: %s", optarg,
				    errstr);
			break;
		case 'j':
			rc.json = true;
			break;
		case 'w':
			where = true;
			break;
		case 'V':
			vote = true;
			break;
		case 'C':
			rc.label = optarg;
			break;
		case 'K':
			if (optarg[0] == '\0' ||
			    strlcpy(rc.pins, optarg, sizeof(rc.pins)) >=
				sizeof(rc.pins))
				errx(EXIT_USAGE, "--known-clusters: a path");
			break;
		case 'P':
			pwfile = optarg;
			break;
		case 'h':
			usage(EXIT_OK);
		default:
			usage(EXIT_USAGE);
		}
	}
	if (optind != argc || user == NULL || (where && vote))
		usage(EXIT_USAGE);
	if (rc.label == NULL)
		rc.label = "lan";
	password_load(pwfile);
	rc.mode = where ? MODE_WHERE : vote ? MODE_VOTE : MODE_CHAT;
	rc.interactive = !rc.json && isatty(STDIN_FILENO);
	if (!rc.interactive)
		rc.json = true; /* script mode: one JSON line per event */
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup_terminal();

	if (iface == NULL && (iface = net_loopback_name()) == NULL)
		errx(EXIT_FAIL, "no loopback interface with an IPv4 address");
	if (net_iface_lookup(iface, &rc.ifc, errbuf, sizeof(errbuf)) == -1)
		errx(EXIT_USAGE, "--iface %s: %s", iface, errbuf);
	if ((rc.fd = net_udp_socket(rc.ifc.addr, 0, false, true)) == -1)
		err(EXIT_FAIL, "socket on %s", rc.ifc.name);
	if (rc.have_server) {
		rc.disc = server;
	} else {
		memset(&rc.disc, 0, sizeof(rc.disc));
		rc.disc.sin_family = AF_INET;
		rc.disc.sin_addr = rc.ifc.bcast;
		rc.disc.sin_port = htons(rc.disc_port);
	}

	cfg.search_ms = rc.timeout_ms;
	cfg.collect_ms = rc.have_server ? 0 : COLLECT_MS;
	cfg.where_only = rc.mode == MODE_WHERE;
	if (client_init(&rc.cl, &cfg, user) == -1)
		errx(EXIT_FAIL, "out of memory");
	loop_init(&rc.loop);
	if (loop_add_fd(&rc.loop, rc.fd, 0, on_socket, NULL) == -1)
		errx(EXIT_FAIL, "poll set full");
	loop_set_owner(&rc.loop, next_deadline, on_tick, NULL);
	rc.exit_code = EXIT_OK;
	now = loop_now_ms();
	if (rc.mode == MODE_VOTE) {
		rc.vote_deadline =
		    rc.timeout_ms == 0 ? INT64_MAX : now + rc.timeout_ms;
		client_vote(&rc.cl, now);
	} else {
		if (rc.interactive && rc.mode == MODE_CHAT)
			ui_say(C_DIM, "looking for the leader on %s...",
			    rc.have_server ? "the server given" : rc.ifc.name);
		client_start(&rc.cl, now);
	}
	flush();
	if (rc.cl.state != CS_DONE && loop_run(&rc.loop, NULL) == -1)
		rc.exit_code = EXIT_FAIL;
	rl_stop();
	if (rc.exit_code == EXIT_OK && rc.cl.lost > 0)
		rc.exit_code = EXIT_UNACKED;
	client_free(&rc.cl);
	close(rc.fd);
	return rc.exit_code;
}
