// Domains sharing pCPUs on real engines: weights, caps and BOOST as the credit scheduler
// promises them, measured from `visor run a.cfg b.cfg --pcpus 1 --sched credit --for T`.
// What the tests check must hold beside other work on a 2-core host, where the pool's pCPU
// thread and the vCPU threads wait for a host CPU: shares are taken relative to what the
// domains got in the same run, the time a vCPU held its pCPU past what the scheduler granted
// (the host's lateness) is read from the `--trace` and left out, and BOOST is checked as the
// order of events in the trace, not as a latency. `visor bench shares` and BENCHMARKS.md have
// the figures.

import Foundation
import Testing

/// The engines here (see `Host.engines`).
private let engines = Host.engines

/// Writes an xl.cfg file into a fresh temporary directory and returns its path.
private func writeConfig(_ name: String, _ body: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("visor-cfg-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent("\(name).cfg").path
    try body.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// The Share column (percent) of the table row for domain `name`.
private func share(of name: String, in output: String) -> Double? {
    for line in output.split(separator: "\n") where line.hasPrefix(name + " ") {
        guard let field = line.split(separator: " ").first(where: { $0.hasSuffix("%") }) else { return nil }
        return Double(field.dropLast())
    }
    return nil
}

/// A `--trace` file's events in the order the pool wrote them (under its lock, so in the order
/// they happened; a run is written when it ends).
private struct SchedTraceFile {
    enum Event {
        /// A scheduling decision (times in µs on the pool's clock).
        case decision(pcpu: Int, time: Double, next: String, reason: String, slice: Double?)
        /// A stretch `vcpu` held `pcpu`.
        case run(vcpu: String, pcpu: Int, start: Double, end: Double, ended: String)
        /// `vcpu` became runnable; the policy's word on it; the pCPUs it asked to reschedule.
        case wake(vcpu: String, time: Double, standing: String?, tickled: [Int])
    }
    var events: [Event] = []

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for e in try #require(json["traceEvents"] as? [[String: Any]]) {
            let args = e["args"] as? [String: Any] ?? [:]
            let time = (e["ts"] as? Double) ?? 0
            switch (e["ph"] as? String, e["name"] as? String) {
            case ("i", "schedule"):
                events.append(.decision(pcpu: e["tid"] as? Int ?? -1, time: time, next: args["next"] as? String ?? "",
                                        reason: args["reason"] as? String ?? "", slice: args["slice_us"] as? Double))
            case ("i", "wake"):
                events.append(.wake(vcpu: args["vcpu"] as? String ?? "", time: time, standing: args["standing"] as? String,
                                    tickled: args["tickled"] as? [Int] ?? []))
            case ("X", let name?):
                events.append(.run(vcpu: name, pcpu: e["tid"] as? Int ?? -1, start: time,
                                   end: time + ((e["dur"] as? Double) ?? 0), ended: args["ended"] as? String ?? ""))
            default:
                break
            }
        }
    }

    /// Per vCPU: the time (µs) it held a pCPU, and the part of it the scheduler granted: from
    /// each decision that chose it until its slice ended or the pCPU's next decision, whichever
    /// came first. The rest is the host's lateness (a pCPU thread woken after the slice ended,
    /// a vCPU thread slow to let go).
    func heldAndGranted() -> [String: (held: Double, granted: Double)] {
        var windows: [String: [(pcpu: Int, start: Double, end: Double)]] = [:]
        var open: [Int: (vcpu: String, start: Double, end: Double)] = [:]
        for case .decision(let p, let time, let next, _, let slice) in events {
            if let o = open[p] { windows[o.vcpu, default: []].append((p, o.start, min(o.end, time))) }
            open[p] = (next, time, slice.map { time + $0 } ?? .infinity)
        }
        for (p, o) in open { windows[o.vcpu, default: []].append((p, o.start, o.end)) }
        var out: [String: (held: Double, granted: Double)] = [:]
        for case .run(let vcpu, let p, let start, let end, _) in events {
            let granted = (windows[vcpu] ?? []).filter { $0.pcpu == p }
                .reduce(0.0) { $0 + max(0, min(end, $1.end) - max(start, $1.start)) }
            out[vcpu, default: (0, 0)].held += end - start
            out[vcpu, default: (0, 0)].granted += granted
        }
        return out
    }
}

