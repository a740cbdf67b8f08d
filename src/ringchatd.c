/* ringchatd: the chat server; options, identity, sockets, then the loop. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "server.h"

/* The relay's own bounds (relay_cfg): index space, per-user queue. */
#define MAX_USERS_ROOMS 0x3fffffff

static volatile int stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void __attribute__((noreturn)) usage(int code)
{
	FILE *f = code == 0 ? stdout : stderr;

	fprintf(f,
	    "usage: ringchatd [-v] [--name NAME] [--uuid UUID] [--iface IF]\n"
	    "                 [--port PORT] [--ctl-port PORT] [--discovery-port PORT]\n"
	    "                 [--state-dir DIR] [--peers FILE] [--events FILE]\n"
	    "                 [--heartbeat-ms MS] [--misses K] [--discovery-ms MS]\n"
	    "                 [--recover] [--fsync on|off] [--cluster-key FILE]\n"
	    "                 [--rate-limit N] [--rate-burst N] [--max-users N]\n"
	    "                 [--max-rooms N] [--max-queue N] [--no-stdin] [--syslog]\n"
	    "       ringchatd ctl [--state-dir DIR] COMMAND\n"
	    "       ringchatd keygen FILE\n"
	    "\n"
	    "  --name NAME            server name (default: the host name)\n"
	    "  --uuid UUID            server identity (default: kept in DIR/identity.json,\n"
	    "                         128 random bits on first start)\n"
	    "  --iface IF             interface to serve and broadcast on (default: loopback)\n"
	    "  --port PORT            data port for clients (default %u)\n"
	    "  --ctl-port PORT        control port for heartbeats and votes (default PORT+1)\n"
	    "  --discovery-port PORT  shared broadcast port (default %u)\n"
	    "  --state-dir DIR        identity.json, servers.json, control socket (default .)\n"
	    "  --peers FILE           servers.json-format list of servers to contact\n"
	    "                         as well as broadcasting (subnets without broadcast)\n"
	    "  --events FILE          append one JSON line per event (timelines)\n"
	    "  --heartbeat-ms MS      leader heartbeat period (default 20)\n"
	    "  --misses K             missed beats before suspicion (default 3)\n"
	    "  --discovery-ms MS      elect when no leader is heard by then (default 600)\n"
	    "  --recover              move a corrupt state file aside, refetch state\n"
	    "  --fsync on|off         fdatasync the chat journal before acknowledging\n"
	    "                         (default on; off survives kill -9, not power loss)\n"
	    "  --cluster-key FILE     authenticate every server datagram with this\n"
	    "                         key (ringchatd keygen FILE; without: open)\n"
	    "  --rate-limit N         bad datagrams a second one source may send; past\n"
	    "                         its burst all its datagrams are dropped unread\n"
	    "                         until it slows down (default 100; 0: off)\n"
	    "  --rate-burst N         bad datagrams one source may send at once (default 200)\n"
	    "  --max-users N          registered users (default 100000)\n"
	    "  --max-rooms N          rooms with members (default 1024)\n"
	    "  --max-queue N          deliveries kept per user until acknowledged\n"
	    "                         (default 128); the same limits on every server\n"
	    "  --no-stdin             do not read operator commands from stdin\n"
	    "  --syslog               log to syslog instead of stderr\n"
	    "  -v, --verbose          debug logging\n"
	    "  -h, --help             this text\n"
	    "\n"
	    "Operator commands (stdin, or `ringchatd ctl`):\n%s",
	    SERVER_DEFAULT_PORT, SERVER_DEFAULT_DISC_PORT, control_help());
	exit(code);
}

static long long
num_arg(const char *opt, const char *s, long long lo, long long hi)
{
	const char *errstr;
	long long v = strtonum(s, lo, hi, &errstr);

	if (errstr != NULL) {
		fprintf(stderr, "ringchatd: %s %s: %s (allowed %lld..%lld)\n",
		    opt, s, errstr, lo, hi);
		exit(2);
	}
	return v;
}

static void
path_arg(char *dst, size_t dstsz, const char *opt, const char *s)
{
	if (strlcpy(dst, s, dstsz) >= dstsz) {
		fprintf(stderr, "ringchatd: %s: path too long\n", opt);
		exit(2);
	}
}

