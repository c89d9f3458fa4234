// CVisorHost: Linux calls the Visor runtime needs that Swift cannot make itself, because
// their C declarations are variadic.
//
// Not API: only the Visor target imports this module.
#ifndef CVISORHOST_H
#define CVISORHOST_H

#include <sys/prctl.h>

/// Sets the calling thread's timer slack (PR_SET_TIMERSLACK) to `nanoseconds`. Linux lets a
/// normal thread's timed waits end up to 50 µs late by default, so that wake-ups batch; a vCPU
/// sleeping until its guest's timer deadline wants to wake on time. Returns 0 or -1 (errno).
static inline int cvisorhost_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}

#endif