@Suite("Scheduling domains on real engines", .serialized, .timeLimit(.minutes(5)))
struct SchedulingRuntimeTests {
    @Test("two CPU hogs with weights 256 and 512 on one pCPU: the heavier gets about twice what the lighter gets",
          arguments: engines)
    func weights(engine: String) throws {
        let light = try writeConfig("light", "name = \"light\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\ncpu_weight = 256\nengine = \"\(engine)\"\n")
        let heavy = try writeConfig("heavy", "name = \"heavy\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\ncpu_weight = 512\nengine = \"\(engine)\"\n")
        // The ratio of what each got in a run, 2 ideally; not their shares of the wall time,
        // of which a host slow to hand the pCPU over leaves a part to nobody (11 % at a load of
        // 16 on 2 cores). Credit hands the pCPU out in 30 ms slices, and a late pCPU thread
        // shifts a slice from one to the other now and then: on a busy host the ratio was seen
        // from 1.36 to 2.38, the light hog gaining more often than not. So a run outside the
        // bounds is measured once more, for twice as long; weights that were not honoured (a
        // ratio near 1.0, as equal weights give) fall outside both times. `visor bench shares`
        // has the figure.
        var outcome = ""
        for seconds in [4, 8] {
            let r = try runVisor(["run", light, heavy, "--pcpus", "1", "--sched", "credit", "--for", "\(seconds)s"], timeout: 60 + Double(seconds))
            #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
            let lightShare = try #require(share(of: "light", in: r.stdout), "no share for light in:\n\(r.stdout)")
            let heavyShare = try #require(share(of: "heavy", in: r.stdout), "no share for heavy in:\n\(r.stdout)")
            let ratio = heavyShare / max(lightShare, 0.1)
            print("weights on \(engine), \(seconds) s: light \(lightShare)%, heavy \(heavyShare)%, heavy/light \(ratio)")
            if ratio >= 1.4 && ratio <= 2.8 { return }
            outcome += "\(seconds) s: heavy/light = \(ratio) (light \(lightShare)%, heavy \(heavyShare)%):\n\(r.stdout)\n"
        }
        Issue.record("the weights were not honoured in either run:\n\(outcome)")
    }

    @Test("cap=50 holds a lone CPU hog to half a pCPU: the pool parks it and grants it no more than 50%",
          arguments: engines)
    func cap(engine: String) throws {
        let capped = try writeConfig("capped", "name = \"capped\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\ncap = 50\nengine = \"\(engine)\"\n")
        let tracePath = (capped as NSString).deletingLastPathComponent + "/cap.json"
        let r = try runVisor(["run", capped, "--pcpus", "1", "--sched", "credit", "--for", "3s", "--trace", tracePath], timeout: 60)
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        let s = try #require(share(of: "capped", in: r.stdout), "no share in:\n\(r.stdout)")
        let trace = try SchedTraceFile(path: tracePath)
        let time = try #require(trace.heldAndGranted()["capped v0"], "the capped hog never ran")
        // Its share of the run, less the time it held the pCPU past what the scheduler granted
        // (the host's lateness, not the cap's): at most the cap, with a point for rounding.
        let granted = s * time.granted / time.held
        let parks = trace.events.filter { if case .decision(_, _, "idle", _, _) = $0 { true } else { false } }.count
        let comment: Comment = "share \(s)%, granted \(granted)% (held \(time.held / 1000) ms, granted \(time.granted / 1000) ms), \(parks) idle decisions"
        print("cap on \(engine): \(comment.rawValue)")
        #expect(granted <= 51, comment)
        let span = trace.events.reduce(0.0) { if case .run(_, _, _, let end, _) = $1 { max($0, end) } else { $0 } }
            - (trace.events.lazy.compactMap { if case .decision(_, let t, _, _, _) = $0 { t } else { nil } }.first ?? 0)
        // A lone uncapped hog leaves its pCPU idle only before it starts; a capped one is parked
        // again and again (every 60-120 ms at 50 %: 25 times in 3 s on a quiet host, 17 at a
        // load of 16 on 2 cores). The cap is on CPU time: a thread the host gives no more than
        // the cap while it holds its pCPU throughout has nothing to be parked for (seen in a
        // full test run: 49.4 % and 32.9 % over 3 s, held all along, one idle decision).
        let heldThroughout = time.held >= 0.9 * span
        #expect(parks >= 5 || (heldThroughout && s <= 51), "held \(time.held / 1000) of \(span / 1000) ms; \(comment)")
        // The cap should not starve it: the pool let it hold its pCPU at least a good part of the
        // traced time. Not its share, which is CPU time its thread got: on a busy host a lone
        // uncapped hog's thread was seen getting 22 % of a host CPU.
        #expect(time.held >= 0.35 * span, "the cap should not starve it: held \(time.held / 1000) of \(span / 1000) ms; \(comment)")
    }

