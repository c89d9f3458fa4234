// Several domains in one `visor run`: xl.cfg files turned into domain plans, console lines
// labelled with their domain, and the table of CPU shares printed at the end.

import Foundation
import Synchronization
import VisorCore
import VisorSched

extension Launcher {
    /// One plan per config file, in order. Errors name the file (and line and key where the
    /// file is at fault); warnings for ignored xl keys go to standard error.
    static func makePlans(_ request: RunRequest) throws -> [DomainPlan] {
        var plans: [DomainPlan] = []
        var names: [String: String] = [:]
        for path in request.configurationFiles {
            let (spec, warnings): (DomainSpec, [String])
            do {
                (spec, warnings) = try XLConfig.load(path: path)
            } catch {
                throw LaunchError.badInput(error.description)
            }
            for warning in warnings { printError("warning: \(warning)") }
            if let other = names[spec.name] {
                throw LaunchError.badInput("\(path): name: domain '\(spec.name)' is also the name in \(other)")
            }
            names[spec.name] = path
            plans.append(try plan(for: spec, request: request))
        }
        return plans
    }

    static func plan(for spec: DomainSpec, request: RunRequest) throws -> DomainPlan {
        func fail(_ key: String, _ message: String) -> LaunchError { .badInput("\(spec.path): \(key): \(message)") }
        let engineName = spec.engine ?? request.engine
        guard let engine = EngineRegistry.engine(named: engineName) else {
            throw fail("engine", EngineRegistry.problem(withName: engineName) ?? engineName)
        }
        let resolved = try resolveKernel(spec.kernel)
        let kernel = try readFile(resolved.path, what: "\(spec.path): kernel")
        // ramdisk: a Linux kernel's initial RAM disk, as with xl (a multiboot kernel gets it as
        // its first module); a fetched guest brings its own unless the file names one.
        let initrd = try (spec.ramdisk ?? resolved.initrd).map {
            BootModule(name: $0, bytes: try readFile($0, what: "\(spec.path): ramdisk"))
        }
        var configuration = DomainConfiguration(
            name: spec.name, kernelDescription: resolved.description, kernel: kernel,
            memoryBytes: spec.memoryMiB << 20,
            commandLine: resolved.commandLine(adding: spec.commandLine, disks: spec.disks.count, ownInitrd: spec.ramdisk == nil),
            initrd: initrd, engine: engine, vcpuCount: spec.vcpus)
        configuration.disks = try checkedDisks(spec.disks, what: "\(spec.path): disk")
        configuration.networks = try checkedNetworks(spec.networks, disks: spec.disks.count, what: "\(spec.path): vif")
        configuration.console = spec.console ?? request.console

        // cpus= / cpus_soft=: element i is vCPU i's mask (the string form is already one per
        // vCPU); vCPUs past the end of a shorter list may run anywhere, as with xl.
        func masks(_ texts: [String]?, key: String) throws -> [PCPUSet?] {
            guard let texts else { return Array(repeating: nil, count: spec.vcpus) }
            return try (0..<spec.vcpus).map { index -> PCPUSet? in
                guard index < texts.count else { return nil }
                let text = texts[index]
                guard let set = PCPUSet(cpuList: text, poolSize: request.pcpuCount) else {
                    throw fail(key, "'\(text)' is not a cpu list")
                }
                let inPool = set.intersection(PCPUSet.first(request.pcpuCount))
                guard !inPool.isEmpty else {
                    throw fail(key, "'\(text)' names no pCPU of this pool (pCPUs 0-\(request.pcpuCount - 1); see --pcpus)")
                }
                return inPool
            }
        }
        let hard = try masks(spec.hardAffinity, key: "cpus")
        let soft = try masks(spec.softAffinity, key: "cpus_soft")
        let affinities = zip(hard, soft).map { Affinity(hard: $0, soft: $1) }

        var parameters = DomainSchedParams()
        if request.scheduler == .credit || request.scheduler == .credit2 {
            parameters.weight = spec.weight
            parameters.cap = spec.cap
        } else {
            if spec.weight != nil { throw fail("cpu_weight", "the \(request.scheduler.name) scheduler has no weights") }
            if let cap = spec.cap, cap != 0 { throw fail("cap", "the \(request.scheduler.name) scheduler has no caps") }
        }
        return DomainPlan(configuration: configuration, affinities: affinities, parameters: parameters,
                          source: spec.path)
    }
}

