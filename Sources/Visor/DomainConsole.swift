// A served domain's console: the recent output kept for late readers, and the readers attached
// now (`visor console`, the API's console stream), as xenconsoled keeps a buffer per domain.

import Synchronization

/// One attached reader of a domain's console. `receive` is called on the guest's vCPU thread
/// under the domain's platform lock, so it must never wait: it queues the byte and returns.
public struct ConsoleReader: Sendable {
    public var receive: @Sendable (UInt8) -> Void
    /// The domain ended: no byte will follow.
    public var closed: @Sendable () -> Void

    public init(receive: @escaping @Sendable (UInt8) -> Void, closed: @escaping @Sendable () -> Void) {
        self.receive = receive; self.closed = closed
    }
}

/// The console output of one domain, fanned out to its readers, with the last `historyCapacity`
/// bytes kept so that a reader who attaches late sees what came before.
public final class DomainConsole: Sendable {
    /// Bytes of recent output kept per domain.
    public static let historyCapacity = 64 << 10

    private struct State {
        var history: [UInt8] = []
        /// Where the oldest byte is once `history` is full (it is then a ring).
        var start = 0
        var total: UInt64 = 0
        var readers: [UInt64: ConsoleReader] = [:]
        var nextToken: UInt64 = 1
        var isClosed = false
    }
    private let state = Mutex(State())

    public init() {}

    /// A byte the guest wrote. Called under the platform lock; readers only queue it.
    @Sendable public func append(_ byte: UInt8) {
        state.withLock { s in
            if s.history.count < Self.historyCapacity {
                s.history.append(byte)
            } else {
                s.history[s.start] = byte
                s.start = (s.start + 1) % Self.historyCapacity
            }
            s.total &+= 1
            for reader in s.readers.values { reader.receive(byte) }
        }
    }

    /// The kept output, oldest first.
    public var history: [UInt8] { state.withLock { Self.ordered($0) } }

    /// Bytes written since the domain was created.
    public var totalBytes: UInt64 { state.withLock { $0.total } }

    private static func ordered(_ s: State) -> [UInt8] {
        Array(s.history[s.start...] + s.history[..<s.start])
    }

    /// Attaches `reader` and returns the kept output at that instant (so nothing is seen twice or
    /// missed) and a token for `detach`; nil when the console has closed (the domain ended).
    public func attach(_ reader: ConsoleReader) -> (history: [UInt8], token: UInt64)? {
        state.withLock { s in
            guard !s.isClosed else { return nil }
            let token = s.nextToken
            s.nextToken &+= 1
            s.readers[token] = reader
            return (Self.ordered(s), token)
        }
    }

    public func detach(_ token: UInt64) {
        _ = state.withLock { $0.readers.removeValue(forKey: token) }
    }

    /// The domain ended: every reader is told and let go.
    func close() {
        let readers = state.withLock { s -> [ConsoleReader] in
            s.isClosed = true
            defer { s.readers = [:] }
            return Array(s.readers.values)
        }
        for reader in readers { reader.closed() }
    }
}
