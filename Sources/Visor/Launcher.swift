// What `visor run` does, as a library function: resolve the kernel, create the domain, connect
// the console, run, report. The CLI only parses options into a `RunRequest`.

import Foundation
import Synchronization
import VisorCore
import VisorKVM
import VisorSched
import VisorVirtio
import VisorBT
import VisorX86

/// The engines Visor offers, by the names users type.
public enum EngineRegistry {
    public static let names = ["kvm", "interp", "bt"]

    /// Why `name` names no engine, or nil when it does: the one message every command gives.
    public static func problem(withName name: String) -> String? {
        // The name comes from a file, a request or a command line: shown bounded, so a hostile
        // one cannot make the message as long as itself (found by the xlconfig fuzz target).
        let shown = name.count > 40 ? name.prefix(37) + "..." : Substring(name)
        return names.contains(name) ? nil : "unknown engine '\(shown)': choose one of \(names.joined(separator: ", "))"
    }

    /// The engines this host can run: kvm when /dev/kvm opens, and interp and bt always.
    public static func availableNames() -> [String] {
        (try? KVMSystem()) != nil ? ["kvm", "interp", "bt"] : ["interp", "bt"]
    }

    public static func engine(named name: String) -> (any Engine)? {
        switch name {
        case "kvm": return KVMEngine()
        case "interp": return InterpEngine()
        case "bt": return BTEngine()
        default: return nil
        }
    }
}

extension ExitStatus {
    /// A bad command-line option or option value (sysexits' EX_USAGE).
    public static let badOption: Int32 = 64
}

/// What `visor run`'s options allow, for the checks the command line makes before anything runs
/// (a bad value is status 64 with one of these messages) and that the launcher repeats.
public enum RunOptionLimits {
    /// Guest RAM: whole 4 KiB pages, at most `GuestMemory.maximumSize`.
    public static let memoryRange = "\(ByteSize.describe(GuestMemory.pageSize)) to \(ByteSize.describe(GuestMemory.maximumSize)), in whole 4 KiB pages"

    /// Why `bytes` of guest RAM cannot be, or nil.
    public static func memoryProblem(_ bytes: UInt64) -> String? {
        guard bytes == 0 || bytes % GuestMemory.pageSize != 0 || bytes > GuestMemory.maximumSize else { return nil }
        return "guest RAM is \(memoryRange)"
    }

    /// Why the Chrome trace cannot be written to `path`, or nil. Looks without creating anything:
    /// an existing file must be writable and not a folder; a new one needs a writable folder.
    public static func traceProblem(_ path: String) -> String? {
        guard !path.isEmpty else { return "give the path of a file to write" }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return "'\(path)' is a folder: give the path of a file to write" }
            return access(path, W_OK) == 0 ? nil : "'\(path)' cannot be written (\(String(cString: strerror(errno))))"
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "the folder '\(folder)' does not exist"
        }
        return access(folder, W_OK | X_OK) == 0
            ? nil : "the folder '\(folder)' cannot be written (\(String(cString: strerror(errno))))"
    }
}

/// One `visor run`, as parsed from the command line.
public struct RunRequest: Sendable {
    /// A kernel path or built-in guest name; or, when `configurationFiles` is not empty, unused.
    public var kernel: String
    /// xl.cfg files, one domain each, run together on the pool.
    public var configurationFiles: [String]
    public var engine: String
    public var memoryBytes: UInt64
    public var commandLine: String
    /// `path` or `path args`: the whole text is the module's string, as with GRUB's `module`.
    public var modules: [String]
    /// A Linux kernel's initial RAM disk (a multiboot kernel gets it as its first module).
    public var initrd: String?
    /// `--disk`: disks, each a raw image on virtio-blk.
    public var disks: [DiskConfiguration] = []
    /// `--net`: network interfaces, each virtio-net on a host TAP.
    public var networks: [NetworkConfiguration] = []
    /// `--console`: the console device (xl.cfg files without `console` get it too).
    public var console: ConsoleDevice = .serial
    /// Stop the guest after this long (it did not finish in time: status 6).
    public var timeout: Duration?
    /// Run the domains for this long, then stop them and report (an expected end: status 0).
    public var runFor: Duration?
    public var printStatistics: Bool
    public var vcpuCount: Int
    /// pCPUs of the pool (default: the host's CPU count).
    public var pcpuCount: Int
    public var scheduler: SchedulerKind
    /// Where to write the Chrome trace of scheduling decisions, if anywhere.
    public var tracePath: String?
    /// pCPU i runs on host CPU i (`--pin-pcpus`).
    public var pinPCPUs: Bool

