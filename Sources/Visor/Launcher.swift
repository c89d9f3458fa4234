// What `visor run` does, as a library function: resolve the kernel, create the domain, connect
// the console, run, report. The CLI only parses options into a `RunRequest`.

import Foundation
import Synchronization
import VisorCore
import VisorKVM
import VisorX86

/// The engines Visor offers, by the names users type.
public enum EngineRegistry {
    public static let names = ["kvm", "interp"]

    /// Why `name` names no engine, or nil when it does: the one message every command gives.
    public static func problem(withName name: String) -> String? {
        names.contains(name) ? nil : "unknown engine '\(name)': choose one of \(names.joined(separator: ", "))"
    }

    /// The engines this host can run: kvm when /dev/kvm opens, and interp always.
    public static func availableNames() -> [String] {
        (try? KVMSystem()) != nil ? ["kvm", "interp"] : ["interp"]
    }

    public static func engine(named name: String) -> (any Engine)? {
        switch name {
        case "kvm": return KVMEngine()
        case "interp": return InterpEngine()
        default: return nil
        }
    }
}

/// One `visor run`, as parsed from the command line.
public struct RunRequest: Sendable {
    public var kernel: String
    public var engine: String
    public var memoryBytes: UInt64
    public var commandLine: String
    /// `path` or `path args`: the whole text is the module's string, as with GRUB's `module`.
    public var modules: [String]
    public var timeout: Duration?
    public var printStatistics: Bool
    public var vcpuCount: Int

    public init(kernel: String, engine: String, memoryBytes: UInt64, commandLine: String, modules: [String],
                timeout: Duration?, printStatistics: Bool, vcpuCount: Int = 1) {
        self.kernel = kernel; self.engine = engine; self.memoryBytes = memoryBytes; self.commandLine = commandLine
        self.modules = modules; self.timeout = timeout; self.printStatistics = printStatistics
        self.vcpuCount = vcpuCount
    }
}

public enum Launcher {
    /// Runs the request to the end and returns the process exit status.
    public static func run(_ request: RunRequest) -> Int32 {
        // First, before anything starts a thread (building guests runs `make` through Process,
        // which starts one): every later thread inherits the blocked stop signals.
        let stopTarget = StopTarget()
        SignalStop.install { signal in stopTarget.stop(reason: "signal \(signal)") }

        let configuration: DomainConfiguration
        do {
            configuration = try makeConfiguration(request)
        } catch let error as LaunchError {
            printError(error.description)
            return error.exitStatus
        } catch {
            printError("\(error)")
            return ExitStatus.badInput
        }

        let console = HostConsole()
        let domain: Domain
        do {
            domain = try Domain(configuration: configuration) { byte in console.write(byte) }
        } catch let error as KVMError {
            printError(error.description)
            return ExitStatus.unavailable
        } catch {
            printError("\(error)")
            return ExitStatus.badInput
        }

        guard stopTarget.attach(domain) else {
            printError("stopped by a signal before the guest started")
            return ExitStatus.stopped
        }
        if let timeout = request.timeout {
            // A plain thread, not a dispatch queue: every thread must start after SignalStop
            // blocked the stop signals, and dispatch's workers may predate that.
            let deadline = monotonicNanoseconds() &+ UInt64(max(0, timeout.nanosecondsClamped))
            _ = HostThread {
                while monotonicNanoseconds() < deadline { usleep(10_000) }
                domain.requestStop(reason: "the time limit of \(timeout) passed")
            }
        }
        console.startInput(deliver: { domain.sendConsoleInput($0) },
                           escape: { domain.requestStop(reason: "Ctrl-] on the console") })
        let outcome = domain.run()
        console.stop()

        if let message = outcome.message { printError(message) }
        if request.printStatistics {
            FileHandle.standardError.write(Data((domain.exitStatistics.report + "\n").utf8))
        }
        return outcome.exitStatus
    }

    static func makeConfiguration(_ request: RunRequest) throws -> DomainConfiguration {
        guard let engine = EngineRegistry.engine(named: request.engine) else {
            throw LaunchError.badOption(EngineRegistry.problem(withName: request.engine) ?? request.engine)
        }
        let (kernelPath, kernelDescription) = try resolveKernel(request.kernel)
        let kernel = try readFile(kernelPath, what: "kernel")
        let modules = try request.modules.map { text -> BootModule in
            let path = String(text.split(separator: " ", maxSplits: 1).first ?? "")
            return BootModule(name: text, bytes: try readFile(path, what: "module"))
        }
        return DomainConfiguration(name: kernelDescription, kernelDescription: kernelDescription, kernel: kernel,
                                   memoryBytes: request.memoryBytes, commandLine: request.commandLine,
                                   modules: modules, engine: engine, vcpuCount: request.vcpuCount)
    }

    /// A path if such a file exists (or the text looks like a path), else a built-in guest name.
    static func resolveKernel(_ text: String) throws -> (path: String, description: String) {
        if FileManager.default.fileExists(atPath: text) || text.contains("/") || text.hasSuffix(".elf") {
            return (text, text)
        }
        do {
            return (try GuestCatalog.standard().image(named: text).path, text)
        } catch let error as GuestCatalogError {
            throw LaunchError.guest(error)
        }
    }

    static func readFile(_ path: String, what: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw LaunchError.badInput("\(what) '\(path)' does not exist")
        }
        guard !isDirectory.boolValue else { throw LaunchError.badInput("\(what) '\(path)' is a directory") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LaunchError.badInput("\(what) '\(path)' cannot be read")
        }
        return [UInt8](data)
    }

    /// Prints `visor: message` on standard error.
    public static func printError(_ message: String) {
        FileHandle.standardError.write(Data("visor: \(message)\n".utf8))
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at Int64.max.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled &+ attoseconds / 1_000_000_000
    }
}

/// Problems found before the guest starts.
enum LaunchError: Error, CustomStringConvertible {
    case badInput(String)
    case badOption(String)
    case guest(GuestCatalogError)

    var description: String {
        switch self {
        case .badInput(let m), .badOption(let m): return m
        case .guest(let e): return e.description
        }
    }

    var exitStatus: Int32 {
        switch self {
        case .badInput, .badOption: return ExitStatus.badInput
        case .guest(.unknownGuest): return ExitStatus.badInput
        case .guest: return ExitStatus.internalFailure
        }
    }
}

/// Where a stop signal goes: the domain once it exists, or a note that one came too early.
final class StopTarget: Sendable {
    private let state = Mutex<(domain: Domain?, earlyReason: String?)>((nil, nil))

    func stop(reason: String) {
        let domain = state.withLock { s -> Domain? in
            if s.domain == nil, s.earlyReason == nil { s.earlyReason = reason }
            return s.domain
        }
        domain?.requestStop(reason: reason)
    }

    /// Connects the domain; false when a stop signal already came.
    func attach(_ domain: Domain) -> Bool {
        state.withLock { s in
            s.domain = domain
            return s.earlyReason == nil
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP stop the guest cleanly (so the terminal is restored and statistics
/// printed): they are blocked in every thread and taken by one thread with sigwait.
enum SignalStop {
    static func install(_ handler: @escaping @Sendable (Int32) -> Void) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let waitSet = set
        _ = HostThread {
            var set = waitSet
            var number: Int32 = 0
            while sigwait(&set, &number) == 0 {
                handler(number)
            }
        }
    }
}