    @Test("a sleeper next to a CPU hog is BOOSTed when it wakes and preempts the hog (credit)", arguments: engines)
    func boost(engine: String) throws {
        let warmup = 20
        let hog = try writeConfig("hog", "name = \"hog\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\nengine = \"\(engine)\"\n")
        let sleeper = try writeConfig("sleeper", "name = \"sleeper\"\nkernel = \"sleeper\"\nextra = \"ms=10 count=50 warmup=\(warmup) mode=oneshot\"\nengine = \"\(engine)\"\n")
        let tracePath = (hog as NSString).deletingLastPathComponent + "/boost.json"
        let r = try runVisor(["run", hog, sleeper, "--pcpus", "1", "--sched", "credit", "--for", "4s", "--trace", tracePath],
                             timeout: 60)
        // The sleeper made all its sleeps, none cut short. Its own verdict also bounds its worst
        // wake-up at 50 ms, which a loaded host breaks (the status is then its FAIL, 3): its
        // latency is a figure for `visor bench shares`, not a check here.
        let sleeperOutput = r.stdout.split(separator: "\n").filter { $0.hasPrefix("[sleeper] ") }
            .map { $0.dropFirst("[sleeper] ".count) }.joined(separator: "\n")
        #expect(SleeperReport.endedWell(ProcessResult(status: r.status, stdout: sleeperOutput, stderr: "", timedOut: false)),
                "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        let report = try #require(SleeperReport(sleeperOutput), "stdout: \(r.stdout)")
        #expect(report.early == 0 && report.elapsedNanoseconds >= report.expectedNanoseconds, "stdout: \(r.stdout)")

        // From the trace: each wake-up of the sleeper while the hog held the pCPU, after the
        // warm-up sleeps (until then credit still charges the sleeper for its boot: OVER, and
        // as in Xen not boosted). Its first wake-up is its start.
        var wakes = 0, besideHog = 0, boosted = 0, boostedWithoutTickle = 0, tickles = 0, ranNext = 0
        var current = "idle"
        var awaitingSleeper = false, rateLimited = false
        var outOfOrder: [String] = []
        for event in try SchedTraceFile(path: tracePath).events {
            switch event {
            case .wake("sleeper v0", _, let standing, let tickled):
                wakes += 1
                guard wakes > warmup + 1, current == "hog v0" else { continue }
                besideHog += 1
                if standing == "boost" {
                    boosted += 1
                    if !tickled.contains(0) { boostedWithoutTickle += 1 }
                }
                if tickled.contains(0) {
                    tickles += 1
                    awaitingSleeper = true
                    rateLimited = false
                }
            case .decision(0, let time, let next, let reason, _):
                if awaitingSleeper {
                    if next == "sleeper v0" && (reason.contains("after reschedule request") || rateLimited) {
                        ranNext += 1
                        awaitingSleeper = false
                    } else if next == "hog v0" && reason.hasPrefix("ratelimit") {
                        // The hog ran less than the rate limit (1 ms) since it was switched in: it
                        // keeps the pCPU that long, and the sleeper comes at the end of it.
                        rateLimited = true
                    } else {
                        outOfOrder.append("after a wake-up the decision at \(time) µs chose \(next) (\(reason))")
                        awaitingSleeper = false
                    }
                }
                current = next
            default:
                break
            }
        }
        let counts: Comment = """
            \(besideHog) wake-ups beside the hog: \(boosted) BOOSTed, \(tickles) asked pCPU 0 to reschedule, \
            \(ranNext) ran the sleeper next; \(outOfOrder.prefix(5))
            """
        print("boost on \(engine): \(counts.rawValue); latency avg \(report.averageLatencyNanoseconds / 1000) µs, max \(report.maxLatencyNanoseconds / 1000) µs")
        // The guest measures 50 sleeps after the warm-up.
        #expect(besideHog >= 25, counts)
        // Credit BOOSTs a vCPU that wakes UNDER. The sleeper runs a few µs per 10 ms, so it wakes
        // UNDER unless the host kept its thread from letting go of the pCPU for tens of ms.
        #expect(Double(boosted) >= 0.8 * Double(besideHog), counts)
        // A BOOSTed vCPU outranks the hog: its wake-up always asks the pCPU to reschedule, and
        // the pool, acting on that request, runs it next (the hog gets no new slice first). The
        // run may end before the decision after the last wake-up.
        #expect(boostedWithoutTickle == 0, counts)
        #expect(outOfOrder.isEmpty, counts)
        #expect(ranNext >= tickles - 1, counts)
    }

