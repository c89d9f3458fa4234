// `visor bench lifecycle`: what a domain's life costs through the toolstack. A daemon's
// `Toolstack` and `APIServer` run in this process on a temporary socket; `ToolstackClient` drives
// them over the socket, as `visor create` and `visor destroy` do. Measured per domain, over many
// in a row: create (the API request) to the first byte the guest writes to its console, and
// destroy (the request returns once the domain is gone); the API's round trip (GET /host); and
// whether a destroyed domain gives back its memory and threads (this process's RSS and thread
// count before and after). Anchors: Firecracker's specification (VMM start ≤ 8 CPU ms, ≤ 5 MiB
// overhead per VM) and issue #14's goals (create to first byte ≤ 10 ms on interp, ≤ 5 MiB per
// domain beyond its RAM).

import Foundation
import Visor
import VisorAPI

public enum LifecycleBenchmark {
    public struct Result: Sendable {
        public var engine: String
        public var guest: String
        /// Milliseconds, one per domain.
        public var createToFirstByte: [Double]
        public var destroy: [Double]
        /// Microseconds per GET /host.
        public var roundTrip: [Double]
        /// This process before the domains (after one warm-up domain) and after all were destroyed.
        public var before: ProcessFootprint
        public var after: ProcessFootprint
        /// With `liveDomains` domains running at once (each past its first console byte).
        public var withLive: ProcessFootprint
        /// Of `withLive`'s RSS, what the live domains' guest RAM accounts for (/proc/self/smaps).
        public var liveGuestRAMKiB: Int
        public var liveDomains: Int
        public var memoryMiB: Int
    }

    /// Resident memory and thread count of this process, from /proc/self/status.
    public struct ProcessFootprint: Sendable {
        public var residentKiB: Int
        public var threads: Int

