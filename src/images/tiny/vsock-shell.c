/*
 * vsock-shell: the tiny guest's vsock agent. Listens on a vsock port (argv[1]) and
 * gives every connection its own /bin/sh with the connection as stdin, stdout and
 * stderr. The host speaks bootproof's marker protocol to that shell, the same as on
 * the virtio console, so the shell is non-interactive (its stdin is no tty).
 *
 * Static (gcc -static) because the initramfs has no C library. Children are not
 * waited for: SIGCHLD is ignored, so the kernel reaps them; each shell gets the
 * default back, or it could not collect its own commands' exit statuses.
 */
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: vsock-shell PORT\n");
        return 2;
    }
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK,
        .svm_port = (unsigned)atoi(argv[1]),
        .svm_cid = VMADDR_CID_ANY,
    };
    int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
        perror("vsock-shell");
        return 1;
    }
    signal(SIGCHLD, SIG_IGN);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (fork() == 0) {
            signal(SIGCHLD, SIG_DFL);
            setsid();
            dup2(c, 0);
            dup2(c, 1);
            dup2(c, 2);
            if (c > 2)
                close(c);
            execl("/bin/sh", "sh", (char *)NULL);
            _exit(127);
        }
        close(c);
    }
}
