/* The kernel's floor for our datagrams on this machine: sendmmsg/recvmmsg in C.
 *
 *   floor send GROUP PORT SIZE SECONDS      multicast on lo (TTL 0), batches of 64
 *   floor recv GROUP[,G2] PORT[,P2] SECONDS join on lo, IP_MULTICAST_ALL off, 8 MiB buffer, batches of 64;
 *                                           stops early after 1 s of silence once traffic came
 *   floor play FILE GA PA GB PB RATE SECONDS
 *       replay real datagrams (FILE: u16 big-endian length + datagram, repeated; MoldUDP64 data
 *       packets from sequence 1) on A then B, batches of 32 pairs, RATE unique datagrams/s (0 = flat
 *       out); each pass over the file adds the file's message count to every sequence number, so a
 *       handler sees one endless gap-free session. Prints "unique_datagrams messages seconds".
 * Each prints "datagrams seconds" on stdout (play: see above). Loopback only: never sends anywhere else.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <poll.h>
#include <errno.h>

#define BATCH 64
#ifndef IP_MULTICAST_ALL
#define IP_MULTICAST_ALL 49
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_mc_sender(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ip_mreqn m = {0};
    m.imr_ifindex = if_nametoindex("lo");
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m);
    int ttl = 0, loop = 1, sndbuf = 4 << 20;
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    return s;
}

static int do_send(const char *group, int port, int size, double seconds) {
    int s = open_mc_sender();
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    inet_pton(AF_INET, group, &to.sin_addr);
    char *buf = calloc(1, size);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buf;
        iov[i].iov_len = size;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    long sent = 0;
    double t0 = now(), t;
    while ((t = now()) - t0 < seconds) {
        int n = sendmmsg(s, msgs, BATCH, 0);
        if (n > 0) sent += n;
    }
    printf("%ld %.6f\n", sent, t - t0);
    return 0;
}

static int open_mc_receiver(const char *group, int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, off = 0, rcvbuf = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_ALL, &off, sizeof off);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, group, &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); exit(1); }
    struct ip_mreqn m = {0};
    m.imr_multiaddr = a.sin_addr;
    m.imr_ifindex = if_nametoindex("lo");
    if (setsockopt(s, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) != 0) { perror("join"); exit(1); }
    return s;
}

/* GROUPS and PORTS may be comma-separated lists (up to 8), e.g. the A and B groups of a feed pair. */
static int do_recv(const char *groups, const char *ports, double seconds) {
    int socks[8], ns = 0;
    char g[256], p[256];
    snprintf(g, sizeof g, "%s", groups);
    snprintf(p, sizeof p, "%s", ports);
    char *gs = NULL, *ps = NULL;
    for (char *gt = strtok_r(g, ",", &gs), *pt = strtok_r(p, ",", &ps); gt && pt && ns < 8;
         gt = strtok_r(NULL, ",", &gs), pt = strtok_r(NULL, ",", &ps))
        socks[ns++] = open_mc_receiver(gt, atoi(pt));
    struct pollfd pfd[8];
    for (int i = 0; i < ns; i++) { pfd[i].fd = socks[i]; pfd[i].events = POLLIN; }
    static char bufs[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    fprintf(stderr, "ready\n");
    long got = 0;
    double t0 = now(), first = 0, last = 0;
    while (now() - t0 < seconds) {
        if (poll(pfd, ns, 200) <= 0) {
            if (got && now() - last > 1.0) break; /* one second of silence after traffic: the sender is done */
            continue;
        }
        for (int i = 0; i < ns; i++) {
            if (!(pfd[i].revents & POLLIN)) continue;
            int n;
            while ((n = recvmmsg(socks[i], msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
                if (!got) first = now();
                got += n;
                last = now();
            }
        }
    }
    printf("%ld %.6f\n", got, got ? last - first : 0.0);
    return 0;
}

static uint64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = v & 0xff; v >>= 8; }
}

#define PAIRS 32
static int do_play(const char *file, const char *ga, int pa, const char *gb, int pb, double rate, double seconds) {
    FILE *f = fopen(file, "rb");
    if (!f) { perror("open"); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size);
    if (fread(data, 1, size, f) != (size_t)size) { perror("read"); return 1; }
    fclose(f);
    int n = 0;
    for (long o = 0; o + 2 <= size; n++) o += 2 + ((data[o] << 8) | data[o + 1]);
    unsigned char **dg = calloc(n, sizeof *dg);
    int *len = calloc(n, sizeof *len);
    uint64_t *seq0 = calloc(n, sizeof *seq0);
    uint64_t span = 0;
    long o = 0;
    for (int i = 0; i < n; i++) {
        len[i] = (data[o] << 8) | data[o + 1];
        dg[i] = data + o + 2;
        seq0[i] = be64(dg[i] + 10);
        span += (dg[i][18] << 8) | dg[i][19];
        o += 2 + len[i];
    }
    int s = open_mc_sender();
    struct sockaddr_in to[2] = {{0}, {0}};
    to[0].sin_family = to[1].sin_family = AF_INET;
    to[0].sin_port = htons(pa);
    to[1].sin_port = htons(pb);
    inet_pton(AF_INET, ga, &to[0].sin_addr);
    inet_pton(AF_INET, gb, &to[1].sin_addr);
    static unsigned char bufs[PAIRS][2048];
    struct mmsghdr msgs[2 * PAIRS];
    struct iovec iov[2 * PAIRS];
    long unique = 0, messages = 0, pass = 0;
    int i = 0;
    double t0 = now(), t = t0;
    while ((t = now()) - t0 < seconds) {
        if (rate > 0) {
            double due = t0 + unique / rate;
            if (due > t) {
                struct timespec ts = {0, (long)((due - t) * 1e9)};
                if (ts.tv_nsec > 50000) nanosleep(&ts, NULL);
                continue;
            }
        }
        int k = 0;
        for (; k < PAIRS; k++) {
            memcpy(bufs[k], dg[i], len[i]);
            put_be64(bufs[k] + 10, seq0[i] + pass * span);
            messages += (dg[i][18] << 8) | dg[i][19];
            for (int feed = 0; feed < 2; feed++) {
                struct mmsghdr *m = &msgs[2 * k + feed];
                memset(m, 0, sizeof *m);
                iov[2 * k + feed].iov_base = bufs[k];
                iov[2 * k + feed].iov_len = len[i];
                m->msg_hdr.msg_iov = &iov[2 * k + feed];
                m->msg_hdr.msg_iovlen = 1;
                m->msg_hdr.msg_name = &to[feed];
                m->msg_hdr.msg_namelen = sizeof to[feed];
            }
            if (++i == n) { i = 0; pass++; }
        }
        int done = 0;
        while (done < 2 * k) {
            int r = sendmmsg(s, msgs + done, 2 * k - done, 0);
            if (r > 0) done += r;
            else if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) { perror("sendmmsg"); return 1; }
        }
        unique += k;
    }
    printf("%ld %ld %.6f\n", unique, messages, t - t0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "send")) return do_send(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "recv")) return do_recv(argv[2], argv[3], atof(argv[4]));
    if (argc == 9 && !strcmp(argv[1], "play"))
        return do_play(argv[2], argv[3], atoi(argv[4]), argv[5], atoi(argv[6]), atof(argv[7]), atof(argv[8]));
    fprintf(stderr, "usage: floor send GROUP PORT SIZE SECONDS | floor recv GROUP PORT SECONDS | floor play FILE GA PA GB PB RATE SECONDS\n");
    return 2;
}
