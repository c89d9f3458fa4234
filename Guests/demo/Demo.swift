// demo, the default guest: who am I running on, plus a small self-checking computation.

/// Primes below this bound are counted with a sieve of Eratosthenes. Kept small because
/// CPL0 code is emulated instruction by instruction on /dev/kvm's PVM backend.
let sieveBound = 10_000
/// pi(10000): the number of primes below 10000.
let expectedPrimes = 1229

func guestMain() {
    putLine("Visor demo guest")

    let vendor = CPU.cpuid(0)
    put("  CPU vendor:          ")
    putLine(CPU.signatureText(vendor.ebx, vendor.edx, vendor.ecx))

    let hypervisorBit = CPU.hypervisorPresent
    put("  CPUID.1:ECX[31]:     ")
    putLine(hypervisorBit ? "1 (hypervisor present)" : "0 (no hypervisor bit)")

    let hv = CPU.cpuid(HypervisorCPUID.signatureLeaf)
    put("  CPUID 0x40000000:    ")
    if CPU.signatureIsPrintable(hv.ebx, hv.ecx, hv.edx) {
        put("\"")
        put(CPU.signatureText(hv.ebx, hv.ecx, hv.edx))
        put("\"")
    } else {
        put("ebx=")
        putHex(hv.ebx, digits: 8)
        put(" ecx=")
        putHex(hv.ecx, digits: 8)
        put(" edx=")
        putHex(hv.edx, digits: 8)
    }
    putLine()
    if HypervisorCPUID.isVisorSignature(ebx: hv.ebx, ecx: hv.ecx, edx: hv.edx) {
        let version = CPU.cpuid(HypervisorCPUID.versionLeaf).eax
        put("  running on Visor, ABI ")
        put(version >> 16)
        put(".")
        put(version & 0xffff)
        putLine()
    } else {
        putLine("  no Visor signature")
    }

    if let info = GuestKit.multiboot {
        if let lower = info.memoryLowerKiB, let upper = info.memoryUpperKiB {
            put("  memory:              ")
            put(lower)
            put(" KiB low, ")
            put(upper)
            putLine(" KiB high")
        }
        if let line = info.commandLine {
            put("  command line:        \"")
            put(line)
            putLine("\"")
        }
    } else {
        putLine("  no multiboot info")
    }

    let primes = countPrimes(below: sieveBound)
    put("  primes below ")
    put(sieveBound)
    put(": ")
    put(primes)
    put(" (expected ")
    put(expectedPrimes)
    put(") ")
    if primes == expectedPrimes {
        putLine("PASS")
        GuestKit.exit(0)
    } else {
        putLine("FAIL")
        GuestKit.exit(1)
    }
}

func countPrimes(below bound: Int) -> Int {
    guard bound > 2 else { return 0 }
    var composite = [Bool](repeating: false, count: bound)
    var count = 0
    var i = 2
    while i < bound {
        if !composite[i] {
            count += 1
            var j = i * i
            while j < bound {
                composite[j] = true
                j += i
            }
        }
        i += 1
    }
    return count
}
