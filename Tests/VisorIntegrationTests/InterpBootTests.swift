// The built-in guests on the `interp` engine (the software CPU): the same output and status as
// on kvm and under QEMU. These need no /dev/kvm, so they run on every host.

import Foundation
import Testing

@Suite("Boot on interp", .serialized, .timeLimit(.minutes(5)))
struct InterpBootTests {
    @Test("hello prints exactly what it prints on kvm and under QEMU, and exits 0")
    func hello() throws {
        let r = try runVisor(["run", "--engine", "interp", "hello"])
        #expect(r.stdout == "Hello from a Visor guest!\n")
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let exit5 = try runVisor(["run", "--engine", "interp", "hello", "--cmdline", "exit=5"])
        #expect(exit5.status == 11)
    }

    @Test("demo sees Visor's signature through the software CPU's CPUID and passes")
    func demo() throws {
        let r = try runVisor(["run", "--engine", "interp", "demo", "--cmdline", "a b"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("\"VisorVisorVM\""))
        #expect(r.stdout.contains("running on Visor, ABI 1.1"))
        #expect(r.stdout.contains("command line:        \"a b\""))
        #expect(r.stdout.contains("primes below 10000: 1229 (expected 1229) PASS"))
    }

    @Test("demo prints the same on interp as on kvm, but for the CPU vendor line", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func demoMatchesKVM() throws {
        let interp = try runVisor(["run", "--engine", "interp", "demo"])
        let kvm = try runVisor(["run", "--engine", "kvm", "demo"])
        func withoutVendor(_ s: String) -> [Substring] { s.split(separator: "\n").filter { !$0.contains("CPU vendor") } }
        #expect(withoutVendor(interp.stdout) == withoutVendor(kvm.stdout))
        #expect(interp.status == kvm.status)
    }

    @Test("systest passes every check on the software CPU, skipping none")
    func systemBehaviour() throws {
        let r = try runVisor(["run", "--engine", "interp", "systest"])
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.contains("systest: all checks passed"))
        #expect(!r.stdout.contains("FAIL"))
        #expect(!r.stdout.contains("SKIP"), "the software CPU follows the SDM where the hosts depart from it")
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS") }.count >= 22)
        // The software CPU is GenuineIntel: compatibility mode follows Intel's rules (item 7).
        #expect(r.stdout.contains("systest: compatibility-mode checks (Intel rules)"))
        #expect(r.stdout.contains("PASS SYSEXIT with a 32-bit operand returns to compatibility mode"))
    }

    @Test("a triple fault is a crash with a register dump, status 2")
    func tripleFault() throws {
        let r = try runVisor(["run", "--engine", "interp", "triplefault"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("triple fault"))
        #expect(r.stderr.contains("rip="))
    }

    @Test("exitbench drops to CPL3 and reports every port write as an exit")
    func userMode() throws {
        let r = try runVisor(["run", "--engine", "interp", "exitbench", "--cmdline", "n=500", "--stats"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("done at CPL3"))
        #expect(r.stderr.contains("0x510=1000"))
    }

    @Test("--timeout preempts a software vCPU in a long loop")
    func timeout() throws {
        let r = try runVisor(["run", "--engine", "interp", "cpubench", "--cmdline", "alu=100000000000", "--timeout", "1s"],
                             timeout: 60)
        #expect(!r.timedOut)
        #expect(r.status == 6)
    }

    static let smallCPUBench = "alu=20000 copy=65536 copies=1 sieve=65536 calls=20000 dispatch=20000"

    /// The `result=` field of each cpubench loop, in order.
    static func cpubenchResults(_ output: String) -> [Substring] {
        output.split(separator: "\n").compactMap { line in line.split(separator: " ").last.flatMap { $0.hasPrefix("result=") ? $0 : nil } }
    }

    @Test("cpubench's five loops run to a result on interp; the sieve finds the primes below 65536")
    func cpubenchOnInterp() throws {
        let interp = try runVisor(["run", "--engine", "interp", "cpubench", "--cmdline", Self.smallCPUBench])
        #expect(interp.status == 0, "stderr: \(interp.stderr)")
        #expect(interp.stdout.contains("cpubench: sieve instructions="))
        #expect(interp.stdout.contains("result=6542\n"), "primes below 65536")
        #expect(Self.cpubenchResults(interp.stdout).count == 5, "stdout: \(interp.stdout)")
    }

    @Test("cpubench's five loops compute the same results on interp as on kvm", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func cpubenchMatchesKVM() throws {
        let interp = try runVisor(["run", "--engine", "interp", "cpubench", "--cmdline", Self.smallCPUBench])
        let kvm = try runVisor(["run", "--engine", "kvm", "cpubench", "--cmdline", Self.smallCPUBench])
        #expect(kvm.status == 0, "stderr: \(kvm.stderr)")
        #expect(Self.cpubenchResults(kvm.stdout).count == 5, "stdout: \(kvm.stdout)")
        #expect(Self.cpubenchResults(interp.stdout) == Self.cpubenchResults(kvm.stdout))
    }
}