static int
ctl_main(int argc, char *argv[])
{
	char path[PATH_MAX], cmd[CTL_LINE_MAX];
	const char *dir = ".";
	int i = 1;

	if (argc > 2 && strcmp(argv[1], "--state-dir") == 0) {
		dir = argv[2];
		i = 3;
	}
	if (i >= argc)
		usage(2);
	cmd[0] = '\0';
	for (; i < argc; i++) {
		if (cmd[0] != '\0')
			strlcat(cmd, " ", sizeof(cmd));
		if (strlcat(cmd, argv[i], sizeof(cmd)) >= sizeof(cmd)) {
			fprintf(stderr, "ringchatd ctl: command too long\n");
			return 2;
		}
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/ringchatd.sock", dir) >=
	    sizeof(path)) {
		fprintf(stderr, "ringchatd ctl: %s: path too long\n", dir);
		return 2;
	}
	return control_client(path, cmd);
}

/* Writes a new cluster key (mode 0600); never overwrites a file. */
static int
keygen_main(int argc, char *argv[])
{
	struct auth_error err;
	struct auth_key key;
	char fp[AUTH_FP_SIZE];
	struct auth_cluster cl;
	enum auth_err e;

	if (argc != 2)
		usage(2);
	if ((e = auth_key_generate(&key)) != AUTH_OK) {
		fprintf(stderr, "ringchatd keygen: %s\n", auth_strerror(e));
		return 1;
	}
	if (auth_key_write(argv[1], &key, &err) != AUTH_OK) {
		auth_key_wipe(&key);
		fprintf(stderr, "ringchatd keygen: %s\n", err.text);
		return 1;
	}
	if (auth_cluster_init(&cl, &key) == AUTH_OK) {
		auth_fingerprint(cl.kx_pk, fp);
		printf("%s: new cluster key; copy it to every server (mode "
		       "0600)\ncluster fingerprint %s\n",
		    argv[1], fp);
		auth_cluster_wipe(&cl);
	}
	auth_key_wipe(&key);
	return 0;
}

