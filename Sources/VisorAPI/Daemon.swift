// `visor serve`: the daemon in the foreground (systemd-style). It claims the socket (a stale one
// left by a daemon that died is replaced; a live one is refused), starts the pool, answers the
// API until SIGTERM or SIGINT, then destroys its domains and removes the socket.

import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// What `visor serve` was asked.
public struct ServeRequest: Sendable {
    public var socketPath: String
    public var pcpuCount: Int
    public var scheduler: SchedulerKind
    public var defaultEngine: String
    /// pCPU i runs on host CPU i (`--pin-pcpus`).
    public var pinPCPUs: Bool

    public init(socketPath: String, pcpuCount: Int, scheduler: SchedulerKind, defaultEngine: String, pinPCPUs: Bool = false) {
        self.socketPath = socketPath; self.pcpuCount = pcpuCount; self.scheduler = scheduler
        self.defaultEngine = defaultEngine; self.pinPCPUs = pinPCPUs
    }
}

public enum Daemon {
    /// Runs the daemon until a stop signal; returns the process exit status.
    public static func run(_ request: ServeRequest) -> Int32 {
        // First, before any thread starts: every later thread (NIO's, the pool's, the domains')
        // inherits the blocked stop signals, and the one sigwait thread takes them.
        let stop = StopLatch()
        SignalStop.install { signal in stop.signal(signal) }

        let path = request.socketPath
        if let problem = claimSocket(path) {
            Launcher.printError(problem)
            return ExitStatus.unavailable
        }
        let log = ToolstackLog()
        let toolstack: Toolstack
        do {
            toolstack = try Toolstack(pcpus: request.pcpuCount, scheduler: request.scheduler,
                                      defaultEngine: request.defaultEngine, log: log, pinPCPUs: request.pinPCPUs)
        } catch {
            Launcher.printError("cannot start the pool: \(error)")
            return ExitStatus.badOption
        }
        let server = APIServer(toolstack: toolstack)
        do {
            try server.start(socketPath: path)
        } catch {
            Launcher.printError("cannot listen on \(path): \(error)")
            toolstack.shutdown()
            server.shutdown()
            return ExitStatus.unavailable
        }
        log.write("listening on \(path) (pid \(getpid()))")

        let signal = stop.wait()
        log.write("signal \(signal): stopping")
        server.stopListening()
        unlink(path)
        toolstack.shutdown()
        server.shutdown()
        return 0
    }

    /// Makes `path` free for a new socket, or says why it cannot be: creates the default
    /// folder `/run/visor` (mode 0700) when needed, removes a stale socket (one nothing accepts
    /// on), and refuses a live one or a file that is not a socket.
    static func claimSocket(_ path: String) -> String? {
        guard path.utf8.count <= SocketLocation.maximumPathBytes else {
            return "--socket \(path): a Unix socket path has at most \(SocketLocation.maximumPathBytes) bytes"
        }
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
            guard path == SocketLocation.defaultPath() else {
                return "--socket \(path): the folder \(folder) does not exist"
            }
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                return "cannot create \(folder) for the socket: \(error.localizedDescription)"
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }  // nothing there
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            return "\(path) exists and is not a socket: remove it or choose another with --socket"
        }
        switch APIClient(socketPath: path).probe() {
        case .live:
            return "another visor daemon is already listening on \(path): stop it first (visor info shows its pid), or choose another socket with --socket"
        case .stale:
            guard unlink(path) == 0 else {
                return "cannot remove the stale socket \(path): \(String(cString: strerror(errno)))"
            }
            FileHandle.standardError.write(Data("visor: removed the stale socket \(path) (no daemon answered on it)\n".utf8))
            return nil
        case .other(let why):
            return "cannot tell whether a daemon listens on \(path): \(why)"
        }
    }
}

extension APIClient {
    enum Probe: Equatable { case live, stale, other(String) }

    /// Whether a daemon accepts connections on the socket.
    func probe() -> Probe {
        do {
            let channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socketPath).wait()
            try? channel.close().wait()
            return .live
        } catch let error as IOError where error.errnoCode == ECONNREFUSED || error.errnoCode == ENOENT {
            return .stale
        } catch {
            return .other("\(error)")
        }
    }
}

/// The first stop signal, waited for by the main thread.
final class StopLatch: Sendable {
    private let state = Mutex<Int32?>(nil)
    private let semaphore = DispatchSemaphore(value: 0)

    func signal(_ number: Int32) {
        let first = state.withLock { s -> Bool in
            defer { if s == nil { s = number } }
            return s == nil
        }
        if first { semaphore.signal() } else {
            FileHandle.standardError.write(Data("visor: signal \(number): already stopping\n".utf8))
        }
    }

    func wait() -> Int32 {
        semaphore.wait()
        return state.withLock { $0 } ?? SIGTERM
    }
}
