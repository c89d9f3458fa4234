// What `visor serve` owns: one CPU pool and its scheduler, the domains created on it while it
// runs, and the log `visor dmesg` reads. Library code without any transport: the API server
// (VisorAPI) turns requests into these calls and their errors into HTTP statuses.
//
// Domains are made exactly as `visor run a.cfg` makes them (`Launcher.plan(for:request:)`, then
// `Domain`), and started on the shared pool as `Launcher.run` starts several. A domain that ends
// by itself is destroyed, restarted or preserved as its `on_poweroff`, `on_reboot` or `on_crash`
// says (xl's defaults: destroy, restart, destroy); the outcome and the action are logged.

import Foundation
import Synchronization
import VisorSched

/// A domain as `visor list` shows it.
public struct DomainInfo: Codable, Sendable, Equatable {
    public var name: String
    public var id: UInt32
    public var memoryMiB: UInt64
    public var vcpus: Int
    /// xl's six state letters: r(unning) b(locked) p(aused) s(hutdown) c(rashed) d(ying), '-' when not.
    public var state: String
    public var paused: Bool
    /// Host nanoseconds its vCPUs have held a pCPU (the scheduler's accounting).
    public var cpuNanoseconds: UInt64
    public var engine: String
    public var kernel: String
    /// Credit and credit2: its weight and cap now (nil under other schedulers).
    public var weight: Int?
    public var cap: Int?
    /// Console bytes the guest has written.
    public var consoleBytes: UInt64

    public init(name: String, id: UInt32, memoryMiB: UInt64, vcpus: Int, state: String, paused: Bool,
                cpuNanoseconds: UInt64, engine: String, kernel: String, weight: Int?, cap: Int?, consoleBytes: UInt64) {
        self.name = name; self.id = id; self.memoryMiB = memoryMiB; self.vcpus = vcpus; self.state = state
        self.paused = paused; self.cpuNanoseconds = cpuNanoseconds; self.engine = engine; self.kernel = kernel
        self.weight = weight; self.cap = cap; self.consoleBytes = consoleBytes
    }
}

/// A domain's scheduling parameters (`xl sched-credit`, `sched-credit2`, `sched-rtds`): in an
/// answer, those of the daemon's scheduler; in a change, the fields to set (absent: unchanged).
public struct SchedParameters: Codable, Sendable, Equatable {
    /// The daemon's scheduler (answers only; ignored in a change).
    public var scheduler: String?
    /// credit, credit2: relative weight, 1-65535.
    public var weight: Int?
    /// credit, credit2: % of one pCPU for the whole domain, 0 = none.
    public var cap: Int?
    /// rtds: period and budget in µs, and whether it may run past its budget.
    public var periodMicroseconds: Int?
    public var budgetMicroseconds: Int?
    public var extratime: Bool?

    public init(scheduler: String? = nil, weight: Int? = nil, cap: Int? = nil, periodMicroseconds: Int? = nil,
                budgetMicroseconds: Int? = nil, extratime: Bool? = nil) {
        self.scheduler = scheduler; self.weight = weight; self.cap = cap
        self.periodMicroseconds = periodMicroseconds; self.budgetMicroseconds = budgetMicroseconds
        self.extratime = extratime
    }

    init(_ p: DomainSchedParams, scheduler: String) {
        self.init(scheduler: scheduler, weight: p.weight, cap: p.cap, periodMicroseconds: p.periodMicroseconds,
                  budgetMicroseconds: p.budgetMicroseconds, extratime: p.extratime)
    }

    var policyParameters: DomainSchedParams {
        DomainSchedParams(weight: weight, cap: cap, periodMicroseconds: periodMicroseconds,
                          budgetMicroseconds: budgetMicroseconds, extratime: extratime)
    }
}

/// One vCPU as `visor vcpu-list` shows it.
public struct VCPUStatus: Codable, Sendable, Equatable {
    public var domain: String
    public var domainID: UInt32
    public var vcpu: Int
    /// The pCPU it holds now, nil when it holds none.
    public var pcpu: Int?
    /// xl's three letters: r(unning on a pCPU) b(locked, or runnable and waiting) p(aused).
    public var state: String
    public var cpuNanoseconds: UInt64
    /// Hard and soft affinity in Xen's cpu-list notation ("all", "0-3,5").
    public var hardAffinity: String
    public var softAffinity: String

    public init(domain: String, domainID: UInt32, vcpu: Int, pcpu: Int?, state: String, cpuNanoseconds: UInt64,
                hardAffinity: String, softAffinity: String) {
        self.domain = domain; self.domainID = domainID; self.vcpu = vcpu; self.pcpu = pcpu; self.state = state
        self.cpuNanoseconds = cpuNanoseconds; self.hardAffinity = hardAffinity; self.softAffinity = softAffinity
    }
}

/// One vCPU's scheduling parameters (`xl sched-rtds -d NAME -v all`): RTDS keeps a period, a
/// budget and extratime per vCPU; the credit schedulers answer with the domain's weight and cap.
public struct VCPUSchedParameters: Codable, Sendable, Equatable {
    public var domain: String
    public var domainID: UInt32
    public var vcpu: Int
    public var scheduler: String
    public var weight: Int?
    public var cap: Int?
    public var periodMicroseconds: Int?
    public var budgetMicroseconds: Int?
    public var extratime: Bool?

