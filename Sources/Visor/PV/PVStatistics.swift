// Counters of a domain's paravirtual activity, for `visor run --stats`: hypercalls by number
// and what happened to events.

import VisorABI

/// Hypercalls by number and events delivered. A value: the runtime copies it out under its lock.
public struct PVStatistics: Sendable, Equatable {
    /// Calls per hypercall number, `0 ..< Hypercall.count`.
    public var hypercalls: [UInt64] = Array(repeating: 0, count: Int(Hypercall.count))
    /// Calls with a number at or above `Hypercall.count`.
    public var otherHypercalls: UInt64 = 0
    /// Calls that returned an error.
    public var failedHypercalls: UInt64 = 0
    /// Events that made a port pending (a port already pending is not counted again).
    public var eventsDelivered: UInt64 = 0
    /// Events raised before the shared-info page was installed (lost).
    public var eventsDropped: UInt64 = 0
    /// Upcall vectors the runtime injected.
    public var upcallsInjected: UInt64 = 0
    /// PV timer expiries (single-shot and periodic).
    public var timerEvents: UInt64 = 0
    /// Console bytes written by `console_io write` and queued for `console_io read`.
    public var consoleBytesOut: UInt64 = 0
    public var consoleBytesIn: UInt64 = 0

    public init() {}

    /// Total hypercalls.
    public var totalHypercalls: UInt64 { hypercalls.reduce(otherHypercalls, &+) }

    mutating func count(hypercall number: UInt64) {
        if number < UInt64(hypercalls.count) { hypercalls[Int(number)] &+= 1 } else { otherHypercalls &+= 1 }
    }

    /// Adds another domain's (or vCPU's) counts.
    public mutating func merge(_ other: PVStatistics) {
        for i in hypercalls.indices where i < other.hypercalls.count { hypercalls[i] &+= other.hypercalls[i] }
        otherHypercalls &+= other.otherHypercalls
        failedHypercalls &+= other.failedHypercalls
        eventsDelivered &+= other.eventsDelivered
        eventsDropped &+= other.eventsDropped
        upcallsInjected &+= other.upcallsInjected
        timerEvents &+= other.timerEvents
        consoleBytesOut &+= other.consoleBytesOut
        consoleBytesIn &+= other.consoleBytesIn
    }

    /// The name of hypercall `number` (Xen's, without `__HYPERVISOR_`).
    public static func name(of number: Int) -> String {
        switch UInt32(truncatingIfNeeded: number) {
        case Hypercall.setTimerOp: return "set_timer_op"
        case Hypercall.xenVersion: return "xen_version"
        case Hypercall.consoleIO: return "console_io"
        case Hypercall.vcpuOp: return "vcpu_op"
        case Hypercall.schedOp: return "sched_op"
        case Hypercall.eventChannelOp: return "event_channel_op"
        default: return "hypercall \(number)"
        }
    }

    /// Several lines for `--stats`; empty when the guest made no hypercalls and had no events.
    public var report: String {
        guard totalHypercalls > 0 || eventsDelivered > 0 || eventsDropped > 0 else { return "" }
        var lines = ["hypercalls: \(totalHypercalls) (\(failedHypercalls) failed)"]
        for (number, count) in hypercalls.enumerated() where count > 0 {
            lines.append("  \(Self.name(of: number).padding(18)) \(count)")
        }
        if otherHypercalls > 0 { lines.append("  \("unknown".padding(18)) \(otherHypercalls)") }
        lines.append("events: \(eventsDelivered) delivered, \(eventsDropped) dropped, \(upcallsInjected) upcalls injected, \(timerEvents) timer expiries")
        if consoleBytesOut > 0 || consoleBytesIn > 0 {
            lines.append("pv console: \(consoleBytesOut) bytes out, \(consoleBytesIn) bytes in")
        }
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
