// What the guest-driven benchmarks share: a built-in guest run as a domain with its console
// collected in memory, and a clear error when it does not power off.

import Foundation
import Synchronization
import Visor
import VisorCore
import VisorSched

enum BenchmarkGuest {
    /// The engine called `name`, or `BenchmarkError.guestFailed` saying why there is none.
    static func engine(named name: String) throws -> any Engine {
        guard let engine = EngineRegistry.engine(named: name) else {
            throw BenchmarkError.guestFailed(EngineRegistry.problem(withName: name) ?? name)
        }
        return engine
    }

    /// A domain configuration for the guest ELF at `image`.
    static func configuration(image: URL, commandLine: String, engine: any Engine, vcpus: Int = 1,
                              memoryBytes: UInt64 = 64 << 20, name: String? = nil) throws -> DomainConfiguration {
        DomainConfiguration(name: name ?? image.deletingPathExtension().lastPathComponent, kernelDescription: image.path,
                            kernel: [UInt8](try Data(contentsOf: image)), memoryBytes: memoryBytes,
                            commandLine: commandLine, engine: engine, vcpuCount: vcpus)
    }

    /// Runs the guest at `image` on the engine called `engineName` until it ends; returns its
    /// console output and exit statistics, or throws unless it powered off.
    static func run(image: URL, commandLine: String, engine engineName: String, vcpus: Int = 1,
                    memoryBytes: UInt64 = 64 << 20) throws -> (text: String, statistics: ExitStatistics) {
        let engine = try engine(named: engineName)
        let output = ConsoleBuffer()
        let domain = try Domain(configuration: configuration(image: image, commandLine: commandLine, engine: engine,
                                                             vcpus: vcpus, memoryBytes: memoryBytes)) { output.append($0) }
        let outcome = domain.run()
        let text = output.text
        guard outcome == .poweredOff else {
            throw BenchmarkError.guestFailed("\(image.lastPathComponent) on \(engineName): \(outcome)\n\(text.suffix(4000))")
        }
        return (text, domain.exitStatistics)
    }
}

/// One domain of a benchmark scenario: a built-in guest and how the scheduler treats it.
struct ScenarioDomain {
    var name: String
    var guest: String
    var commandLine: String
    var vcpus = 1
    var weight: Int?
    var cap: Int?
}

/// What a scenario gave, per domain in the order given.
struct ScenarioResult {
    /// Percent of the one pCPU (pCPU time held ÷ wall time) over the measured time, before the
    /// stop.
    var shares: [Double]
    /// The pool's accounting of each domain over the measured time.
    var cpuNanoseconds: [UInt64]
    /// The CPU time the host gave each domain's vCPU threads over the measured time, read from
    /// the kernel (`/proc/self/task/*/schedstat`), not from the pool: a check on its accounting.
    var threadCPUNanoseconds: [UInt64]
    /// The measured time.
    var wallNanoseconds: UInt64
    /// The first MiB of each domain's console output.
    var outputs: [String]
    var outcomes: [DomainOutcome]
    /// From the stop request (what --timeout, Ctrl-] and signals make) until every thread of
    /// every domain had ended.
    var stopNanoseconds: UInt64
}