    public init(kernel: String, configurationFiles: [String] = [], engine: String, memoryBytes: UInt64,
                commandLine: String, modules: [String], initrd: String? = nil, timeout: Duration?, runFor: Duration? = nil,
                printStatistics: Bool, vcpuCount: Int = 1, pcpuCount: Int = HostCPU.count,
                scheduler: SchedulerKind = .credit2, tracePath: String? = nil, pinPCPUs: Bool = false) {
        self.kernel = kernel; self.configurationFiles = configurationFiles; self.engine = engine
        self.memoryBytes = memoryBytes; self.commandLine = commandLine; self.modules = modules
        self.initrd = initrd
        self.timeout = timeout; self.runFor = runFor; self.printStatistics = printStatistics
        self.vcpuCount = vcpuCount; self.pcpuCount = pcpuCount; self.scheduler = scheduler
        self.tracePath = tracePath; self.pinPCPUs = pinPCPUs
    }
}

/// A domain to create: its configuration and how the scheduler treats it.
struct DomainPlan {
    var configuration: DomainConfiguration
    var affinities: [Affinity]
    var parameters: DomainSchedParams
    /// The config file it came from, for messages.
    var source: String?
}

public enum Launcher {
    /// The reason given to domains stopped because `--for` elapsed.
    package static let runForReason = "the --for duration passed"

    /// Runs the request to the end and returns the process exit status.
    public static func run(_ request: RunRequest) -> Int32 {
        // First, before anything starts a thread (building guests runs `make` through Process,
        // which starts one): every later thread inherits the blocked stop signals.
        let stopTarget = StopTarget()
        SignalStop.install { signal in
            guard stopTarget.stop(reason: "signal \(signal)") else {
                // No guest runs yet (the kernel may still be building, which can take minutes):
                // there is nothing to stop cleanly and the terminal is still untouched, so end
                // now rather than after the build.
                printError("stopped by a signal before the guest started")
                _exit(ExitStatus.stopped)
            }
        }

        if let path = request.tracePath, let problem = RunOptionLimits.traceProblem(path) {
            printError("--trace: \(problem)")
            return ExitStatus.badOption
        }
        let plans: [DomainPlan]
        do {
            plans = request.configurationFiles.isEmpty
                ? [DomainPlan(configuration: try makeConfiguration(request), affinities: [],
                              parameters: DomainSchedParams(), source: nil)]
                : try makePlans(request)
        } catch let error as LaunchError {
            printError(error.description)
            return error.exitStatus
        } catch {
            printError("\(error)")
            return ExitStatus.badInput
        }

        let interactive = plans.count == 1
        let console = HostConsole()
        var domains: [Domain] = []
        for plan in plans {
            // With several domains, each console line goes out prefixed with its domain's name.
            let output: @Sendable (UInt8) -> Void
            if interactive {
                output = { byte in console.write(byte) }
            } else {
                let prefixer = LinePrefixer(prefix: "[\(plan.configuration.name)] ", console: console)
                output = { byte in prefixer.write(byte) }
            }
            do {
                let name = plan.configuration.name, several = plans.count > 1
                domains.append(try Domain(configuration: plan.configuration, consoleOutput: output,
                                          notice: { printError("\(several ? "[\(name)] " : "")\($0)") }))
            } catch let error as KVMError {
                printError(error.description)
                return ExitStatus.unavailable
            } catch {
                printError("\(plan.source.map { "\($0): " } ?? "")\(error)")
                return ExitStatus.badInput
            }
        }

        let pool: CPUPool
        do {
            pool = try CPUPool(kind: request.scheduler, pcpuCount: request.pcpuCount, tracePath: request.tracePath,
                               pinHostCPUs: request.pinPCPUs)
            for (index, (domain, plan)) in zip(domains, plans).enumerated() {
                try domain.start(in: pool, id: DomainID(UInt32(index + 1)), affinities: plan.affinities,
                                 parameters: plan.parameters)
            }
        } catch let error as LaunchError {
            printError(error.description)
            return error.exitStatus
        } catch {
            printError("the scheduler refused the domains: \(error)")
            return ExitStatus.badInput
        }
        guard stopTarget.attach(domains) else {
            for d in domains { d.requestStop(reason: "a signal came before the guests started") }
            for d in domains { _ = d.wait() }
            printError("stopped by a signal before the guest started")
            return ExitStatus.stopped
        }
        let started = monotonicNanoseconds()
        let allDomains = domains
        pool.start()
        for (limit, reason) in [(request.timeout, "the time limit of \(request.timeout.map { "\($0)" } ?? "") passed"),
                                (request.runFor, runForReason)] {
            guard let limit else { continue }
            // A plain thread, not a dispatch queue: every thread must start after SignalStop
            // blocked the stop signals, and dispatch's workers may predate that.
            let deadline = started &+ UInt64(max(0, limit.nanosecondsClamped))
            _ = HostThread {
                while monotonicNanoseconds() < deadline, !allDomains.allSatisfy(\.hasEnded) { usleep(10_000) }
                for d in allDomains { d.requestStop(reason: reason) }
            }
        }
        if interactive, let domain = allDomains.first {
            console.startInput(deliver: { domain.sendConsoleInput($0) },
                               escape: { domain.requestStop(reason: "Ctrl-] on the console") })
        }
        var rows: [ShareRow] = []
        var outcomes: [DomainOutcome] = []
        for (domain, plan) in zip(domains, plans) {
            let outcome = domain.wait()
            outcomes.append(outcome)
            rows.append(ShareRow(name: domain.configuration.name, id: domain.domainID?.rawValue ?? 0,
                                 vcpus: domain.configuration.vcpuCount, parameters: plan.parameters,
                                 cpuNanoseconds: domain.cpuNanoseconds, outcome: outcome))
        }
        let wall = monotonicNanoseconds() &- started
        pool.stop()
        console.stop()
        if console.droppedOutputBytes > 0 {
            printError("\(console.droppedOutputBytes) bytes of guest console output were dropped: the terminal or pipe did not take them in time")
        }

        for (domain, outcome) in zip(domains, outcomes) {
            guard let message = outcome.message, outcome != .stopped(reason: runForReason) else { continue }
            printError(interactive ? message : "\(domain.configuration.name): \(message)")
        }
        if request.printStatistics {
            for domain in domains {
                let header = interactive ? "" : "\(domain.configuration.name):\n"
                var statistics = domain.exitStatistics
                if interactive { statistics.consoleInput = console.inputStatistics }  // input went to it
                FileHandle.standardError.write(Data((header + statistics.report + "\n").utf8))
            }
        }
        // Config-file runs always end with the table (also when stopped by Ctrl-C); a kernel
        // run shows it with --for or --stats.
        if !request.configurationFiles.isEmpty || request.runFor != nil || request.printStatistics {
            let table = ShareRow.table(rows, wallNanoseconds: wall, pcpus: request.pcpuCount,
                                       scheduler: request.scheduler.name)
            FileHandle.standardOutput.write(Data((table + "\n").utf8))
        }
        return exitStatus(outcomes)
    }

