// `--pin-pcpus` (issue #14): pCPU i is the i-th host CPU the process may use. Seen from outside,
// as a user would check it: each thread's name and Cpus_allowed_list in /proc/PID/task.

import Foundation
import Testing
import Visor

@Suite("pCPUs bound to host CPUs", .timeLimit(.minutes(10)))
struct PinTests {
    /// The process's own allowed CPUs as /proc prints them, and their numbers in order.
    static let allowed: (list: String, cpus: [Int]) = {
        let list = threadStatus("/proc/self/status")["Cpus_allowed_list"] ?? ""
        var cpus: [Int] = []
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 2 { cpus += Array(bounds[0]...bounds[1]) } else if bounds.count == 1 { cpus.append(bounds[0]) }
        }
        return (list, cpus)
    }()

    static func threadStatus(_ path: String) -> [String: String] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    /// Name → allowed-CPU lists of the threads of process `pid` (several threads may share a name).
    static func threads(of pid: pid_t) -> [String: [String]] {
        let folder = "/proc/\(pid)/task"
        var result: [String: [String]] = [:]
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
            let status = threadStatus("\(folder)/\(tid)/status")
            if let name = status["Name"], let list = status["Cpus_allowed_list"] { result[name, default: []].append(list) }
        }
        return result
    }

    static func configs(_ folder: URL) throws -> [String] {
        try ["a", "b"].map { name in
            let path = folder.appendingPathComponent("\(name).cfg").path
            try "name = \"\(name)\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\nmemory = 16\nengine = \"interp\"\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    /// Runs two cpuhog domains on two pCPUs with `extra` options until both vCPU threads and both
    /// pCPU threads are seen, and returns what /proc said of the threads then.
    static func threadsOfRun(_ extra: [String]) throws -> [String: [String]] {
        let folder = try GuestCatalogTests.temporaryFolder("pin")
        defer { try? FileManager.default.removeItem(at: folder) }
        let visor = try RunningVisor(["run"] + (try configs(folder)) + ["--pcpus", "2", "--for", "10m"] + extra)
        defer { visor.kill() }
        var seen: [String: [String]] = [:]
        // Hang guard only: the threads exist once both domains have run.
        let ready = waitUntil(seconds: 240) {
            seen = threads(of: visor.pid)
            return ["visor-pcpu0", "visor-pcpu1", "vcpu-d1v0", "vcpu-d2v0"].allSatisfy { seen[$0] != nil }
        }
        #expect(ready, "threads seen: \(seen); stderr: \(visor.stderr)")
        return seen
    }

    @Test("with --pin-pcpus, pCPU i's thread is on the i-th allowed CPU, each vCPU thread on one of those, nothing else moves",
          .enabled(if: allowed.cpus.count >= 2, "needs two host CPUs this process may use"))
    func pinned() throws {
        let seen = try Self.threadsOfRun(["--pin-pcpus"])
        let (first, second) = (String(Self.allowed.cpus[0]), String(Self.allowed.cpus[1]))
        #expect(seen["visor-pcpu0"] == [first])
        #expect(seen["visor-pcpu1"] == [second])
        for vcpu in ["vcpu-d1v0", "vcpu-d2v0"] {
            #expect(seen[vcpu]?.allSatisfy { $0 == first || $0 == second } == true, "\(vcpu): \(seen[vcpu] ?? [])")
        }
        // Every other thread (the main one, timers, the console writer a vCPU thread started)
        // keeps all the process's CPUs.
        for (name, lists) in seen where !name.hasPrefix("visor-pcpu") && !name.hasPrefix("vcpu-") {
            #expect(lists.allSatisfy { $0 == Self.allowed.list }, "\(name): \(lists)")
        }
    }

    @Test("without it, every thread keeps all the process's CPUs (the control)",
          .enabled(if: allowed.cpus.count >= 2, "needs two host CPUs this process may use"))
    func notPinned() throws {
        let seen = try Self.threadsOfRun([])
        for (name, lists) in seen {
            #expect(lists.allSatisfy { $0 == Self.allowed.list }, "\(name): \(lists)")
        }
    }

    @Test("--pin-pcpus with more pCPUs than usable host CPUs is a bad option (64)")
    func tooMany() throws {
        let result = try runVisor(["run", "--pin-pcpus", "--pcpus", "\(Self.allowed.cpus.count + 1)", "--engine", "interp"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--pin-pcpus binds each pCPU to a host CPU of its own"), "\(result.stderr)")
        let serve = try runVisor(["serve", "--pin-pcpus", "--pcpus", "\(Self.allowed.cpus.count + 1)", "--socket", "/tmp/unused.sock"])
        #expect(serve.status == 64)
    }
}
