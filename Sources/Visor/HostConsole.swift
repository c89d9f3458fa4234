// The host end of the guest's serial console: the terminal, in raw mode when interactive.

import Synchronization
import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// Connects a guest console to this process's standard input and output.
///
/// Output is written straight through, so prompts without a newline appear at once. Input, when
/// standard input is a terminal, is read in raw mode (keys go to the guest as typed, Ctrl-C
/// included); Ctrl-] ends the session, as in `xl console`. When standard input is a pipe or file,
/// its bytes are fed to the guest until end of file.
///
/// Input the guest's console cannot take yet (its FIFO or queue is full) waits in a backlog of
/// `inputBacklogCapacity` bytes and is offered again every millisecond, oldest first, so a
/// pasted line reaches a guest that polls a 16-byte FIFO whole. A terminal is read whatever the
/// guest does, so Ctrl-] always works: typed bytes that find the backlog full are dropped. A pipe
/// or file is read only as fast as the backlog empties, so none of it is lost. Bytes still
/// waiting when input stops are dropped too; `inputStatistics` counts them.
public final class HostConsole: Sendable {
    /// Ctrl-], the key that ends an interactive session.
    public static let escapeByte: UInt8 = 0x1d
    /// The most input held for a guest that does not take it (the PV console queue's size).
    public static let inputBacklogCapacity = 4096

    private let running = Atomic<Bool>(false)
    private let readerDone = Atomic<Bool>(true)
    private let output: ConsoleOutput
    private let inputFD: Int32
    private let inputCounts = Mutex(ConsoleInputStatistics())

    public init(inputFD: Int32 = STDIN_FILENO, outputFD: Int32 = STDOUT_FILENO) {
        self.inputFD = inputFD
        output = ConsoleOutput(fd: outputFD)
    }

    /// What became of the input so far (final once `stop` has returned).
    public var inputStatistics: ConsoleInputStatistics { inputCounts.withLock { $0 } }

    /// Writes guest output bytes to the host without ever waiting for it (see `ConsoleOutput`:
    /// guests write under their platform lock; what the host does not take in time is dropped).
    public func write(_ bytes: UnsafeRawBufferPointer) {
        output.append(bytes)
    }

    /// Guest output dropped because the terminal or pipe did not take it in time.
    public var droppedOutputBytes: UInt64 { output.droppedBytes }

    /// How long `stop` waits for queued output to reach a terminal or pipe that is slow to take it.
    static let outputFlushLimitNanoseconds: UInt64 = 500_000_000

    public func write(_ byte: UInt8) {
        withUnsafeBytes(of: byte) { write($0) }
    }

    /// Starts reading input. `deliver` hands one byte to the guest and returns false when the
    /// guest cannot take it yet (its console is full); the byte waits in the backlog and is
    /// offered again shortly. `escape` runs when the user types Ctrl-] on an interactive
    /// terminal, however much input is waiting.
    public func startInput(deliver: @escaping @Sendable (UInt8) -> Bool, escape: @escaping @Sendable () -> Void) {
        let interactive = isatty(inputFD) == 1
        if interactive { TerminalMode.enterRaw(inputFD) }
        running.store(true, ordering: .releasing)
        readerDone.store(false, ordering: .releasing)
        let fd = inputFD
        _ = HostThread { [self] in
            var backlog = InputBacklog(capacity: Self.inputBacklogCapacity)
            defer {
                // Never taken: the run ended, Ctrl-] was typed, or input stopped.
                inputCounts.withLock { $0.dropped &+= UInt64(backlog.count) }
                readerDone.store(true, ordering: .releasing)
            }
            var buffer = [UInt8](repeating: 0, count: 256)
            var endOfInput = false
            while running.load(ordering: .acquiring) {
                let taken = backlog.offer(to: deliver)
                if taken > 0 { inputCounts.withLock { $0.delivered &+= UInt64(taken) } }
                if endOfInput && backlog.isEmpty { return }
                // A pipe waits while the backlog is full; a terminal is read regardless, for Ctrl-].
                let readable = endOfInput ? 0 : interactive ? buffer.count : min(buffer.count, backlog.room)
                if readable == 0 {
                    usleep(1000)
                    continue
                }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, backlog.isEmpty ? 50 : 1)
                if ready < 0 && errno != EINTR { endOfInput = true }
                guard ready > 0 else { continue }
                let n = read(fd, &buffer, readable)
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 {
                    endOfInput = true  // what is in the backlog still goes to the guest
                    continue
                }
                var received: UInt64 = 0, dropped: UInt64 = 0
                defer { inputCounts.withLock { $0.received &+= received; $0.dropped &+= dropped } }
                for byte in buffer[0..<n] {
                    if interactive && byte == Self.escapeByte {
                        // What was typed before Ctrl-] gets its one chance, in order; then stop.
                        let taken = backlog.offer(to: deliver)
                        inputCounts.withLock { $0.delivered &+= UInt64(taken) }
                        escape()
                        return
                    }
                    received &+= 1
                    if !backlog.append(byte) { dropped &+= 1 }
                }
            }
        }
    }

    /// Stops reading input, writes out the guest's last output (waiting at most
    /// `outputFlushLimitNanoseconds`) and gives the terminal back in the mode it had.
    public func stop() {
        running.store(false, ordering: .releasing)
        while !readerDone.load(ordering: .acquiring) { usleep(1000) }
        output.flush(untilHostNanoseconds: MonotonicClock.hostNanoseconds() &+ Self.outputFlushLimitNanoseconds)
        TerminalMode.restore()
    }
}

/// Console input waiting for the guest to take it: a bounded first-in, first-out queue.
struct InputBacklog {
    let capacity: Int
    private var bytes: [UInt8] = []
    /// Index in `bytes` of the oldest byte still waiting.
    private var head = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 0)
    }

    var count: Int { bytes.count - head }
    var isEmpty: Bool { count == 0 }
    /// How many more bytes fit.
    var room: Int { capacity - count }

    /// Queues `byte`; false (and nothing queued) when the backlog is full.
    mutating func append(_ byte: UInt8) -> Bool {
        guard count < capacity else { return false }
        bytes.append(byte)
        return true
    }

    /// Offers the waiting bytes to `take`, oldest first, until it refuses one or none are left;
    /// returns how many it took. A refused byte stays first in line.
    mutating func offer(to take: (UInt8) -> Bool) -> Int {
        let start = head
        while head < bytes.count, take(bytes[head]) { head += 1 }
        let taken = head - start
        if head == bytes.count {
            bytes.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= capacity {
            bytes.removeFirst(head)  // keep the array from growing past twice the capacity
            head = 0
        }
        return taken
    }
}

/// The terminal's saved mode, restored on stop and at process exit. (Stop signals are taken by
/// `SignalStop`, which ends the guest cleanly, so they restore it through `stop` too.)
enum TerminalMode {
    // Written once, before raw mode is entered and before any thread that could restore it.
    nonisolated(unsafe) private static var saved = termios()
    nonisolated(unsafe) private static var savedFD: Int32 = -1

    static func enterRaw(_ fd: Int32) {
        guard tcgetattr(fd, &saved) == 0 else { return }
        savedFD = fd
        var raw = saved
        cfmakeraw(&raw)
        // Keep output processing, so a guest's "\n" still returns the carriage on the host.
        raw.c_oflag |= tcflag_t(OPOST | ONLCR)
        tcsetattr(fd, TCSANOW, &raw)
        atexit { TerminalMode.restore() }
    }

    /// Puts the terminal back.
    static func restore() {
        guard savedFD >= 0 else { return }
        tcsetattr(savedFD, TCSANOW, &saved)
    }
}