    public init(domain: String, domainID: UInt32, vcpu: Int, scheduler: String, weight: Int? = nil, cap: Int? = nil,
                periodMicroseconds: Int? = nil, budgetMicroseconds: Int? = nil, extratime: Bool? = nil) {
        self.domain = domain; self.domainID = domainID; self.vcpu = vcpu; self.scheduler = scheduler
        self.weight = weight; self.cap = cap; self.periodMicroseconds = periodMicroseconds
        self.budgetMicroseconds = budgetMicroseconds; self.extratime = extratime
    }

    init(domain: String, domainID: UInt32, vcpu: Int, scheduler: String, _ p: DomainSchedParams) {
        self.init(domain: domain, domainID: domainID, vcpu: vcpu, scheduler: scheduler, weight: p.weight, cap: p.cap,
                  periodMicroseconds: p.periodMicroseconds, budgetMicroseconds: p.budgetMicroseconds,
                  extratime: p.extratime)
    }
}

/// A domain configuration as its xl.cfg keys: the JSON form `POST /domains` takes and
/// `visor list -l` shows (so a listed configuration can be sent back to create its twin).
public struct XLConfigObject: Codable, Sendable, Equatable {
    public var name: String
    public var kernel: String
    public var ramdisk: String?
    public var cmdline: String
    public var memory: UInt64
    public var vcpus: Int
    public var maxVCPUs: Int?
    /// Hard and soft affinity, one cpu list per vCPU (xl's list form).
    public var cpus: [String]?
    public var cpusSoft: [String]?
    public var cpuWeight: Int?
    public var cap: Int?
    public var engine: String?
    public var onPowerOff: DomainEndAction
    public var onReboot: DomainEndAction
    public var onCrash: DomainEndAction
    /// The disks as xl disk specifications (`DiskConfiguration.xlSpec`).
    public var disk: [String]?
    /// The network interfaces as xl vif specifications (`NetworkConfiguration.xlSpec`).
    public var vif: [String]?
    /// `console`, when the configuration names one.
    public var console: ConsoleDevice?

    enum CodingKeys: String, CodingKey {
        case name, kernel, ramdisk, cmdline, memory, vcpus, maxVCPUs = "maxvcpus", cpus, cpusSoft = "cpus_soft",
             cpuWeight = "cpu_weight", cap, engine, onPowerOff = "on_poweroff", onReboot = "on_reboot", onCrash = "on_crash",
             disk, vif, console
    }

    /// `spec` as keys; `engine` names the engine the domain got when the configuration named none.
    public init(_ spec: DomainSpec, engine: String? = nil) {
        name = spec.name; kernel = spec.kernel; ramdisk = spec.ramdisk; cmdline = spec.commandLine
        memory = spec.memoryMiB; vcpus = spec.vcpus; maxVCPUs = spec.maxVCPUs; cpus = spec.hardAffinity
        cpusSoft = spec.softAffinity; cpuWeight = spec.weight; cap = spec.cap; self.engine = spec.engine ?? engine
        onPowerOff = spec.onPowerOff; onReboot = spec.onReboot; onCrash = spec.onCrash
        disk = spec.disks.isEmpty ? nil : spec.disks.map(\.xlSpec)
        vif = spec.networks.isEmpty ? nil : spec.networks.map(\.xlSpec)
        console = spec.console
    }
}

/// The answer to a shutdown or reboot request: the domain as it was asked, how it was asked
/// ("paravirtual" or "acpi-power-button") and the time limit, if one was given.
public struct ShutdownAnswer: Codable, Sendable, Equatable {
    public var domain: DomainInfo
    public var delivery: String
    public var timeoutSeconds: Int?
}

/// The body of a shutdown or reboot request (all optional).
public struct ShutdownOptions: Codable, Sendable, Equatable {
    /// Seconds the guest has before it is destroyed (power-off) or reset (reboot).
    public var timeoutSeconds: Int?
    public init(timeoutSeconds: Int? = nil) { self.timeoutSeconds = timeoutSeconds }
}

/// How a domain ended, once it has: `outcome` in a few words; for a crash the reason and the
/// register dump the runtime kept, for a halt the dump.
public struct DomainEnd: Codable, Sendable, Equatable {
    public var outcome: String
    public var reason: String?
    public var registers: String?

    init(_ outcome: DomainOutcome) {
        self.outcome = outcome.summary
        switch outcome {
        case .crashed(let reason, let registers): self.reason = reason; self.registers = registers
        case .halted(let registers): self.registers = registers
        case .stopped(let reason): self.reason = reason
        case .rebooted(let how): self.reason = how
        case .poweredOff, .debugExit: break
        }
    }
}

/// `visor list -l`: a domain's configuration as created, its state, each vCPU's state and
/// scheduling parameters, and how it ended once it has.
public struct DomainDetail: Codable, Sendable, Equatable {
    /// What `visor list` shows.
    public var domain: DomainInfo
    /// The configuration it was created with, as xl.cfg keys.
    public var config: XLConfigObject
    /// The file or `request` it came from.
    public var source: String
    public var scheduler: String
    /// The domain's parameters (for RTDS, as in Xen, the defaults a domain-wide change starts from).
    public var schedParameters: SchedParameters?
    public var vcpus: [VCPUStatus]
    public var vcpuSchedParameters: [VCPUSchedParameters]
    /// nil while it runs.
    public var end: DomainEnd?
}

/// A `vcpu-pin` request: cpu lists as `xl vcpu-pin` takes them ("all", "0-3,^1"); absent or "-":
/// unchanged.
public struct AffinityChange: Codable, Sendable, Equatable {
    public var hard: String?
    public var soft: String?
    public init(hard: String? = nil, soft: String? = nil) { self.hard = hard; self.soft = soft }
}

