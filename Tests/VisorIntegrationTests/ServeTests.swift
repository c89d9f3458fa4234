// `visor serve` and its clients: a daemon on a temporary socket, domains created, listed,
// paused, watched, destroyed through the API and the xl-style commands, the API's errors, and
// the commands' word when no daemon runs. Mechanisms only (the scheduler's accounting, what the
// log and the list say), never wall-clock bounds; waits have generous hang guards.

import Foundation
import NIOHTTP1
import Synchronization
import Testing
@testable import VisorAPI

/// A `visor serve` on a socket in a fresh temporary folder, with config files written there.
final class ServedDaemon {
    let folder: String
    let socket: String
    let process: RunningVisor
    let client: ToolstackClient

    init(pcpus: Int = 2, sched: String = "credit") throws {
        // Short: a Unix socket path has at most 107 bytes.
        folder = "/tmp/visor-serve-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        socket = folder + "/v.sock"
        process = try RunningVisor(["serve", "--socket", socket, "--pcpus", "\(pcpus)", "--sched", sched,
                                    "--engine", "interp"])
        client = ToolstackClient(socketPath: socket)
        // Hang guard only: the daemon answers once it listens.
        let up = waitUntil(seconds: 120) { (try? client.hostInfo()) != nil }
        guard up else {
            process.kill()
            throw DaemonDidNotStart(stderr: process.stderr)
        }
    }

    struct DaemonDidNotStart: Error { var stderr: String }

    /// Writes `name.cfg` running `kernel` with `extra` in `memory` MiB on `engine`, plus the
    /// xl.cfg lines `more`; returns its path.
    func config(_ name: String, kernel: String = "cpuhog", extra: String = "ms=3600000", memory: Int = 16,
                more: [String] = [], engine: String = "interp") throws -> String {
        let path = "\(folder)/\(name).cfg"
        let lines = ["name = \"\(name)\"", "kernel = \"\(kernel)\"", "extra = \"\(extra)\"", "memory = \(memory)"]
            + more + ["engine = \"\(engine)\""]
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `visor ARGS --socket SOCKET`.
    func visor(_ arguments: [String]) throws -> ProcessResult {
        try runVisor(arguments + ["--socket", socket], timeout: 300)
    }

    func cpu(_ name: String) throws -> UInt64 { try client.domain(name).cpuNanoseconds }

    /// SIGTERM and the exit status (nil: it did not exit within the hang guard; it is killed).
    func terminate() -> Int32? {
        process.signal(SIGTERM)
        guard process.waitForExit(seconds: 180) != nil else {
            process.kill()
            return nil
        }
        return process.status
    }

    deinit {
        process.kill()
        try? FileManager.default.removeItem(atPath: folder)
    }
}

@Suite("visor serve: the toolstack daemon and its API", .serialized, .timeLimit(.minutes(10)))
struct ServeTests {
    @Test("create three domains, list them as text and JSON, pause one (its CPU time stops while another's grows), destroy, SIGTERM")
    func lifecycle() throws {
        let daemon = try ServedDaemon()
        // One through the command, one through the API; `hello` powers off by itself.
        let created = try daemon.visor(["create", try daemon.config("hog1")])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout.contains("created domain 'hog1' (id 1)"))
        let second = try daemon.client.create(configurationFile: try daemon.config("hog2"))
        #expect(second.name == "hog2" && second.id == 2 && second.memoryMiB == 16 && second.vcpus == 1)
        let hello = try daemon.client.create(configurationFile: try daemon.config("hi", kernel: "hello", extra: ""))
        #expect(hello.id == 3)

        // xl's default on_poweroff: the domain that powered off is gone, and the log says how it ended.
        #expect(waitUntil(seconds: 120) { ((try? daemon.client.list()) ?? []).count == 2 })
        let log = try daemon.client.dmesg()
        #expect(log.contains { $0.contains("domain 3 'hi' ended: powered off; destroyed") }, "\(log)")

