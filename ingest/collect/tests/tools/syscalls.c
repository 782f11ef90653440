/* One syscall per invocation, made directly (syscall(2)), the way a static musl tool in an Alpine image or an
 * attacker avoiding the hooked forms would make it. Built static with musl-gcc by the kernel tests.
 * Usage: syscalls OP ARG. Exits 0 when the syscall succeeded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define SYSCALL_OPENAT2 437
#define SYSCALL_PIDFD_OPEN 434
#define SYSCALL_PIDFD_SEND_SIGNAL 424
#define SYSCALL_FCHMODAT2 452

struct how {
    unsigned long long flags, mode, resolve;
};

static long check(long rc, const char *what) {
    if (rc < 0) {
        perror(what);
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s OP ARG\n", argv[0]);
        return 2;
    }
    const char *op = argv[1], *arg = argv[2];
    if (!strcmp(op, "open")) {
        check(syscall(SYS_open, arg, O_RDONLY), op);
    } else if (!strcmp(op, "cat")) {
        /* libc's own open, as a musl cat does it */
        char buffer[4096];
        int fd = check(open(arg, O_RDONLY), op);
        while (read(fd, buffer, sizeof buffer) > 0) {
        }
    } else if (!strcmp(op, "creat")) {
        check(syscall(SYS_creat, arg, 0600), op);
    } else if (!strcmp(op, "openat2")) {
        struct how how = {O_RDONLY, 0, 0};
        check(syscall(SYSCALL_OPENAT2, AT_FDCWD, arg, &how, sizeof how), op);
    } else if (!strcmp(op, "chmod")) {
        check(syscall(SYS_chmod, arg, 0640), op);
    } else if (!strcmp(op, "fchmodat2")) {
        check(syscall(SYSCALL_FCHMODAT2, AT_FDCWD, arg, 0641, 0), op);
    } else if (!strcmp(op, "chown")) {
        check(syscall(SYS_chown, arg, 1001, 1001), op);
    } else if (!strcmp(op, "lchown")) {
        check(syscall(SYS_lchown, arg, 1002, 1002), op);
    } else if (!strcmp(op, "descriptors")) {
        /* open, move the descriptor elsewhere, then act on the new number only */
        int fd = check(syscall(SYS_open, arg, O_WRONLY), "open");
        check(dup2(fd, 100), "dup2");
        close(fd);
        check(syscall(SYS_ftruncate, 100, 0), "ftruncate");
        check(syscall(SYS_fchmod, 100, 0604), "fchmod");
        check(syscall(SYS_fchown, 100, 1003, 1003), "fchown");
        struct timespec times[2] = {{946684800, 0}, {946684800, 0}};
        check(futimens(100, times), "futimens");
    } else if (!strcmp(op, "empty-path")) {
        /* the *at forms on a descriptor: an empty path with AT_EMPTY_PATH */
        int fd = check(syscall(SYS_open, arg, O_WRONLY), "open");
        check(syscall(SYS_fchownat, fd, "", 1004, 1004, AT_EMPTY_PATH), "fchownat");
        check(syscall(SYSCALL_FCHMODAT2, fd, "", 0605, AT_EMPTY_PATH), "fchmodat2");
    } else if (!strcmp(op, "high-fd")) {
        /* the kernel reads descriptors as unsigned int: the upper half of the register is ignored */
        long fd = check(syscall(SYS_open, arg, O_WRONLY), "open");
        check(syscall(SYS_ftruncate, fd | (1L << 32), 0), "ftruncate");
    } else if (!strcmp(op, "high-kill")) {
        /* signals are ints too: SIGTERM with a high bit set is SIGTERM */
        check(syscall(SYS_kill, atoi(arg), (long)SIGTERM | (1L << 32)), op);
    } else if (!strcmp(op, "pidfd-kill")) {
        int pidfd = check(syscall(SYSCALL_PIDFD_OPEN, atoi(arg), 0), "pidfd_open");
        check(syscall(SYSCALL_PIDFD_SEND_SIGNAL, pidfd, SIGTERM, NULL, 0), op);
    } else if (!strcmp(op, "sendmsg")) {
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(arg))};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int sock = check(socket(AF_INET, SOCK_STREAM, 0), "socket");
        check(connect(sock, (struct sockaddr *)&address, sizeof address), "connect");
        /* a SOCKS5 greeting (version 5, one method, no authentication), then a marker */
        char payload[] = "\x05\x01\x00PALISADE-SENDMSG";
        struct iovec iov = {payload, sizeof payload - 1};
        struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
        check(sendmsg(sock, &message, 0), op);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    return 0;
}