/// The host and the pool, as `visor info` shows them.
public struct HostInfo: Codable, Sendable, Equatable {
    public var host: String
    public var release: String
    public var machine: String
    /// Online host CPUs.
    public var hostCPUs: Int
    /// pCPUs of the daemon's pool.
    public var pcpus: Int
    public var scheduler: String
    /// The engine a configuration without `engine =` gets, and those this host can run.
    public var defaultEngine: String
    public var engines: [String]
    public var domains: Int
    public var uptimeSeconds: Double
    public var pid: Int32
}

/// Why a toolstack request was refused; each case maps to one HTTP status.
public enum ToolstackError: Error, Equatable, CustomStringConvertible {
    /// The request is malformed or names impossible values (400).
    case badRequest(String)
    /// No such domain (404).
    case notFound(String)
    /// It conflicts with the current state: a name in use, a domain already paused (409).
    case conflict(String)
    /// The daemon is stopping or the host lacks what it needs (503).
    case unavailable(String)

    public var description: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .conflict(let m), .unavailable(let m): return m
        }
    }
}

/// The daemon's log: every line goes to standard error (a foreground daemon's log, as under
/// systemd) and the last `capacity` lines are kept for `visor dmesg`.
public final class ToolstackLog: Sendable {
    public static let capacity = 2000
    private let lines = Mutex<[String]>([])
    private let echo: Bool

    public init(echoToStandardError: Bool = true) { echo = echoToStandardError }