extension BenchmarkGuest {
    /// Runs the domains together on a pool of one pCPU for `seconds` (or until all have ended),
    /// then stops them. With `after`, the measured `seconds` start once domain `after.domain`
    /// has printed `after.text` (boot is not measured; at most a minute is waited for it). With
    /// `endsWith`, the run also ends as soon as that domain has ended. `busyLoops` threads spin
    /// in the process over the measured time (`BusyLoops`).
    static func runScenario(_ specs: [ScenarioDomain], engine name: String, seconds: Double,
                            scheduler: SchedulerKind, after: (domain: Int, text: String)? = nil,
                            endsWith: Int? = nil, busyLoops: Int = 0) throws -> ScenarioResult {
        let engine = try engine(named: name)
        let pool = try CPUPool(kind: scheduler, pcpuCount: 1)
        var domains: [Domain] = []
        var outputs: [ConsoleBuffer] = []
        for (index, spec) in specs.enumerated() {
            let image = try GuestCatalog.standard().image(named: spec.guest)
            let output = ConsoleBuffer(limit: 1 << 20)      // a guest may flood its console
            outputs.append(output)
            let configuration = try configuration(image: image, commandLine: spec.commandLine, engine: engine,
                                                  vcpus: spec.vcpus, name: spec.name)
            let domain = try Domain(configuration: configuration) { byte in output.append(byte) }
            try domain.start(in: pool, id: DomainID(UInt32(index + 1)), affinities: [],
                             parameters: DomainSchedParams(weight: spec.weight, cap: spec.cap))
            domains.append(domain)
        }
        pool.start()
        if let after, outputs.indices.contains(after.domain) {
            let limit = monotonicNanoseconds() &+ 60_000_000_000
            while monotonicNanoseconds() < limit, !outputs[after.domain].contains(after.text),
                  !domains.allSatisfy(\.hasEnded) { usleep(10_000) }
        }
        let busy = BusyLoops(count: busyLoops)
        let started = monotonicNanoseconds()
        let cpuBefore = domains.map(\.cpuNanoseconds)
        let threadNames = specs.indices.map { d in (0..<specs[d].vcpus).map { CPUPool.threadName(of: VCPUID(domain: DomainID(UInt32(d + 1)), index: $0)) } }
        let threadCPUBefore = threadNames.map(ThreadCPUTime.nanoseconds(ofThreadsNamed:))
        let deadline = started &+ UInt64(seconds * 1e9)
        while monotonicNanoseconds() < deadline, !domains.allSatisfy(\.hasEnded),
              !(endsWith.map { domains.indices.contains($0) && domains[$0].hasEnded } ?? false) {
            usleep(10_000)
        }
        let wallNanoseconds = monotonicNanoseconds() &- started
        let wall = Double(wallNanoseconds)
        let cpu = zip(domains, cpuBefore).map { $0.cpuNanoseconds &- $1 }
        let threadCPU = zip(threadNames, threadCPUBefore).map { ThreadCPUTime.nanoseconds(ofThreadsNamed: $0) &- $1 }
        busy.stop()
        let stopping = monotonicNanoseconds()
        for d in domains { d.requestStop(reason: Launcher.runForReason) }
        let outcomes = domains.map { $0.wait() }
        let stopped = monotonicNanoseconds() &- stopping
        pool.stop()
        return ScenarioResult(shares: cpu.map { 100 * Double($0) / wall }, cpuNanoseconds: cpu, threadCPUNanoseconds: threadCPU,
                              wallNanoseconds: wallNanoseconds,
                              outputs: outputs.map(\.text), outcomes: outcomes, stopNanoseconds: stopped)
    }
}

/// CPU time the kernel has given this process's threads, by thread name.
enum ThreadCPUTime {
    /// The summed CPU time (ns) of the threads named one of `names` (0 for a name no thread has
    /// yet: a vCPU thread is named when it first asks for a pCPU): the first field of
    /// `/proc/self/task/TID/schedstat`, the scheduler's `sum_exec_runtime`.
    static func nanoseconds(ofThreadsNamed names: [String]) -> UInt64 {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var total: UInt64 = 0
        for tid in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                  names.contains(comm.trimmingCharacters(in: .whitespacesAndNewlines)),
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/schedstat", encoding: .utf8),
                  let field = stat.split(separator: " ").first, let ns = UInt64(field) else { continue }
            total &+= ns
        }
        return total
    }
}

/// Threads that spin at the process's priority until stopped: other work competing with the
/// pool's threads for the host's CPUs (`visor bench shares --busy N`).
final class BusyLoops: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)

    init(count: Int) {
        for _ in 0..<count {
            let thread = Thread { [self] in
                running.add(1, ordering: .relaxed)
                var spins: UInt64 = 0
                while !stopping.load(ordering: .relaxed) { spins &+= 1 }
                running.subtract(1, ordering: .releasing)
            }
            thread.name = "busy-loop"
            thread.start()
        }
    }

    /// Stops the threads and waits until they have left their loops.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        while running.load(ordering: .acquiring) > 0 { usleep(1_000) }
    }
}

/// A guest's console output collected in memory: the first `limit` bytes of it.
final class ConsoleBuffer: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    private let limit: Int
    init(limit: Int = .max) { self.limit = limit }
    func append(_ byte: UInt8) { bytes.withLock { if $0.count < limit { $0.append(byte) } } }
    func contains(_ text: String) -> Bool {
        let needle = Array(text.utf8)
        return bytes.withLock { haystack in
            guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
            return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
        }
    }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}
