// The host end of guest console output (HostConsole.write over ConsoleOutput): it never waits
// for the terminal or pipe, since guests write it under their platform lock.

import Foundation
import Testing
import Visor

@Suite("Guest console output")
struct ConsoleOutputTests {
    @Test("output reaches the pipe in order")
    func inOrder() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let console = HostConsole(inputFD: fds[0], outputFD: fds[1])
        for text in ["hello ", "from ", "a guest\n"] {
            Array(text.utf8).withUnsafeBytes { console.write($0) }
        }
        console.write(UInt8(ascii: "!"))
        console.stop()
        close(fds[1])
        let read = FileHandle(fileDescriptor: fds[0], closeOnDealloc: false).readDataToEndOfFile()
        #expect(String(decoding: read, as: UTF8.self) == "hello from a guest\n!")
        #expect(console.droppedOutputBytes == 0)
    }

    @Test("writing to a pipe nobody reads never blocks: what does not fit is dropped and counted")
    func fullPipe() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer {
            // Drain what the writer thread still pushes, so it is idle (not in write(2), which
            // would raise SIGPIPE in this process) before the pipe closes.
            _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
            var buffer = [UInt8](repeating: 0, count: 65536)
            var quiet = 0
            while quiet < 20 {
                if read(fds[0], &buffer, buffer.count) > 0 { quiet = 0 } else { quiet += 1; usleep(10_000) }
            }
            close(fds[0])
            close(fds[1])
        }
        let console = HostConsole(inputFD: fds[0], outputFD: fds[1])
        let chunk = [UInt8](repeating: 0x41, count: 4096)
        let start = Date()
        for _ in 0..<1024 { chunk.withUnsafeBytes { console.write($0) } }   // 4 MiB into a 64 KiB pipe
        let writing = Date().timeIntervalSince(start)
        console.stop()      // waits a bounded time for the rest, then drops it
        let stopping = Date().timeIntervalSince(start) - writing
        #expect(writing < 5, "4 MiB of output took \(writing) s to hand over")
        #expect(stopping < 5, "stop took \(stopping) s")
        // Everything but the pipe's 64 KiB and the writer's chunk in flight is counted as dropped.
        #expect(console.droppedOutputBytes >= UInt64(4 << 20) - UInt64(2 << 20),
                "\(console.droppedOutputBytes) bytes dropped")
    }
}
