// Console input from the host to a guest: which of the guest's consoles takes a byte
// (`Domain.sendConsoleInput`), the host console's reader (`HostConsole`: Ctrl-] however full the
// guest is, nothing lost from a pipe), and `visor run` driven through a pseudo-terminal.

import Foundation
import Synchronization
import Testing
import VisorABI
@testable import Visor

private let engines = Host.engines

/// A pseudo-terminal pair in raw mode: the test types on `master`; `slave` is the terminal a
/// program under test reads (a tty, so `HostConsole` treats it as interactive).
final class PseudoTerminal: @unchecked Sendable {
    let master: Int32
    private(set) var slave: Int32
    private let output = Mutex(Data())
    private let reading = Atomic<Bool>(false)
    private let readerDone = Atomic<Bool>(true)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init() throws {
        var master: Int32 = -1, slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, nil) == 0 else {
            throw Failure(description: "openpty: errno \(errno)")
        }
        // Not inherited by the other programs tests start meanwhile (a child given the slave as
        // its standard input and output gets its own copies).
        _ = fcntl(master, F_SETFD, FD_CLOEXEC)
        _ = fcntl(slave, F_SETFD, FD_CLOEXEC)
        self.master = master
        self.slave = slave
        // Raw from the start, so keys typed before the program switches the mode itself are
        // neither held for a line nor echoed.
        var mode = termios()
        tcgetattr(slave, &mode)
        cfmakeraw(&mode)
        tcsetattr(slave, TCSANOW, &mode)
    }

    deinit {
        reading.store(false, ordering: .releasing)
        while !readerDone.load(ordering: .acquiring) { usleep(1000) }
        closeSlave()
        close(master)
    }

    /// Closes this process's copy of the slave (once a child has its own).
    func closeSlave() {
        if slave >= 0 { close(slave) }
        slave = -1
    }

    /// Writes `bytes` as if typed.
    func type(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                Issue.record("writing to the pseudo-terminal failed after \(offset) of \(bytes.count) bytes (errno \(errno))")
                return
            }
            offset += n
        }
    }

    /// Starts collecting what the program writes to the terminal (it must be drained, or a
    /// program that writes much blocks).
    func startReading() {
        reading.store(true, ordering: .releasing)
        readerDone.store(false, ordering: .releasing)
        Thread.detachNewThread { [self] in
            defer { readerDone.store(true, ordering: .releasing) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while reading.load(ordering: .acquiring) {
                var poller = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 50) > 0 else { continue }
                let n = read(master, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }  // EIO: every slave descriptor is closed
                output.withLock { $0.append(contentsOf: buffer[0..<n]) }
            }
        }
    }

    var screen: String { output.withLock { String(decoding: $0, as: UTF8.self) } }
}

@Suite("Console input", .serialized, .timeLimit(.minutes(5)))
struct ConsoleInputTests {
    @Test("a guest that reads its input through PV gets every byte once, however many: COM1's full FIFO refuses none")
    func pvGuestGetsEveryByteOnce() throws {
        let domain = try idleHelloDomain()
        domain.platform.lock.withLock { domain.pv.bind(1, .virq(VIRQ.console, vcpu: 0)) }  // as bind_virq does
        let typed = (0..<100).map { UInt8(truncatingIfNeeded: 0x21 + $0 % 90) }
        let refused = typed.indices.filter { !domain.sendConsoleInput(typed[$0]) }
        #expect(refused.isEmpty, "bytes refused: \(refused)")
        let queued = domain.platform.lock.withLock { domain.pv.takeConsoleInput(4096) }
        #expect(queued == typed)
    }

    @Test("a guest that never asked for PV input gets it in COM1, and the PV queue stays empty")
    func nativeGuestGetsCOM1() throws {
        let domain = try idleHelloDomain()
        #expect(domain.sendConsoleInput(0x41))
        #expect(domain.platform.lock.withLock { domain.pv.consoleInputCount } == 0)
        // The guest never turned COM1's FIFO on: its one-byte holding register is full.
        #expect(!domain.sendConsoleInput(0x42))
        #expect(domain.platform.lock.withLock { domain.pv.consoleInputCount } == 0)
    }

    @Test("Ctrl-] ends an interactive session even behind bytes the guest does not take")
    func escapeBehindRefusedInput() throws {
        let terminal = try PseudoTerminal()
        let console = HostConsole(inputFD: terminal.slave, outputFD: terminal.slave)
        let taken = Mutex<[UInt8]>([])
        let escaped = Atomic<Bool>(false)
        // A guest whose 16-byte FIFO fills and is never read.
        console.startInput(deliver: { byte in
            taken.withLock { taken in
                guard taken.count < 16 else { return false }
                taken.append(byte)
                return true
            }
        }, escape: { escaped.store(true, ordering: .releasing) })
        let typed = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        terminal.type(typed + [HostConsole.escapeByte])
        #expect(waitUntil(seconds: 20) { escaped.load(ordering: .acquiring) }, "Ctrl-] was not seen")
        console.stop()
        #expect(taken.withLock { $0 } == Array(typed.prefix(16)))
        var expected = ConsoleInputStatistics()
        expected.received = 36
        expected.delivered = 16
        expected.dropped = 20  // waiting in the backlog when the session ended
        #expect(console.inputStatistics == expected)
    }