    /// One domain: its own status, `--for` ending it counting as success. Several: 0 when all
    /// powered off or ran their time, else the first other status.
    static func exitStatus(_ outcomes: [DomainOutcome]) -> Int32 {
        for outcome in outcomes where outcome != .poweredOff && outcome != .stopped(reason: runForReason) {
            return outcome.exitStatus
        }
        return 0
    }

    static func makeConfiguration(_ request: RunRequest) throws -> DomainConfiguration {
        guard let engine = EngineRegistry.engine(named: request.engine) else {
            throw LaunchError.badOption(EngineRegistry.problem(withName: request.engine) ?? request.engine)
        }
        if let problem = RunOptionLimits.memoryProblem(request.memoryBytes) {
            throw LaunchError.badOption("--memory \(ByteSize.describe(request.memoryBytes)): \(problem)")
        }
        let resolved = try resolveKernel(request.kernel)
        let kernel = try readFile(resolved.path, what: "kernel")
        let modules = try request.modules.map { text -> BootModule in
            let path = String(text.split(separator: " ", maxSplits: 1).first ?? "")
            return BootModule(name: text, bytes: try readFile(path, what: "module"))
        }
        let initrdPath = request.initrd ?? resolved.initrd
        let initrd = try initrdPath.map { BootModule(name: $0, bytes: try readFile($0, what: "initrd")) }
        var configuration = DomainConfiguration(
            name: resolved.description, kernelDescription: resolved.description, kernel: kernel,
            memoryBytes: request.memoryBytes,
            commandLine: resolved.commandLine(adding: request.commandLine, disks: request.disks.count,
                                              ownInitrd: request.initrd == nil),
            modules: modules, initrd: initrd, engine: engine, vcpuCount: request.vcpuCount)
        configuration.disks = try checkedDisks(request.disks, what: "--disk")
        configuration.networks = try checkedNetworks(request.networks, disks: request.disks.count, what: "--net")
        configuration.console = request.console
        return configuration
    }

