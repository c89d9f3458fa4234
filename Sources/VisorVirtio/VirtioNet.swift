// virtio-net (virtio 1.x §5.1): an Ethernet interface on two queues, receiveq (0) and
// transmitq (1), each frame preceded by a `struct virtio_net_hdr`. With VIRTIO_F_VERSION_1 the
// header is always 12 bytes { flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16,
// csum_offset u16, num_buffers u16 }.
//
// The host side is a `PacketBackend` (a TAP: `PacketDescriptor`). Transmit is driver-filled:
// each chain is a header and a frame, and the frame goes to the backend as the worker serves
// it. Receive is host-filled (see "Queues the host fills" in ARCHITECTURE.md): a reader thread
// started by `start(wake:)` takes frames from the backend into a small bounded queue and wakes
// the worker; `hasWork(queue: 0)` is true while frames wait, so the driver's receive buffers
// stay available until there is a frame for them. When the queue is full the reader stops
// reading (the backend's own queue, in the kernel for a TAP, holds what follows), and resumes
// once the guest's buffers took a frame.
//
// Offloads, when the backend carries virtio-net headers itself (a TAP opened with IFF_VNET_HDR,
// whose kernel side speaks the same header): the device offers CSUM and HOST_TSO4/6 (the
// guest may hand over frames with a partial checksum or a 64 KiB TCP segment for the host to
// finish), and GUEST_CSUM and GUEST_TSO4/6 (the host may hand the guest such frames), and
// passes the header through both ways; the TAP is told which of them the guest accepted
// (TUNSETOFFLOAD) once the driver negotiated. A frame from the host that needs an offload the
// guest did not accept is dropped (counted). Without such a backend no offload is offered:
// each frame is whole and checksummed. No mergeable buffers either way: one receive buffer
// holds one frame, so the driver must give buffers of at least 1526 bytes (the header and a
// 1514-byte frame), or, with GUEST_TSO, of 64 KiB (Linux's "big packets": a chain of pages).

import Synchronization
import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// The host end of a network device: where transmitted frames go and received frames come from.
public protocol PacketBackend: AnyObject, Sendable {
    /// True when every frame sent and received starts with a 12-byte virtio-net header (a TAP
    /// with IFF_VNET_HDR): the device may then offer offloads.
    var carriesVirtioHeader: Bool { get }
    /// Which offloads the guest accepts in received frames (a TAP: TUNSETOFFLOAD).
    func setOffloads(_ offloads: PacketOffloads)
    /// Sends one Ethernet frame (no header). Throws when the host refuses it; the device drops
    /// the frame and counts it, as a NIC drops what its link cannot take.
    func send(_ frame: [UInt8]) throws(PacketBackendError)
    /// Waits for the next frame (when `acceptingFrames`) or only for `interrupt()`, and returns
    /// what happened first. A pending interrupt is consumed by this call.
    func receive(acceptingFrames: Bool) -> PacketReceive
    /// Makes the `receive` waiting now, or else the next one, return `.interrupted`. Any thread.
    func interrupt()
    /// Gives the host side back (closes the TAP) once nothing sends or receives any more: after
    /// the device's reader and worker have stopped. Later sends fail, receives say `.closed`.
    func close()
}

extension PacketBackend {
    public var carriesVirtioHeader: Bool { false }
    public func setOffloads(_ offloads: PacketOffloads) {}
}

/// The offloads a guest accepts in the frames it receives.
public struct PacketOffloads: Sendable, Equatable {
    public var checksum = false, tso4 = false, tso6 = false
    public init(checksum: Bool = false, tso4: Bool = false, tso6: Bool = false) {
        self.checksum = checksum; self.tso4 = tso4; self.tso6 = tso6
    }
}

/// What `PacketBackend.receive` returned.
public enum PacketReceive: Sendable, Equatable {
    case frame([UInt8])
    case interrupted
    /// The backend can give no more frames (the interface went away); the reason.
    case closed(String)
}