enum {
	OPT_NAME = 256,
	OPT_UUID,
	OPT_IFACE,
	OPT_PORT,
	OPT_CTL_PORT,
	OPT_DISC_PORT,
	OPT_STATE_DIR,
	OPT_PEERS,
	OPT_EVENTS,
	OPT_HB_MS,
	OPT_MISSES,
	OPT_DISC_MS,
	OPT_RECOVER,
	OPT_FSYNC,
	OPT_KEY,
	OPT_NO_STDIN,
	OPT_SYSLOG,
	OPT_RATE_LIMIT,
	OPT_RATE_BURST,
	OPT_MAX_USERS,
	OPT_MAX_ROOMS,
	OPT_MAX_QUEUE
};

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
	    {"name", required_argument, NULL, OPT_NAME},
	    {"uuid", required_argument, NULL, OPT_UUID},
	    {"iface", required_argument, NULL, OPT_IFACE},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"ctl-port", required_argument, NULL, OPT_CTL_PORT},
	    {"discovery-port", required_argument, NULL, OPT_DISC_PORT},
	    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	    {"peers", required_argument, NULL, OPT_PEERS},
	    {"events", required_argument, NULL, OPT_EVENTS},
	    {"heartbeat-ms", required_argument, NULL, OPT_HB_MS},
	    {"misses", required_argument, NULL, OPT_MISSES},
	    {"discovery-ms", required_argument, NULL, OPT_DISC_MS},
	    {"recover", no_argument, NULL, OPT_RECOVER},
	    {"fsync", required_argument, NULL, OPT_FSYNC},
	    {"cluster-key", required_argument, NULL, OPT_KEY},
	    {"no-stdin", no_argument, NULL, OPT_NO_STDIN},
	    {"syslog", no_argument, NULL, OPT_SYSLOG},
	    {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
	    {"rate-burst", required_argument, NULL, OPT_RATE_BURST},
	    {"max-users", required_argument, NULL, OPT_MAX_USERS},
	    {"max-rooms", required_argument, NULL, OPT_MAX_ROOMS},
	    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	static struct server srv; /* large: not on the stack */
	struct server_cfg cfg;
	struct sigaction sa;
	enum log_level lvl = LOG_LVL_INFO;
	int ch, to_syslog = 0, rc;

	if (argc > 1 && strcmp(argv[1], "ctl") == 0)
		return ctl_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "keygen") == 0)
		return keygen_main(argc - 1, argv + 1);

	server_cfg_defaults(&cfg);
	cfg.use_stdin = true;
	if (gethostname(cfg.name, sizeof(cfg.name)) == -1 ||
	    cfg.name[0] == '\0')
		strlcpy(cfg.name, "ringchatd", sizeof(cfg.name));
	cfg.name[sizeof(cfg.name) - 1] = '\0';

	while ((ch = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_NAME:
			if (optarg[0] == '\0' ||
			    strlcpy(cfg.name, optarg, sizeof(cfg.name)) >=
				sizeof(cfg.name)) {
				fprintf(stderr,
				    "ringchatd: --name: 1 to %zu "
				    "bytes\n",
				    sizeof(cfg.name) - 1);
				return 2;
			}
			break;
		case OPT_UUID:
			if (uuid_parse(&cfg.uuid, optarg) == -1) {
				fprintf(stderr,
				    "ringchatd: --uuid %s: not a "
				    "UUID (8-4-4-4-12 hex digits)\n",
				    optarg);
				return 2;
			}
			cfg.uuid_given = true;
			break;
		case OPT_IFACE:
			path_arg(
			    cfg.iface, sizeof(cfg.iface), "--iface", optarg);
			break;
		case OPT_PORT:
			cfg.port =
			    (uint16_t)num_arg("--port", optarg, 1, 65534);
			break;
		case OPT_CTL_PORT:
			cfg.ctl_port =
			    (uint16_t)num_arg("--ctl-port", optarg, 1, 65535);
			break;
		case OPT_DISC_PORT:
			cfg.disc_port = (uint16_t)num_arg(
			    "--discovery-port", optarg, 1, 65535);
			break;
		case OPT_STATE_DIR:
			path_arg(cfg.state_dir, sizeof(cfg.state_dir),
			    "--state-dir", optarg);
			break;
		case OPT_PEERS:
			path_arg(cfg.peers_file, sizeof(cfg.peers_file),
			    "--peers", optarg);
			break;
		case OPT_EVENTS:
			path_arg(cfg.events_file, sizeof(cfg.events_file),
			    "--events", optarg);
			break;
		case OPT_HB_MS:
			cfg.hb.interval_ms =
			    num_arg("--heartbeat-ms", optarg, 1, 60000);
			break;
		case OPT_MISSES:
			cfg.hb.misses =
			    (int)num_arg("--misses", optarg, 1, 100);
			break;
		case OPT_DISC_MS:
			cfg.discovery_ms =
			    num_arg("--discovery-ms", optarg, 10, 600000);
			break;
		case OPT_FSYNC:
			if (strcmp(optarg, "on") == 0)
				cfg.no_fsync = false;
			else if (strcmp(optarg, "off") == 0)
				cfg.no_fsync = true;
			else {
				fprintf(stderr,
				    "ringchatd: --fsync %s: on or off\n",
				    optarg);
				return 2;
			}
			break;
		case OPT_KEY:
			path_arg(cfg.key_file, sizeof(cfg.key_file),
			    "--cluster-key", optarg);
			break;
		case OPT_RECOVER:
			cfg.recover = true;
			break;
		case OPT_NO_STDIN:
			cfg.use_stdin = false;
			break;
		case OPT_SYSLOG:
			to_syslog = 1;
			break;
		case OPT_RATE_LIMIT:
			cfg.rl.rate = (uint32_t)num_arg(
			    "--rate-limit", optarg, 0, RATELIMIT_MAX);
			break;
		case OPT_RATE_BURST:
			cfg.rl.burst = (uint32_t)num_arg(
			    "--rate-burst", optarg, 1, RATELIMIT_MAX);
			break;
		case OPT_MAX_USERS:
			cfg.users_max = (uint32_t)num_arg(
			    "--max-users", optarg, 1, MAX_USERS_ROOMS);
			break;
		case OPT_MAX_ROOMS:
			cfg.rooms_max = (uint32_t)num_arg(
			    "--max-rooms", optarg, 1, MAX_USERS_ROOMS);
			break;
		case OPT_MAX_QUEUE:
			cfg.queue_max =
			    (uint32_t)num_arg("--max-queue", optarg, 1, 65536);
			break;
		case 'v':
			lvl = LOG_LVL_DEBUG;
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	if (cfg.ctl_port == 0)
		cfg.ctl_port = (uint16_t)(cfg.port + 1);
	if (cfg.ctl_port == cfg.port || cfg.ctl_port == cfg.disc_port ||
	    cfg.port == cfg.disc_port) {
		fprintf(stderr,
		    "ringchatd: data, control and discovery ports "
		    "must differ\n");
		return 2;
	}
	/* Probes must fit between beats; the window scales with the beat. */
	cfg.hb.probe_window_ms = cfg.hb.interval_ms * 3 / 2;
	cfg.el.retry_ms = cfg.hb.interval_ms < 15 ? 15 : cfg.hb.interval_ms;
	log_init("ringchatd", lvl, to_syslog);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	server_init(&srv, &cfg);
	rc = server_run(&srv, &stop_flag);
	server_shutdown(&srv);
	log_info("stopped");
	return rc == 0 ? 0 : 1;
}
