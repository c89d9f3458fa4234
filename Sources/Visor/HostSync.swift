// A pthread mutex and condition variables that wait on CLOCK_MONOTONIC deadlines. The
// platform needs several conditions under one lock (one per vCPU, one for the timer thread),
// which neither `Synchronization.Mutex` nor `NSCondition` offers.

#if canImport(Glibc)
import Glibc
#endif

/// A non-recursive mutex.
final class HostMutex: @unchecked Sendable {
    // SAFETY: the pthread object is heap-allocated so it never moves, initialised before any use
    // and destroyed in deinit, when no thread can hold a reference any more.
    fileprivate let raw: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        raw = .allocate(capacity: 1)
        pthread_mutex_init(raw, nil)
    }

    deinit {
        pthread_mutex_destroy(raw)
        raw.deallocate()
    }

    func lock() { pthread_mutex_lock(raw) }
    func unlock() { pthread_mutex_unlock(raw) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A condition variable used with one `HostMutex`.
final class HostCondition: @unchecked Sendable {
    // SAFETY: as for HostMutex: heap-allocated, initialised once, destroyed in deinit.
    private let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(raw, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    /// Waits until signalled or until CLOCK_MONOTONIC reaches `deadline` (nanoseconds; nil: no
    /// deadline). The caller holds `mutex`; it is released while waiting. Wakes may be spurious.
    func wait(_ mutex: HostMutex, untilHostNanoseconds deadline: UInt64?) {
        guard let deadline else {
            pthread_cond_wait(raw, mutex.raw)
            return
        }
        var time = timespec(tv_sec: Int(clamping: deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(raw, mutex.raw, &time)
    }

    func signal() { pthread_cond_signal(raw) }
    func broadcast() { pthread_cond_broadcast(raw) }
}