        public static func now() -> ProcessFootprint {
            let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            func field(_ name: String) -> Int {
                for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                    let digits = line.dropFirst(name.count + 1).filter(\.isNumber)
                    return Int(digits) ?? 0
                }
                return 0
            }
            return ProcessFootprint(residentKiB: field("VmRSS"), threads: field("Threads"))
        }
    }

    /// Resident KiB of the guest RAM allocations at `ranges`, page by page with mincore(2)
    /// (smaps would not do: the kernel may merge an allocation with its neighbours).
    static func residentKiB(in ranges: [Range<UInt>]) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var total = 0
        for range in ranges {
            let pages = (Int(range.upperBound - range.lowerBound) + page - 1) / page
            var vector = [UInt8](repeating: 0, count: pages)
            // SAFETY: mincore only reads the page tables of [start, start + length) and writes
            // one byte per page into `vector`, which has exactly that many; the range is a live
            // mapping owned by a domain the caller keeps alive (listed in the toolstack).
            let status = vector.withUnsafeMutableBufferPointer { buffer in
                mincore(UnsafeMutableRawPointer(bitPattern: range.lowerBound), Int(range.upperBound - range.lowerBound),
                        buffer.baseAddress)
            }
            guard status == 0 else { continue }
            total += vector.reduce(0) { $0 + Int($1 & 1) } * page / 1024
        }
        return total
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Creates and destroys `domains` domains of built-in guest `guest` one after the other on
    /// `engine`, then runs `liveDomains` at once, then `roundTrips` GET /host requests.
    public static func run(domains: Int, liveDomains: Int = 10, roundTrips: Int = 200, engine: String,
                           guest: String = "minios", memoryMiB: Int = 16) throws -> Result {
        let folder = "/tmp/visor-lifecycle-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let socket = folder + "/v.sock"
        let toolstack = try Toolstack(pcpus: HostCPU.count, scheduler: .credit2, defaultEngine: engine,
                                      log: ToolstackLog(echoToStandardError: false))
        let server = APIServer(toolstack: toolstack)
        try server.start(socketPath: socket)
        defer {
            toolstack.shutdown()
            server.shutdown()
        }
        let client = ToolstackClient(socketPath: socket)

        func configuration(_ name: String) throws -> String {
            let path = "\(folder)/\(name).cfg"
            try """
                name = "\(name)"
                kernel = "\(guest)"
                memory = \(memoryMiB)
                engine = "\(engine)"
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        func fail(_ what: String, _ error: CommandFailure) -> Failure { Failure(description: "\(what): \(error.message)") }
        /// Creates `name` and returns the nanoseconds from the request to its first console byte.
        func createAndWaitForOutput(_ name: String, path: String) throws -> UInt64 {
            let start = DispatchTime.now().uptimeNanoseconds
            do { _ = try client.create(configurationFile: path) } catch { throw fail("creating \(name)", error) }
            // In-process, so the poll costs no request; a hang guard only.
            let deadline = start &+ 60_000_000_000
            while true {
                if let info = try? toolstack.info(of: name), info.consoleBytes > 0 { break }
                guard DispatchTime.now().uptimeNanoseconds < deadline else {
                    throw Failure(description: "\(name) wrote nothing to its console within 60 s")
                }
                usleep(20)
            }
            return DispatchTime.now().uptimeNanoseconds &- start
        }
        func destroy(_ name: String) throws -> UInt64 {
            let start = DispatchTime.now().uptimeNanoseconds
            do { _ = try client.destroy(name) } catch { throw fail("destroying \(name)", error) }
            return DispatchTime.now().uptimeNanoseconds &- start
        }

        // One domain first: the guest image is built or found, NIO's and the pool's threads start.
        _ = try createAndWaitForOutput("warmup", path: try configuration("warmup"))
        _ = try destroy("warmup")
        let paths = try (0..<domains).map { try configuration("d\($0)") }
        let before = ProcessFootprint.now()
        var created: [Double] = [], destroyed: [Double] = []
        for (index, path) in paths.enumerated() {
            created.append(Double(try createAndWaitForOutput("d\(index)", path: path)) / 1e6)
            destroyed.append(Double(try destroy("d\(index)")) / 1e6)
        }
        // A destroyed domain's threads have been joined when destroy returns, but the kernel
        // may list an exiting thread for a moment: give the count up to two seconds to settle.
        var after = ProcessFootprint.now()
        for _ in 0..<200 where after.threads > before.threads {
            usleep(10_000)
            after = ProcessFootprint.now()
        }

        let livePaths = try (0..<liveDomains).map { try configuration("live\($0)") }
        for (index, path) in livePaths.enumerated() { _ = try createAndWaitForOutput("live\(index)", path: path) }
        let withLive = ProcessFootprint.now()
        let liveGuestRAMKiB = Self.residentKiB(in: toolstack.guestMemoryAddresses)
        for index in 0..<liveDomains { _ = try destroy("live\(index)") }

        var trips: [Double] = []
        for _ in 0..<roundTrips {
            let start = DispatchTime.now().uptimeNanoseconds
            do { _ = try client.hostInfo() } catch { throw fail("GET /host", error) }
            trips.append(Double(DispatchTime.now().uptimeNanoseconds &- start) / 1e3)
        }
        return Result(engine: engine, guest: guest, createToFirstByte: created, destroy: destroyed, roundTrip: trips,
                      before: before, after: after, withLive: withLive, liveGuestRAMKiB: liveGuestRAMKiB,
                      liveDomains: liveDomains, memoryMiB: memoryMiB)
    }
}

extension LifecycleBenchmark.Result {
    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count - 1)).rounded())))
        return sorted[index]
    }

    /// The table `visor bench lifecycle` prints.
    public var report: String {
        func row(_ label: String, _ values: [Double], unit: String) -> String {
            func f(_ v: Double) -> String { String(format: "%9.2f", v) }
            return label.padding(toLength: 34, withPad: " ", startingAt: 0) + f(Self.percentile(values, 0.5)) + " "
                + f(Self.percentile(values, 0.9)) + " " + f(values.max() ?? .nan) + "  " + unit
        }
        let perLive = Double(withLive.residentKiB - after.residentKiB) / 1024 / Double(max(1, liveDomains))
        let ramPerLive = Double(liveGuestRAMKiB) / 1024 / Double(max(1, liveDomains))
        var lines = [
            "\(createToFirstByte.count) domains of '\(guest)' (\(memoryMiB) MiB, 1 vCPU) on \(engine), created and destroyed one after the other",
            "                                     median       p90       max",
            row("create to first console byte", createToFirstByte, unit: "ms"),
            row("destroy (request to gone)", destroy, unit: "ms"),
            row("API round trip (GET /host)", roundTrip, unit: "µs"),
            "",
            "process RSS     before \(before.residentKiB / 1024) MiB, after \(after.residentKiB / 1024) MiB "
                + "(\(String(format: "%+.1f", Double(after.residentKiB - before.residentKiB) / 1024)) MiB over \(createToFirstByte.count) domains)",
            "process threads before \(before.threads), after \(after.threads)",
            "with \(liveDomains) domains live: RSS \(withLive.residentKiB / 1024) MiB, "
                + "\(String(format: "%.1f", perLive)) MiB per domain, of which guest RAM \(String(format: "%.1f", ramPerLive)) MiB: "
                + "\(String(format: "%.1f", perLive - ramPerLive)) MiB beyond it; \(withLive.threads) threads",
            "",
            "anchors: Firecracker's specification: VMM start <= 8 CPU ms, <= 5 MiB overhead per VM;",
            "         issue #14's goals: create to first byte <= 10 ms on interp, <= 5 MiB per domain beyond its RAM",
        ]
        if after.threads > before.threads { lines.append("NOTE: threads were not all returned") }
        return lines.joined(separator: "\n")
    }
}
