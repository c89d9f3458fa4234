// systest's checks of the MSRs and counters kernels use at boot (issue 15 items 8 and 10):
// machine-check MSRs as CPUID offers them, IA32_MISC_ENABLE reading back a write, WRMSR to
// IA32_TSC and IA32_TSC_ADJUST moving the TSC (each keeping the other in step), RDPMC as CPUID
// leaf 0xA offers counters, and RDTSCP with IA32_TSC_AUX (checked from CPL3, where every engine
// runs it natively or emulates it).

/// The TSC_AUX value written at CPL0 and read back with RDTSCP at CPL3.
let tscAuxValue: UInt64 = 0x5a5a_1234

/// RDMSR that reports a fault as nil (the handler recorded it in lastFault).
func readMSR(_ msr: UInt32) -> UInt64? {
    lastFault = nil
    let value = probe_rdmsr(msr)
    if lastFault != nil { return nil }
    return value
}

func maxBasicLeaf() -> UInt32 { CPU.cpuid(0).eax }

func machineCheckChecks() {
    let offersMCA = CPU.cpuid(1).edx & (1 << 14) != 0
    guard offersMCA else {
        _ = probe_rdmsr(0x179)
        expectFault("no MCA in CPUID: rdmsr IA32_MCG_CAP raises #GP(0)", vector: 13, error: 0)
        return
    }
    guard let cap = readMSR(0x179) else {
        check("CPUID offers MCA: IA32_MCG_CAP reads", false) { put("#GP") }
        lastFault = nil
        return
    }
    let banks = cap & 0xff
    put("systest: IA32_MCG_CAP "); putHex(cap, digits: 8); put(", banks "); put(banks); putLine()
    let status = readMSR(0x17a)
    check("IA32_MCG_STATUS reads, no machine check in progress", status != nil && status! & 4 == 0) {
        if let status { putHex(status, digits: 8) } else { put("#GP") }
    }
    lastFault = nil
    let wrote = probe_wrmsr(0x17a, 0) == 0
    check("IA32_MCG_STATUS takes a write of 0 and reads it back", wrote && readMSR(0x17a) == 0)
    lastFault = nil
    var banksClean = true
    for bank in 0..<UInt32(min(banks, 32)) {
        guard let bankStatus = readMSR(0x401 + 4 * bank), bankStatus >> 63 == 0 else { banksClean = false; break }
    }
    check("each bank IA32_MCG_CAP counts has an MCi_STATUS that reads, none valid", banksClean)
    lastFault = nil
}

func miscEnableChecks() {
    guard let original = readMSR(0x1a0) else {
        check("IA32_MISC_ENABLE reads", false) { put("#GP") }
        lastFault = nil
        return
    }
    let fastStrings: UInt64 = 1
    let sameOK = probe_wrmsr(0x1a0, original) == 0 && readMSR(0x1a0) == original
    check("IA32_MISC_ENABLE takes back the value it reads", sameOK)
    lastFault = nil
    let toggled = original ^ fastStrings
    let wrote = probe_wrmsr(0x1a0, toggled) == 0
    let readBack = readMSR(0x1a0)
    check("IA32_MISC_ENABLE reads back a write of its fast-strings bit", wrote && readBack == toggled) {
        put("wrote "); putHex(toggled, digits: 8); put(" read ")
        if let readBack { putHex(readBack, digits: 8) } else { put("#GP") }
    }
    lastFault = nil
    _ = probe_wrmsr(0x1a0, original)
    lastFault = nil
}

/// True when the TSC read after `write` ran is between `jump` and `jump + slack` past the one
/// read before it (`jump` may be "negative": the check is modulo 2^64).
func movesTSC(by jump: UInt64, _ write: () -> Void) -> (ok: Bool, before: UInt64, after: UInt64) {
    let before = st_rdtsc()
    write()
    let after = st_rdtsc()
    return ((after &- before) &- jump < tscSlack, before, after)
}

let tscJump: UInt64 = 1 << 40  // about 18 minutes at 1 GHz: far beyond any time these checks take
let tscSlack: UInt64 = 1 << 39

func putBeforeAfter(_ r: (ok: Bool, before: UInt64, after: UInt64)) {
    put("before "); putHex(r.before, digits: 16); put(" after "); putHex(r.after, digits: 16)
}

