// `--trace FILE`: every scheduling decision as Chrome trace-event JSON (the format Perfetto and
// chrome://tracing read): one timeline lane per pCPU, a complete event ("ph": "X") per stretch a
// vCPU held that pCPU, named after the vCPU, an instant event ("ph": "i", "schedule") per
// decision with its reason, and one ("wake") per wake-up with the vCPU's standing in the policy
// and the pCPUs it made reschedule (the vCPUs it may preempt there).

import Foundation

/// Writes trace events to a file as they happen. Not thread-safe: the CPU pool calls it with its
/// lock held.
final class SchedTrace {
    private let handle: FileHandle
    private var buffer = ""
    private var first = true
    let path: String

    /// Creates (or truncates) `path`. Throws with the path in the message when it cannot.
    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw LaunchError.badOption("--trace: cannot write \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw LaunchError.badOption("--trace: cannot write \(path)")
        }
        self.handle = handle
        buffer = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
    }

    /// Names the lanes: one process "pCPUs" with a thread per pCPU.
    func describe(pcpuCount: Int) {
        append("{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"pCPUs\"}}")
        for p in 0..<pcpuCount {
            append("{\"ph\":\"M\",\"pid\":1,\"tid\":\(p),\"name\":\"thread_name\",\"args\":{\"name\":\"pCPU \(p)\"}}")
            append("{\"ph\":\"M\",\"pid\":1,\"tid\":\(p),\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":\(p)}}")
        }
    }

    /// A vCPU held pCPU `pcpu` from `start` to `end` (nanoseconds on the pool's clock).
    func run(vcpu: String, pcpu: Int, start: UInt64, end: UInt64, endedBy: String) {
        let duration = end >= start ? end - start : 0
        append("{\"ph\":\"X\",\"pid\":1,\"tid\":\(pcpu),\"name\":\(Self.quote(vcpu)),\"cat\":\"vcpu\","
               + "\"ts\":\(Self.microseconds(start)),\"dur\":\(Self.microseconds(duration)),"
               + "\"args\":{\"ended\":\(Self.quote(endedBy))}}")
    }

    /// A scheduling decision on `pcpu` at `time`.
    func decision(pcpu: Int, time: UInt64, chosen: String, reason: String, slice: UInt64?) {
        let sliceField = slice.map { ",\"slice_us\":\(Self.microseconds($0))" } ?? ""
        append("{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":\(pcpu),\"name\":\"schedule\",\"cat\":\"decision\","
               + "\"ts\":\(Self.microseconds(time)),\"args\":{\"next\":\(Self.quote(chosen)),\"reason\":\(Self.quote(reason))"
               + "\(sliceField)}}")
    }

    /// A vCPU became runnable at `time`; `standing` is the policy's word on it (credit: its
    /// priority) and `tickled` the pCPUs it asked to reschedule, with the vCPU each was running.
    func wake(vcpu: String, time: UInt64, standing: String?, tickled: [(pcpu: Int, running: String)]) {
        let standingField = standing.map { ",\"standing\":\(Self.quote($0))" } ?? ""
        let lanes = tickled.map { String($0.pcpu) }.joined(separator: ",")
        let running = tickled.map { Self.quote($0.running) }.joined(separator: ",")
        // On the first tickled pCPU's lane; a wake-up that tickled none is an instant of the process.
        let place = tickled.first.map { "\"s\":\"t\",\"pid\":1,\"tid\":\($0.pcpu)" } ?? "\"s\":\"p\",\"pid\":1,\"tid\":0"
        append("{\"ph\":\"i\",\(place),\"name\":\"wake\",\"cat\":\"wake\",\"ts\":\(Self.microseconds(time)),"
               + "\"args\":{\"vcpu\":\(Self.quote(vcpu))\(standingField),\"tickled\":[\(lanes)],\"running\":[\(running)]}}")
    }

    /// Ends the JSON array and closes the file.
    func finish() {
        buffer += "\n]}\n"
        flush()
        try? handle.close()
    }

    private func append(_ event: String) {
        if !first { buffer += ",\n" }
        first = false
        buffer += event
        if buffer.utf8.count > 1 << 16 { flush() }
    }

    private func flush() {
        handle.write(Data(buffer.utf8))
        buffer.removeAll(keepingCapacity: true)
    }

    /// Nanoseconds as the microseconds trace events count in, with three decimals.
    static func microseconds(_ ns: UInt64) -> String {
        let fraction = ns % 1000
        let padded = String(repeating: "0", count: fraction < 10 ? 2 : fraction < 100 ? 1 : 0) + "\(fraction)"
        return "\(ns / 1000).\(padded)"
    }

    /// A JSON string literal.
    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