    public func write(_ message: String) {
        let stamp = ISO8601DateFormatter.string(from: Date(), timeZone: .current,
                                                formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        let line = "[\(stamp)] \(message)"
        lines.withLock { kept in
            kept.append(line)
            if kept.count > Self.capacity { kept.removeFirst(kept.count - Self.capacity) }
        }
        if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    public var text: [String] { lines.withLock { $0 } }

    static func describe(_ p: SchedParameters) -> String {
        var parts: [String] = []
        if let w = p.weight { parts.append("weight \(w)") }
        if let c = p.cap { parts.append("cap \(c)") }
        if let period = p.periodMicroseconds { parts.append("period \(period) µs") }
        if let budget = p.budgetMicroseconds { parts.append("budget \(budget) µs") }
        if let extra = p.extratime { parts.append("extratime \(extra ? 1 : 0)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// One domain the daemon runs.
final class ServedDomain: @unchecked Sendable {
    // Unchecked: every field is immutable but those under `lock`.
    let domain: Domain
    let id: DomainID
    let console: DomainConsole
    let parameters: DomainSchedParams
    let engineName: String
    let pool: CPUPool
    /// The configuration it was created with.
    let spec: DomainSpec
    /// When it started (monotonic), and how many restarts in a row before it each ran less than
    /// `Toolstack.quickRunNanoseconds`: the restart-loop guard.
    let startedNanoseconds = monotonicNanoseconds()
    let quickRestarts: Int
    private let lock = HostMutex()
    private let finishedCondition = HostCondition()
    private var finished = false
    /// How it ended, once it has (set by the reaper).
    private var outcome: DomainOutcome?
    /// `visor destroy` (or the daemon stopping) asked for it: it is not restarted or kept.
    private var destroyRequested = false
    /// Ended and kept in the list (`preserve`) until it is destroyed.
    private var preserved = false
    /// A reboot request ran out of time: the domain is stopped and booted again (a reset).
    private var resetRequested = false

    init(domain: Domain, id: DomainID, console: DomainConsole, parameters: DomainSchedParams, engineName: String,
         pool: CPUPool, spec: DomainSpec, quickRestarts: Int) {
        self.domain = domain; self.id = id; self.console = console; self.parameters = parameters
        self.engineName = engineName; self.pool = pool; self.spec = spec; self.quickRestarts = quickRestarts
    }

    var ending: DomainOutcome? { lock.withLock { outcome } }

    var name: String { domain.configuration.name }

    /// The reaper's decision, under the lock so that a destroy racing with it is never lost:
    /// `configured` unless a destroy was asked for or Visor stopped the domain; a preserved
    /// domain is marked so before anyone can see it.
    func settle(_ outcome: DomainOutcome, configured: DomainEndAction) -> DomainEndAction {
        lock.withLock {
            self.outcome = outcome
            finishedCondition.broadcast()
            if destroyRequested { return .destroy }
            if resetRequested { return .restart }
            if case .stopped = outcome { return .destroy }
            if configured == .preserve { preserved = true }
            return configured
        }
    }

    /// Marks the domain to be destroyed; true when it is preserved (ended and waiting only for
    /// this) and this call is the one that must drop it.
    func requestDestroy() -> Bool {
        lock.withLock {
            defer { destroyRequested = true }
            return preserved && !destroyRequested
        }
    }

    /// Marks the domain to be booted again when it ends, whatever its on_* keys say (unless a
    /// destroy comes first); false when it has already ended, so the reset is too late.
    func requestReset() -> Bool {
        lock.withLock {
            guard outcome == nil, !destroyRequested else { return false }
            resetRequested = true
            return true
        }
    }

    var isDestroyRequested: Bool { lock.withLock { destroyRequested } }
    var isPreserved: Bool { lock.withLock { preserved } }

    func markFinished() {
        lock.withLock { finished = true; finishedCondition.broadcast() }
    }

    /// Waits until the domain has left the list (destroyed, or replaced by its restart).
    func waitFinished() {
        lock.withLock { while !finished { finishedCondition.wait(lock, untilHostNanoseconds: nil) } }
    }

    /// Waits until the domain has ended (its outcome settled) or the host clock passes
    /// `deadline`; true when it ended.
    func waitEnded(untilHostNanoseconds deadline: UInt64) -> Bool {
        lock.withLock {
            while outcome == nil && !finished {
                guard monotonicNanoseconds() < deadline else { return false }
                finishedCondition.wait(lock, untilHostNanoseconds: deadline)
            }
            return true
        }
    }

    var info: DomainInfo {
        let paused = domain.isPaused
        let ended = domain.hasEnded
        let running = !paused && !ended && domain.isRunningOnAPCPU
        var crashed = false, shutdown = false
        switch ending {
        case .crashed?: crashed = true
        case .poweredOff?, .debugExit?, .rebooted?: shutdown = true
        case .halted?: crashed = true
        case .stopped?, nil: break
        }
        // As xl: a preserved domain shows only how it ended; "d" is one on its way out.
        let dying = ended && !isPreserved
        let flags: [Character] = [running ? "r" : "-", (!running && !paused && !ended) ? "b" : "-",
                                  paused ? "p" : "-", shutdown ? "s" : "-", crashed ? "c" : "-", dying ? "d" : "-"]
        let configuration = domain.configuration
        // The policy's current values (changed at run time by `sched-credit`), else as created.
        let current = (try? pool.parameters(of: id)) ?? parameters
        return DomainInfo(name: name, id: id.rawValue, memoryMiB: configuration.memoryBytes >> 20,
                          vcpus: configuration.vcpuCount, state: String(flags), paused: paused,
                          cpuNanoseconds: domain.cpuNanoseconds, engine: engineName,
                          kernel: configuration.kernelDescription, weight: current.weight, cap: current.cap,
                          consoleBytes: console.totalBytes)
    }
}

/// The daemon's domains on one CPU pool.
public final class Toolstack: Sendable {
    public let log: ToolstackLog
    public let pcpuCount: Int
    public let scheduler: SchedulerKind
    public let defaultEngine: String
    private let pool: CPUPool
    private let started = Date()

    private struct State {
        var domains: [ServedDomain] = []
        /// Domain IDs count up from 1 and are never reused while the daemon runs, as in Xen.
        var nextID: UInt32 = 1
        var stopping = false
    }
    private let state = Mutex(State())

    /// A pool of `pcpus` pCPUs scheduled by `scheduler`, its threads started; configurations
    /// without `engine =` run on `defaultEngine`. With `pinPCPUs`, pCPU i runs on host CPU i.
    public init(pcpus: Int, scheduler: SchedulerKind, defaultEngine: String, log: ToolstackLog,
                pinPCPUs: Bool = false) throws {
        if let problem = EngineRegistry.problem(withName: defaultEngine) { throw ToolstackError.badRequest(problem) }
        self.pcpuCount = pcpus
        self.scheduler = scheduler
        self.defaultEngine = defaultEngine
        self.log = log
        pool = try CPUPool(kind: scheduler, pcpuCount: pcpus, pinHostCPUs: pinPCPUs)
        pool.start()
        log.write("pool: \(pcpus) pCPU\(pcpus == 1 ? "" : "s")\(pinPCPUs ? ", each bound to a host CPU" : ""), "
                  + "\(scheduler.name) scheduler, default engine \(defaultEngine)")
    }

    // MARK: Domains

    /// Creates and starts a domain from xl.cfg text. `path` names the text in messages and
    /// anchors its relative paths (the client sends its config file's absolute path).
    /// Slow when a built-in guest must be built first: call it off any event loop.
    public func create(configuration text: String, path: String) throws(ToolstackError) -> DomainInfo {
        let parsed: (spec: DomainSpec, warnings: [String])
        do {
            parsed = try XLConfig.parse(text, path: path)
        } catch {
            throw .badRequest(error.description)
        }
        return try create(parsed.spec, warnings: parsed.warnings)
    }

    /// Creates and starts a domain from a parsed configuration (xl.cfg text or its JSON form,
    /// `XLConfig.parse`); its `path` names it in messages. `warnings` go to the log.
    public func create(_ spec: DomainSpec, warnings: [String]) throws(ToolstackError) -> DomainInfo {
        guard !(state.withLock { $0.stopping }) else { throw .unavailable("the daemon is stopping") }
        for warning in warnings { log.write("create \(spec.name): warning: \(warning)") }
        if find(spec.name) != nil { throw .conflict("a domain named '\(spec.name)' already exists") }
        let served = try launch(spec, console: DomainConsole(), replacing: nil, quickRestarts: 0)
        log.write("domain \(served.id.rawValue) '\(served.name)' created from \(spec.path): \(served.domain.configuration.kernelDescription) on \(served.engineName), \(spec.memoryMiB) MiB, \(spec.vcpus) vCPU\(spec.vcpus == 1 ? "" : "s")")
        return served.info
    }

    /// A run shorter than this before a restart counts towards the restart-loop guard.
    static let quickRunNanoseconds: UInt64 = 10_000_000_000
    /// After this many quick restarts in a row a domain is destroyed instead: a guest that
    /// crashes while booting must not keep a pCPU busy restarting it for ever.
    public static let maximumQuickRestarts = 5

    /// Plans, builds and starts a domain of `spec` whose output goes to `console`, with a reaper
    /// thread that carries out its end action. `replacing` is the ended domain of the same name a
    /// restart takes the place of.
    /// `announce` is called with the new ID as the domain is listed (under the state lock), so a
    /// log line about it is written before anyone can see it listed.
    private func launch(_ spec: DomainSpec, console: DomainConsole, replacing: ServedDomain?,
                        quickRestarts: Int, announce: ((DomainID) -> Void)? = nil) throws(ToolstackError) -> ServedDomain {
        let path = spec.path
        let request = RunRequest(kernel: spec.kernel, engine: defaultEngine, memoryBytes: spec.memoryBytes,
                                 commandLine: "", modules: [], timeout: nil, printStatistics: false,
                                 pcpuCount: pcpuCount, scheduler: scheduler)
        let plan: DomainPlan
        do {
            plan = try Launcher.plan(for: spec, request: request)
        } catch let error as LaunchError {
            if case .guest(.notFetched) = error { throw .unavailable(error.description) }
            throw .badRequest(error.description)
        } catch {
            throw .badRequest("\(path): \(error)")
        }
        let domain: Domain
        do {
            let log = self.log, name = spec.name
            domain = try Domain(configuration: plan.configuration, consoleOutput: { console.append($0) },
                                notice: { log.write("domain \(name): \($0)") })
        } catch {
            throw .badRequest("\(path): \(error)")
        }
        // The name is checked again and the ID taken under the lock: two creates of one name
        // may race through the slow part above.
        let served = try reserve(domain: domain, console: console, plan: plan, engine: spec.engine ?? defaultEngine,
                                 spec: spec, replacing: replacing, quickRestarts: quickRestarts, announce: announce)
        do {
            try domain.start(in: pool, id: served.id, affinities: plan.affinities, parameters: plan.parameters)
        } catch {
            state.withLock { s in s.domains.removeAll { $0 === served } }
            throw .badRequest("\(path): the scheduler refused the domain: \(error)")
        }
        let reaper = HostThread { [self] in reap(served) }
        reaper.detach()
        return served
    }

    /// Runs on the domain's reaper thread: waits for its end and does what its configuration says.
    private func reap(_ served: ServedDomain) {
        let outcome = served.domain.wait()
        let (key, configured) = Self.endAction(for: outcome, of: served.spec)
        let ended = "domain \(served.id.rawValue) '\(served.name)' ended: \(outcome.summary)"
        switch served.settle(outcome, configured: configured) {
        case .destroy:
            drop(served, note: "\(ended); destroyed" + (configured == .destroy && key != nil ? " (\(key ?? "") = destroy)" : ""))
        case .preserve:
            // Marked under the lock with the decision: a destroy from now on drops it itself.
            // Its console keeps its last output for a later `visor console`, and its readers go.
            served.console.close()
            log.write("\(ended); preserved (\(key ?? "") = preserve): `visor destroy \(served.name)` removes it")
        case .restart:
            let ranFor = monotonicNanoseconds() &- served.startedNanoseconds
            let quick = ranFor < Self.quickRunNanoseconds ? served.quickRestarts + 1 : 0
            guard quick <= Self.maximumQuickRestarts else {
                drop(served, note: "\(ended); destroyed instead of restarted (\(key ?? "") = restart): it was restarted "
                               + "\(Self.maximumQuickRestarts) times in a row and each run lasted less than \(Self.quickRunNanoseconds / 1_000_000_000) s")
                return
            }
            do {
                // No key: Visor stopped it to reset it (a reboot request that ran out of time).
                _ = try launch(served.spec, console: served.console, replacing: served, quickRestarts: quick) { [log] id in
                    log.write("\(ended); restarted (\(key.map { "\($0) = restart" } ?? "a reset")) as domain \(id.rawValue)")
                }
                served.markFinished()
            } catch {
                drop(served, note: "\(ended); destroyed: the restart failed: \(error)")
            }
        }
    }

    /// The xl.cfg key that decides what happens after `outcome`, and its value; nil for an end
    /// Visor caused (destroy, the daemon stopping), which is always a destroy.
    static func endAction(for outcome: DomainOutcome, of spec: DomainSpec) -> (key: String?, action: DomainEndAction) {
        switch outcome {
        case .poweredOff, .debugExit: return ("on_poweroff", spec.onPowerOff)
        case .rebooted: return ("on_reboot", spec.onReboot)
        // A guest that halted for good can never go on: a crash, as far as its fate goes.
        case .crashed, .halted: return ("on_crash", spec.onCrash)
        case .stopped: return (nil, .destroy)
        }
    }

    /// Takes an ended domain out of the list, closes its console and lets its waiters go.
    private func drop(_ served: ServedDomain, note: String) {
        served.console.close()
        // Logged before the domain leaves the list, which is what `destroy`/`shutdown -w` wait for.
        log.write(note)
        state.withLock { s in s.domains.removeAll { $0 === served } }
        served.markFinished()
    }

    private func reserve(domain: Domain, console: DomainConsole, plan: DomainPlan, engine: String, spec: DomainSpec,
                         replacing: ServedDomain?, quickRestarts: Int,
                         announce: ((DomainID) -> Void)? = nil) throws(ToolstackError) -> ServedDomain {
        let result = state.withLock { s -> Result<ServedDomain, ToolstackError> in
            guard !s.stopping else { return .failure(.unavailable("the daemon is stopping")) }
            if let replacing {
                // Lock order: the toolstack's state, then the domain's own.
                guard !replacing.isDestroyRequested else { return .failure(.conflict("it was destroyed while restarting")) }
                s.domains.removeAll { $0 === replacing }
            }
            guard !s.domains.contains(where: { $0.name == domain.configuration.name }) else {
                return .failure(.conflict("a domain named '\(domain.configuration.name)' already exists"))
            }
            let served = ServedDomain(domain: domain, id: DomainID(s.nextID), console: console, parameters: plan.parameters,
                                      engineName: engine, pool: pool, spec: spec, quickRestarts: quickRestarts)
            s.nextID &+= 1
            announce?(served.id)
            s.domains.append(served)
            return .success(served)
        }
        return try result.get()
    }

    /// The domain called `name`, or with ID `name` when it is a number.
    func find(_ name: String) -> ServedDomain? {
        state.withLock { s in
            s.domains.first { $0.name == name } ?? UInt32(name).flatMap { id in s.domains.first { $0.id.rawValue == id } }
        }
    }

    private func lookUp(_ name: String) throws(ToolstackError) -> ServedDomain {
        guard let served = find(name) else { throw .notFound("no domain is called '\(name)'") }
        return served
    }

    /// A domain that has not ended: what changes a running domain refuses a preserved one.
    private func lookUpRunning(_ name: String) throws(ToolstackError) -> ServedDomain {
        let served = try lookUp(name)
        guard !served.domain.hasEnded else {
            let kept = served.isPreserved ? " and is kept for inspection: `visor destroy \(served.name)` removes it" : ""
            throw .conflict("domain '\(served.name)' has ended\(kept)")
        }
        return served
    }

    /// Where each listed domain's guest RAM is in this process (`visor bench lifecycle`).
    package var guestMemoryAddresses: [Range<UInt>] {
        state.withLock { $0.domains }.map(\.domain.memory.hostAddresses)
    }

    public func list() -> [DomainInfo] {
        state.withLock { $0.domains }.map(\.info)
    }

    public func info(of name: String) throws(ToolstackError) -> DomainInfo {
        try lookUp(name).info
    }

    /// `visor list -l` of every domain.
    public func details() -> [DomainDetail] {
        state.withLock { $0.domains }.map(detail)
    }

    public func detail(of name: String) throws(ToolstackError) -> DomainDetail {
        detail(try lookUp(name))
    }

    private func detail(_ served: ServedDomain) -> DomainDetail {
        DomainDetail(domain: served.info, config: XLConfigObject(served.spec, engine: served.engineName),
                     source: served.spec.path, scheduler: scheduler.name,
                     schedParameters: (try? pool.parameters(of: served.id)).map { SchedParameters($0, scheduler: scheduler.name) },
                     vcpus: vcpuStatus(served), vcpuSchedParameters: vcpuSchedParameters(served),
                     end: served.ending.map(DomainEnd.init))
    }

    /// Parks every vCPU of the domain (returns once they are off their pCPUs).
    public func pause(_ name: String) throws(ToolstackError) -> DomainInfo {
        let served = try lookUpRunning(name)
        guard !served.domain.isPaused else { throw .conflict("domain '\(served.name)' is already paused") }
        served.domain.pause()
        log.write("domain \(served.id.rawValue) '\(served.name)' paused")
        return served.info
    }

    public func unpause(_ name: String) throws(ToolstackError) -> DomainInfo {
        let served = try lookUpRunning(name)
        guard served.domain.isPaused else { throw .conflict("domain '\(served.name)' is not paused") }
        served.domain.unpause()
        log.write("domain \(served.id.rawValue) '\(served.name)' unpaused")
        return served.info
    }

    /// The domain's scheduling parameters as the policy holds them.
    public func schedParameters(of name: String) throws(ToolstackError) -> SchedParameters {
        let served = try lookUp(name)
        do {
            return SchedParameters(try pool.parameters(of: served.id), scheduler: scheduler.name)
        } catch {
            throw .notFound("domain '\(served.name)' has left the scheduler (it is ending)")
        }
    }

    /// Changes a running domain's scheduling parameters; the policy refuses what it has no
    /// such parameter for or what is out of range, with libxl's words.
    public func setSchedParameters(of name: String, _ change: SchedParameters) throws(ToolstackError) -> SchedParameters {
        let served = try lookUpRunning(name)
        if let named = change.scheduler, named != scheduler.name {
            throw .badRequest("the daemon's scheduler is \(scheduler.name), not \(named)")
        }
        do {
            try pool.adjust(domain: served.id, change.policyParameters)
        } catch {
            throw .badRequest("\(error)")
        }
        let now = try schedParameters(of: name)
        log.write("domain \(served.id.rawValue) '\(served.name)' scheduling parameters set: \(ToolstackLog.describe(now))")
        return now
    }

    /// Each vCPU's parameters as the policy holds them (`xl sched-rtds -d NAME -v all`).
    public func vcpuSchedParameters(of name: String) throws(ToolstackError) -> [VCPUSchedParameters] {
        vcpuSchedParameters(try lookUp(name))
    }

    private func vcpuSchedParameters(_ served: ServedDomain) -> [VCPUSchedParameters] {
        (0..<served.domain.configuration.vcpuCount).compactMap { index in
            // A vCPU that has left the scheduler (the domain is ending) is left out.
            guard let p = try? pool.parameters(of: VCPUID(domain: served.id, index: index)) else { return nil }
            return VCPUSchedParameters(domain: served.name, domainID: served.id.rawValue, vcpu: index,
                                       scheduler: scheduler.name, p)
        }
    }

    /// `xl sched-rtds -d NAME -v VCPU|all -p P -b B -e E`: changes one vCPU's (or, `vcpu` nil,
    /// every vCPU's) RTDS parameters while it runs; fields left out keep each vCPU's current
    /// values. All or none: one refused vCPU leaves every vCPU as it was. Refused, naming the
    /// pool's scheduler, when the pool does not run rtds.
    public func setVCPUSchedParameters(of name: String, vcpu: Int?,
                                       _ change: SchedParameters) throws(ToolstackError) -> [VCPUSchedParameters] {
        let served = try lookUpRunning(name)
        guard scheduler == .rtds else {
            throw .badRequest("the daemon's pool runs the \(scheduler.name) scheduler, not rtds: per-vCPU parameters "
                              + "(period, budget, extratime) are RTDS's; \(scheduler == .credit || scheduler == .credit2 ? "set the domain's weight and cap with PUT /domains/NAME/sched" : "this scheduler has none")")
        }
        if let named = change.scheduler, named != scheduler.name {
            throw .badRequest("the daemon's scheduler is \(scheduler.name), not \(named)")
        }
        let count = served.domain.configuration.vcpuCount
        if let vcpu, !(0..<count).contains(vcpu) {
            throw .badRequest("domain '\(served.name)' has vCPUs 0-\(count - 1), not \(vcpu)")
        }
        let ids = (vcpu.map { [$0] } ?? Array(0..<count)).map { VCPUID(domain: served.id, index: $0) }
        do {
            try pool.adjust(vcpus: ids, change.policyParameters)
        } catch {
            throw .badRequest("\(error)")
        }
        let now = vcpuSchedParameters(served)
        for p in now where vcpu == nil || p.vcpu == vcpu {
            log.write("domain \(served.id.rawValue) '\(served.name)' vCPU \(p.vcpu) scheduling parameters set: \(ToolstackLog.describe(SchedParameters(periodMicroseconds: p.periodMicroseconds, budgetMicroseconds: p.budgetMicroseconds, extratime: p.extratime)))")
        }
        return now
    }

    /// Every vCPU of the domain (or of every domain), as `xl vcpu-list`.
    public func vcpus(of name: String?) throws(ToolstackError) -> [VCPUStatus] {
        let domains = try name.map { n throws(ToolstackError) in [try lookUp(n)] } ?? state.withLock { $0.domains }
        return domains.flatMap(vcpuStatus)
    }

    private func vcpuStatus(_ served: ServedDomain) -> [VCPUStatus] {
        let paused = served.domain.isPaused
        return served.domain.vcpuSnapshots.enumerated().map { index, v in
            VCPUStatus(domain: served.name, domainID: served.id.rawValue, vcpu: index, pcpu: v.pcpu,
                       state: paused ? "--p" : v.pcpu != nil ? "r--" : "-b-", cpuNanoseconds: v.cpuNanoseconds,
                       hardAffinity: describe(v.affinity.hard), softAffinity: describe(v.affinity.soft))
        }
    }

    private func describe(_ set: PCPUSet?) -> String {
        guard let set, set != PCPUSet.first(pcpuCount) else { return "all" }
        return set.description
    }

    /// `xl vcpu-pin NAME VCPU HARD [SOFT]`: `vcpu` nil means every vCPU.
    public func pin(_ name: String, vcpu: Int?, _ change: AffinityChange) throws(ToolstackError) -> [VCPUStatus] {
        let served = try lookUpRunning(name)
        let count = served.domain.configuration.vcpuCount
        if let vcpu, !(0..<count).contains(vcpu) {
            throw .badRequest("domain '\(served.name)' has vCPUs 0-\(count - 1), not \(vcpu)")
        }
        func mask(_ text: String?, key: String) throws(ToolstackError) -> PCPUSet?? {
            guard let text, text != "-" else { return .none }  // unchanged
            guard text.utf8.count <= XLConfig.maximumCPUListLength,
                  let set = PCPUSet(cpuList: text, poolSize: pcpuCount) else {
                throw .badRequest("\(key) '\(text.prefix(60))' is not a cpu list (such as all, 1, 0-3 or 0-3,^1)")
            }
            let inPool = set.intersection(PCPUSet.first(pcpuCount))
            guard !inPool.isEmpty else {
                throw .badRequest("\(key) '\(text.prefix(60))' names no pCPU of this pool (pCPUs 0-\(pcpuCount - 1))")
            }
            return .some(inPool == PCPUSet.first(pcpuCount) ? nil : inPool)
        }
        let hard = try mask(change.hard, key: "hard")
        let soft = try mask(change.soft, key: "soft")
        guard hard != nil || soft != nil else { throw .badRequest("give a hard or a soft cpu list to set") }
        let snapshots = served.domain.vcpuSnapshots
        for index in vcpu.map({ [$0] }) ?? Array(0..<count) where index < snapshots.count {
            var affinity = snapshots[index].affinity
            if let hard { affinity.hard = hard }
            if let soft { affinity.soft = soft }
            do {
                try served.domain.setAffinity(vcpu: index, affinity)
            } catch {
                throw .badRequest("\(error)")
            }
            log.write("domain \(served.id.rawValue) '\(served.name)' vCPU \(index) pinned: hard \(describe(affinity.hard)), soft \(describe(affinity.soft))")
        }
        return try vcpus(of: name)
    }

    /// The longest time limit a shutdown or reboot request may give the guest.
    public static let maximumShutdownTimeoutSeconds = 86_400

    /// `xl shutdown` / `xl reboot`: asks the guest to power off or reboot itself, through the PV
    /// shutdown request when it listens for one, else (power-off only) the ACPI power button;
    /// returns how it was asked. What happens when it does is its on_poweroff / on_reboot. With
    /// `timeoutSeconds`, a guest that has not ended by then is made to: destroyed after a
    /// power-off request, reset (stopped and booted again from its configuration) after a reboot
    /// request. A guest that listens for neither is refused (409), and nothing changes.
    public func requestShutdown(_ name: String, _ request: ShutdownRequest,
                                timeoutSeconds: Int? = nil) throws(ToolstackError) -> ShutdownAnswer {
        let served = try lookUpRunning(name)
        let what = request == .powerOff ? "shut down" : "reboot"
        if let timeoutSeconds, !(1...Self.maximumShutdownTimeoutSeconds).contains(timeoutSeconds) {
            throw .badRequest("the time limit must be 1 to \(Self.maximumShutdownTimeoutSeconds) seconds, not \(timeoutSeconds)")
        }
        let delivery = served.domain.requestShutdown(request)
        guard delivery != .none else {
            let listens = request == .powerOff
                ? "listens for neither the PV shutdown request nor the ACPI power button"
                : "does not listen for the PV shutdown request (ACPI has no reboot button)"
            throw .conflict("domain '\(served.name)' \(listens), so it cannot be asked to \(what) (a guest starts listening "
                            + "while it boots, if it does at all); `visor destroy \(served.name)` stops it")
        }
        let how = delivery == .paravirtual ? "PV shutdown request" : "ACPI power button"
        log.write("domain \(served.id.rawValue) '\(served.name)' asked to \(what) (\(how))"
                  + (timeoutSeconds.map { ", \($0) s to do it" } ?? ""))
        if let timeoutSeconds {
            let deadline = monotonicNanoseconds() &+ UInt64(timeoutSeconds) * 1_000_000_000
            let watchdog = HostThread { [self] in
                guard !served.waitEnded(untilHostNanoseconds: deadline) else { return }
                if request == .reboot, served.requestReset() {
                    log.write("domain \(served.id.rawValue) '\(served.name)' did not reboot within \(timeoutSeconds) s; resetting it")
                    served.domain.requestStop(reason: "reset: it did not reboot within \(timeoutSeconds) s")
                } else if request == .powerOff {
                    log.write("domain \(served.id.rawValue) '\(served.name)' did not shut down within \(timeoutSeconds) s; destroying it")
                    destroyAndWait(served, reason: "destroyed: it did not shut down within \(timeoutSeconds) s")
                }
            }
            watchdog.detach()
        }
        return ShutdownAnswer(domain: served.info, delivery: delivery == .paravirtual ? "paravirtual" : "acpi-power-button",
                              timeoutSeconds: timeoutSeconds)
    }

    /// Stops the domain at once (`xl destroy`) and returns once its threads are gone; a
    /// preserved domain is taken out of the list.
    public func destroy(_ name: String) throws(ToolstackError) -> DomainInfo {
        let served = try lookUp(name)
        var last = served.info
        log.write("domain \(served.id.rawValue) '\(served.name)' destroy requested")
        destroyAndWait(served, reason: "destroyed")
        last.cpuNanoseconds = served.domain.cpuNanoseconds
        last.state = "-----d"
        return last
    }

    private func destroyAndWait(_ served: ServedDomain, reason: String) {
        if served.requestDestroy() {
            drop(served, note: "domain \(served.id.rawValue) '\(served.name)' (preserved) destroyed")
        } else {
            served.domain.requestStop(reason: reason)
            served.waitFinished()
        }
    }

    /// The console of a domain, to attach readers to.
    public func console(of name: String) throws(ToolstackError) -> DomainConsole {
        try lookUp(name).console
    }

    /// Offers `bytes` to the domain's console input, waiting up to `patienceNanoseconds` in all
    /// for a full console to take them; returns how many it took, in order. While a writer is
    /// attached only input with its key (`DomainConsole.attach(_:writing:)`) is taken.
    public func sendConsoleInput(_ name: String, _ bytes: [UInt8], writerKey: String? = nil,
                                 patienceNanoseconds: UInt64 = 2_000_000_000) throws(ToolstackError) -> Int {
        let served = try lookUp(name)
        guard served.console.acceptsInput(withKey: writerKey) else {
            if writerKey == nil {
                throw .conflict("domain '\(served.name)' has a console writer attached; input is taken only from it")
            }
            throw .conflict("that console writer key is not the current one for domain '\(served.name)' (the writer detached)")
        }
        let domain = served.domain
        let deadline = monotonicNanoseconds() &+ patienceNanoseconds
        var taken = 0
        while taken < bytes.count, !domain.hasEnded {
            if domain.sendConsoleInput(bytes[taken]) {
                taken += 1
            } else {
                guard monotonicNanoseconds() < deadline else { break }
                usleep(1000)
            }
        }
        return taken
    }

    public func hostInfo() -> HostInfo {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return HostInfo(host: field(names.nodename), release: field(names.release), machine: field(names.machine),
                        hostCPUs: HostCPU.count, pcpus: pcpuCount, scheduler: scheduler.name,
                        defaultEngine: defaultEngine, engines: EngineRegistry.availableNames(),
                        domains: state.withLock { $0.domains.count },
                        uptimeSeconds: Date().timeIntervalSince(started), pid: getpid())
    }

    /// Refuses new domains, destroys every domain and stops the pool's threads.
    public func shutdown() {
        let domains = state.withLock { s -> [ServedDomain] in
            s.stopping = true
            return s.domains
        }
        log.write("stopping: destroying \(domains.count) domain\(domains.count == 1 ? "" : "s")")
        var preserved: [ServedDomain] = []
        for served in domains {
            if served.requestDestroy() { preserved.append(served) } else { served.domain.requestStop(reason: "the daemon is stopping") }
        }
        for served in preserved { drop(served, note: "domain \(served.id.rawValue) '\(served.name)' (preserved) destroyed") }
        for served in domains { served.waitFinished() }
        pool.stop()
        log.write("stopped")
    }
}
