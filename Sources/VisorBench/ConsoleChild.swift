// Child processes of the benchmarks: `visor run` and QEMU with their console on pipes (`visor
// bench linux`), and host programs run to completion (QEMU, the C compiler, the C reference).

import Foundation
import Visor

/// A child process whose standard input is a pipe from us and whose standard output and error
/// go into one pipe to us.
final class ConsoleChild {
    let pid: pid_t
    private var input: Int32
    private var output: Int32

    private init(pid: pid_t, input: Int32, output: Int32) {
        self.pid = pid; self.input = input; self.output = output
    }

    enum ReadResult { case bytes(Int), nothingYet, endOfFile }

    /// Starts `path` with `arguments` and this process's environment, with every signal at its
    /// default action and none blocked (a child inherits the mask of the thread that spawns it).
    static func spawn(_ path: String, _ arguments: [String]) throws -> ConsoleChild {
        // Close-on-exec (pipe2 is not in Glibc's Swift overlay): only the copies below reach the child.
        func closeOnExecPipe() throws -> [Int32] {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            return ends
        }
        let toChild = try closeOnExecPipe()
        let fromChild: [Int32]
        do { fromChild = try closeOnExecPipe() } catch {
            close(toChild[0]); close(toChild[1])
            throw error
        }
        let pid: pid_t
        do {
            // dup2 clears close-on-exec on the copies; the originals close at exec.
            pid = try spawnUnmasked(path, arguments) { actions in
                posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
                posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
                posix_spawn_file_actions_adddup2(&actions, fromChild[1], 2)
            }
        } catch {
            for end in toChild + fromChild { close(end) }
            throw BenchmarkError.guestFailed("cannot start \(path): \(String(cString: strerror(error.code.rawValue)))")
        }
        close(toChild[0])
        close(fromChild[1])
        return ConsoleChild(pid: pid, input: toChild[1], output: fromChild[0])
    }

    /// Reads what the child has written, waiting up to `waitingMilliseconds` for something.
    func read(into buffer: inout [UInt8], waitingMilliseconds: Int32) -> ReadResult {
        var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, waitingMilliseconds)
        guard ready > 0 else { return .nothingYet }     // timeout, or EINTR
        let count = buffer.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
        if count > 0 { return .bytes(count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return .nothingYet }
        return .endOfFile
    }

    /// Writes `bytes` to the child's standard input (a few bytes: a pipe takes them at once);
    /// a child that has gone gives EPIPE, which its exit status then explains.
    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(input, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }

    /// Waits for the child to exit: its status as a shell shows it (128 + signal when a signal
    /// ended it) and the host CPU time it used, user + system, from wait4(2).
    func wait() -> (status: Int32, cpuSeconds: Double) {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return (shellStatus(status), seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }

    /// Ends the child at once (a hang) and reaps it.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        _ = wait()
    }

    /// Runs `path` with `arguments` to completion with no standard input (the pipe to it is
    /// closed at once): its exit status as a shell shows it and everything it wrote to standard
    /// output and error, together.
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let child = try spawn(path, arguments)
        defer { child.closePipes() }
        close(child.input)
        child.input = -1
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        reading: while true {
            switch child.read(into: &buffer, waitingMilliseconds: 1000) {
            case .bytes(let count): output += buffer[0..<count]
            case .nothingYet: continue
            case .endOfFile: break reading
            }
        }
        return (child.wait().status, String(decoding: output, as: UTF8.self))
    }

    func closePipes() {
        if input >= 0 { close(input); input = -1 }
        if output >= 0 { close(output); output = -1 }
    }

    /// User + system CPU seconds of every thread of process `pid` so far (/proc/PID/stat's utime
    /// and stime, in clock ticks), or nil when it cannot be read.
    static func cpuSeconds(of pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let nameEnd = text.lastIndex(of: ")") else { return nil }
        // After the command name: state (field 3) … utime (14), stime (15).
        let fields = text[text.index(after: nameEnd)...].split(separator: " ")
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]),
              ticksPerSecond > 0 else { return nil }
        return (user + system) / ticksPerSecond
    }
}
