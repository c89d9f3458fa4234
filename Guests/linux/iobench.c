/*
 * visor-iobench: the guest side of `visor bench io`. Built statically by Guests/linux/fetch
 * with the host's C compiler and put into the initramfs as /bin/visor-iobench.
 *
 *   visor-iobench DEVICE MIB JOBS
 *
 * Four phases over the first MIB MiB of DEVICE (a scratch disk: its contents are overwritten),
 * each JOBS threads issuing 4 KiB requests with O_DIRECT (so every request reaches the device,
 * not the guest's page cache): sequential write, sequential read, random read, random write.
 * Sequential phases give each thread its own contiguous slice; random phases draw offsets from
 * a fixed-seed xorshift generator per thread, so Visor and QEMU see the same requests.
 *
 * One line per phase, for the benchmark to parse:
 *   iobench PHASE requests=N seconds=S interrupts=I
 * where S is the guest's CLOCK_MONOTONIC time for the phase and I the number of interrupts the
 * device's virtio line took meanwhile (from /proc/interrupts; -1 when the line is not found).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK = 4096, MAX_JOBS = 64 };

struct job {
    int fd;
    int write;
    int random;
    uint64_t first_block;  /* sequential: this thread's slice */
    uint64_t blocks;       /* requests this thread makes */
    uint64_t device_blocks;
    uint64_t seed;
    int failed;
    void *buffer;
};

static void *run_job(void *argument) {
    struct job *job = argument;
    uint64_t state = job->seed;
    for (uint64_t i = 0; i < job->blocks; i++) {
        uint64_t block;
        if (job->random) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            block = state % job->device_blocks;
        } else {
            block = job->first_block + i;
        }
        ssize_t done = job->write ? pwrite(job->fd, job->buffer, BLOCK, (off_t)(block * BLOCK))
                                  : pread(job->fd, job->buffer, BLOCK, (off_t)(block * BLOCK));
        if (done != BLOCK) { job->failed = errno ? errno : EIO; return NULL; }
    }
    return NULL;
}

/* The interrupts taken so far on the /proc/interrupts lines containing `line_name` (each
 * line's per-CPU counts summed), or -1 when no line matches. A virtio-mmio device's line is
 * named after its transport device ("virtio0", ...), not after the disk. */
static long long virtio_interrupts(const char *line_name) {
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f) return -1;
    char line[1024];
    long long total = -1;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, line_name)) continue;
        char *p = strchr(line, ':');
        if (!p) continue;
        p++;
        long long sum = 0;
        for (;;) {
            char *end;
            long long n = strtoll(p, &end, 10);
            if (end == p) break;
            sum += n;
            p = end;
        }
        total = (total < 0 ? 0 : total) + sum;
    }
    fclose(f);
    return total;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s DEVICE MIB JOBS [INTERRUPT-LINE-NAME]\n", argv[0]);
        return 64;
    }
    const char *device = argv[1];
    long mib = strtol(argv[2], NULL, 10);
    long jobs = strtol(argv[3], NULL, 10);
    const char *line_name = argc == 5 ? argv[4] : "virtio";
    if (mib <= 0 || jobs <= 0 || jobs > MAX_JOBS) {
        fprintf(stderr, "%s: MIB must be positive and JOBS 1-%d\n", argv[0], MAX_JOBS);
        return 64;
    }
    int fd = open(device, O_RDWR | O_DIRECT);
    if (fd < 0) { fprintf(stderr, "%s: open %s: %s\n", argv[0], device, strerror(errno)); return 1; }
    uint64_t device_blocks = (uint64_t)mib * 1024 * 1024 / BLOCK;
    uint64_t per_job = device_blocks / (uint64_t)jobs;

    static const struct { const char *name; int write, random; } phases[] = {
        {"seq-write", 1, 0}, {"seq-read", 0, 0}, {"rand-read", 0, 1}, {"rand-write", 1, 1},
    };
    struct job job[MAX_JOBS];
    pthread_t thread[MAX_JOBS];
    for (long j = 0; j < jobs; j++) {
        if (posix_memalign(&job[j].buffer, BLOCK, BLOCK) != 0) { fprintf(stderr, "out of memory\n"); return 1; }
        memset(job[j].buffer, (int)(0x5a + j), BLOCK);
    }
    for (size_t p = 0; p < sizeof phases / sizeof phases[0]; p++) {
        for (long j = 0; j < jobs; j++) {
            job[j] = (struct job){ .fd = fd, .write = phases[p].write, .random = phases[p].random,
                                   .first_block = (uint64_t)j * per_job, .blocks = per_job,
                                   .device_blocks = device_blocks, .seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(j + 1) * 7919,
                                   .failed = 0, .buffer = job[j].buffer };
        }
        long long before = virtio_interrupts(line_name);
        double start = now();
        for (long j = 0; j < jobs; j++) pthread_create(&thread[j], NULL, run_job, &job[j]);
        for (long j = 0; j < jobs; j++) pthread_join(thread[j], NULL);
        double seconds = now() - start;
        long long after = virtio_interrupts(line_name);
        for (long j = 0; j < jobs; j++) {
            if (job[j].failed) {
                fprintf(stderr, "%s: %s on %s: %s\n", argv[0], phases[p].name, device, strerror(job[j].failed));
                return 1;
            }
        }
        printf("iobench %s requests=%llu seconds=%.6f interrupts=%lld\n", phases[p].name,
               (unsigned long long)(per_job * (uint64_t)jobs), seconds,
               before < 0 || after < 0 ? -1LL : after - before);
        fflush(stdout);
    }
    close(fd);
    return 0;
}
