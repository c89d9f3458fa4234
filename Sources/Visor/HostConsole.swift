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
public final class HostConsole: Sendable {
    /// Ctrl-], the key that ends an interactive session.
    public static let escapeByte: UInt8 = 0x1d

    private let running = Atomic<Bool>(false)
    private let readerDone = Atomic<Bool>(true)
    private let output: ConsoleOutput
    private let inputFD: Int32

    public init(inputFD: Int32 = STDIN_FILENO, outputFD: Int32 = STDOUT_FILENO) {
        self.inputFD = inputFD
        output = ConsoleOutput(fd: outputFD)
    }

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
    /// guest cannot take it yet (its receive FIFO is full); the byte is offered again shortly.
    /// `escape` runs when the user types Ctrl-] on an interactive terminal.
    public func startInput(deliver: @escaping @Sendable (UInt8) -> Bool, escape: @escaping @Sendable () -> Void) {
        let interactive = isatty(inputFD) == 1
        if interactive { TerminalMode.enterRaw(inputFD) }
        running.store(true, ordering: .releasing)
        readerDone.store(false, ordering: .releasing)
        let fd = inputFD
        _ = HostThread { [self] in
            defer { readerDone.store(true, ordering: .releasing) }
            var buffer = [UInt8](repeating: 0, count: 256)
            while running.load(ordering: .acquiring) {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 50)
                if ready < 0 && errno != EINTR { return }
                guard ready > 0 else { continue }
                let n = read(fd, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }  // end of input: the guest just gets no more bytes
                for byte in buffer[0..<n] {
                    if interactive && byte == Self.escapeByte {
                        escape()
                        return
                    }
                    while !deliver(byte) {
                        guard running.load(ordering: .acquiring) else { return }
                        usleep(1000)
                    }
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
