// How long a device's worker polls a queue's available ring after a pass, adapted to the guest
// the way KVM adapts its halt polling: a poll that ran out shortly before the driver's next
// notification would have taken that request had it lasted a little longer, so the window
// grows to cover it; a poll followed by a long silence was CPU spent for nothing, so the
// window halves. A guest that sends its requests back to back (a disk stream on a fast engine)
// keeps the whole window; one whose requests come further apart than `maximum` (a slow engine,
// an idle guest) costs only `minimum` after each pass.

/// A queue's poll length, in nanoseconds.
public struct PollWindow: Sendable, Equatable {
    public let minimum: UInt64
    public let maximum: UInt64
    /// The next poll's length: starts at `maximum`.
    public private(set) var current: UInt64

    public init(minimum: UInt64, maximum: UInt64) {
        self.minimum = min(minimum, maximum)
        self.maximum = maximum
        current = maximum
    }

    /// A poll of `current` ran out, and the driver's next notification came `gap` nanoseconds
    /// after it ended.
    public mutating func missed(by gap: UInt64) {
        let needed = current.addingReportingOverflow(gap).partialValue
        if gap < maximum && needed <= maximum {
            // A quarter more than the request needed: the next one may come a little later.
            current = Swift.min(maximum, Swift.max(minimum, needed &+ needed / 4))
        } else {
            current = Swift.max(minimum, current / 2)
        }
    }
}
