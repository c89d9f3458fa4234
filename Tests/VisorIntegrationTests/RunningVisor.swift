// A `visor` process a test watches while it runs: its output as it comes, signals, and the
// moment it exits, measured by the test process itself (posix_spawn and waitpid).

import Foundation
import Visor
import Synchronization
import VisorBench
import VisorCore

/// Polls `condition` every millisecond for up to `seconds`; whether it came true.
func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = MonotonicClock.hostNanoseconds() &+ UInt64(seconds * 1e9)
    while !condition() {
        if MonotonicClock.hostNanoseconds() >= deadline { return false }
        usleep(1000)
    }
    return true
}

/// What a process wrote so far, filled by reader threads, and when standard error last said
/// that a guest was stopped or crashed (with one domain, or the last of several, Visor is done
/// then; the rest is process exit, and on kvm the host kernel's teardown of the VMs).
final class OutputBuffers: Sendable {
    let data = Mutex<(stdout: Data, stderr: Data)>((Data(), Data()))
    /// How many end messages standard error holds, and when the last one came.
    let endMessages = Mutex<(count: Int, at: UInt64?)>((0, nil))
    static let stoppedText = "the guest was stopped"
    static let endTexts = [Data(stoppedText.utf8), Data("the guest crashed".utf8)]

    var stoppedMessageAt: UInt64? { endMessages.withLock { $0.at } }

    func append(_ chunk: Data, isError: Bool) {
        let count = data.withLock { buffers -> Int? in
            if isError { buffers.stderr.append(chunk) } else { buffers.stdout.append(chunk) }
            guard isError else { return nil }
            return Self.endTexts.reduce(0) { total, text in
                var n = 0, from = buffers.stderr.startIndex
                while let r = buffers.stderr.range(of: text, in: from..<buffers.stderr.endIndex) { n += 1; from = r.upperBound }
                return total + n
            }
        }
        guard let count else { return }
        endMessages.withLock { if count > $0.count { $0 = (count, MonotonicClock.hostNanoseconds()) } }
    }
}

/// A `visor` process whose output can be watched while it runs, signalled, and timed. Spawned
/// and reaped here (posix_spawn, waitpid) rather than through Foundation's `Process`, whose
/// reaping lags by hundreds of milliseconds in a busy test process: the exit time is the
/// child's own. The child starts with no signal blocked, as from a shell.
final class RunningVisor {
    let pid: pid_t
    private let output = OutputBuffers()
    private let readers = DispatchGroup()
    /// When it was started (host monotonic nanoseconds).
    let started = MonotonicClock.hostNanoseconds()
    private let signalledAt = Mutex<UInt64?>(nil)
    /// The wait status once reaped.
    private var waitStatus: Int32?

    /// Starts `visor arguments`, with `environment` added to this process's environment.
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw POSIXError(.EMFILE) }
        // Close-on-exec (pipe2 is not in Swift's Glibc module): another test's child must not
        // inherit the write ends and hold the pipes open. The child gets its copies by dup2.
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let spawned = Result {
            try spawnUnmasked(Host.visorPath, arguments, environment: environment) { actions in
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
                posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
                for fd in outPipe + errPipe { posix_spawn_file_actions_addclose(&actions, fd) }
            }
        }
        close(outPipe[1])
        close(errPipe[1])
        do {
            pid = try spawned.get()
        } catch {
            close(outPipe[0])
            close(errPipe[0])
            throw error
        }
        for (fd, isError) in [(outPipe[0], false), (errPipe[0], true)] {
            DispatchQueue.global().async(group: readers) { [output] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(fd, &buffer, buffer.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    output.append(Data(buffer[0..<n]), isError: isError)
                }
                close(fd)
            }
        }
    }

    var stdout: String { String(decoding: output.data.withLock { $0.stdout }, as: UTF8.self) }
    var stderr: String { String(decoding: output.data.withLock { $0.stderr }, as: UTF8.self) }
    /// The exit status (128 + the signal if one killed it); valid once `waitForExit` returned a time.
    var status: Int32 {
        guard let waitStatus else { return -1 }
        return shellStatus(waitStatus)
    }

    /// Whether the child has exited (reaping it if so).
    private func reap() -> Bool {
        if waitStatus != nil { return true }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return false }
        waitStatus = status
        return true
    }

    /// Waits up to `seconds` for standard output to satisfy `condition`.
    func waitForOutput(seconds: Double, _ condition: (String) -> Bool) -> Bool {
        waitUntil(seconds: seconds) { condition(stdout) || reap() } && condition(stdout)
    }

    func signal(_ number: Int32) {
        signalledAt.withLock { $0 = MonotonicClock.hostNanoseconds() }
        Foundation.kill(pid, number)
    }

    /// Waits up to `seconds` for the process to exit; the seconds from the signal (or from the
    /// start, without one) to its exit, or nil when it is still running.
    func waitForExit(seconds: Double) -> Double? {
        guard waitUntil(seconds: seconds, { reap() }) else { return nil }
        let ended = MonotonicClock.hostNanoseconds()
        readers.wait()
        return Double(ended &- (signalledAt.withLock { $0 } ?? started)) / 1e9
    }

    /// When standard error first said a guest was stopped or crashed (host monotonic
    /// nanoseconds), if it did.
    var stoppedMessageAt: UInt64? { output.stoppedMessageAt }

    /// Seconds from the signal to the moment standard error said the guest was stopped, if it did.
    var secondsToStoppedMessage: Double? {
        guard let at = output.stoppedMessageAt, let sent = signalledAt.withLock({ $0 }) else { return nil }
        return Double(at &- sent) / 1e9
    }

    /// Where each of the process's threads is, from /proc (name, state, kernel wait channel and
    /// kernel stack where readable): what a stuck stop waits for.
    func threadReport() -> String {
        let tasks = "/proc/\(pid)/task"
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return "(no /proc entry)" }
        return ids.sorted().map { id in
            func read(_ name: String) -> String {
                ((try? String(contentsOfFile: "\(tasks)/\(id)/\(name)", encoding: .utf8)) ?? "?")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let state = read("stat").split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "?"
            let stack = read("stack").split(separator: "\n").prefix(6).joined(separator: " < ")
            return "thread \(id) \(read("comm")) state \(state) wchan \(read("wchan")) \(stack)"
        }.joined(separator: "\n")
    }

    /// Ends the process if it still runs (a stuck run must not outlive its test).
    func kill() {
        guard !reap() else { return }
        Foundation.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        waitStatus = status
    }
}