/// A backend's failure, for messages and counts.
public struct PacketBackendError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A MAC address (six bytes).
public struct MACAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Nil unless `bytes` holds six bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// `XX:XX:XX:XX:XX:XX` (hex digits, either case); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// A stable address for `seed` (a domain's name and the device's index): locally
    /// administered (bit 1 of the first byte), unicast (bit 0 clear), the rest a hash of the
    /// seed, so a domain keeps its address from run to run and two domains differ.
    public static func derived(from seed: String) -> MACAddress {
        // FNV-1a, 64 bits: stable across processes and builds, unlike Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in seed.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        var bytes = (0..<6).map { UInt8(truncatingIfNeeded: hash >> (8 * UInt64($0))) }
        bytes[0] = bytes[0] & 0xfc | 0x02
        return MACAddress(sixBytes: bytes)
    }

    private init(sixBytes: [UInt8]) { bytes = sixBytes }

    /// A multicast address (bit 0 of the first byte) cannot be an interface's.
    public var isMulticast: Bool { bytes[0] & 1 != 0 }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}

public final class VirtioNet: VirtioDeviceModel, @unchecked Sendable {
    // @unchecked: the mutable state is inside `state` (a Mutex); `reader` is touched only by
    // `start` and `stop`, which the owner calls in that order from one thread.

    public enum Feature {
        public static let checksum: UInt64 = 1 << 0       // VIRTIO_NET_F_CSUM
        public static let guestChecksum: UInt64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM
        public static let mac: UInt64 = 1 << 5            // VIRTIO_NET_F_MAC
        public static let guestTSO4: UInt64 = 1 << 7      // VIRTIO_NET_F_GUEST_TSO4
        public static let guestTSO6: UInt64 = 1 << 8      // VIRTIO_NET_F_GUEST_TSO6
        public static let hostTSO4: UInt64 = 1 << 11      // VIRTIO_NET_F_HOST_TSO4
        public static let hostTSO6: UInt64 = 1 << 12      // VIRTIO_NET_F_HOST_TSO6
        public static let status: UInt64 = 1 << 16        // VIRTIO_NET_F_STATUS
        /// Everything offered when the backend carries headers.
        public static let offloads = checksum | guestChecksum | guestTSO4 | guestTSO6 | hostTSO4 | hostTSO6
    }
    /// virtio_net_hdr flags and gso_type values (§5.1.6).
    static let needsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0, gsoTCPv4: UInt8 = 1, gsoTCPv6: UInt8 = 4
    /// VIRTIO_NET_S_LINK_UP in the config space's status.
    public static let linkUp: UInt16 = 1
    public static let receiveQueue = 0
    public static let transmitQueue = 1
    /// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (num_buffers included).
    public static let headerSize = 12
    /// The largest frame the device carries either way: without GSO the driver sends at most an
    /// MTU-sized frame, but a TAP's MTU may have been raised, so allow up to 64 KiB.
    public static let maximumFrame = 65_536

    public let deviceID = VirtioDeviceID.network
    public let queueCount = 2
    public let queueSizeMax: UInt16
    public let deviceFeatures: UInt64
    public let configSpace: [UInt8]
    public let mac: MACAddress
    public let backend: any PacketBackend
    /// How many received frames may wait for the guest's buffers.
    public let receiveBound: Int

    /// What the device did, for `--stats`: frames either way and what was dropped.
    public struct Counters: Sendable, Equatable {
        /// Frames (and their bytes) put in the guest's receive buffers.
        public var received: UInt64 = 0, receivedBytes: UInt64 = 0
        /// Frames taken from the guest's transmit queue and sent to the backend.
        public var sent: UInt64 = 0, sentBytes: UInt64 = 0
        /// Frames offered while the receive queue was full (none from the reader, which waits).
        public var receiveDropped: UInt64 = 0
        /// Frames larger than the receive buffer the guest gave (the buffer came back empty).
        public var receiveTooLarge: UInt64 = 0
        /// Frames the backend refused, or longer than `maximumFrame`.
        public var sendErrors: UInt64 = 0
        /// Why the reader stopped early, if it did.
        public var readerClosed: String?
        public init() {}
    }

    private struct State {
        var waiting: [[UInt8]] = []
        var counters = Counters()
        var stopping = false
        /// The driver's features the backend's offloads were last set for.
        var offloadsFor: UInt64?
    }
    private let state = Mutex(State())
    private var reader: ReaderThread?

