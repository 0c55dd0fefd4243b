/*
 * shipyard-logd: writes the lines of its stdin to DIR/current, rotating by size into
 * DIR/@<UTC time>.s and keeping at most KEEP archives, so an instance's logs stay bounded.
 *
 * It never blocks on the disk: a batch the disk refuses (full, quota, I/O error) is dropped,
 * its lines are counted (in DIR/dropped and in a "dropped N lines" line written once the disk
 * takes data again), and stdin keeps being read at full speed, so the app writing into our
 * pipe never stalls. Memory is the two fixed buffers allocated at start.
 *
 * With -m FD it first reads values to mask from descriptor FD (each ended by a NUL byte, until
 * EOF; the caller sends them through a pipe, so they never show on the command line or in the
 * environment) and writes every occurrence of one in a line as ********, longest value first.
 * Masking works on whole lines (a line is assembled across reads), so a value split across two
 * writes of the app is still masked; a value inside a line longer than MAX_LINE_BYTES may be
 * cut where the line is.
 *
 * usage: shipyard-logd [-s MAX_FILE_BYTES] [-n KEEP] [-t] [-l MAX_LINE_BYTES] [-m FD] DIR
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (128 * 1024)    /* one read() of stdin; a default pipe holds 64 KiB */
#define OUT_SIZE (256 * 1024)     /* batch buffer, plus room for one maximal line */
#define TS_LEN 28                 /* "2026-12-02T05:48:00.123456Z " */
#define COUNTER_LEN 32            /* DIR/dropped: 31 chars + '\n', overwritten in place */
#define INTERVAL_NS 100000000LL   /* counter updates and rotation retries: at most every 100 ms */
#define MAX_LINE_LIMIT (1024 * 1024)
#define EXIT_USAGE 111
#define LOCK_WAIT_NS 5000000000LL  /* how long a new writer waits for the previous one */

static unsigned long long max_size = 10485760; /* -s */
static unsigned long long keep = 4;            /* -n */
static unsigned long long max_line = 16384;    /* -l */
static int stamp;                              /* -t */

static int dfd = -1;              /* DIR */
static int fd = -1;               /* DIR/current; -1 while it cannot be opened */
static int open_err;              /* why, when fd == -1 */
static unsigned long long cur_size;
static int need_nl;               /* current ends inside a line (a partial write): start with \n */
static long long last_archive_us; /* archive names only ever increase, even if the clock steps back */
static long long rotate_retry_at; /* after a failed rename, no retry before this (monotonic ns) */
static int rotate_err;

static char *inbuf;               /* the unfinished line carried over, then what read() returned */
static char *out;                 /* the batch: complete lines, each with its prefix */
static size_t out_len, out_cap, out_lines;
static char ts[96];               /* the -t prefix (TS_LEN bytes) for the current read's lines;
                                     sized for any int so snprintf can never truncate */
static long long mono_now;        /* CLOCK_MONOTONIC at the current read, ns */

static unsigned long long dropped_total, dropped_pending;
static int last_err;
static char report[TS_LEN + 160]; /* "shipyard-logd: dropped N lines (REASON)\n", -t prefixed */
static size_t report_len;

static int cfd = -1;              /* DIR/dropped */
static int counter_dirty;
static long long counter_at;      /* monotonic ns of the last attempt to write it */

static int eof_fd = -1;           /* read end of a pipe without writer: reads return EOF */

#define MASK "********"
#define MASK_LEN 8
static char **masks;              /* -m: the values to mask, longest first */
static size_t *mask_lens, n_masks;
static char *masked;              /* a line with its values masked (MASK_LEN/4 as long at most) */

static long long now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* SIGTERM: swap stdin for a descriptor at EOF, so the main loop finishes what it has read and
 * exits; unlike a flag, this cannot be missed by a read() that is just about to block. */
static void on_term(int sig)
{
    int saved = errno;
    (void)sig;
    dup2(eof_fd, STDIN_FILENO);
    errno = saved;
}

static void format_ts(void)
{
    struct timespec t;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &t);
    gmtime_r(&t.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, t.tv_nsec / 1000);
}

