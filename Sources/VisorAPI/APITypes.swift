// What the API's requests and responses carry, shared by the server and its clients; the
// OpenAPI document docs/api.yaml describes the same shapes.

import Foundation
@_exported import Visor

/// The body of every 4xx and 5xx response: `{"error": "what was wrong"}`.
public struct APIErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}

/// The daemon's log, oldest line first.
public struct LogBody: Codable, Sendable, Equatable {
    public var lines: [String]
    public init(lines: [String]) { self.lines = lines }
}

/// The answer to console input: how many of the bytes sent the guest's console took.
public struct ConsoleInputBody: Codable, Sendable, Equatable {
    public var accepted: Int
    public init(accepted: Int) { self.accepted = accepted }
}

/// Why a request body was refused.
struct BodyProblem: Error { var message: String }

extension SchedParameters {
    static let keys: Set<String> = ["scheduler", "weight", "cap", "periodMicroseconds", "budgetMicroseconds", "extratime"]

    /// A change as the API takes it: a JSON object with only known keys, each of its type.
    static func decodeStrictly(_ body: [UInt8]) -> Result<SchedParameters, BodyProblem> {
        APIJSON.decodeStrictly(SchedParameters.self, from: body, keys: keys, example: #"{"weight": 512, "cap": 0}"#) { key in
            key == "extratime" ? "true or false" : key == "scheduler" ? "a string" : "a whole number"
        }
    }
}

extension AffinityChange {
    static func decodeStrictly(_ body: [UInt8]) -> Result<AffinityChange, BodyProblem> {
        APIJSON.decodeStrictly(AffinityChange.self, from: body, keys: ["hard", "soft"],
                               example: #"{"hard": "0-1", "soft": "all"}"#) { _ in "a cpu list in a string, such as \"0-3\"" }
    }
}

extension ShutdownOptions {
    /// An empty body asks with no time limit; otherwise `{"timeoutSeconds": N}`.
    static func decodeStrictly(_ body: [UInt8]) -> Result<ShutdownOptions, BodyProblem> {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { return .success(ShutdownOptions()) }
        return APIJSON.decodeStrictly(ShutdownOptions.self, from: body, keys: ["timeoutSeconds"],
                                      example: #"{"timeoutSeconds": 60}"#) { _ in "a whole number of seconds" }
    }
}

/// JSON as the API writes it: keys sorted, so outputs compare and diff.
enum APIJSON {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every type sent is a plain struct of strings and numbers: encoding cannot fail.
        return (try? Array(encoder.encode(value))) ?? Array(#"{"error":"the response could not be encoded"}"#.utf8)
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) -> T? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }

    /// A request body that must be a JSON object with some of `keys` and no other, each value of
    /// its type (`expected` says which, by key, for the message).
    static func decodeStrictly<T: Decodable>(_ type: T.Type, from body: [UInt8], keys: Set<String>, example: String,
                                             expected: (String) -> String) -> Result<T, BodyProblem> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)), let fields = object as? [String: Any] else {
            return .failure(BodyProblem(message: "the body must be a JSON object such as \(example)"))
        }
        let unknown = Set(fields.keys).subtracting(keys).sorted()
        guard unknown.isEmpty else {
            return .failure(BodyProblem(message: "unknown key\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0.prefix(40))'" }.joined(separator: ", ")): the keys are \(keys.sorted().joined(separator: ", "))"))
        }
        guard !fields.isEmpty else {
            return .failure(BodyProblem(message: "the body names nothing to set: the keys are \(keys.sorted().joined(separator: ", "))"))
        }
        do {
            return .success(try JSONDecoder().decode(type, from: Data(body)))
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            return .failure(BodyProblem(message: "\(key) must be \(expected(key))"))
        } catch {
            return .failure(BodyProblem(message: "the body is not a valid object such as \(example): \(error)"))
        }
    }
}

/// Where `visor serve` listens and its clients connect: `--socket PATH`, else
/// `$XDG_RUNTIME_DIR/visor.sock`, else `/run/visor/visor.sock`.
public enum SocketLocation {
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime.hasSuffix("/") ? runtime + "visor.sock" : runtime + "/visor.sock"
        }
        return "/run/visor/visor.sock"
    }

    /// `path`, or the default when nil.
    public static func resolve(_ path: String?) -> String { path ?? defaultPath() }

    /// The most bytes a Unix socket path may have (sun_path holds 108 with its NUL).
    public static let maximumPathBytes = 107
}

