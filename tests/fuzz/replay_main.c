/*
 * replay_main.c — a plain main() for the libFuzzer targets: runs
 * LLVMFuzzerTestOneInput once on each file named on the command line, so a
 * corpus can be replayed deterministically by any compiler (gcc + ASan in
 * CI) without clang's fuzzer runtime. Each input is copied into a buffer of
 * exactly its size so that ASan catches reads past the end.
 *
 *   replay_fuzz_X FILE...    exit 0 if every input ran, 2 if a file is unreadable
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads path into a new exact-size buffer (NULL on error). */
static uint8_t *read_file(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    uint8_t *buf = NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (n >= 0 && fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc(n ? (size_t)n : 1)) &&
        fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    int n_run = 0;
    for (int i = 1; i < argc; i++) {
        size_t size = 0;
        uint8_t *buf = read_file(argv[i], &size);
        if (!buf) {
            fprintf(stderr, "replay: %s: cannot read\n", argv[i]);
            return 2;
        }
        LLVMFuzzerTestOneInput(buf, size);
        free(buf);
        n_run++;
    }
    printf("replayed %d input(s)\n", n_run);
    return 0;
}
