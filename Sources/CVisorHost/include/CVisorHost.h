// CVisorHost: Linux calls the Visor runtime needs that Swift cannot make itself, because
// their C declarations are variadic or their arguments are built with macros.
//
// Not API: only the Visor and VisorBench targets import this module.
#ifndef CVISORHOST_H
#define CVISORHOST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* cpu_set_t and sched_setaffinity */
#endif
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <unistd.h>

/// Sets the calling thread's timer slack (PR_SET_TIMERSLACK) to `nanoseconds`. Linux lets a
/// normal thread's timed waits end up to 50 µs late by default, so that wake-ups batch; a vCPU
/// sleeping until its guest's timer deadline wants to wake on time. Returns 0 or -1 (errno).
static inline int cvisorhost_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}

/// How many host CPUs the process may run on (its main thread's affinity; a cgroup or
/// taskset may allow fewer than are online), or -1.
static inline int cvisorhost_usable_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

/// Binds the calling thread to the `n`th (from 0) host CPU the process may run on
/// (sched_setaffinity; CPU_SET is a macro Swift cannot call). Returns that CPU's number, or -1.
static inline int cvisorhost_pin_current_thread(int n) {
    cpu_set_t allowed, one;
    if (n < 0 || sched_getaffinity(getpid(), sizeof allowed, &allowed) != 0) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || n-- > 0) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
    }
    return -1;
}

/// Gives the calling thread the host CPUs of the process's main thread. A new thread inherits
/// its creator's affinity and name: a thread started by a vCPU thread bound under --pin-pcpus
/// (the console writer) must not stay on that one CPU.
static inline int cvisorhost_take_process_affinity(void) {
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0) return -1;
    return sched_setaffinity(0, sizeof set, &set);
}

/// Adds "close every descriptor from `lowest` up" to a posix_spawn file-action list (glibc's
/// GNU extension, which Swift's Glibc module does not show). 0 on success, else an errno.
static inline int cvisorhost_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}

/// Names the calling thread (at most 15 bytes are kept), as ps -L and top -H show it.
static inline int cvisorhost_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