static void format_report(void)
{
    int n = snprintf(report, sizeof report, "%sshipyard-logd: dropped %llu lines (%s)\n",
                     stamp ? ts : "", dropped_pending, strerror(last_err));
    report_len = n < (int)sizeof report ? (size_t)n : sizeof report - 1;
    report[report_len - 1] = '\n';
}

static void add_drops(size_t lines, int err)
{
    if (lines == 0)
        return;
    dropped_total += lines;
    dropped_pending += lines;
    last_err = err;
    counter_dirty = 1;
    format_report();
}

static void write_counter(void)
{
    char buf[COUNTER_LEN + 1];
    counter_at = mono_now;
    if (cfd < 0)
        cfd = openat(dfd, "dropped", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (cfd < 0)
        return;
    snprintf(buf, sizeof buf, "%-31llu\n", dropped_total);
    if (pwrite(cfd, buf, COUNTER_LEN, 0) == COUNTER_LEN)
        counter_dirty = 0;
}

/* Opens DIR/dropped, continuing from the count it holds, and pre-sizes it so that later
 * updates overwrite allocated bytes (which works on a full disk). */
static void open_counter(void)
{
    char buf[COUNTER_LEN + 1];
    ssize_t n;
    cfd = openat(dfd, "dropped", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (cfd >= 0 && (n = pread(cfd, buf, COUNTER_LEN, 0)) > 0) {
        buf[n] = '\0';
        dropped_total = strtoull(buf, NULL, 10);
    }
    write_counter();
}

static void open_current(void)
{
    struct stat st;
    char last;
    int rfd;
    cur_size = 0;
    need_nl = 0;
    fd = openat(dfd, "current", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        open_err = errno;
        return;
    }
    fchmod(fd, 0600); /* a file left by an older writer or created under another umask */
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        return;
    cur_size = (unsigned long long)st.st_size;
    /* A previous writer may have been cut off mid-line: continue on a fresh line. */
    rfd = openat(dfd, "current", O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        need_nl = pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n';
        close(rfd);
    }
}

static int is_archive(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && name[0] == '@' && strcmp(name + n - 2, ".s") == 0;
}

/* Counts the archives in DIR and copies the names that sort first and last (the oldest and the
 * newest); returns -1 if DIR cannot be listed. */
static long count_archives(char *oldest, char *newest)
{
    long count = 0;
    struct dirent *e;
    int d = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = d >= 0 ? fdopendir(d) : NULL;
    if (dir == NULL) {
        if (d >= 0)
            close(d);
        return -1;
    }
    while ((e = readdir(dir)) != NULL) {
        if (!is_archive(e->d_name))
            continue;
        if (count == 0 || strcmp(e->d_name, oldest) < 0)
            strcpy(oldest, e->d_name);
        if (count == 0 || strcmp(e->d_name, newest) > 0)
            strcpy(newest, e->d_name);
        count++;
    }
    closedir(dir);
    return count;
}

/* Deletes the oldest archives until at most KEEP remain; returns the newest one's time in
 * microseconds since the epoch (0 if there is none or its name is not ours). */
static long long prune_to(unsigned long long limit)
{
    char oldest[NAME_MAX + 1], newest[NAME_MAX + 1];
    struct tm tm = {0};
    long usec;
    char z;
    long count;
    while ((count = count_archives(oldest, newest)) > (long)limit && unlinkat(dfd, oldest, 0) == 0)
        ;
    if (count <= 0 ||
        sscanf(newest, "@%4d%2d%2dT%2d%2d%2d.%6ld%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec, &z) != 8 || z != 'Z')
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000000LL + usec;
}

/* Renames current to a new archive, opens a fresh current and prunes the archives. Returns -1
 * with errno set if current could not be renamed (then it is retried after INTERVAL_NS). */
static int rotate(void)
{
    char name[64];
    time_t secs;
    struct tm tm;
    long long us;
    if (mono_now < rotate_retry_at) {
        errno = rotate_err;
        return -1;
    }
    us = now_ns(CLOCK_REALTIME) / 1000;
    if (us <= last_archive_us)
        us = last_archive_us + 1;
    secs = (time_t)(us / 1000000);
    gmtime_r(&secs, &tm);
    snprintf(name, sizeof name, "@%04d%02d%02dT%02d%02d%02d.%06lldZ.s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us % 1000000);
    /* Make room first: the directory never holds more than KEEP archives plus current, not
     * even between the rename and the pruning. */
    if (keep > 0)
        prune_to(keep - 1);
    /* Best effort: end the archive with a newline if a partial write left it mid-line. */
    if (fd >= 0 && need_nl && write(fd, "\n", 1) == 1)
        need_nl = 0;
    if (renameat(dfd, "current", dfd, name) < 0 && errno != ENOENT) {
        rotate_err = errno;
        rotate_retry_at = mono_now + INTERVAL_NS;
        return -1;
    }
    last_archive_us = us;
    if (fd >= 0)
        close(fd);
    open_current();
    prune_to(keep);
    return 0;
}

/* Writes the batch (after the pending newline and drop report, in one writev). What the disk
 * refuses is discarded and its lines counted; nothing is retried later. */
static void flush(int final)
{
    struct iovec iov[3];
    int cnt = 0, i = 0, err = 0;
    size_t nl, rep, lead, total, done = 0, data_done;
    char last;
    if (out_len == 0 && !(final && dropped_pending))
        return;
    if (fd < 0)
        open_current();
    if (fd < 0) {
        add_drops(out_lines, open_err);
        out_len = out_lines = 0;
        return;
    }
    nl = need_nl ? 1 : 0;
    rep = 0;
    if (nl)
        iov[cnt++] = (struct iovec){.iov_base = "\n", .iov_len = 1};
    if (dropped_pending) {
        format_report(); /* refresh its timestamp */
        rep = report_len;
        iov[cnt++] = (struct iovec){.iov_base = report, .iov_len = rep};
    }
    iov[cnt++] = (struct iovec){.iov_base = out, .iov_len = out_len};
    lead = nl + rep;
    total = lead + out_len;
    while (done < total) {
        ssize_t n = writev(fd, iov + i, cnt - i);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
        for (; i < cnt && (size_t)n >= iov[i].iov_len; i++)
            n -= (ssize_t)iov[i].iov_len;
        if (i < cnt) {
            iov[i].iov_base = (char *)iov[i].iov_base + n;
            iov[i].iov_len -= (size_t)n;
        }
    }
    cur_size += done;
    if (done >= nl)
        need_nl = 0;
    if (rep && done >= lead)
        dropped_pending = 0;
    if (done < total) {
        if (done > 0) {
            last = done <= nl ? '\n' : done <= lead ? report[done - 1 - nl] : out[done - 1 - lead];
            need_nl = last != '\n';
        }
        /* Every line not completely written is lost: count the newlines not written. */
        data_done = done > lead ? done - lead : 0;
        if (data_done == 0) {
            add_drops(out_lines, err);
        } else {
            size_t lost = 0;
            const char *p = out + data_done, *end = out + out_len;
            while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                lost++;
                p++;
            }
            add_drops(lost, err);
        }
    }
    out_len = out_lines = 0;
}

/* Reads the -m values from fd (NUL-ended, until EOF), drops those shorter than 4 bytes and sorts
 * them longest first; returns -1 on a read error or no memory. */
static int read_masks(int mfd)
{
    size_t cap = 4096, len = 0, i, j, start;
    char *buf = malloc(cap), *tmp;
    ssize_t n;
    if (buf == NULL)
        return -1;
    for (;;) {
        if (len == cap) {
            if ((tmp = realloc(buf, cap * 2)) == NULL)
                return -1;
            buf = tmp;
            cap *= 2;
        }
        n = read(mfd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(mfd);
    for (i = 0; i < len; i++)
        n_masks += buf[i] == '\0';
    masks = calloc(n_masks + 1, sizeof *masks);
    mask_lens = calloc(n_masks + 1, sizeof *mask_lens);
    if (masks == NULL || mask_lens == NULL)
        return -1;
    n_masks = 0;
    for (i = start = 0; i < len; i++) {
        if (buf[i] != '\0')
            continue;
        if (i - start >= 4) {
            masks[n_masks] = buf + start;
            mask_lens[n_masks++] = i - start;
        }
        start = i + 1;
    }
    for (i = 1; i < n_masks; i++) /* insertion sort, longest first: there are few */
        for (j = i; j > 0 && mask_lens[j] > mask_lens[j - 1]; j--) {
            char *m = masks[j];
            size_t l = mask_lens[j];
            masks[j] = masks[j - 1];
            mask_lens[j] = mask_lens[j - 1];
            masks[j - 1] = m;
            mask_lens[j - 1] = l;
        }
    return 0;
}

/* The line p[0, len) with each occurrence of a mask value replaced by MASK, into `masked`;
 * returns its length. At each position the longest value that matches wins. */
static size_t mask_line(const char *p, size_t len)
{
    size_t i = 0, o = 0, k;
    while (i < len) {
        for (k = 0; k < n_masks; k++)
            if (mask_lens[k] <= len - i && p[i] == masks[k][0] &&
                memcmp(p + i, masks[k], mask_lens[k]) == 0)
                break;
        if (k < n_masks) {
            memcpy(masked + o, MASK, MASK_LEN);
            o += MASK_LEN;
            i += mask_lens[k];
        } else {
            masked[o++] = p[i++];
        }
    }
    return o;
}

/* Adds one line of len bytes (plus the '\n' it lacks if add_nl) to the batch, first writing the
 * batch and rotating when the line would not fit in current. */
static void emit(const char *p, size_t len, int add_nl)
{
    size_t plen, need, lead;
    if (n_masks > 0) {
        len = mask_line(p, len);
        p = masked;
    }
    plen = stamp ? TS_LEN : 0;
    need = plen + len + (add_nl ? 1 : 0);
    if (out_len + need > out_cap)
        flush(0);
    lead = (size_t)need_nl + (dropped_pending ? report_len : 0);
    if (cur_size + lead + out_len + need > max_size) {
        flush(0);
        lead = (size_t)need_nl + (dropped_pending ? report_len : 0);
        /* A line that alone exceeds the limit gets a file of its own. */
        if (cur_size > 0 && cur_size + lead + need > max_size && rotate() < 0) {
            add_drops(1, errno);
            return;
        }
    }
    memcpy(out + out_len, ts, plen);
    memcpy(out + out_len + plen, p, len);
    out_len += plen + len;
    if (add_nl)
        out[out_len++] = '\n';
    out_lines++;
}

/* Emits the complete lines of buf[0, len) and the max_line pieces of overlong ones, then moves
 * the unfinished rest (at most max_line bytes) to the start of buf; returns its length. */
static size_t process(char *buf, size_t len)
{
    char *p = buf, *end = buf + len, *nl;
    size_t left;
    for (;;) {
        left = (size_t)(end - p);
        nl = memchr(p, '\n', left <= max_line ? left : max_line + 1);
        if (nl != NULL) {
            emit(p, (size_t)(nl - p) + 1, 0);
            p = nl + 1;
        } else if (left > max_line) {
            emit(p, max_line, 1);
            p += max_line;
        } else {
            break;
        }
    }
    memmove(buf, p, left);
    return left;
}

static int parse_num(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *value)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        return -1;
    *value = v;
    return 0;
}

/* mkdir -p, creating missing directories with mode 0700. */
static int make_dirs(char *path)
{
    char *p;
    for (p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/*
 * One writer per DIR: a restarted instance's new writer waits (up to LOCK_WAIT_NS) until the
 * previous one, which is writing the dead instance's last lines, has seen its EOF and exited.
 * Past that (an orphan still holds the old pipe open) it goes on: two writers appending lines
 * is better than an app stalled on a full pipe. The lock is held until exit.
 */
static void wait_for_lock(void)
{
    long long give_up = now_ns(CLOCK_MONOTONIC) + LOCK_WAIT_NS;
    int lfd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return;
    while (flock(lfd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK &&
           now_ns(CLOCK_MONOTONIC) < give_up) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000000};
        nanosleep(&pause, NULL);
    }
}

static void usage(void)
{
    fputs("usage: shipyard-logd [-s MAX_FILE_BYTES] [-n KEEP] [-t] [-l MAX_LINE_BYTES] [-m FD] "
          "DIR\n", stderr);
    exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    int opt, pipefd[2];
    unsigned long long mask_fd = 0;
    int have_mask = 0;
    size_t carry = 0;
    ssize_t n;

    while ((opt = getopt(argc, argv, "s:n:tl:m:")) != -1) {
        if ((opt == 's' && parse_num(optarg, 1, 1ULL << 50, &max_size) < 0) ||
            (opt == 'n' && parse_num(optarg, 0, 1000000, &keep) < 0) ||
            (opt == 'l' && parse_num(optarg, 1, MAX_LINE_LIMIT, &max_line) < 0) ||
            (opt == 'm' && parse_num(optarg, 3, INT_MAX, &mask_fd) < 0) || opt == '?')
            usage();
        if (opt == 't')
            stamp = 1;
        if (opt == 'm')
            have_mask = 1;
    }
    if (optind != argc - 1)
        usage();
    /* First of all: the sender waits for us to read the values. */
    if (have_mask && read_masks((int)mask_fd) < 0) {
        fprintf(stderr, "shipyard-logd: cannot read the values to mask: %s\n", strerror(errno));
        return EXIT_USAGE;
    }

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        fprintf(stderr, "shipyard-logd: pipe: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    close(pipefd[1]);
    eof_fd = pipefd[0];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGXFSZ, &sa, NULL); /* over RLIMIT_FSIZE: fail with EFBIG (dropped), not die */
    sa.sa_handler = on_term; /* no SA_RESTART: a blocked read() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);

    umask(077);
    if (make_dirs(argv[optind]) < 0 ||
        (dfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "shipyard-logd: %s: %s\n", argv[optind], strerror(errno));
        return EXIT_USAGE;
    }
    wait_for_lock();
    mono_now = now_ns(CLOCK_MONOTONIC);
    format_ts();
    open_current();
    /* A full disk is no reason to refuse to start (we drop and count); anything else is. */
    if (fd < 0 && open_err != ENOSPC && open_err != EDQUOT) {
        fprintf(stderr, "shipyard-logd: %s/current: %s\n", argv[optind], strerror(open_err));
        return EXIT_USAGE;
    }
    open_counter();
    last_archive_us = prune_to(keep);

    /* A masked line grows at most twice as long: MASK replaces values of 4 bytes or more. */
    out_cap = OUT_SIZE + (n_masks ? 2 : 1) * (max_line + 1) + TS_LEN + 1;
    inbuf = malloc(max_line + READ_SIZE);
    out = malloc(out_cap);
    masked = n_masks ? malloc(2 * (max_line + 1)) : NULL;
    if (inbuf == NULL || out == NULL || (n_masks && masked == NULL)) {
        fputs("shipyard-logd: out of memory\n", stderr);
        return EXIT_USAGE;
    }
    /* Reads must block: EAGAIN would look like the end of the input. */
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) & ~O_NONBLOCK);

    for (;;) {
        mono_now = now_ns(CLOCK_MONOTONIC);
        if (counter_dirty) {
            /* Wait for input only until the counter is due, then write it even if idle. */
            long long wait = counter_at + INTERVAL_NS - mono_now;
            struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
            if (wait <= 0) {
                write_counter();
                continue;
            }
            if (poll(&pfd, 1, (int)((wait + 999999) / 1000000)) == 0)
                continue;
        }
        n = read(STDIN_FILENO, inbuf + carry, READ_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF, SIGTERM, or stdin unusable */
        if (stamp)
            format_ts();
        carry = process(inbuf, carry + (size_t)n);
        flush(0);
    }
    mono_now = now_ns(CLOCK_MONOTONIC);
    if (carry > 0) {
        if (stamp)
            format_ts();
        emit(inbuf, carry, 1);
    }
    flush(1);
    if (counter_dirty)
        write_counter();
    return 0;
}
