// The domain's virtual clock: what its device timers, its software TSC and (later) the
// scheduler's accounting read.

import VisorCore
import VisorDevices

/// Nanoseconds since the domain was created, on CLOCK_MONOTONIC. The guest sees wall time
/// pass while it runs; pausing a domain (the toolstack's `pause`) will stop this clock.
final class DomainClock: VirtualClock, TimeSource {
    /// CLOCK_MONOTONIC at virtual time 0.
    let origin: UInt64

    init() { origin = MonotonicClock.hostNanoseconds() }

    var nanoseconds: UInt64 { MonotonicClock.hostNanoseconds() &- origin }

    /// The CLOCK_MONOTONIC instant of virtual time `nanoseconds`, saturating.
    func hostNanoseconds(at nanoseconds: UInt64) -> UInt64 {
        let (sum, overflow) = origin.addingReportingOverflow(nanoseconds)
        return overflow ? .max : sum
    }
}