/// How the xl-style commands show what the API returns. Pure functions, for golden tests.
public enum ToolstackFormat {
    /// `xl list`'s table: Name (40 wide), ID, Mem (MiB), VCPUs, State, Time(s) (CPU seconds, one
    /// decimal), in xl's column layout.
    public static func list(_ domains: [DomainInfo]) -> String {
        var lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
        for d in domains {
            let name = d.name.padding(toLength: max(40, d.name.count), withPad: " ", startingAt: 0)
            lines.append(name + " " + pad(String(d.id), 5) + " " + pad(String(d.memoryMiB), 5) + " "
                         + pad(String(d.vcpus), 5) + "     " + d.state + "  "
                         + pad(String(format: "%.1f", Double(d.cpuNanoseconds) / 1e9), 8))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `xl sched-credit`'s table: Name, ID, Weight, Cap (256 and 0 when the domain has the defaults).
    public static func shares(_ domains: [DomainInfo]) -> String {
        var lines = ["Name                                ID Weight  Cap"]
        for d in domains {
            let name = d.name.padding(toLength: max(33, d.name.count), withPad: " ", startingAt: 0)
            lines.append(name + " " + pad(String(d.id), 4) + " " + pad(String(d.weight ?? 256), 6) + " "
                         + pad(String(d.cap ?? 0), 4))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `xl sched-rtds -d NAME`'s table: Name, ID, Period and Budget (µs), Extratime.
    public static func rtdsDomains(_ rows: [(DomainInfo, SchedParameters)]) -> String {
        var lines = ["Name                                ID    Period    Budget  Extratime"]
        for (d, p) in rows {
            lines.append(padName(d.name) + " " + pad(String(d.id), 4) + " " + pad(p.periodMicroseconds.map(String.init) ?? "-", 9)
                         + " " + pad(p.budgetMicroseconds.map(String.init) ?? "-", 9) + " " + pad(yesNo(p.extratime), 10))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `xl sched-rtds`'s per-vCPU table: Name, ID, VCPU, Period and Budget (µs), Extratime.
    public static func rtdsVCPUs(_ vcpus: [VCPUSchedParameters]) -> String {
        var lines = ["Name                                ID VCPU    Period    Budget  Extratime"]
        for v in vcpus {
            lines.append(padName(v.domain) + " " + pad(String(v.domainID), 4) + " " + pad(String(v.vcpu), 4) + " "
                         + pad(v.periodMicroseconds.map(String.init) ?? "-", 9) + " "
                         + pad(v.budgetMicroseconds.map(String.init) ?? "-", 9) + " " + pad(yesNo(v.extratime), 10))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func padName(_ name: String) -> String {
        name.padding(toLength: max(33, name.count), withPad: " ", startingAt: 0)
    }

    private static func yesNo(_ flag: Bool?) -> String { flag.map { $0 ? "yes" : "no" } ?? "-" }

    /// `xl vcpu-list`'s table: Name, ID, VCPU, CPU (the pCPU held, '-' for none), State,
    /// Time(s), and the hard / soft affinity.
    public static func vcpus(_ vcpus: [VCPUStatus]) -> String {
        var lines = ["Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"]
        for v in vcpus {
            let name = v.domain.padding(toLength: max(32, v.domain.count), withPad: " ", startingAt: 0)
            lines.append(name + " " + pad(String(v.domainID), 5) + " " + pad(String(v.vcpu), 5) + " "
                         + pad(v.pcpu.map(String.init) ?? "-", 5) + "   " + v.state + "  "
                         + pad(String(format: "%.1f", Double(v.cpuNanoseconds) / 1e9), 8) + " "
                         + v.hardAffinity + " / " + v.softAffinity)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `xl info`'s `key : value` lines.
    public static func info(_ host: HostInfo, socket: String) -> String {
        let rows: [(String, String)] = [
            ("host", host.host), ("release", host.release), ("machine", host.machine),
            ("nr_cpus", String(host.hostCPUs)), ("nr_pcpus", String(host.pcpus)),
            ("visor_scheduler", host.scheduler), ("default_engine", host.defaultEngine),
            ("engines", host.engines.joined(separator: " ")), ("nr_domains", String(host.domains)),
            ("uptime", String(format: "%.0f s", host.uptimeSeconds)), ("daemon_pid", String(host.pid)),
            ("socket", socket),
        ]
        return rows.map { $0.0.padding(toLength: 23, withPad: " ", startingAt: 0) + ": " + $0.1 }
            .joined(separator: "\n") + "\n"
    }

    /// `s` right-aligned in `width` columns (never cut).
    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}