    @Test("--trace writes Chrome trace-event JSON with each domain's runs on the pCPU lanes")
    func trace() throws {
        let a = try writeConfig("ta", "name = \"ta\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\nengine = \"interp\"\n")
        let b = try writeConfig("tb", "name = \"tb\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\nengine = \"interp\"\n")
        let tracePath = (a as NSString).deletingLastPathComponent + "/trace.json"
        let r = try runVisor(["run", a, b, "--pcpus", "1", "--sched", "credit", "--for", "1s", "--trace", tracePath])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: tracePath))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let events = try #require(json["traceEvents"] as? [[String: Any]])
        let runs = events.filter { $0["ph"] as? String == "X" }
        #expect(Set(runs.compactMap { $0["name"] as? String }) == ["ta v0", "tb v0"])
        #expect(runs.allSatisfy { ($0["tid"] as? Int) == 0 }, "one pCPU: every run is on lane 0")
        #expect(events.contains { $0["ph"] as? String == "i" && $0["name"] as? String == "schedule" })
        #expect(events.contains { $0["ph"] as? String == "M" && $0["name"] as? String == "thread_name" })
    }

    @Test("hard affinity (cpus=) keeps a domain's vCPUs on their pCPUs")
    func hardAffinity() throws {
        let pinned = try writeConfig("pinned", "name = \"pinned\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\ncpus = \"1\"\nengine = \"interp\"\n")
        let free = try writeConfig("free", "name = \"free\"\nkernel = \"cpuhog\"\nextra = \"ms=600000\"\ncpus = \"0\"\nengine = \"interp\"\n")
        let tracePath = (pinned as NSString).deletingLastPathComponent + "/affinity.json"
        let r = try runVisor(["run", pinned, free, "--pcpus", "2", "--for", "1s", "--trace", tracePath])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: tracePath))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let runs = try #require(json["traceEvents"] as? [[String: Any]]).filter { $0["ph"] as? String == "X" }
        let lanes = Dictionary(grouping: runs, by: { $0["name"] as? String ?? "" }).mapValues { Set($0.compactMap { $0["tid"] as? Int }) }
        #expect(lanes["pinned v0"] == [1])
        #expect(lanes["free v0"] == [0])
    }

    @Test("a bad config file is refused naming the file, line and key; nothing runs")
    func badConfig() throws {
        let bad = try writeConfig("bad", "name = \"bad\"\nkernel = \"hello\"\ncpu_weight = 70000\n")
        let r = try runVisor(["run", bad])
        #expect(r.status == 65)
        #expect(r.stderr.contains("bad.cfg:3"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("cpu_weight"), "stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test("several domains print their console lines prefixed with their names, and a share table")
    func consoles() throws {
        let one = try writeConfig("one", "name = \"one\"\nkernel = \"hello\"\nengine = \"interp\"\n")
        let two = try writeConfig("two", "name = \"two\"\nkernel = \"hello\"\nengine = \"interp\"\n")
        let r = try runVisor(["run", one, two])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("[one] Hello from a Visor guest!"))
        #expect(r.stdout.contains("[two] Hello from a Visor guest!"))
        #expect(r.stdout.contains("Name") && r.stdout.contains("Share"))
    }

    @Test("--sched, --pcpus and --for reject bad values with clear errors")
    func badOptions() throws {
        for (args, needle) in [(["--sched", "fifo"], "sched"), (["--pcpus", "0"], "pcpus"), (["--for", "soon"], "for")] {
            let r = try runVisor(["run", "hello"] + args)
            #expect(r.status != 0)
            #expect(r.stderr.contains(needle), "stderr for \(args): \(r.stderr)")
        }
    }
}
