// What `visor run --stats` says of the virtio devices: per queue, buffers used, driver
// notifications (exits), interrupts and passes the worker's poll found work for (without a
// notification), so frames or requests per notification and per interrupt can be read off;
// and what the device model itself counted.

import VisorVirtio

/// One virtio device's counts at the end of a run.
public struct VirtioDeviceStatistics: Sendable, Equatable {
    public var name: String
    /// Each queue's name (the specification's: requestq, receiveq, transmitq) and counts.
    public var queues: [(name: String, counts: VirtqueueStatistics)]
    /// The model's own counts, in words (a network's frames, bytes and drops), if it has any.
    public var detail: String?

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.detail == b.detail && a.queues.map(\.name) == b.queues.map(\.name)
            && a.queues.map(\.counts) == b.queues.map(\.counts)
    }

    public var report: String {
        let perQueue = queues.map { queue in
            let c = queue.counts
            return "\(queue.name) \(c.buffers) buffers, \(c.notifications) notifications, \(c.interrupts) interrupts"
                + (c.polledPasses > 0 ? ", \(c.polledPasses) passes found by polling" : "")
        }
        return "\(name): " + (perQueue + (detail.map { [$0] } ?? [])).joined(separator: "; ")
    }
}

extension VirtioSlot {
    /// The device's counts now. Platform lock held.
    func statistics() -> VirtioDeviceStatistics {
        let counts = device.queueStatistics
        if let net = device.model as? VirtioNet {
            let c = net.counters
            var detail = "\(c.received) frames in (\(c.receivedBytes) bytes), \(c.sent) out (\(c.sentBytes) bytes)"
            let drops = [(c.receiveTooLarge, "too large for the guest's buffer"), (c.receiveDropped, "dropped with the receive queue full"),
                         (c.sendErrors, "refused by the TAP")].filter { $0.0 > 0 }
            if !drops.isEmpty { detail += ", " + drops.map { "\($0.0) \($0.1)" }.joined(separator: ", ") }
            if let closed = c.readerClosed { detail += "; the reader stopped: \(closed)" }
            return VirtioDeviceStatistics(name: name, queues: [("receiveq", counts[0]), ("transmitq", counts[1])], detail: detail)
        }
        let names = counts.indices.map { counts.count == 1 ? "requestq" : "queue \($0)" }
        return VirtioDeviceStatistics(name: name, queues: Array(zip(names, counts)).map { ($0.0, $0.1) }, detail: nil)
    }
}
