// virtio-console (virtio 1.x §5.3) with one port: a console whose bytes move in whole buffers,
// where the 16550 moves one byte per port access.
//
//   queue 0, receiveq0:  the driver's empty buffers; the device fills them with console input
//                        from the host, as much as each holds, when there is some (a queue the
//                        host fills: `hasWork`, and `wake` when input arrives)
//   queue 1, transmitq0: the driver's full buffers; the device sends their bytes to the output
//
// Without VIRTIO_CONSOLE_F_MULTIPORT there are no control queues and the one port is a console
// from the start (Linux's hvc0). VIRTIO_CONSOLE_F_SIZE is not offered: the host side is a byte
// stream (a terminal, a pipe, the toolstack's log) whose size the device does not know, and
// EMERG_WRITE needs a writable configuration space the transport does not have.
//
// Input waits in a bounded queue in the model until the driver gives buffers for it; a full
// queue refuses more (`receive` returns how much it took), so the caller keeps the rest and
// offers it again, as it does for the UART's receive FIFO.

import Synchronization
import VisorCore

public final class VirtioConsole: VirtioDeviceModel, @unchecked Sendable {
    // @unchecked: the input queue and `wake` are behind their Mutexes; the rest are `let`s.

    public static let receiveQueue = 0
    public static let transmitQueue = 1

    public let deviceID = VirtioDeviceID.console
    public let queueCount = 2
    public let queueSizeMax: UInt16
    public let deviceFeatures = VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
    /// struct virtio_console_config { cols u16, rows u16, max_nr_ports u32, emerg_wr u32 }: the
    /// driver reads none of it without F_SIZE, F_MULTIPORT or F_EMERG_WRITE; all zero.
    public let configSpace = [UInt8](repeating: 0, count: 12)
    /// The most input bytes waiting for receive buffers.
    public let inputCapacity: Int
    /// The most bytes of one transmit buffer copied through host memory at a time (a hostile
    /// driver may name buffers as large as its RAM).
    public let transferChunk: UInt64

    private let output: @Sendable ([UInt8]) -> Void
    private let input = Mutex(InputQueue())
    private let wake = Mutex<(@Sendable (Int) -> Void)?>(nil)

    /// Bytes waiting for the guest, oldest first, in a ring of `capacity` bytes.
    private struct InputQueue {
        var bytes: [UInt8] = []
        var start = 0
        var count = 0
    }

    /// `output` receives the guest's console output in order, from the device's worker thread.
    public init(queueSize: UInt16 = 256, inputCapacity: Int = 4096, transferChunk: UInt64 = 64 << 10,
                output: @escaping @Sendable ([UInt8]) -> Void) {
        queueSizeMax = queueSize
        self.inputCapacity = max(inputCapacity, 1)
        self.transferChunk = max(transferChunk, 1)
        self.output = output
    }

    // MARK: Host side

    public func start(wake: @escaping @Sendable (Int) -> Void) {
        self.wake.withLock { $0 = wake }
    }

    public func stop() {
        wake.withLock { $0 = nil }
    }

    /// Queues console input for the guest; returns how many of `bytes` (a prefix) it took, fewer
    /// when the queue is full. Any thread; takes no lock but the model's own, and calls `wake`
    /// (which takes the platform lock) after releasing it.
    @discardableResult
    public func receive<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Int {
        let capacity = inputCapacity
        let taken = input.withLock { queue -> Int in
            if queue.bytes.isEmpty { queue.bytes = [UInt8](repeating: 0, count: capacity) }
            var taken = 0
            for byte in bytes {
                guard queue.count < capacity else { break }
                queue.bytes[(queue.start + queue.count) % capacity] = byte
                queue.count += 1
                taken += 1
            }
            return taken
        }
        if taken > 0, let wake = wake.withLock({ $0 }) { wake(Self.receiveQueue) }
        return taken
    }

    /// Input bytes waiting for receive buffers.
    public var pendingInput: Int { input.withLock { $0.count } }

    // MARK: Device side

    public func hasWork(queue: Int) -> Bool {
        queue == Self.receiveQueue ? input.withLock { $0.count > 0 } : true
    }

    public func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
        switch queue {
        case Self.receiveQueue: return try fill(chain, memory: memory)
        case Self.transmitQueue: try send(chain, memory: memory); return 0
        default: throw .malformedRequest("virtio-console has no queue \(queue)")
        }
    }

    /// A receive buffer: as much waiting input as it holds. The bytes leave the queue only once
    /// they are in guest RAM.
    private func fill(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) -> UInt32 {
        guard chain.readableLength == 0 else {
            throw .malformedRequest("a virtio-console receive buffer has \(chain.readableLength) device-readable bytes; the device only writes them")
        }
        let room = chain.writableLength
        guard room > 0 else { throw .malformedRequest("a virtio-console receive buffer has no room") }
        let capacity = inputCapacity
        let waiting = input.withLock { queue -> [UInt8] in
            let count = Int(min(UInt64(queue.count), room))
            return (0..<count).map { queue.bytes[(queue.start + $0) % capacity] }
        }
        guard !waiting.isEmpty else { return 0 }
        try chain.write(waiting, memory, offset: 0)
        // Only the worker takes input out, so the bytes copied are still the queue's first.
        input.withLock { queue in
            queue.start = (queue.start + waiting.count) % capacity
            queue.count -= waiting.count
        }
        return UInt32(waiting.count)
    }

    /// A transmit buffer: its bytes to the output, in pieces of at most `transferChunk`.
    private func send(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) {
        guard chain.writableLength == 0 else {
            throw .malformedRequest("a virtio-console transmit buffer has \(chain.writableLength) device-writable bytes; the device only reads them")
        }
        let total = chain.readableLength
        var done: UInt64 = 0
        while done < total {
            let piece = min(transferChunk, total - done)
            output(try chain.read(memory, offset: done, count: Int(piece)))
            done += piece
        }
    }
}