        let text = try daemon.visor(["list"])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "Name                                        ID   Mem VCPUs\tState\tTime(s)")
        #expect(lines.count == 3)
        for (line, (name, id)) in zip(lines.dropFirst(), [("hog1", 1), ("hog2", 2)]) {
            // xl's layout: name in 40 columns, then ID, Mem and VCPUs right-aligned in 5, the state, the time.
            #expect(line.hasPrefix(name.padding(toLength: 40, withPad: " ", startingAt: 0) + "     \(id)    16     1     "),
                    "\(line)")
        }
        let json = try daemon.visor(["list", "--json"])
        #expect(json.status == 0)
        let listed = try JSONDecoder().decode([DomainInfo].self, from: Data(json.stdout.utf8))
        #expect(listed.map(\.name) == ["hog1", "hog2"])
        #expect(listed.allSatisfy { $0.engine == "interp" && $0.kernel == "cpuhog" && !$0.paused })

        // Both run: each gets CPU time (hang guard only).
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog1")) ?? 0) > 0 && ((try? daemon.cpu("hog2")) ?? 0) > 0 })

        // Pause hog1: the call returns once its vCPU has left its pCPU, so its charged time is
        // frozen from then on, while hog2's keeps growing.
        let paused = try daemon.visor(["pause", "hog1"])
        #expect(paused.status == 0, "\(paused.stderr)")
        let frozen = try daemon.cpu("hog1")
        let other = try daemon.cpu("hog2")
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog2")) ?? 0) > other &+ 200_000_000 })
        #expect(try daemon.cpu("hog1") == frozen)
        let pausedInfo = try daemon.client.domain("hog1")
        #expect(pausedInfo.paused && pausedInfo.state == "--p---")
        #expect(try daemon.visor(["list"]).stdout.contains("--p---"))

        // Unpaused, it runs again.
        #expect(try daemon.visor(["unpause", "hog1"]).status == 0)
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog1")) ?? 0) > frozen })

        // Destroy returns once the domain is gone; a second destroy finds nothing.
        #expect(try daemon.visor(["destroy", "hog1"]).status == 0)
        #expect(try daemon.client.list().map(\.name) == ["hog2"])
        let again = try daemon.visor(["destroy", "hog1"])
        #expect(again.status == 1 && again.stderr.contains("no domain is called 'hog1'"), "\(again.stderr)")

        // SIGTERM destroys what is left, stops the daemon and removes its socket.
        #expect(daemon.terminate() == 0, "\(daemon.process.stderr)")
        #expect(daemon.process.stderr.contains("domain 2 'hog2' ended: stopped: the daemon is stopping"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test("on_crash and on_poweroff: preserve keeps the ended domain with its dump until destroy; restart boots it again under a new ID until the restart-loop guard; the others run on")
    func endActions() throws {
        let daemon = try ServedDaemon()
        _ = try daemon.client.create(configurationFile: try daemon.config("hog"))
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog")) ?? 0) > 0 })
        let before = try daemon.cpu("hog")
        func logged(_ words: String) -> Bool { ((try? daemon.client.dmesg()) ?? []).contains { $0.contains(words) } }

        // Preserved after a crash: listed as crashed (not dying), its register dump in list -l,
        // refused what only a running domain can do, removed by destroy.
        _ = try daemon.client.create(configurationFile: try daemon.config("crashy", kernel: "triplefault", extra: "",
                                                                          more: ["on_crash = \"preserve\""]))
        #expect(waitUntil(seconds: 120) { (try? daemon.client.domain("crashy"))?.state == "----c-" })
        let crashed = try #require(try daemon.client.details(["crashy"]).first)
        #expect(crashed.end?.outcome.contains("triple fault") == true, "\(String(describing: crashed.end))")
        #expect(crashed.end?.registers?.contains("rip=") == true, "\(String(describing: crashed.end))")
        #expect(crashed.config.onCrash == .preserve)
        #expect(logged("domain 2 'crashy' ended: crashed: vCPU 0: triple fault (the vCPU shut down); preserved (on_crash = preserve)"))
        let pause = try daemon.visor(["pause", "crashy"])
        #expect(pause.status == 1 && pause.stderr.contains("domain 'crashy' has ended and is kept for inspection"), "\(pause.stderr)")
        #expect(try daemon.visor(["destroy", "crashy"]).status == 0)
        #expect(try daemon.client.list().map(\.name) == ["hog"])
        #expect(logged("domain 2 'crashy' (preserved) destroyed"))

        // Preserved after a power-off: shut down, not crashed.
        _ = try daemon.client.create(configurationFile: try daemon.config("hi", kernel: "hello", extra: "",
                                                                          more: ["on_poweroff = \"preserve\""]))
        #expect(waitUntil(seconds: 120) { (try? daemon.client.domain("hi"))?.state == "---s--" })
        #expect(try daemon.client.details(["hi"]).first?.end?.outcome == "powered off")

        // Restarted after each crash, under a new ID, until it has been restarted
        // `maximumQuickRestarts` times in a row with short runs; then destroyed.
        _ = try daemon.client.create(configurationFile: try daemon.config("loop", kernel: "triplefault", extra: "",
                                                                          more: ["on_crash = \"restart\""]))
        #expect(waitUntil(seconds: 180) { logged("restarted 5 times in a row") }, "\((try? daemon.client.dmesg()) ?? [])")
        let log = try daemon.client.dmesg()
        let restarts = log.filter { $0.contains("'loop' ended: crashed") && $0.contains("restarted (on_crash = restart) as domain") }
        #expect(restarts.count == Toolstack.maximumQuickRestarts, "\(log)")
        #expect(try daemon.client.list().map(\.name) == ["hog", "hi"])

        // Through all of it the hog ran on.
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog")) ?? 0) > before })
        #expect(try daemon.client.domain("hog").state.hasPrefix("r") || (try daemon.client.domain("hog").state.hasPrefix("-b")))
        #expect(daemon.terminate() == 0, "\(daemon.process.stderr)")
        #expect(daemon.process.stderr.contains("domain 3 'hi' (preserved) destroyed"), "\(daemon.process.stderr)")
    }

    @Test("domains on two engines side by side: kvm and interp domains run on one pool, each listed with its engine; a kvm domain that crashes never stops the others",
          .enabled(if: Host.kvmAvailable, "needs /dev/kvm"))
    func twoEngines() throws {
        let daemon = try ServedDaemon()
        _ = try daemon.client.create(configurationFile: try daemon.config("onkvm", engine: "kvm"))
        _ = try daemon.client.create(configurationFile: try daemon.config("oninterp"))
        #expect(waitUntil(seconds: 180) { ((try? daemon.cpu("onkvm")) ?? 0) > 0 && ((try? daemon.cpu("oninterp")) ?? 0) > 0 })
        let listed = try daemon.client.list()
        #expect(listed.map(\.name) == ["onkvm", "oninterp"] && listed.map(\.engine) == ["kvm", "interp"])
        // Both guests run their code, not only hold a pCPU: each has written its banner.
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.client.domain("onkvm"))?.consoleBytes ?? 0) > 0 && ((try? daemon.client.domain("oninterp"))?.consoleBytes ?? 0) > 0
        })

        // A kvm domain triple faults beside them: it is destroyed (on_crash's default), they run on.
        let before = (try daemon.cpu("onkvm"), try daemon.cpu("oninterp"))
        _ = try daemon.client.create(configurationFile: try daemon.config("kvmcrash", kernel: "triplefault", extra: "", engine: "kvm"))
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.client.dmesg()) ?? []).contains { $0.contains("'kvmcrash' ended: crashed: vCPU 0: triple fault") }
        })
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.cpu("onkvm")) ?? 0) > before.0 && ((try? daemon.cpu("oninterp")) ?? 0) > before.1
        })
        #expect(try daemon.client.list().map(\.name) == ["onkvm", "oninterp"])
        #expect(try daemon.visor(["destroy", "onkvm"]).status == 0)
        #expect(daemon.terminate() == 0, "\(daemon.process.stderr)")
    }

    @Test("shutdown and reboot: a guest that listens powers off or reboots by PV or the ACPI power button, and on_poweroff / on_reboot follow; one that does not is refused and runs on; a time limit destroys or resets a guest that does not act")
    func shutdownAndReboot() throws {
        let daemon = try ServedDaemon()
        let api = daemon.client.client
        func logged(_ words: String) -> Bool { ((try? daemon.client.dmesg()) ?? []).contains { $0.contains(words) } }
        /// Waits until the domain's console (kept and live output) has shown `text` `count` times.
        func console(_ name: String, shows text: String, times count: Int = 1) -> Bool {
            let received = Mutex<[UInt8]>([])
            guard let stream = try? api.stream("/domains/\(name)/console", onBody: { b in received.withLock { $0 += b } }) else {
                return false
            }
            defer { stream.channel.close(promise: nil) }
            return waitUntil(seconds: 180) {
                String(decoding: received.withLock { $0 }, as: UTF8.self).components(separatedBy: text).count > count
            }
        }
        _ = try daemon.client.create(configurationFile: try daemon.config("hog"))
        // Spins with interrupts off for ever: it hears nothing.
        _ = try daemon.client.create(configurationFile: try daemon.config("deaf", kernel: "parked", extra: "bsp=spin"))
        _ = try daemon.client.create(configurationFile: try daemon.config("pv", kernel: "minios", extra: ""))
        _ = try daemon.client.create(configurationFile: try daemon.config("acpi", kernel: "minios", extra: "pv=off"))
        #expect(console("pv", shows: "minios: shell ready") && console("acpi", shows: "minios: shell ready"))
        let hogBefore = try daemon.cpu("hog")

        // A guest that listens for neither is refused, and runs on.
        let refused = try daemon.visor(["shutdown", "deaf"])
        #expect(refused.status == 1 && refused.stderr.contains("listens for neither the PV shutdown request nor the ACPI power button"),
                "\(refused.stderr)")
        let noReboot = try daemon.visor(["reboot", "acpi"])
        #expect(noReboot.status == 1 && noReboot.stderr.contains("does not listen for the PV shutdown request"), "\(noReboot.stderr)")
        #expect(try daemon.client.list().map(\.name) == ["hog", "deaf", "pv", "acpi"])

        // Asked, each powers off its way; on_poweroff = destroy follows; -w returns once it has.
        #expect(try daemon.visor(["shutdown", "-w", "pv"]).status == 0)
        #expect(try daemon.visor(["shutdown", "-w", "acpi"]).status == 0)
        #expect(try daemon.client.list().map(\.name) == ["hog", "deaf"])
        #expect(logged("domain 3 'pv' asked to shut down (PV shutdown request)") && logged("domain 3 'pv' ended: powered off; destroyed"))
        #expect(logged("domain 4 'acpi' asked to shut down (ACPI power button)") && logged("domain 4 'acpi' ended: powered off; destroyed"))

        // Asked to reboot, a PV guest does; on_reboot = restart boots it again, same console.
        _ = try daemon.client.create(configurationFile: try daemon.config("again", kernel: "minios", extra: ""))
        #expect(console("again", shows: "minios: shell ready"))
        #expect(try daemon.visor(["reboot", "-w", "again"]).status == 0)
        #expect(logged("domain 5 'again' ended: asked to reboot (sched_op shutdown); restarted (on_reboot = restart) as domain 6"),
                "the daemon's log: \(((try? daemon.client.dmesg()) ?? []).suffix(8))")
        #expect(try daemon.client.domain("again").id == 6, "the daemon's log: \(((try? daemon.client.dmesg()) ?? []).suffix(8))")
        #expect(console("again", shows: "minios: shell ready", times: 2))

        // A guest that does not act in time: paused, it cannot. A power-off is then a destroy,
        // a reboot a reset (stopped and booted again, not paused).
        #expect(try daemon.visor(["pause", "again"]).status == 0)
        #expect(try daemon.visor(["reboot", "-t", "1", "-w", "again"]).status == 0)
        #expect(logged("domain 6 'again' did not reboot within 1 s; resetting it"))
        #expect(logged("'again' ended: stopped: reset: it did not reboot within 1 s; restarted (a reset) as domain 7"), "\((try? daemon.client.dmesg()) ?? [])")
        let reset = try daemon.client.domain("again")
        #expect(reset.id == 7 && !reset.paused)
        #expect(console("again", shows: "minios: shell ready", times: 3))
        #expect(try daemon.visor(["pause", "again"]).status == 0)
        #expect(try daemon.visor(["shutdown", "-t", "1", "-w", "again"]).status == 0)
        #expect(logged("domain 7 'again' did not shut down within 1 s; destroying it"))
        #expect(try daemon.client.list().map(\.name) == ["hog", "deaf"])

        // Bad time limits are refused before anything is asked.
        let zero = try daemon.visor(["shutdown", "-t", "0", "hog"])
        #expect(zero.status == 64 && zero.stderr.contains("1 to 86400 seconds"), "\(zero.stderr)")
        let badBody = try api.request(.POST, "/domains/hog/shutdown", body: Array(#"{"timeoutSeconds": "soon"}"#.utf8))
        #expect(badBody.status == 400 && badBody.errorMessage.contains("timeoutSeconds must be a whole number of seconds"), "\(badBody.errorMessage)")
        let unknown = try api.request(.POST, "/domains/nosuch/reboot")
        #expect(unknown.status == 404)

        // Through all of it the hog ran on.
        #expect(waitUntil(seconds: 120) { ((try? daemon.cpu("hog")) ?? 0) > hogBefore })
        #expect(daemon.terminate() == 0, "\(daemon.process.stderr)")
    }

    @Test("sched-credit sets a weight at run time and the shares move, by the daemon's accounting")
    func weightAtRunTime() throws {
        let daemon = try ServedDaemon(pcpus: 1, sched: "credit")
        _ = try daemon.client.create(configurationFile: try daemon.config("light"))
        _ = try daemon.client.create(configurationFile: try daemon.config("heavy"))
        let shown = try daemon.visor(["sched-credit"])
        #expect(shown.stdout == """
            Name                                ID Weight  Cap
            light                                1    256    0
            heavy                                2    256    0

            """, "\(shown.stdout)\(shown.stderr)")
        let set = try daemon.visor(["sched-credit", "-d", "heavy", "-w", "2560"])
        #expect(set.status == 0 && set.stdout.contains("heavy                                2   2560    0"), "\(set.stdout)\(set.stderr)")
        #expect(try daemon.client.schedParameters("heavy") == SchedParameters(scheduler: "credit", weight: 2560, cap: 0))
        #expect(try daemon.client.domain("heavy").weight == 2560)
        // From now on heavy is owed ten times light's share of the one pCPU; over two seconds
        // of charged time it must get well over three times as much (the mechanism, not the figure).
        let light0 = try daemon.cpu("light"), heavy0 = try daemon.cpu("heavy")
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.cpu("light")) ?? 0) &- light0 &+ ((try? daemon.cpu("heavy")) ?? 0) &- heavy0 > 2_000_000_000
        })
        let light = try daemon.cpu("light") &- light0, heavy = try daemon.cpu("heavy") &- heavy0
        #expect(heavy > 3 &* light, "light \(light) ns, heavy \(heavy) ns")
        // Another scheduler's command is refused with the one to use; bad values get libxl's words.
        let wrong = try daemon.visor(["sched-credit2"])
        #expect(wrong.status == 1 && wrong.stderr.contains("the daemon's scheduler is credit, not credit2; use visor sched-credit"),
                "\(wrong.stderr)")
        let api = daemon.client.client
        let tooHeavy = try api.request(.PUT, "/domains/light/sched", body: Array(#"{"weight": 70000}"#.utf8))
        #expect(tooHeavy.status == 400 && tooHeavy.errorMessage.contains("Cpu weight out of range"), "\(tooHeavy.errorMessage)")
        let bigCap = try api.request(.PUT, "/domains/light/sched", body: Array(#"{"cap": 101}"#.utf8))
        #expect(bigCap.status == 400 && bigCap.errorMessage.contains("Cpu cap out of range"), "\(bigCap.errorMessage)")
        let rtds = try api.request(.PUT, "/domains/light/sched", body: Array(#"{"periodMicroseconds": 10000}"#.utf8))
        #expect(rtds.status == 400 && rtds.errorMessage.contains("has no parameter"), "\(rtds.errorMessage)")
        let typo = try api.request(.PUT, "/domains/light/sched", body: Array(#"{"wieght": 3}"#.utf8))
        #expect(typo.status == 400 && typo.errorMessage.contains("unknown key 'wieght'"), "\(typo.errorMessage)")
        let text = try api.request(.PUT, "/domains/light/sched", body: Array(#"{"weight": "heavy"}"#.utf8))
        #expect(text.status == 400 && text.errorMessage.contains("weight must be a whole number"), "\(text.errorMessage)")
        for body in ["", "[]", "{}", "{\"weight\": 1.5}"] {
            let bad = try api.request(.PUT, "/domains/light/sched", body: Array(body.utf8))
            #expect(bad.status == 400, "\(body): \(bad.errorMessage)")
        }
        #expect(try api.request(.PUT, "/domains/nosuch/sched", body: Array(#"{"weight": 5}"#.utf8)).status == 404)
        // The refused changes changed nothing.
        #expect(try daemon.client.schedParameters("light") == SchedParameters(scheduler: "credit", weight: 256, cap: 0))
        #expect(daemon.terminate() == 0)
    }

    @Test("sched-rtds shows and sets periods, budgets and extratime per domain and per vCPU; a budget-starved domain gets less; bad values are refused")
    func rtdsAtRunTime() throws {
        let daemon = try ServedDaemon(pcpus: 1, sched: "rtds")
        let two = try daemon.config("two", more: ["vcpus = 2"])
        _ = try daemon.client.create(configurationFile: two)
        _ = try daemon.client.create(configurationFile: try daemon.config("lean"))
        // Everything starts with RTDS's defaults: 10 ms period, 4 ms budget, extratime.
        let all = try daemon.visor(["sched-rtds"])
        #expect(all.stdout == """
            Name                                ID VCPU    Period    Budget  Extratime
            two                                  1    0     10000      4000        yes
            two                                  1    1     10000      4000        yes
            lean                                 2    0     10000      4000        yes

            """, "\(all.stdout)\(all.stderr)")
        let one = try daemon.visor(["sched-rtds", "-d", "two"])
        #expect(one.stdout == """
            Name                                ID    Period    Budget  Extratime
            two                                  1     10000      4000        yes

            """, "\(one.stdout)\(one.stderr)")
        // One vCPU: only it changes; fields not given keep its values.
        let v1 = try daemon.visor(["sched-rtds", "-d", "two", "-v", "1", "-p", "20000", "-b", "5000"])
        #expect(v1.status == 0 && v1.stdout == """
            Name                                ID VCPU    Period    Budget  Extratime
            two                                  1    1     20000      5000        yes

            """, "\(v1.stdout)\(v1.stderr)")
        let e1 = try daemon.visor(["sched-rtds", "-d", "two", "-v", "1", "-e", "0"])
        #expect(e1.stdout.contains("two                                  1    1     20000      5000         no"), "\(e1.stdout)\(e1.stderr)")
        // Two vCPUs, each its own values, in order.
        let pairs = try daemon.visor(["sched-rtds", "-d", "two", "-v", "0", "-p", "30000", "-b", "3000",
                                      "-v", "1", "-p", "40000", "-b", "4000"])
        #expect(pairs.status == 0, "\(pairs.stderr)")
        let shown = try daemon.client.vcpuSchedParameters("two")
        #expect(shown.map(\.periodMicroseconds) == [30000, 40000] && shown.map(\.budgetMicroseconds) == [3000, 4000])
        #expect(shown.map(\.extratime) == [true, false])
        // -v all lists every vCPU.
        #expect(try daemon.visor(["sched-rtds", "-d", "two", "-v", "all"]).stdout.split(separator: "\n").count == 3)

        // The mechanism: lean may use 1 ms in every 10 ms and no extratime; two's vCPU 0 runs
        // with extratime on the same pCPU. Over two seconds of charged time, lean gets far less.
        let set = try daemon.visor(["sched-rtds", "-d", "lean", "-p", "10000", "-b", "1000", "-e", "0"])
        #expect(set.status == 0 && set.stdout.contains("lean                                 2    0     10000      1000         no"),
                "\(set.stdout)\(set.stderr)")
        _ = try daemon.visor(["sched-rtds", "-d", "two", "-v", "all", "-p", "10000", "-b", "4000", "-e", "1"])
        let lean0 = try daemon.cpu("lean"), two0 = try daemon.cpu("two")
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.cpu("lean")) ?? 0) &- lean0 &+ ((try? daemon.cpu("two")) ?? 0) &- two0 > 2_000_000_000
        })
        let lean = try daemon.cpu("lean") &- lean0, twoTime = try daemon.cpu("two") &- two0
        #expect(2 &* lean < twoTime, "lean \(lean) ns, two \(twoTime) ns")

        // Refusals: libxl's words for bad values, the vCPU range, unknown domains; nothing changes.
        let api = daemon.client.client
        func refused(_ path: String, _ body: String, _ words: String, method: HTTPMethod = .PUT, status: Int = 400,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
            let reply = try api.request(method, path, body: Array(body.utf8))
            #expect(reply.status == status && reply.errorMessage.contains(words), "\(reply.status) \(reply.errorMessage)",
                    sourceLocation: sourceLocation)
        }
        try refused("/domains/two/sched/vcpus/0", #"{"periodMicroseconds": 1000, "budgetMicroseconds": 2000}"#,
                    "VCPU budget must be smaller than or equal to VCPU period")
        try refused("/domains/two/sched/vcpus/0", #"{"periodMicroseconds": 0}"#, "Invalid VCPU period of 0")
        try refused("/domains/two/sched/vcpus/all", #"{"budgetMicroseconds": -5}"#, "Invalid VCPU budget of -5")
        try refused("/domains/two/sched/vcpus/0", #"{"periodMicroseconds": 9, "budgetMicroseconds": 9}"#, "at least 10 us")
        try refused("/domains/two/sched/vcpus/0", #"{"periodMicroseconds": 9223372036854775807, "budgetMicroseconds": 10}"#,
                    "at most 4294967295 us")
        try refused("/domains/two/sched", #"{"periodMicroseconds": 9223372036854775807, "budgetMicroseconds": 9223372036854775807}"#,
                    "at most 4294967295 us")
        try refused("/domains/two/sched/vcpus/2", #"{"periodMicroseconds": 1000}"#, "has vCPUs 0-1, not 2")
        try refused("/domains/two/sched/vcpus/0", #"{"weight": 5}"#, "Scheduler rtds has no parameter 'weight'")
        try refused("/domains/two/sched/vcpus/0", #"{"extratime": 1}"#, "extratime must be true or false")
        try refused("/domains/two/sched/vcpus/0", #"{"period": 1}"#, "unknown key 'period'")
        try refused("/domains/two/sched/vcpus/x", #"{"extratime": true}"#, "not a vCPU number or all")
        try refused("/domains/nosuch/sched/vcpus/0", #"{"extratime": true}"#, "no domain is called 'nosuch'", status: 404)
        try refused("/domains/nosuch/sched/vcpus", "", "no domain is called 'nosuch'", method: .GET, status: 404)
        try refused("/domains/two/sched/vcpus/0", "{}", "use PUT", method: .POST, status: 405)
        // All or none: vCPU 1 refuses a budget over its period, so vCPU 0 keeps its values too.
        _ = try daemon.client.setVCPUSchedParameters("two", vcpu: "1", SchedParameters(periodMicroseconds: 1000, budgetMicroseconds: 500))
        let before = try daemon.client.vcpuSchedParameters("two")
        try refused("/domains/two/sched/vcpus/all", #"{"budgetMicroseconds": 2000}"#, "VCPU budget must be smaller")
        #expect(try daemon.client.vcpuSchedParameters("two") == before)
        // The CLI: bad values are refused before any request, the daemon's refusals are shown.
        let badP = try daemon.visor(["sched-rtds", "-d", "two", "-p", "ten"])
        #expect(badP.status == 64 && badP.stderr.contains("-p 'ten' is not a whole number"), "\(badP.stderr)")
        let counts = try daemon.visor(["sched-rtds", "-d", "two", "-v", "0", "-v", "1", "-p", "1", "-p", "2", "-b", "1"])
        #expect(counts.status == 64 && counts.stderr.contains("once per -v"), "\(counts.stderr)")
        let noDomain = try daemon.visor(["sched-rtds", "-p", "10000"])
        #expect(noDomain.status == 64 && noDomain.stderr.contains("need a domain"), "\(noDomain.stderr)")
        let over = try daemon.visor(["sched-rtds", "-d", "two", "-v", "0", "-p", "100", "-b", "200"])
        #expect(over.status == 1 && over.stderr.contains("VCPU budget must be smaller than or equal to VCPU period"), "\(over.stderr)")
        let missing = try daemon.visor(["sched-rtds", "-d", "two", "-v", "7"])
        #expect(missing.status == 1 && missing.stderr.contains("has vCPUs 0-1, not 7"), "\(missing.stderr)")
        let unknown = try daemon.visor(["sched-rtds", "-d", "nosuch"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no domain is called 'nosuch'"), "\(unknown.stderr)")
        // Another scheduler's command names the one to use.
        let credit = try daemon.visor(["sched-credit"])
        #expect(credit.status == 1 && credit.stderr.contains("the daemon's scheduler is rtds, not credit"), "\(credit.stderr)")
        #expect(daemon.terminate() == 0)
    }

    @Test("on a pool that does not run rtds, sched-rtds and the per-vCPU API are refused naming the pool's scheduler")
    func rtdsOnCreditPool() throws {
        let daemon = try ServedDaemon(pcpus: 1, sched: "credit2")
        _ = try daemon.client.create(configurationFile: try daemon.config("c"))
        let cli = try daemon.visor(["sched-rtds", "-d", "c", "-p", "10000", "-b", "1000"])
        #expect(cli.status == 1 && cli.stderr.contains("the daemon's scheduler is credit2, not rtds; use visor sched-credit2"),
                "\(cli.stderr)")
        let api = daemon.client.client
        let perVCPU = try api.request(.PUT, "/domains/c/sched/vcpus/0", body: Array(#"{"periodMicroseconds": 10000}"#.utf8))
        #expect(perVCPU.status == 400 && perVCPU.errorMessage.contains("the daemon's pool runs the credit2 scheduler, not rtds"),
                "\(perVCPU.errorMessage)")
        let domainWide = try api.request(.PUT, "/domains/c/sched", body: Array(#"{"periodMicroseconds": 10000}"#.utf8))
        #expect(domainWide.status == 400 && domainWide.errorMessage.contains("Scheduler credit2 has no parameter 'period'"),
                "\(domainWide.errorMessage)")
        // Reading per-vCPU parameters works under any scheduler: credit2's are the domain's weight and cap.
        #expect(try daemon.client.vcpuSchedParameters("c").map(\.weight) == [256])
        #expect(daemon.terminate() == 0)
    }

    @Test("list -l shows the configuration as created, state and vCPUs as JSON; that configuration creates a twin from a .json file")
    func longListing() throws {
        let daemon = try ServedDaemon(pcpus: 2, sched: "credit")
        let path = try daemon.config("long", memory: 24,
                                     more: ["vcpus = 2", "cpus = \"1\"", "cpu_weight = 512", "on_crash = \"destroy\""])
        _ = try daemon.client.create(configurationFile: path)
        let listed = try daemon.visor(["list", "-l"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let details = try JSONDecoder().decode([DomainDetail].self, from: Data(listed.stdout.utf8))
        let detail = try #require(details.first)
        #expect(details.count == 1)
        #expect(detail.config == XLConfigObject(DomainSpec(name: "long", kernel: "cpuhog", commandLine: "ms=3600000", memoryMiB: 24,
                                                           vcpus: 2, hardAffinity: ["1", "1"], weight: 512, engine: "interp",
                                                           path: path)))
        #expect(detail.source == path && detail.scheduler == "credit" && detail.end == nil)
        #expect(detail.domain.name == "long" && detail.domain.memoryMiB == 24 && detail.domain.weight == 512)
        #expect(detail.schedParameters == SchedParameters(scheduler: "credit", weight: 512, cap: 0))
        #expect(detail.vcpus.map(\.vcpu) == [0, 1] && detail.vcpus.allSatisfy { $0.hardAffinity == "1" })
        #expect(detail.vcpuSchedParameters.map(\.vcpu) == [0, 1])
        // The keys are xl.cfg's, and the JSON goes back to `visor create` as a .json file.
        #expect(listed.stdout.contains(#""cpu_weight" : 512"#) && listed.stdout.contains(#""cpus" : ["#), "\(listed.stdout)")
        var twin = detail.config
        twin.name = "twin"
        let twinPath = "\(daemon.folder)/twin.json"
        try Data(APIJSON.encode(twin)).write(to: URL(fileURLWithPath: twinPath))
        let created = try daemon.visor(["create", twinPath])
        #expect(created.status == 0 && created.stdout == "created domain 'twin' (id 2)\n", "\(created.stdout)\(created.stderr)")
        let both = try daemon.client.details([])
        #expect(both.map(\.config.name) == ["long", "twin"])
        #expect(both.last?.config == twin && both.last?.source == twinPath)
        // One domain by name or ID; an unknown one is refused.
        #expect(try daemon.client.details(["2"]).map(\.config.name) == ["twin"])
        let unknown = try daemon.visor(["list", "-l", "nosuch"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no domain is called 'nosuch'"), "\(unknown.stderr)")
        let badQuery = try daemon.client.client.request(.GET, "/domains?detail=maybe")
        #expect(badQuery.status == 400 && badQuery.errorMessage.contains("detail must be true or false"), "\(badQuery.errorMessage)")
        #expect(daemon.terminate() == 0)
    }

    @Test("POST /domains takes a JSON object of xl.cfg keys with the same validation and messages as xl.cfg text")
    func createFromJSON() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        let api = daemon.client.client
        func post(_ body: String, type: String, path: String = "/domains?path=/x/a.cfg") throws -> APIReply {
            try api.request(.POST, path, body: Array(body.utf8), contentType: type)
        }
        let created = try post(#"{"name": "j", "kernel": "cpuhog", "extra": "ms=3600000", "memory": 16, "engine": "interp"}"#,
                               type: "application/json; charset=utf-8")
        #expect(created.status == 201 && created.decode(DomainInfo.self)?.name == "j", "\(created.errorMessage)")
        #expect(try daemon.client.details(["j"]).first?.config.cmdline == "ms=3600000")
        // The same mistakes get the same words in both forms (JSON's without a line number).
        let text = try post("name = \"m\"\nkernel = \"cpuhog\"\nmemory = 1", type: "text/plain")
        let json = try post(#"{"name": "m", "kernel": "cpuhog", "memory": 1}"#, type: "application/json")
        #expect(text.status == 400 && text.errorMessage == "/x/a.cfg:3: memory: 1 is out of range 8-1048576 (MiB)", "\(text.errorMessage)")
        #expect(json.status == 400 && json.errorMessage == "/x/a.cfg: memory: 1 is out of range 8-1048576 (MiB)", "\(json.errorMessage)")
        let duplicate = try post(#"{"name": "j", "kernel": "cpuhog", "engine": "interp"}"#, type: "application/json")
        #expect(duplicate.status == 409 && duplicate.errorMessage.contains("a domain named 'j' already exists"))
        for (body, words) in [("[1]", "not a JSON object of xl.cfg keys"), ("{", "not a JSON object"),
                              (#"{"name": "k", "kernel": "cpuhog", "vcpus": true}"#, "vcpus: expected a number, a string or a list, found true"),
                              (#"{"name": "k", "kernel": "cpuhog", "memory": -16}"#, "found the negative number -16"),
                              (#"{"name": "k", "kernel": "cpuhog", "memory": "16"}"#, "write it without quotes"),
                              (#"{"name": "k", "kernel": "cpuhog", "weight": 5}"#, "weight: unknown key"),
                              (#"{"kernel": "cpuhog"}"#, "name: missing"),
                              (#"{"name": "k", "kernel": "nosuchguest"}"#, "nosuchguest"),
                              ("  ", "the body is empty")] {
            let reply = try post(body, type: "application/json")
            #expect(reply.status == 400 && reply.errorMessage.contains(words), "\(body): \(reply.status) \(reply.errorMessage)")
        }
        let form = try post("name=a", type: "application/x-www-form-urlencoded")
        #expect(form.status == 415 && form.errorMessage.contains("text/plain") && form.errorMessage.contains("application/json"),
                "\(form.errorMessage)")
        #expect(try daemon.client.list().map(\.name) == ["j"])
        #expect(daemon.terminate() == 0)
    }

    @Test("vcpu-list shows where each vCPU runs; vcpu-pin moves one to the pCPUs it names and it stays there")
    func pinning() throws {
        let daemon = try ServedDaemon(pcpus: 2, sched: "credit")
        _ = try daemon.client.create(configurationFile: try daemon.config("p"))
        _ = try daemon.client.create(configurationFile: try daemon.config("q"))
        let listed = try daemon.visor(["vcpu-list"])
        let lines = listed.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)")
        #expect(lines.count == 3 && lines.dropFirst().allSatisfy { $0.hasSuffix(" all / all") }, "\(listed.stdout)")
        #expect(lines.dropFirst().first?.hasPrefix("p                                    1     0 ") == true, "\(listed.stdout)")

        func vcpu() -> VCPUStatus? { (try? daemon.client.vcpus("p"))?.first }
        // Pin p to the pCPU it is not on: the pool moves it there (two hogs on two pCPUs would
        // otherwise each stay where they are).
        var here: Int?
        #expect(waitUntil(seconds: 120) { here = vcpu()?.pcpu; return here != nil })
        let there = here == 1 ? 0 : 1
        let pinned = try daemon.visor(["vcpu-pin", "p", "0", "\(there)"])
        #expect(pinned.status == 0, "\(pinned.stderr)")
        #expect(vcpu()?.hardAffinity == "\(there)" && vcpu()?.softAffinity == "all")
        // Once seen on its new pCPU it is never seen on another (hang guard only on the first sighting).
        #expect(waitUntil(seconds: 120) { vcpu()?.pcpu == there })
        var seenRunning = 0
        for _ in 0..<200 {
            guard let v = vcpu() else { continue }
            if let p = v.pcpu {
                #expect(p == there)
                seenRunning += 1
            }
        }
        #expect(seenRunning > 0)
        #expect(try daemon.visor(["vcpu-list", "p"]).stdout.contains(" \(there) / all"))

        let api = daemon.client.client
        func refused(_ path: String, _ body: String, _ words: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let reply = try api.request(.PUT, path, body: Array(body.utf8))
            #expect(reply.status == 400 && reply.errorMessage.contains(words), "\(reply.status) \(reply.errorMessage)",
                    sourceLocation: sourceLocation)
        }
        try refused("/domains/p/vcpus/5/affinity", #"{"hard": "0"}"#, "has vCPUs 0-0, not 5")
        try refused("/domains/p/vcpus/0/affinity", #"{"hard": "7"}"#, "names no pCPU of this pool")
        try refused("/domains/p/vcpus/0/affinity", #"{"hard": "zero"}"#, "is not a cpu list")
        try refused("/domains/p/vcpus/0/affinity", #"{"hard": 1}"#, "hard must be a cpu list")
        try refused("/domains/p/vcpus/0/affinity", #"{"pcpus": "1"}"#, "unknown key 'pcpus'")
        try refused("/domains/p/vcpus/0/affinity", #"{"hard": "-"}"#, "give a hard or a soft cpu list")
        try refused("/domains/p/vcpus/one/affinity", #"{"hard": "0"}"#, "not a vCPU number or all")
        let cli = try daemon.visor(["vcpu-pin", "p", "0", "9"])
        #expect(cli.status == 1 && cli.stderr.contains("names no pCPU"), "\(cli.stderr)")
        // "all" pins every vCPU; the refusals changed nothing before it.
        #expect(vcpu()?.hardAffinity == "\(there)")
        #expect(try daemon.visor(["vcpu-pin", "p", "all", "all", "0"]).status == 0)
        #expect(vcpu()?.hardAffinity == "all" && vcpu()?.softAffinity == "0")
        #expect(daemon.terminate() == 0)
    }

    @Test("the console stream gives the kept output, then live output; input reaches the guest's console")
    func console() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        _ = try daemon.client.create(configurationFile: try daemon.config("talk"))
        let received = Mutex<[UInt8]>([])
        let (channel, done) = try daemon.client.client.stream("/domains/talk/console") { bytes in
            received.withLock { $0.append(contentsOf: bytes) }
        }
        // cpuhog's banner ("cpuhog: ms=3600000 ...") reaches the reader whether it was written
        // before or after the attach.
        #expect(waitUntil(seconds: 120) {
            String(decoding: received.withLock { $0 }, as: UTF8.self).contains("cpuhog: ms=3600000")
        })
        // Input goes to COM1's receive FIFO (the guest does not read it, and 3 bytes fit).
        #expect(try daemon.client.sendConsoleInput("talk", Array("abc".utf8)) == 3)
        // Destroying the domain ends the stream.
        _ = try daemon.client.destroy("talk")
        let reply = try done.wait()
        #expect(reply.status == 200)
        _ = try? channel.closeFuture.wait()
        #expect(daemon.terminate() == 0)
    }

    @Test("one console writer among several readers: a second writer is refused, input needs the writer's key while it is attached, and the place is free once it detaches")
    func oneConsoleWriter() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        _ = try daemon.client.create(configurationFile: try daemon.config("talk"))
        let api = daemon.client.client
        let key = Mutex<String?>(nil)
        let writer = try api.stream("/domains/talk/console?writer=true",
                                    onHead: { _, headers in key.withLock { $0 = headers.first(name: "Visor-Console-Writer") } },
                                    onBody: { _ in })
        #expect(waitUntil(seconds: 120) { key.withLock { $0 } != nil })
        let writerKey = try #require(key.withLock { $0 })
        #expect(writerKey.utf8.count == 32)

        // A second writer is refused, by the API and by `visor console`; a reader is welcome.
        let second = try api.request(.GET, "/domains/talk/console?writer=true")
        #expect(second.status == 409 && second.errorMessage.contains("already has a console writer attached"), "\(second.errorMessage)")
        let cli = try daemon.visor(["console", "talk"])
        #expect(cli.status == 1 && cli.stderr.contains("already has a console writer attached"), "\(cli.stderr)")
        let readerKey = Mutex<String?>("unset")
        let reader = try api.stream("/domains/talk/console",
                                    onHead: { _, headers in readerKey.withLock { $0 = headers.first(name: "Visor-Console-Writer") } },
                                    onBody: { _ in })
        #expect(waitUntil(seconds: 120) { readerKey.withLock { $0 } != "unset" })
        #expect(readerKey.withLock { $0 } == nil)

        // Input: only with the writer's key while it is attached.
        func post(_ bytes: String, key: String?) throws -> APIReply {
            try api.request(.POST, "/domains/talk/console", body: Array(bytes.utf8), contentType: "application/octet-stream",
                            headers: key.map { [("Visor-Console-Writer", $0)] } ?? [])
        }
        let anonymous = try post("x", key: nil)
        #expect(anonymous.status == 409 && anonymous.errorMessage.contains("has a console writer attached"), "\(anonymous.errorMessage)")
        let stale = try post("x", key: String(repeating: "0", count: 32))
        #expect(stale.status == 409 && stale.errorMessage.contains("not the current one"), "\(stale.errorMessage)")
        #expect(try post("x", key: "not-a-key").status == 400)
        #expect(try daemon.client.sendConsoleInput("talk", Array("abc".utf8), writerKey: writerKey) == 3)

        // The writer detaches: its place is free (an empty input is accepted again without a key,
        // once the daemon has seen the connection close) and the next writer gets a new key.
        writer.channel.close(promise: nil)
        #expect(waitUntil(seconds: 120) { (try? post("", key: nil))?.status == 200 })
        #expect(try post("x", key: writerKey).status == 409)
        let nextKey = Mutex<String?>(nil)
        let next = try api.stream("/domains/talk/console?writer=true",
                                  onHead: { _, headers in nextKey.withLock { $0 = headers.first(name: "Visor-Console-Writer") } },
                                  onBody: { _ in })
        #expect(waitUntil(seconds: 120) { nextKey.withLock { $0 } != nil })
        #expect(nextKey.withLock { $0 } != writerKey)
        next.channel.close(promise: nil)
        reader.channel.close(promise: nil)
        #expect(daemon.terminate() == 0)
    }

    @Test("visor console on a terminal: the shell's output, typed keys reach it beside another domain, Ctrl-] or SIGTERM detaches and the domain runs on")
    func interactiveConsole() throws {
        let daemon = try ServedDaemon()
        _ = try daemon.client.create(configurationFile: try daemon.config("shell", kernel: "minios", extra: ""))
        _ = try daemon.client.create(configurationFile: try daemon.config("busy"))
        let terminal = try PseudoTerminal()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Host.visorPath)
        process.arguments = ["console", "shell", "--socket", daemon.socket]
        let tty = FileHandle(fileDescriptor: terminal.slave, closeOnDealloc: false)
        process.standardInput = tty
        process.standardOutput = tty
        process.standardError = tty
        try process.run()
        terminal.closeSlave()
        terminal.startReading()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        #expect(waitUntil(seconds: 120) { terminal.screen.contains("minios: shell ready") }, "screen: \(terminal.screen)")
        terminal.type(Array("help\r".utf8))
        #expect(waitUntil(seconds: 120) { terminal.screen.contains("help: commands:") }, "screen: \(terminal.screen)")
        terminal.type([HostConsole.escapeByte])
        #expect(waitUntil(seconds: 120) { !process.isRunning }, "visor console did not end after Ctrl-]")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // Detached, not destroyed: both domains still run.
        #expect(try daemon.client.list().map(\.name) == ["shell", "busy"])

        // A second attach (watching only) sees the kept output, what was typed included; SIGTERM
        // detaches it too.
        let second = try PseudoTerminal()
        let again = Process()
        again.executableURL = URL(fileURLWithPath: Host.visorPath)
        again.arguments = ["console", "shell", "--read-only", "--socket", daemon.socket]
        let secondTTY = FileHandle(fileDescriptor: second.slave, closeOnDealloc: false)
        again.standardInput = secondTTY
        again.standardOutput = secondTTY
        let errors = Pipe()
        again.standardError = errors
        try again.run()
        second.closeSlave()
        second.startReading()
        defer { if again.isRunning { kill(again.processIdentifier, SIGKILL) } }
        #expect(waitUntil(seconds: 120) { second.screen.contains("help: commands:") }, "screen: \(second.screen)")
        kill(again.processIdentifier, SIGTERM)
        #expect(waitUntil(seconds: 120) { !again.isRunning }, "visor console did not end after SIGTERM")
        again.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(again.terminationStatus == 0 && stderr.contains("detached from domain 'shell' by a signal"), "\(stderr)")
        #expect(try daemon.client.list().map(\.name) == ["shell", "busy"])
        #expect(daemon.terminate() == 0)
    }

    @Test("bytes that are not HTTP get a 400 from the HTTP codec, and the daemon goes on")
    func notHTTP() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        let answer = try rawExchange(socket: daemon.socket, Array("\u{01}\u{02} garbage\r\n\r\n".utf8))
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        let huge = try rawExchange(socket: daemon.socket,
                                   Array("GET /\(String(repeating: "a", count: 200_000)) HTTP/1.1\r\n\r\n".utf8))
        #expect(huge.hasPrefix("HTTP/1.1 4"), "\(huge.prefix(200))")
        #expect(try daemon.client.hostInfo().pcpus == 1)
        #expect(daemon.terminate() == 0)
    }

    @Test("in-process: a connection that sends no whole request is closed after the request timeout; others are answered")
    func silentConnectionClosed() throws {
        let folder = "/tmp/visor-idle-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let socket = folder + "/v.sock"
        let toolstack = try Toolstack(pcpus: 1, scheduler: .credit, defaultEngine: "interp",
                                      log: ToolstackLog(echoToStandardError: false))
        let server = APIServer(toolstack: toolstack, requestTimeout: .milliseconds(300))
        try server.start(socketPath: socket)
        defer {
            toolstack.shutdown()
            server.shutdown()
        }
        // Nothing, then half a request: both closed by the server without an answer.
        let silent = try rawExchangeWithEnd(socket: socket, [])
        #expect(silent.closedByServer && silent.answer.isEmpty)
        let half = try rawExchangeWithEnd(socket: socket, Array("GET /domains HTTP/1.1\r\nHost: x\r\n".utf8))
        #expect(half.closedByServer && half.answer.isEmpty, "\(half.answer)")
        // A whole request is answered.
        let whole = try rawExchangeWithEnd(socket: socket, Array("GET /domains HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(whole.closedByServer && whole.answer.hasPrefix("HTTP/1.1 200") && whole.answer.hasSuffix("[]"), "\(whole.answer)")
    }

    @Test("every bad request gets a 4xx JSON error with a message, and the daemon goes on")
    func apiErrors() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        let api = daemon.client.client
        func expectError(_ reply: APIReply, _ status: Int, _ words: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reply.status == status, "\(reply.errorMessage)", sourceLocation: sourceLocation)
            let body = reply.decode(APIErrorBody.self)
            #expect(body?.error.contains(words) == true, "\(reply.errorMessage)", sourceLocation: sourceLocation)
        }
        // Bad configurations (xl.cfg text is text/plain): syntax, a missing key, an unknown
        // kernel, not text, nothing.
        func post(_ text: String, _ target: String = "/domains") throws -> APIReply {
            try api.request(.POST, target, body: Array(text.utf8), contentType: "text/plain")
        }
        expectError(try post("name = ", "/domains?path=/x/a.cfg"), 400, "/x/a.cfg:1: name")
        expectError(try post(#"kernel = "cpuhog""#), 400, "name")
        expectError(try post("name = \"k\"\nkernel = \"nosuchguest\""), 400, "nosuchguest")
        expectError(try api.request(.POST, "/domains", body: [0xff, 0xfe, 0x00], contentType: "text/plain"), 400, "not UTF-8")
        expectError(try post(""), 400, "empty")
        expectError(try post("name = \"m\"\nkernel = \"cpuhog\"\nmemory = 1"), 400, "memory")
        // Too large a body.
        expectError(try api.request(.POST, "/domains", body: [UInt8](repeating: 0x23, count: APIServer.maximumBodyBytes + 1)),
                    413, "larger than")
        // Unknown domains and endpoints, wrong methods, bad escapes.
        expectError(try api.request(.GET, "/domains/nosuch"), 404, "no domain is called 'nosuch'")
        expectError(try api.request(.POST, "/domains/nosuch/pause"), 404, "nosuch")
        expectError(try api.request(.DELETE, "/domains/nosuch"), 404, "nosuch")
        expectError(try api.request(.GET, "/domains/nosuch/console"), 404, "nosuch")
        expectError(try api.request(.GET, "/nothing/here"), 404, "no such endpoint")
        expectError(try api.request(.PUT, "/domains"), 405, "GET or POST")
        expectError(try api.request(.GET, "/domains/x/pause"), 405, "POST")
        expectError(try api.request(.GET, "/domains/%zz"), 400, "percent")
        // A duplicate name; unpausing a running domain.
        let cfg = try daemon.config("one")
        _ = try daemon.client.create(configurationFile: cfg)
        let duplicate = try daemon.visor(["create", cfg])
        #expect(duplicate.status == 1 && duplicate.stderr.contains("a domain named 'one' already exists"), "\(duplicate.stderr)")
        expectError(try api.request(.POST, "/domains/one/unpause"), 409, "not paused")
        // The domain is found by its ID too.
        #expect(try daemon.client.domain("1").name == "one")
        // Through all this, the daemon kept its one domain and answers.
        #expect(try daemon.client.list().map(\.name) == ["one"])
        #expect(try daemon.client.hostInfo().pcpus == 1)
        #expect(daemon.terminate() == 0)
    }

    @Test("with no daemon, the commands say so and how to start one")
    func noDaemon() throws {
        let socket = "/tmp/visor-none-\(getpid())/v.sock"
        for command in [["list"], ["info"], ["dmesg"], ["pause", "a"], ["destroy", "a"], ["console", "a"]] {
            let result = try runVisor(command + ["--socket", socket])
            #expect(result.status == ExitStatus.unavailable, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("no visor daemon is running at \(socket)"), "\(command): \(result.stderr)")
            #expect(result.stderr.contains("visor serve"), "\(command): \(result.stderr)")
        }
    }

    @Test("a live socket is refused; a stale one (its daemon killed) is named as such and replaced")
    func socketClaims() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        let second = try runVisor(["serve", "--socket", daemon.socket, "--pcpus", "1"], timeout: 120)
        #expect(second.status == ExitStatus.unavailable)
        #expect(second.stderr.contains("another visor daemon is already listening on \(daemon.socket)"), "\(second.stderr)")

        daemon.process.kill()  // SIGKILL: the socket file stays behind
        #expect(FileManager.default.fileExists(atPath: daemon.socket))
        let stale = try daemon.visor(["list"])
        #expect(stale.status == ExitStatus.unavailable && stale.stderr.contains("stale socket"), "\(stale.stderr)")

        let replacement = try RunningVisor(["serve", "--socket", daemon.socket, "--pcpus", "1"])
        defer { replacement.kill() }
        #expect(waitUntil(seconds: 120) { (try? daemon.client.hostInfo()) != nil })
        #expect(replacement.stderr.contains("removed the stale socket"))
        var info = stat()
        #expect(lstat(daemon.socket, &info) == 0 && info.st_mode & 0o777 == 0o600)
        replacement.signal(SIGTERM)
        #expect(replacement.waitForExit(seconds: 180) != nil && replacement.status == 0)
    }
}

/// Writes `bytes` to the socket as they are and returns what comes back until the server closes.
func rawExchange(socket: String, _ bytes: [UInt8]) throws -> String {
    try rawExchangeWithEnd(socket: socket, bytes).answer
}

/// As `rawExchange`, saying whether the server closed the connection (false: the 120-second
/// hang guard ended the read).
func rawExchangeWithEnd(socket: String, _ bytes: [UInt8]) throws -> (answer: String, closedByServer: Bool) {
    let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let path = Array(socket.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in path.prefix(raw.count - 1).enumerated() { raw[i] = b }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    var timeout = timeval(tv_sec: 120, tv_usec: 0)  // hang guard
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var received = Data()
    var buffer = [UInt8](repeating: 0, count: 4096)
    var closed = false
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n == 0 { closed = true }
        if n <= 0 { break }
        received.append(contentsOf: buffer[0..<n])
    }
    return (String(decoding: received, as: UTF8.self), closed)
}

@Suite("The toolstack's formats and routes")
struct ToolstackFormatTests {
    @Test("xl list's layout")
    func listLayout() {
        let domains = [
            DomainInfo(name: "web", id: 7, memoryMiB: 512, vcpus: 2, state: "r-----", paused: false,
                       cpuNanoseconds: 12_345_000_000, engine: "kvm", kernel: "minios", weight: nil, cap: nil, consoleBytes: 0),
            DomainInfo(name: "db", id: 12, memoryMiB: 16, vcpus: 1, state: "--p---", paused: true,
                       cpuNanoseconds: 50_000_000, engine: "interp", kernel: "cpuhog", weight: 512, cap: nil, consoleBytes: 0),
        ]
        #expect(ToolstackFormat.list(domains) == """
            Name                                        ID   Mem VCPUs\tState\tTime(s)
            web                                          7   512     2     r-----      12.3
            db                                          12    16     1     --p---       0.1

            """)
    }

    @Test("xl sched-rtds's layouts, per domain and per vCPU (µs)")
    func rtdsLayout() {
        let web = DomainInfo(name: "web", id: 7, memoryMiB: 512, vcpus: 2, state: "r-----", paused: false,
                             cpuNanoseconds: 0, engine: "kvm", kernel: "minios", weight: nil, cap: nil, consoleBytes: 0)
        #expect(ToolstackFormat.rtdsDomains([(web, SchedParameters(scheduler: "rtds", periodMicroseconds: 10000,
                                                                   budgetMicroseconds: 4000, extratime: true))]) == """
            Name                                ID    Period    Budget  Extratime
            web                                  7     10000      4000        yes

            """)
        #expect(ToolstackFormat.rtdsVCPUs([
            VCPUSchedParameters(domain: "web", domainID: 7, vcpu: 0, scheduler: "rtds", periodMicroseconds: 10000,
                                budgetMicroseconds: 4000, extratime: true),
            VCPUSchedParameters(domain: "a-rather-long-domain-name-of-40-chars", domainID: 12, vcpu: 1, scheduler: "rtds",
                                periodMicroseconds: 4294967295, budgetMicroseconds: 10, extratime: false),
        ]) == """
            Name                                ID VCPU    Period    Budget  Extratime
            web                                  7    0     10000      4000        yes
            a-rather-long-domain-name-of-40-chars   12    1 4294967295        10         no

            """)
    }

    @Test("whole requests: bodies decoded and validated without a server, with their statuses")
    func requests() throws {
        func parse(_ method: String, _ uri: String, _ type: String? = nil, _ body: String = "") -> Result<APIRequest, APIRequestError> {
            APIRequest.parse(method: method, uri: uri, contentType: type, body: Array(body.utf8))
        }
        func status(_ result: Result<APIRequest, APIRequestError>) -> Int? {
            if case .failure(let e) = result { return e.status } else { return nil }
        }
        #expect(try parse("GET", "/domains?detail=true").get() == .listDomainDetails)
        #expect(try parse("GET", "/domains/a?detail=1").get() == .getDomainDetail("a"))
        #expect(try parse("GET", "/domains/a?detail=false").get() == .getDomain("a"))
        #expect(status(parse("GET", "/domains/a?detail=yes")) == 400)
        #expect(try parse("GET", "/domains/a/sched/vcpus").get() == .getVCPUSched("a"))
        #expect(try parse("PUT", "/domains/a/sched/vcpus/all", nil, #"{"budgetMicroseconds": 5}"#).get()
                == .setVCPUSched("a", vcpu: nil, SchedParameters(budgetMicroseconds: 5)))
        #expect(try parse("PUT", "/domains/a/sched/vcpus/3", nil, #"{"extratime": false}"#).get()
                == .setVCPUSched("a", vcpu: 3, SchedParameters(extratime: false)))
        #expect(status(parse("PUT", "/domains/a/sched/vcpus/-1", nil, #"{"extratime": false}"#)) == 400)
        #expect(status(parse("PUT", "/domains/a/sched/vcpus/0", nil, "{}")) == 400)
        let notAllowed = parse("DELETE", "/domains/a/sched/vcpus")
        #expect(status(notAllowed) == 405)
        if case .failure(let e) = notAllowed { #expect(e.allow == ["GET"]) }
        // The two forms of a configuration give the same domain.
        let text = "name = \"a\"\nkernel = \"cpuhog\"\nmemory = 16\nvcpus = 2\ncpus = [\"0\", \"1\"]\ncpu_weight = 512\nextra = \"ms=5\"\n"
        let json = #"{"name": "a", "kernel": "cpuhog", "memory": 16, "vcpus": 2, "cpus": ["0", 1], "cpu_weight": 512, "extra": "ms=5"}"#
        let fromText = try parse("POST", "/domains?path=/c/a.cfg", "text/plain", text).get()
        let fromJSON = try parse("POST", "/domains?path=/c/a.cfg", "Application/JSON", json).get()
        #expect(fromText == fromJSON)
        #expect(try parse("POST", "/domains?path=/c/a.cfg", nil, text).get() == fromText)
        if case .createDomain(let spec, _) = fromJSON {
            #expect(spec.hardAffinity == ["0", "1"] && spec.weight == 512 && spec.commandLine == "ms=5")
            // What list -l shows goes back in as the same configuration.
            let echoed = try parse("POST", "/domains?path=/c/a.cfg", "application/json",
                                   String(decoding: APIJSON.encode(XLConfigObject(spec)), as: UTF8.self)).get()
            if case .createDomain(let again, _) = echoed { #expect(again == spec) } else { Issue.record("\(echoed)") }
        } else {
            Issue.record("\(fromJSON)")
        }
        // Ignored keys warn in both forms; JSON's warnings have no line.
        if case .createDomain(_, let warnings) = try parse("POST", "/domains", "application/json",
                                                            #"{"name": "a", "kernel": "cpuhog", "vfb": "vnc=1"}"#).get() {
            #expect(warnings == ["request: vfb: ignored by Visor"])
        }
        #expect(status(parse("POST", "/domains", "application/xml", "<a/>")) == 415)
        // The configuration's path must be absolute: its relative paths are resolved from it.
        #expect(status(parse("POST", "/domains?path=c/a.cfg", "text/plain", text)) == 400)
        #expect(status(parse("POST", "/domains?path=", "text/plain", text)) == 400)
        #expect(status(parse("POST", "/domains", "application/json", #"{"name": "a", "kernel": "cpuhog", "cpus": [[[[[[[[["0"]]]]]]]]]}"#)) == 400)
        #expect(status(parse("POST", "/domains", "application/json", "{\"name\": \"a\\u0000\", \"kernel\": \"cpuhog\"}")) == 400)
        #expect(status(APIRequest.parse(method: "POST", uri: "/domains", contentType: nil,
                                        body: [UInt8](repeating: 0x20, count: APIRequest.maximumBodyBytes + 1))) == 413)
    }

    @Test("requests decode to routes; others are refused with the reason")
    func routes() throws {
        #expect(try APIRoute.decode(method: "GET", uri: "/domains").get() == .listDomains)
        #expect(try APIRoute.decode(method: "POST", uri: "/domains?path=/a%20b.cfg").get() == .createDomain(path: "/a b.cfg"))
        #expect(try APIRoute.decode(method: "GET", uri: "/domains/a%2Fb").get() == .getDomain("a/b"))
        #expect(try APIRoute.decode(method: "POST", uri: "/domains/x/console").get() == .consoleInput("x"))
        #expect(try APIRoute.decode(method: "GET", uri: "/domains/x/console").get() == .consoleStream("x", writer: false))
        #expect(try APIRoute.decode(method: "GET", uri: "/domains/x/console?writer=true").get() == .consoleStream("x", writer: true))
        #expect(throws: APIRoute.Problem.badQuery("writer must be true or false, not 'yes'")) {
            try APIRoute.decode(method: "GET", uri: "/domains/x/console?writer=yes").get()
        }
        #expect(throws: APIRoute.Problem.methodNotAllowed(allowed: ["DELETE", "GET"])) {
            try APIRoute.decode(method: "PUT", uri: "/domains/x").get()
        }
        #expect(throws: APIRoute.Problem.self) { try APIRoute.decode(method: "GET", uri: "*").get() }
        for bad in ["/domains/%zz", "/domains/%f", "/domains/%ff", "/domains/a%"] {
            #expect(throws: APIRoute.Problem.self, "\(bad)") { try APIRoute.decode(method: "GET", uri: bad).get() }
        }
        #expect(throws: APIRoute.Problem.noSuchEndpoint("GET /domains/x/y")) {
            try APIRoute.decode(method: "GET", uri: "/domains/x/y").get()
        }
    }

    @Test("any request target decodes to a route or a problem, never a trap (a seeded random sweep)")
    func routeSweep() {
        // Not a fuzzer (that is the reliability issue's): a fixed sweep over targets built from
        // the characters that matter to the decoder, the same on every run.
        let alphabet: [String] = ["/", "%", "?", "#", "=", "&", "a", "Z", "0", "f", "F", "%2F", "%zz", "%ff", "%c3%a9",
                                  "domains", "console", "pause", "host", "é", "\u{0}", " ", "..", "~"]
        var generator = SplitMix64(seed: 0x5eed_14)
        var routes = 0, problems = 0
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 12)
            var uri = generator.next() % 8 == 0 ? "" : "/"
            for _ in 0..<length { uri += alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let method = ["GET", "POST", "DELETE", "PUT", "PATCH"][Int(generator.next() % 5)]
            switch APIRoute.decode(method: method, uri: uri) {
            case .success: routes += 1
            case .failure: problems += 1
            }
        }
        #expect(routes + problems == 20_000)
        #expect(routes > 0 && problems > 0)
    }

    @Test("docs/api.yaml describes every route the server decodes")
    func openAPIDocument() throws {
        let document = try String(contentsOf: Checkout.root.appendingPathComponent("docs/api.yaml"), encoding: .utf8)
        let described: [(String, String, String)] = [
            ("GET", "/host", "hostInfo"), ("GET", "/dmesg", "dmesg"), ("GET", "/domains", "listDomains"),
            ("POST", "/domains", "createDomain"), ("GET", "/domains/{domain}", "getDomain"),
            ("DELETE", "/domains/{domain}", "destroyDomain"), ("POST", "/domains/{domain}/pause", "pauseDomain"),
            ("POST", "/domains/{domain}/unpause", "unpauseDomain"),
            ("POST", "/domains/{domain}/shutdown", "shutdownDomain"), ("POST", "/domains/{domain}/reboot", "rebootDomain"),
            ("GET", "/domains/{domain}/console", "consoleStream"), ("POST", "/domains/{domain}/console", "consoleInput"),
            ("GET", "/domains/{domain}/sched", "getSchedParameters"), ("PUT", "/domains/{domain}/sched", "setSchedParameters"),
            ("GET", "/vcpus", "listAllVCPUs"), ("GET", "/domains/{domain}/vcpus", "listVCPUs"),
            ("PUT", "/domains/{domain}/vcpus/{vcpu}/affinity", "pinVCPU"),
            ("GET", "/domains/{domain}/sched/vcpus", "getVCPUSchedParameters"),
            ("PUT", "/domains/{domain}/sched/vcpus/{vcpu}", "setVCPUSchedParameters"),
        ]
        for (method, path, operation) in described {
            // The server takes it...
            let uri = path.replacingOccurrences(of: "{domain}", with: "d").replacingOccurrences(of: "{vcpu}", with: "0")
            #expect((try? APIRoute.decode(method: method, uri: uri).get()) != nil, "\(method) \(path)")
            // ...and the document has the path and the operation.
            #expect(document.contains("\n  \(path):\n"), "\(path) is not in docs/api.yaml")
            #expect(document.contains("operationId: \(operation)\n"), "\(operation) is not in docs/api.yaml")
        }
    }
}

/// A small deterministic generator (SplitMix64) for the integration tests' seeded sweeps.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
