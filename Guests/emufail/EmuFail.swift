// emufail: runs, at CPL0, the instructions KVM's PVM backend cannot emulate for a guest kernel
// (CLWB, RDPRU, XGETBV with CR4.OSXSAVE clear, CLAC/STAC, INVPCID, INT3, INT n) and those it
// spins on without exiting (VMCALL, VMMCALL, RDPMC of a counter that does not exist), and checks
// that each does what the SDM says for the CPU CPUID describes: runs when its feature bit is
// set, raises #UD (#GP for RDPMC) when it is not; INT3 and INT n deliver through the IDT with
// RIP after them.
// PASS/FAIL per check over the console. Exit: 0 when every check passed, else 1 (status 3).

nonisolated(unsafe) var failures = 0
let noFault: UInt64 = 0xffff

/// Records the vector, error code and RIP; a fault resumes at the probe's recovery point,
/// INT3 and INT n (traps) after the instruction.
func recordFault(_ raw: UnsafeMutablePointer<UInt64>) {
    let frame = InterruptFrame(raw)
    ef_vector = frame.vector
    ef_error = frame.errorCode
    ef_rip = frame.rip
    if frame.vector != 3 && frame.vector != 0x80 { frame.rip = ef_fixup }
}

func check(_ name: StaticString, _ ok: Bool) {
    put(ok ? "emufail: PASS " : "emufail: FAIL ")
    put(name)
    if !ok {
        put(" (vector ")
        if ef_vector == noFault { put("none") } else { put(ef_vector) }
        put(" error "); putHex(ef_error, digits: 4)
        put(" rip "); putHex(ef_rip, digits: 16)
        put(")")
        failures += 1
    }
    putLine()
}

/// Runs `probe` and checks it raised `vector` (or no fault at all when nil).
func expect(_ name: StaticString, fault vector: UInt64?, error: UInt64? = nil, _ probe: () -> Void) {
    ef_vector = noFault
    ef_error = 0
    probe()
    let ok = ef_vector == (vector ?? noFault) && (error == nil || ef_error == error!)
    check(name, ok)
}

/// QEMU's TCG, found by its hypervisor signature ("TCGTCGTCGTCG").
let runningOnTCG: Bool = {
    let leaf = CPU.cpuid(0x4000_0000)
    return leaf.ebx == 0x5447_4354 && leaf.ecx == 0x4354_4743 && leaf.edx == 0x4743_5447
}()

func bit(_ value: UInt32, _ n: UInt32) -> Bool { value >> n & 1 != 0 }

func guestMain() {
    Interrupts.setUp()
    for v: UInt32 in [3, 6, 13, 14, 0x80] {
        Interrupts.register(vector: v) { recordFault($0) }
    }
    let leaf7 = CPU.cpuid(0).eax >= 7 ? CPU.cpuid(7, 0) : CPUIDResult(eax: 0, ebx: 0, ecx: 0, edx: 0)
    let maxExtended = CPU.cpuid(0x8000_0000).eax
    let leaf8 = maxExtended >= 0x8000_0008 ? CPU.cpuid(0x8000_0008).ebx : 0
    let clwb = bit(leaf7.ebx, 24), smap = bit(leaf7.ebx, 20), invpcid = bit(leaf7.ebx, 10)
    let rdpru = bit(leaf8, 4)
    put("emufail: cpuid clwb="); put(clwb ? 1 : 0); put(" smap="); put(smap ? 1 : 0)
    put(" invpcid="); put(invpcid ? 1 : 0); put(" rdpru="); put(rdpru ? 1 : 0)
    put(" (leaf 7 ebx "); putHex(leaf7.ebx, digits: 8); putLine(")")

    let line = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    expect("clwb", fault: clwb ? nil : 6) { ef_clwb(line) }
    expect("rdpru", fault: rdpru ? nil : 6) { ef_rdpru() }
    let osxsave: UInt64 = 1 << 18
    if ef_read_cr4() & osxsave != 0 { ef_write_cr4(ef_read_cr4() & ~osxsave) }
    expect("xgetbv with CR4.OSXSAVE clear raises #UD", fault: 6) { ef_xgetbv() }

    // A kernel runs CLAC/STAC with CR4.SMAP set (Linux patches them in only then): CLAC so first.
    var ac: UInt64 = 0
    if smap {
        ef_vector = noFault
        ac = ef_clac_under_smap()
        check("clac under CR4.SMAP clears RFLAGS.AC", ac == 0)
    }
    // With CR4.SMAP clear they still run where CPUID offers SMAP. This host's KVM shows the guest
    // a leaf 7 that is not the table Visor gave it (SMAP, which KVM_GET_SUPPORTED_CPUID leaves
    // out), and Visor's CPU, carrying out the CLAC KVM could not, can only follow its own table
    // and CR4; so there a #UD with SMAP in CPUID and CR4.SMAP clear is that departure.
    ef_vector = noFault
    ac = ef_clac()
    if smap && ef_vector == 6 {
        putLine("emufail: SKIP clac with CR4.SMAP clear: #UD though CPUID offers SMAP: this host's KVM shows the guest SMAP that Visor's CPUID table (KVM_GET_SUPPORTED_CPUID) leaves out")
    } else {
        check("clac", ef_vector == (smap ? noFault : 6))
        if smap { check("clac clears RFLAGS.AC", ac == 0) }
        expect("stac", fault: smap ? nil : 6) { ac = ef_stac() }
        if smap { check("stac sets RFLAGS.AC", ac != 0) }
    }

    let descriptor = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    descriptor.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
    expect("invpcid type 2 (all contexts)", fault: invpcid ? nil : 6) { ef_invpcid(2, descriptor) }
    expect("invpcid type 4 (invalid)", fault: invpcid ? 13 : 6, error: invpcid ? 0 : nil) { ef_invpcid(4, descriptor) }

    // Visor offers neither VMX nor SVM, and no CPU has performance counter 0x3fff.
    expect("vmcall raises #UD", fault: 6) { ef_vmcall() }
    expect("vmmcall raises #UD", fault: 6) { ef_vmmcall() }
    ef_vector = noFault
    ef_rdpmc_invalid()
    if runningOnTCG && ef_vector == 6 {
        putLine("emufail: SKIP rdpmc of a counter that does not exist raises #GP(0): QEMU's TCG raises #UD for every RDPMC")
    } else {
        check("rdpmc of a counter that does not exist raises #GP(0)", ef_vector == 13 && ef_error == 0)
    }

    expect("int3 delivers #BP", fault: 3) { ef_int3() }
    check("int3 pushes RIP after it", ef_rip == ef_int3_next_address())
    expect("int 0x80 delivers vector 0x80", fault: 0x80) { ef_int80() }
    check("int 0x80 pushes RIP after it", ef_rip == ef_int80_next_address())

    if failures == 0 {
        putLine("emufail: all passed")
        GuestKit.exit(0)
    }
    put("emufail: "); put(failures); putLine(" failed")
    GuestKit.exit(1)
}
