// A vCPU is charged the CPU time its thread got, not the wall time it held a pCPU: the charge
// step's arithmetic (`RunMeter`) with made-up clock readings, and the pool with threads that
// spin beside it, its accounting checked against the kernel's count of its vCPU threads' CPU.

import Foundation
import Synchronization
import Testing
@testable import Visor
import VisorCore
import VisorSched

@Suite("Charging a vCPU for the CPU time its thread got")
struct RunMeterTests {
    @Test("a step splits the wall time since the last into CPU time run and time stolen")
    func splits() {
        var m = RunMeter()
        m.start(wall: 1_000, cpu: 50_000)
        #expect(m.step(wall: 11_000, cpu: 54_000) == .init(ran: 4_000, stolen: 6_000))
        #expect(m.step(wall: 21_000, cpu: 64_000) == .init(ran: 10_000, stolen: 0))
        #expect(m.step(wall: 21_000, cpu: 64_000) == .init(ran: 0, stolen: 0))
    }

    @Test("CPU time read a little after the wall clock is not counted twice: the excess waits for the next step")
    func excessCarried() {
        var m = RunMeter()
        m.start(wall: 0, cpu: 0)
        #expect(m.step(wall: 10_000, cpu: 10_300) == .init(ran: 10_000, stolen: 0))
        #expect(m.step(wall: 20_000, cpu: 19_000) == .init(ran: 9_000, stolen: 1_000))
        // Over both steps: 19 000 ran of 20 000, as the clocks say.
    }

    @Test("a clock that cannot be read counts the stretch in wall time; one that went backwards counts nothing")
    func fallbacks() {
        var m = RunMeter()
        m.start(wall: 0, cpu: nil)                        // granted before the thread's clock was known
        #expect(m.step(wall: 5_000, cpu: 100) == .init(ran: 5_000, stolen: 0))
        #expect(m.step(wall: 8_000, cpu: 1_100) == .init(ran: 1_000, stolen: 2_000))
        #expect(m.step(wall: 9_000, cpu: nil) == .init(ran: 1_000, stolen: 0))  // the thread has gone
        m.start(wall: 10_000, cpu: 9_000)
        #expect(m.step(wall: 12_000, cpu: 8_000) == .init(ran: 0, stolen: 2_000))
        #expect(m.step(wall: 11_000, cpu: 9_000) == .init(ran: 0, stolen: 0), "a wall clock going back")
    }

    @Test("a vCPU that has let go of its pCPU but is still the policy's running one ran none of the time since")
    func notHolding() {
        var m = RunMeter()
        m.start(wall: 0, cpu: 0)
        #expect(m.step(wall: 3_000, cpu: 3_000) == .init(ran: 3_000, stolen: 0))   // the release
        #expect(m.step(wall: 7_000, cpu: nil, running: false) == .init(ran: 0, stolen: 4_000))
    }

    @Test("a thread's CPU clock reads its CPU time, from another thread too")
    func threadClock() throws {
        let clock = try #require(ThreadCPUClock.current())
        let first = try #require(clock.nanoseconds())
        var x: UInt64 = 1
        let until = MonotonicClock.hostNanoseconds() &+ 20_000_000
        while MonotonicClock.hostNanoseconds() < until { x = x &* 6_364_136_223_846_793_005 &+ 1 }
        let second = try #require(clock.nanoseconds())
        #expect(second > first, "x = \(x)")
        let other = Mutex<UInt64?>(nil)
        let reader = Thread { other.withLock { $0 = clock.nanoseconds() } }
        reader.start()
        while other.withLock({ $0 }) == nil { usleep(1_000) }
        #expect(try #require(other.withLock { $0 }) >= second)
    }
}

@Suite("Charging vCPUs beside other work", .serialized, .timeLimit(.minutes(5)))
struct StealTimeTests {
    /// `visor bench shares`' line for the weights scenario on `engine`: charged, ran, wall (ms).
    private func weightsLine(_ output: String, engine: String) -> (charged: [Double], ran: [Double], wall: Double)? {
        for line in output.split(separator: "\n") where line.hasPrefix(engine + " ") && line.contains("threads ran") {
            let numbers = line.split(whereSeparator: { $0 == " " || $0 == "," }).compactMap { Double($0) }
            guard numbers.count == 5 else { return nil }
            return ([numbers[0], numbers[1]], [numbers[2], numbers[3]], numbers[4])
        }
        return nil
    }

    @Test("with threads spinning beside the pool, each vCPU is charged what the kernel says its thread ran, and 256 : 512 holds for it")
    func chargedWhatRan() throws {
        // In a child process (`visor bench shares --busy`), with as many spinning threads as the
        // host gives it CPUs, so the vCPU threads wait for a CPU while they hold their pCPU
        // whatever the machine; not in this one, whose threads `LifecycleBenchmarkTests` counts.
        let busy = min(HostCPUBinding.usableCount, 16)
        let r = try runVisor(["bench", "shares", "--engine", "interp", "--seconds", "4", "--busy", "\(busy)"], timeout: 240)
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        let (charged, ran, wall) = try #require(weightsLine(r.stdout, engine: "interp"), "no weights line in:\n\(r.stdout)")
        let comment: Comment = "charged \(charged) ms, threads ran \(ran) ms, of \(wall) ms"
        print("steal time: \(comment.rawValue)")
        // The run tested something: the vCPU threads ran clearly less than the wall time their
        // pCPU was held (before, the pool charged all of it).
        #expect(ran.reduce(0, +) < 0.9 * wall, comment)
        // Charged what the kernel counted (a few ms apart: the two are read one after the other).
        for (c, t) in zip(charged, ran) {
            #expect(abs(c - t) <= 0.05 * t + 20, comment)
        }
        // The weights hold for the CPU time really given: 2 ideally. On a busy 2-core host the
        // ratio of what credit's 30 ms slices give moves by some tenths from run to run.
        let ratio = ran[1] / max(ran[0], 1)
        #expect(ratio >= 1.5 && ratio <= 2.6, comment)
    }
}
