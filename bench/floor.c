/* The kernel's floor for our datagrams on this machine: sendmmsg/recvmmsg in C.
 *
 *   floor send GROUP PORT SIZE SECONDS      multicast on lo (TTL 0), batches of 64
 *   floor recv GROUP PORT SECONDS           join on lo, IP_MULTICAST_ALL off, 8 MiB buffer, batches of 64
 * Each prints "datagrams seconds" on stdout. Loopback only: never sends anywhere else.
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

#define BATCH 64
#ifndef IP_MULTICAST_ALL
#define IP_MULTICAST_ALL 49
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int do_send(const char *group, int port, int size, double seconds) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ip_mreqn m = {0};
    m.imr_ifindex = if_nametoindex("lo");
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m);
    int ttl = 0, loop = 1, sndbuf = 4 << 20;
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
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

static int do_recv(const char *group, int port, double seconds) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, off = 0, rcvbuf = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_ALL, &off, sizeof off);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, group, &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    struct ip_mreqn m = {0};
    m.imr_multiaddr = a.sin_addr;
    m.imr_ifindex = if_nametoindex("lo");
    if (setsockopt(s, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) != 0) { perror("join"); return 1; }
    struct timeval tv = {0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
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
        int n = recvmmsg(s, msgs, BATCH, 0, NULL);
        if (n > 0) {
            if (!got) first = now();
            got += n;
            last = now();
        }
    }
    printf("%ld %.6f\n", got, got ? last - first : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "send")) return do_send(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "recv")) return do_recv(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: floor send GROUP PORT SIZE SECONDS | floor recv GROUP PORT SECONDS\n");
    return 2;
}