    /// A device with address `mac` on `backend`; at most `receiveBound` received frames wait for
    /// the guest's buffers.
    public init(backend: any PacketBackend, mac: MACAddress, queueSize: UInt16 = 256, receiveBound: Int = 64) {
        self.backend = backend
        self.mac = mac
        queueSizeMax = queueSize
        self.receiveBound = max(receiveBound, 1)
        deviceFeatures = VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
            | Feature.mac | Feature.status | (backend.carriesVirtioHeader ? Feature.offloads : 0)
        // struct virtio_net_config: mac[6], status u16 (the rest needs features not offered).
        configSpace = mac.bytes + [UInt8(truncatingIfNeeded: Self.linkUp), UInt8(truncatingIfNeeded: Self.linkUp >> 8)]
    }

    public var counters: Counters { state.withLock { $0.counters } }
    /// Frames waiting for receive buffers.
    public var waitingFrames: Int { state.withLock { $0.waiting.count } }

    /// The transmit queue: the guest's frames follow each other while it sends.
    public func pollsAvailableRing(queue: Int) -> Bool { queue == Self.transmitQueue }

    public func hasWork(queue: Int) -> Bool {
        queue != Self.receiveQueue || state.withLock { !$0.waiting.isEmpty }
    }

    /// Queues a frame from the host for the guest; false (and counted) when `receiveBound`
    /// frames already wait. The caller then wakes the receive queue.
    @discardableResult
    public func offer(_ frame: [UInt8]) -> Bool {
        state.withLock { state in
            guard state.waiting.count < receiveBound else {
                state.counters.receiveDropped &+= 1
                return false
            }
            state.waiting.append(frame)
            return true
        }
    }

