// A served domain's console: the recent output kept for late readers, the readers attached now
// (`visor console`, the API's console stream), as xenconsoled keeps a buffer per domain, and at
// most one writer among them: the reader whose input the guest takes, so two people typing at
// once never interleave their keys in one shell.

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
        /// The writer: its reader's token and the key its input must carry.
        var writer: (token: UInt64, key: String)?
    }

    /// Why an attach was refused.
    public enum AttachRefusal: Error, Equatable {
        /// The domain ended: no output will come.
        case closed
        /// Another reader is the writer.
        case writerPresent
    }

    /// An attached reader: the kept output at the instant it attached (so nothing is seen twice
    /// or missed), its token for `detach`, and for the writer the key its input carries.
    public struct Attachment: Sendable, Equatable {
        public var history: [UInt8]
        public var token: UInt64
        public var writerKey: String?
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

    /// Attaches `reader`; with `writing`, as the console's one writer (refused while another is).
    public func attach(_ reader: ConsoleReader, writing: Bool = false) -> Result<Attachment, AttachRefusal> {
        // Outside the lock: the key is for comparing, not secret from the daemon's own users
        // (the socket is theirs alone), but it must not be guessable by another connection.
        let key = writing ? Self.newWriterKey() : nil
        return state.withLock { s in
            guard !s.isClosed else { return .failure(.closed) }
            if writing, s.writer != nil { return .failure(.writerPresent) }
            let token = s.nextToken
            s.nextToken &+= 1
            s.readers[token] = reader
            if let key { s.writer = (token, key) }
            return .success(Attachment(history: Self.ordered(s), token: token, writerKey: key))
        }
    }

    /// Detaches the reader `token` (and lets the writer's place go, if it held it).
    public func detach(_ token: UInt64) {
        state.withLock { s in
            s.readers.removeValue(forKey: token)
            if s.writer?.token == token { s.writer = nil }
        }
    }

    /// Whether input carrying `key` may reach the guest: the writer's key while a writer is
    /// attached; no key (a one-off `POST`) while none is.
    public func acceptsInput(withKey key: String?) -> Bool {
        state.withLock { s in
            guard let writer = s.writer else { return key == nil }
            return key == writer.key
        }
    }

    /// Whether a writer is attached now.
    public var hasWriter: Bool { state.withLock { $0.writer != nil } }

    private static func newWriterKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let word = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - word.count) + word
        }.joined()
    }

    /// The domain ended: every reader is told and let go.
    func close() {
        let readers = state.withLock { s -> [ConsoleReader] in
            s.isClosed = true
            s.writer = nil
            defer { s.readers = [:] }
            return Array(s.readers.values)
        }
        for reader in readers { reader.closed() }
    }
}