func timeStampCounterChecks() {
    let offersAdjust = maxBasicLeaf() >= 7 && CPU.cpuid(7).ebx & (1 << 1) != 0
    let adjustBefore: UInt64 = offersAdjust ? (readMSR(0x3b) ?? 0) : 0
    lastFault = nil
    let forward = movesTSC(by: tscJump) { st_wrmsr(0x10, st_rdtsc() &+ tscJump) }
    if !forward.ok && runningOnTCG {
        putLine("SKIP wrmsr IA32_TSC moves the TSC: QEMU's TCG ignores the write")
    } else if !forward.ok && forward.after &- forward.before < tscSlack {
        // KVM's PVM backend: the write is taken (IA32_TSC_ADJUST records it, below) but the
        // guest's TSC does not move.
        put("SKIP wrmsr IA32_TSC moves the TSC: this host's KVM takes the write but leaves the TSC where it was (")
        putBeforeAfter(forward); putLine(")")
    } else {
        check("wrmsr IA32_TSC moves the TSC forward by what was written", forward.ok) { putBeforeAfter(forward) }
    }
    guard offersAdjust else {
        if runningOnTCG {
            putLine("SKIP IA32_TSC_ADJUST: QEMU's TCG default CPU does not offer it")
        } else {
            _ = probe_rdmsr(0x3b)
            expectFault("no TSC_ADJUST in CPUID: rdmsr IA32_TSC_ADJUST raises #GP(0)", vector: 13, error: 0)
        }
        st_wrmsr(0x10, st_rdtsc() &- tscJump)
        return
    }
    var adjust = readMSR(0x3b) ?? adjustBefore
    let change = adjust &- adjustBefore
    check("a TSC write moves IA32_TSC_ADJUST by the same amount", change <= tscJump && change > tscJump - tscSlack) {
        put("IA32_TSC_ADJUST moved by "); putHex(change, digits: 16)
    }
    // Back to the adjust the check started with, then forward and back through IA32_TSC_ADJUST.
    _ = probe_wrmsr(0x3b, adjustBefore)
    adjust = adjustBefore
    let up = movesTSC(by: tscJump) { _ = probe_wrmsr(0x3b, adjust &+ tscJump) }
    let down = movesTSC(by: 0 &- tscJump) { _ = probe_wrmsr(0x3b, adjust) }
    if !up.ok && up.after &- up.before < tscSlack && !runningOnTCG && readMSR(0x3b) == adjust {
        put("SKIP a write to IA32_TSC_ADJUST moves the TSC: this host's KVM stores it but leaves the TSC where it was (")
        putBeforeAfter(up); putLine(")")
    } else {
        check("a write to IA32_TSC_ADJUST moves the TSC by its change, both ways", up.ok && down.ok) {
            putBeforeAfter(up); put(", "); putBeforeAfter(down)
        }
    }
    lastFault = nil
}

/// RDPMC at CPL0: a counter leaf 0xA offers reads; one it does not offer raises #GP(0).
func performanceCounterChecks() {
    let leafA = maxBasicLeaf() >= 0xa ? CPU.cpuid(0xa).eax : 0
    let version = leafA & 0xff, generalCounters = (leafA >> 8) & 0xff
    put("systest: CPUID leaf 0xA version "); put(version); put(", counters "); put(generalCounters); putLine()
    if version >= 1 && generalCounters >= 1 {
        lastFault = nil
        _ = probe_rdpmc(0)
        check("rdpmc reads general-purpose counter 0, which leaf 0xA offers", lastFault == nil) {
            put("vector "); put(lastFault?.vector ?? 0)
        }
        lastFault = nil
    }
    lastFault = nil
    _ = probe_rdpmc(generalCounters)
    if runningOnTCG && lastFault?.vector == 6 {
        putLine("SKIP rdpmc of a counter leaf 0xA does not offer: QEMU's TCG raises #UD for every RDPMC")
        lastFault = nil
        return
    }
    expectFault("rdpmc of a counter leaf 0xA does not offer raises #GP(0)", vector: 13, error: 0)
}

/// The CPL0 part: every check that needs RDMSR/WRMSR, and IA32_TSC_AUX set for the CPL3 part.
func msrKernelChecks() {
    putLine("systest: MSR checks")
    machineCheckChecks()
    miscEnableChecks()
    timeStampCounterChecks()
    performanceCounterChecks()
    lastFault = nil
    _ = probe_wrmsr(0xC000_0103, tscAuxValue)
    lastFault = nil
}

/// The CPL3 part: RDTSCP where CPUID offers it (#UD where not), and RDPMC with CR4.PCE clear.
func msrUserChecks() {
    let offersRDTSCP = CPU.cpuid(0x8000_0000).eax >= 0x8000_0001 && CPU.cpuid(0x8000_0001).edx & (1 << 27) != 0
    lastFault = nil
    var aux: UInt64 = 0
    let before = st_rdtsc()
    let tsc = probe_rdtscp(&aux)
    if offersRDTSCP {
        let f = lastFault
        check("rdtscp (offered in CPUID) reads the TSC and IA32_TSC_AUX", f == nil && tsc >= before && aux == tscAuxValue) {
            if let f { put("vector "); put(f.vector) } else { put("aux "); putHex(aux, digits: 16) }
        }
    } else if lastFault == nil && !runningOnTCG {
        // KVM's PVM backend runs CPL3 natively and does not make RDTSCP fault when its CPUID
        // leaves it out.
        put("SKIP rdtscp (not offered in CPUID) raises #UD: this host's KVM runs it at CPL3 (ECX ")
        putHex(aux, digits: 8); putLine(")")
    } else {
        expectFault("rdtscp (not offered in CPUID) raises #UD", vector: 6)
    }
    lastFault = nil
    _ = probe_rdpmc(0)
    expectFault("rdpmc at CPL3 with CR4.PCE clear raises #GP(0)", vector: 13, error: 0)
}
