/* A loopback-only inetd for the Docker test image: accept on ADDRESS:PORT and run
 * HANDLER for each connection with the socket as its stdin and stdout.
 * busybox's own servers bind every interface or lack a plain POST route; this
 * keeps test traffic on 127.0.0.1, as the agent's Docker runtime expects. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDRESS PORT HANDLER\n", argv[0]);
        return 2;
    }
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    if (bind(server, (struct sockaddr *)&address, sizeof address) || listen(server, 64)) {
        perror("bind/listen");
        return 1;
    }
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0) continue;
        if (fork() == 0) {
            close(server);
            dup2(client, 0);
            dup2(client, 1);
            close(client);
            execl(argv[3], argv[3], (char *)NULL);
            _exit(127);
        }
        close(client);
    }
}