/// One row of the end-of-run table.
struct ShareRow {
    var name: String
    var id: UInt32
    var vcpus: Int
    var parameters: DomainSchedParams
    var cpuNanoseconds: UInt64
    var outcome: DomainOutcome

    /// The table, in the manner of `xl list` / `xentop`: CPU time and the share of the pool's
    /// pCPUs (CPU time its vCPU threads got while holding pCPUs ÷ (wall time × pCPUs)).
    static func table(_ rows: [ShareRow], wallNanoseconds: UInt64, pcpus: Int, scheduler: String) -> String {
        func col(_ s: String, _ w: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, w - s.count))
            return right ? fill + s : s + fill
        }
        let nameWidth = max(12, (rows.map(\.name.count).max() ?? 0) + 2)
        var lines = [col("Name", nameWidth) + col("ID", 4, right: true) + col("VCPUs", 7, right: true)
                     + col("Weight", 8, right: true) + col("Cap", 6, right: true) + col("CPU(s)", 10, right: true)
                     + col("Share", 9, right: true) + "   Ended"]
        let capacity = Double(wallNanoseconds) * Double(max(pcpus, 1))
        for row in rows {
            let seconds = String(format: "%.2f", Double(row.cpuNanoseconds) / 1e9)
            let share = capacity > 0 ? String(format: "%.1f%%", 100 * Double(row.cpuNanoseconds) / capacity) : "-"
            let weight = row.parameters.weight.map(String.init) ?? "256"
            let cap = row.parameters.cap.map(String.init) ?? "0"
            lines.append(col(row.name, nameWidth) + col("\(row.id)", 4, right: true) + col("\(row.vcpus)", 7, right: true)
                         + col(weight, 8, right: true) + col(cap, 6, right: true) + col(seconds, 10, right: true)
                         + col(share, 9, right: true) + "   " + row.outcome.summary)
        }
        lines.append(String(format: "%d pCPU%@, %@ scheduler, %.2f s of wall time",
                            pcpus, pcpus == 1 ? "" : "s", scheduler, Double(wallNanoseconds) / 1e9))
        return lines.joined(separator: "\n")
    }
}

extension DomainOutcome {
    /// A few words for the table.
    package var summary: String {
        switch self {
        case .poweredOff: return "powered off"
        case .debugExit(let status): return "debug exit (status \(status))"
        case .halted: return "halted"
        case .crashed(let reason, _): return "crashed: \(reason)"
        case .rebooted(let how): return "asked to reboot (\(how))"
        case .stopped(let reason): return reason == Launcher.runForReason ? "ran its time" : "stopped: \(reason)"
        }
    }
}

/// Writes a domain's console output a line at a time, each line prefixed with its name, so
/// several domains can share the terminal.
final class LinePrefixer: Sendable {
    private let prefix: [UInt8]
    private let console: HostConsole
    private let line = Mutex<[UInt8]>([])

    init(prefix: String, console: HostConsole) {
        self.prefix = Array(prefix.utf8)
        self.console = console
    }

    @Sendable func write(_ byte: UInt8) {
        let complete: [UInt8]? = line.withLock { buffer in
            buffer.append(byte)
            guard byte == UInt8(ascii: "\n") || buffer.count >= 4096 else { return nil }
            defer { buffer.removeAll(keepingCapacity: true) }
            return prefix + buffer
        }
        if let complete { complete.withUnsafeBytes { console.write($0) } }
    }
}