    public func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
        if backend.carriesVirtioHeader { applyOffloads(features) }
        switch queue {
        case Self.receiveQueue: return try receive(into: chain, memory: memory, features: features)
        case Self.transmitQueue: try transmit(chain, memory: memory); return 0
        default: throw .malformedRequest("virtio-net has no queue \(queue)")
        }
    }

    /// Tells the backend which offloads the driver accepted, once per set of features.
    private func applyOffloads(_ features: UInt64) {
        let changed = state.withLock { state -> Bool in
            guard state.offloadsFor != features else { return false }
            state.offloadsFor = features
            return true
        }
        guard changed else { return }
        let checksum = features & Feature.guestChecksum != 0
        backend.setOffloads(PacketOffloads(checksum: checksum, tso4: checksum && features & Feature.guestTSO4 != 0,
                                           tso6: checksum && features & Feature.guestTSO6 != 0))
    }

    /// The header the guest gets for a frame whose backend header (if any) is `backendHeader`:
    /// the backend's when it asks only for offloads the driver accepted, zeros (nothing to do)
    /// when it asks none; nil when it needs one the driver did not accept (the frame is
    /// dropped). num_buffers is 1 (§5.1.6.4: required without MRG_RXBUF).
    static func guestHeader(_ backendHeader: ArraySlice<UInt8>?, features: UInt64) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: headerSize)
        if let b = backendHeader, b.count >= headerSize {
            let flags = b[b.startIndex], gso = b[b.startIndex + 1] & 0x7f  // without the ECN bit
            let checksum = features & Feature.guestChecksum != 0
            if flags & needsChecksum != 0 && !checksum { return nil }
            switch gso {
            case gsoNone: break
            case gsoTCPv4 where checksum && features & Feature.guestTSO4 != 0: break
            case gsoTCPv6 where checksum && features & Feature.guestTSO6 != 0: break
            default: return nil
            }
            if checksum || gso != gsoNone { for i in 0..<10 { header[i] = b[b.startIndex + i] } }
        }
        header[10] = 1  // num_buffers
        return header
    }

    /// A waiting frame into one receive buffer, after its header (`guestHeader`).
    private func receive(into chain: DescriptorChain, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
        guard chain.readable.isEmpty else {
            throw .malformedRequest("virtio-net receive buffer has a device-readable part; the device only writes there")
        }
        guard chain.writableLength >= UInt64(Self.headerSize) else {
            throw .malformedRequest("virtio-net receive buffer is \(chain.writableLength) bytes, less than the \(Self.headerSize)-byte header")
        }
        let (received, resumeReader) = state.withLock { state -> ([UInt8]?, Bool) in
            guard !state.waiting.isEmpty else { return (nil, false) }
            let wasFull = state.waiting.count >= receiveBound
            return (state.waiting.removeFirst(), wasFull)
        }
        if resumeReader { backend.interrupt() }  // the reader waits for room: there is some now
        // Only this worker takes frames, after hasWork said one waits; should none be there the
        // buffer goes back empty, which a driver counts as a length error.
        guard let received else { return 0 }
        let carried = backend.carriesVirtioHeader
        guard !carried || received.count >= Self.headerSize,
              let header = Self.guestHeader(carried ? received[0..<Self.headerSize] : nil, features: features) else {
            state.withLock { $0.counters.receiveDropped &+= 1 }
            return 0
        }
        let frame = carried ? received[Self.headerSize...] : received[...]
        guard UInt64(frame.count) <= chain.writableLength - UInt64(Self.headerSize) else {
            state.withLock { $0.counters.receiveTooLarge &+= 1 }
            return 0
        }
        try chain.write(header + frame, memory, offset: 0)
        state.withLock {
            $0.counters.received &+= 1
            $0.counters.receivedBytes &+= UInt64(frame.count)
        }
        return UInt32(Self.headerSize + frame.count)
    }

    /// One transmit chain: the header and the frame after it, to the backend: the frame alone,
    /// or with the header when the backend takes headers (the host kernel checks it and carries
    /// out the checksum or segmentation it asks for; one it refuses is a send error).
    private func transmit(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) {
        guard chain.writable.isEmpty else {
            throw .malformedRequest("virtio-net transmit buffer has a device-writable part; the device only reads there")
        }
        let total = chain.readableLength
        guard total >= UInt64(Self.headerSize) else {
            throw .malformedRequest("virtio-net transmit buffer is \(total) bytes, less than the \(Self.headerSize)-byte header")
        }
        let frameLength = total - UInt64(Self.headerSize)
        guard frameLength <= UInt64(Self.maximumFrame) else {
            state.withLock { $0.counters.sendErrors &+= 1 }
            return
        }
        let carried = backend.carriesVirtioHeader
        let frame = try chain.read(memory, offset: carried ? 0 : UInt64(Self.headerSize),
                                   count: Int(frameLength) + (carried ? Self.headerSize : 0))
        do {
            try backend.send(frame)
            state.withLock {
                $0.counters.sent &+= 1
                $0.counters.sentBytes &+= frameLength
            }
        } catch {
            state.withLock { $0.counters.sendErrors &+= 1 }
        }
    }

    // MARK: The reader

    public func start(wake: @escaping @Sendable (Int) -> Void) {
        guard reader == nil else { return }
        state.withLock { $0.stopping = false }
        reader = ReaderThread { [self] in readLoop(wake: wake) }
    }

    public func stop() {
        guard let reader else { return }
        state.withLock { $0.stopping = true }
        backend.interrupt()
        reader.join()
        self.reader = nil
    }

    /// Frames from the backend into the queue, waking the receive queue for each, until
    /// `stop`. While the queue is full it waits only for an interrupt (room or stop).
    private func readLoop(wake: @Sendable (Int) -> Void) {
        while true {
            let (stopping, full) = state.withLock { ($0.stopping, $0.waiting.count >= receiveBound) }
            if stopping { return }
            switch backend.receive(acceptingFrames: !full) {
            case .frame(let frame):
                offer(frame)
                wake(Self.receiveQueue)
            case .interrupted:
                continue
            case .closed(let reason):
                state.withLock { $0.counters.readerClosed = reason }
                return
            }
        }
    }
}

/// A joinable thread for the reader (VisorVirtio has no thread type of its own to reuse:
/// `HostThread` lives in Visor, above this module).
private final class ReaderThread {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        // SAFETY: `context` is a retained Box the new thread releases exactly once; pthread_create
        // writes the thread's handle into `thread`, which outlives the call.
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    func join() { pthread_join(thread, nil) }
}