    @Test("typing on while the backlog is full drops the excess and counts it; Ctrl-] still works")
    func fullBacklogDrops() throws {
        let terminal = try PseudoTerminal()
        let console = HostConsole(inputFD: terminal.slave, outputFD: terminal.slave)
        let escaped = Atomic<Bool>(false)
        console.startInput(deliver: { _ in false }, escape: { escaped.store(true, ordering: .releasing) })
        let chunks = HostConsole.inputBacklogCapacity / 100 + 10
        let typed = chunks * 100
        for _ in 0..<chunks { terminal.type([UInt8](repeating: 0x61, count: 100)) }
        #expect(waitUntil(seconds: 20) { console.inputStatistics.received == UInt64(typed) },
                "read \(console.inputStatistics.received) of \(typed)")
        terminal.type([HostConsole.escapeByte])
        #expect(waitUntil(seconds: 20) { escaped.load(ordering: .acquiring) }, "Ctrl-] was not seen")
        console.stop()
        let counts = console.inputStatistics
        #expect(counts.delivered == 0 && counts.dropped == UInt64(typed), "\(counts)")
    }

    @Test("a pipe loses nothing: input beyond the backlog waits in the pipe until the guest takes it")
    func pipeLosesNothing() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let console = HostConsole(inputFD: ends[0], outputFD: STDERR_FILENO)
        defer { close(ends[0]) }
        let sent = (0..<(3 * HostConsole.inputBacklogCapacity)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let taken = Mutex<[UInt8]>([])
        let calls = Atomic<Int>(0)
        let guestReads = Atomic<Bool>(false)
        // A guest that takes nothing at first, then most bytes (every 64th offer is refused).
        console.startInput(deliver: { byte in
            guard guestReads.load(ordering: .acquiring),
                  calls.add(1, ordering: .relaxed).newValue % 64 != 0 else { return false }
            taken.withLock { $0.append(byte) }
            return true
        }, escape: {})
        let written = sent.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
        close(ends[1])  // end of input long before the guest has taken it all
        #expect(written == sent.count)
        // The backlog fills and the rest stays in the pipe: nothing more is read meanwhile.
        let capacity = UInt64(HostConsole.inputBacklogCapacity)
        #expect(waitUntil(seconds: 20) { console.inputStatistics.received == capacity })
        usleep(100_000)
        #expect(console.inputStatistics.received == capacity)
        guestReads.store(true, ordering: .releasing)
        #expect(waitUntil(seconds: 20) { taken.withLock { $0.count } == sent.count },
                "taken \(taken.withLock { $0.count }) of \(sent.count)")
        console.stop()
        #expect(taken.withLock { $0 } == sent)
        #expect(console.inputStatistics.dropped == 0)
        #expect(console.inputStatistics.delivered == UInt64(sent.count))
    }

    @Test("the backlog is first in, first out, bounded, and keeps a refused byte first in line")
    func backlogOrder() {
        var backlog = InputBacklog(capacity: 4)
        let firstFour = [UInt8]([1, 2, 3, 4]).map { backlog.append($0) }
        #expect(firstFour == [true, true, true, true])
        let fifth = backlog.append(5)
        #expect(!fifth && backlog.count == 4 && backlog.room == 0)
        var seen: [UInt8] = []
        let firstTaken = backlog.offer { byte in seen.append(byte); return byte < 3 }
        #expect(firstTaken == 2 && seen == [1, 2, 3] && backlog.count == 2)
        let more = [UInt8]([6, 7, 8]).map { backlog.append($0) }
        #expect(more == [true, true, false])
        seen = []
        let secondTaken = backlog.offer { seen.append($0); return true }
        #expect(secondTaken == 4 && seen == [3, 4, 6, 7] && backlog.isEmpty && backlog.room == 4)
        // Many rounds of partial takes: the order holds and storage is reused.
        var next: UInt8 = 0, expected: UInt8 = 0
        for round in 0..<1000 {
            while backlog.append(next) { next &+= 1 }
            var budget = round % 3 + 1
            _ = backlog.offer { byte in
                guard budget > 0 else { return false }
                budget -= 1
                #expect(byte == expected)
                expected &+= 1
                return true
            }
        }
    }
}

@Suite("Console input through visor run", .serialized, .timeLimit(.minutes(5)))
struct ConsoleEscapeTests {
    @Test("visor run: Ctrl-] stops a guest that reads no input after more than a FIFO's worth was typed; --stats counts the dropped input",
          arguments: engines)
    func escapeStopsGuestWithFullInput(engine: String) throws {
        _ = try guestImage("cpuhog")  // built before the clock starts
        let terminal = try PseudoTerminal()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Host.visorPath)
        process.arguments = ["run", "cpuhog", "--engine", engine, "--cmdline", "ms=60000", "--stats", "--timeout", "120s"]
        let tty = FileHandle(fileDescriptor: terminal.slave, closeOnDealloc: false)
        process.standardInput = tty
        process.standardOutput = tty
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        terminal.closeSlave()
        terminal.startReading()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        nonisolated(unsafe) var errorData = Data()
        let drained = DispatchGroup()
        DispatchQueue.global().async(group: drained) { errorData = errors.fileHandleForReading.readDataToEndOfFile() }

        #expect(waitUntil(seconds: 30) { terminal.screen.contains("cpuhog: ms=60000") }, "screen: \(terminal.screen)")
        // cpuhog spins with interrupts off and never reads COM1: its 16-byte FIFO fills.
        let typed = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        terminal.type(typed)
        terminal.type([HostConsole.escapeByte])
        let ended = waitUntil(seconds: 20) { !process.isRunning }
        #expect(ended, "visor did not end within 20 s of Ctrl-]")
        if !ended { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        drained.wait()
        let stderr = String(decoding: errorData, as: UTF8.self)
        #expect(process.terminationStatus == 6, "stderr: \(stderr)")
        #expect(stderr.contains("Ctrl-]"), "stderr: \(stderr)")
        // COM1's FIFO took 16; the other 20 waited for a guest that never read them.
        #expect(stderr.contains("console input: 36 bytes read, 16 taken by the guest, 20 dropped"), "stderr: \(stderr)")
    }
}