    /// A kernel as `visor run` found it: a file, a built guest, or a fetched guest with its
    /// initial RAM disk and command line.
    struct ResolvedKernel {
        var path: String
        var description: String
        /// A fetched guest's initial RAM disk (`--initrd` or xl.cfg `ramdisk` replace it).
        var initrd: String?
        /// A fetched guest's own command line, which the user's text extends.
        var baseCommandLine: String?

        /// The command line the kernel gets: the guest's own, then `extra`. A fetched guest
        /// (its initramfs mounts `root=/dev/vdX` and switches to it) given disks and its own
        /// initrd gets `root=/dev/vda` after them, unless the line already says `root=`: the
        /// first disk is its root disk, as `visor run linux --disk root.img` means. A disk it
        /// cannot mount, or one without /sbin/init, leaves it in the initramfs's shell, saying why.
        func commandLine(adding extra: String, disks: Int = 0, ownInitrd: Bool = true) -> String {
            guard let base = baseCommandLine else { return extra }
            var line = extra.isEmpty ? base : base + " " + extra
            let namesRoot = line.split(separator: " ").contains { $0.hasPrefix("root=") }
            if disks > 0 && ownInitrd && !namesRoot { line += " root=/dev/vda" }
            return line
        }
    }

    /// A path if such a file exists (or the text looks like a path), else a built-in guest name:
    /// one built from Guests/, or one fetched by its script (`linux`).
    static func resolveKernel(_ text: String) throws -> ResolvedKernel {
        if FileManager.default.fileExists(atPath: text) || text.contains("/") || text.hasSuffix(".elf") {
            return ResolvedKernel(path: text, description: text)
        }
        do {
            let catalog = GuestCatalog.standard()
            if let fetched = try catalog.fetchedGuest(named: text) {
                return ResolvedKernel(path: fetched.kernel.path, description: text, initrd: fetched.initrd.path,
                                      baseCommandLine: fetched.commandLine)
            }
            return ResolvedKernel(path: try catalog.image(named: text).path, description: text)
        } catch let error as GuestCatalogError {
            throw LaunchError.guest(error)
        }
    }

    /// The disks, each opened once now so a missing, directory or unreadable image is reported
    /// before anything starts (the domain opens them again for itself).
    static func checkedDisks(_ disks: [DiskConfiguration], what: String) throws -> [DiskConfiguration] {
        guard disks.count <= VirtioPlacement.maximumDevices else {
            throw LaunchError.badInput("\(what): \(disks.count) disks: a domain may have at most \(VirtioPlacement.maximumDevices)")
        }
        for disk in disks {
            do {
                _ = try RawDiskImage(path: disk.path, readOnly: disk.readOnly)
            } catch {
                throw LaunchError.badInput("\(what): \(error.description)")
            }
        }
        return disks
    }

    /// The network interfaces, if the virtio devices (disks first) fit the placement. The TAPs
    /// are opened by the domain, which reports what the host refuses.
    static func checkedNetworks(_ networks: [NetworkConfiguration], disks: Int, what: String) throws -> [NetworkConfiguration] {
        guard disks + networks.count <= VirtioPlacement.maximumDevices else {
            throw LaunchError.badInput("\(what): \(disks) disks and \(networks.count) network interfaces: a domain may have at most \(VirtioPlacement.maximumDevices) virtio devices in all")
        }
        return networks
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

/// Where a stop signal goes: the domains once they exist, or a note that one came too early.
final class StopTarget: Sendable {
    private let state = Mutex<(domains: [Domain], earlyReason: String?)>(([], nil))

    /// Asks the attached domains to stop; false when none is attached yet (the request is noted,
    /// and `attach` will refuse).
    @discardableResult
    func stop(reason: String) -> Bool {
        let domains = state.withLock { s -> [Domain]? in
            guard !s.domains.isEmpty else {
                if s.earlyReason == nil { s.earlyReason = reason }
                return nil
            }
            return s.domains
        }
        guard let domains else { return false }
        for domain in domains { domain.requestStop(reason: reason) }
        return true
    }

    /// Connects the domains; false when a stop signal already came.
    func attach(_ domains: [Domain]) -> Bool {
        state.withLock { s in
            s.domains = domains
            return s.earlyReason == nil
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP stop the guest cleanly (so the terminal is restored and statistics
/// printed): they are blocked in every thread and taken by one thread with sigwait. Install it
/// before any other thread starts, so that they all inherit the mask (`visor serve` does too).
public enum SignalStop {
    public static func install(_ handler: @escaping @Sendable (Int32) -> Void) {
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
