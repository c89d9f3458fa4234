// A virtual clock the tests move by hand, for the timer models.

import VisorDevices

final class ManualClock: TimeSource {
    var nanoseconds: UInt64
    init(_ start: UInt64 = 0) { nanoseconds = start }
    func advance(by delta: UInt64) { nanoseconds += delta }
}
