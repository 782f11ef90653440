/* A static musl `cat`, as an Alpine image's tools are: it opens with open(2), not openat(2). */
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    char buffer[4096];
    for (int i = 1; i < argc; i++) {
        int fd = (int)syscall(SYS_open, argv[i], O_RDONLY);
        if (fd < 0) return 1;
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) write(1, buffer, (size_t)n);
        close(fd);
    }
    return 0;
}
