// systest's checks of the interrupt hardware (issue 15 items 5 and 9): NMIs and fixed IPIs sent
// through the local APIC's ICR to this CPU, NMI blocking from delivery until IRET with one NMI
// held pending and the rest collapsed, the local APIC disabled through IA32_APIC_BASE (its page
// stops answering and CPUID.1:EDX.APIC clears), the I/O APIC's ID and arbitration registers, and
// port 0x92 (A20 reads open). Run at CPL0 with interrupts off except where a check turns them on.
//
// Not checked here: INIT through the ICR or port 0x92's bit 0, which would reset this (the
// only) CPU; the nmi guest checks an INIT IPI to another CPU on every engine. (Port 0x92's INIT
// goes to every vCPU, the BSP included, which then waits for a start-up IPI as Visor has no
// firmware: the domain ends halted. PlatformWiringTests checks that wiring.)

let nmiVector = 2, fixedIPIVector = 0x50
let apicIDRegister: UInt64 = 0x20, apicVersionRegister: UInt64 = 0x30, apicSVR: UInt64 = 0xf0
let apicBaseMSR: UInt32 = 0x1b, apicGlobalEnable: UInt64 = 1 << 11

/// Spins (bounded) until `done` holds; true if it did. On every engine the interrupt is due at
/// once (the ICR write is an exit, and the next entry delivers it), so the bound only stops a
/// broken engine from hanging the guest.
func waitFor(_ done: () -> Bool) -> Bool {
    for _ in 0..<20_000 {
        if done() { return true }
        gk_pause()
    }
    return done()
}

func sendToSelf(icrLow: UInt32) {
    APIC.write(APIC.Register.icrHigh, UInt32(truncatingIfNeeded: st_load64(&apic_nmi_icr_high)))
    APIC.write(APIC.Register.icrLow, icrLow)
}

func nmiChecks(idt: UnsafeMutablePointer<UInt64>) {
    setGate(idt, nmiVector, handler: st_apic_nmi_handler(), typeAndDPL: interruptGateDPL0)
    st_store64(&apic_nmi_icr_high, UInt64(APIC.id) << 24)
    st_cli()
    st_store64(&apic_nmi_count, 0)
    sendToSelf(icrLow: 0x4400)  // NMI, physical destination: this CPU's own APIC ID
    let taken = waitFor { st_load64(&apic_nmi_count) >= 1 }
    check("an NMI sent through the ICR to this CPU's APIC ID runs the vector 2 handler, IF clear",
          taken && st_load64(&apic_nmi_count) == 1 && st_read_rflags() & (1 << 9) == 0) {
        put("NMIs taken "); put(st_load64(&apic_nmi_count))
    }

    // The handler sends two more NMIs to this CPU before its IRET: the first is held until the
    // IRET, the second collapses into it.
    st_store64(&apic_nmi_count, 0)
    st_store64(&apic_nmi_nested, 0)
    st_store64(&apic_nmi_resend, 1)
    sendToSelf(icrLow: 0x4400)
    _ = waitFor { st_load64(&apic_nmi_count) >= 2 }
    _ = waitFor { st_load64(&apic_nmi_count) >= 3 }  // a third, were the second not collapsed
    let count = st_load64(&apic_nmi_count), nested = st_load64(&apic_nmi_nested)
    check("NMIs are blocked until IRET: two sent from the handler give one more NMI, after the IRET",
          count == 2 && nested == 0) {
        put("NMIs taken "); put(count); put(nested != 0 ? ", one nested inside another" : "")
    }
}

func fixedIPIChecks(idt: UnsafeMutablePointer<UInt64>) {
    setGate(idt, fixedIPIVector, handler: st_apic_fixed_handler(), typeAndDPL: interruptGateDPL0)
    APIC.write(APIC.Register.tpr, 0)
    st_store64(&apic_fixed_count, 0)
    sendToSelf(icrLow: 0x4_0000 | UInt32(fixedIPIVector))  // fixed, self shorthand, edge
    let heldWhileIFClear = st_load64(&apic_fixed_count) == 0
    st_sti()
    let taken = waitFor { st_load64(&apic_fixed_count) >= 1 }
    st_cli()
    check("a fixed self-IPI waits for IF and is delivered once on its vector",
          heldWhileIFClear && taken && st_load64(&apic_fixed_count) == 1) {
        put("taken "); put(st_load64(&apic_fixed_count)); put(heldWhileIFClear ? "" : ", before STI")
    }
}

func apicDisableChecks() {
    let base = st_rdmsr(apicBaseMSR)
    let version = APIC.read(apicVersionRegister)
    let svr = APIC.read(apicSVR)
    check("IA32_APIC_BASE: the APIC at 0xfee00000, enabled; CPUID.1:EDX.APIC set",
          base & 0xf_ffff_f000 == 0xfee0_0000 && base & apicGlobalEnable != 0 && CPU.cpuid(1).edx & (1 << 9) != 0) {
        put("IA32_APIC_BASE "); putHex(base, digits: 8)
    }
    st_wrmsr(apicBaseMSR, base & ~apicGlobalEnable)
    let cpuidWhileOff = CPU.cpuid(1).edx
    let versionWhileOff = APIC.read(apicVersionRegister)
    let baseWhileOff = st_rdmsr(apicBaseMSR)
    st_wrmsr(apicBaseMSR, base)
    // Disabling may reset the APIC (the SDM allows it; QEMU clears SVR's enable bit): restore it.
    APIC.write(apicSVR, svr)
    check("clearing IA32_APIC_BASE's enable bit reads back and clears CPUID.1:EDX.APIC",
          baseWhileOff == base & ~apicGlobalEnable && cpuidWhileOff & (1 << 9) == 0) {
        put("IA32_APIC_BASE "); putHex(baseWhileOff, digits: 8); put(" CPUID.1:EDX "); putHex(UInt64(cpuidWhileOff), digits: 8)
    }
    if versionWhileOff != 0xffff_ffff && runningOnTCG {
        put("SKIP a disabled local APIC's page stops answering: QEMU's TCG still answers there (version ")
        putHex(UInt64(versionWhileOff), digits: 8); putLine(")")
    } else {
        check("a disabled local APIC's page stops answering (reads all ones)", versionWhileOff == 0xffff_ffff) {
            put("version register read "); putHex(UInt64(versionWhileOff), digits: 8)
        }
    }
    let baseAgain = st_rdmsr(apicBaseMSR)
    if baseAgain & apicGlobalEnable == 0 && runningOnTCG {
        // As P6 processors did; the SDM lets later ones enable the APIC again.
        put("SKIP the APIC enabled again answers: QEMU's TCG keeps it disabled until reset (IA32_APIC_BASE ")
        putHex(baseAgain, digits: 8); putLine(")")
        return
    }
    check("enabled again, the APIC answers and CPUID.1:EDX.APIC is back",
          baseAgain == base && APIC.read(apicVersionRegister) == version && CPU.cpuid(1).edx & (1 << 9) != 0) {
        put("IA32_APIC_BASE "); putHex(baseAgain, digits: 8)
        put(" version "); putHex(UInt64(APIC.read(apicVersionRegister)), digits: 8)
    }
}

func ioapicRegister(_ index: UInt32) -> UInt32 {
    gk_mmio_write32(IOAPIC.base, index)
    return gk_mmio_read32(IOAPIC.base + 0x10)
}

func setIOAPICRegister(_ index: UInt32, _ value: UInt32) {
    gk_mmio_write32(IOAPIC.base, index)
    gk_mmio_write32(IOAPIC.base + 0x10, value)
}

func ioapicChecks() {
    let original = ioapicRegister(0)
    setIOAPICRegister(0, 0xff00_0000)
    let all = ioapicRegister(0), arbitration = ioapicRegister(2)
    setIOAPICRegister(0, 0x0500_0000)
    let five = ioapicRegister(0), arbitrationFive = ioapicRegister(2)
    setIOAPICRegister(0, original)
    check("IOAPICID: the ID (bits 27-24) is writable, the rest reads 0",
          all == 0x0f00_0000 && five == 0x0500_0000 && ioapicRegister(0) == original) {
        put("wrote ff000000, read "); putHex(UInt64(all), digits: 8); put("; wrote 05000000, read "); putHex(UInt64(five), digits: 8)
    }
    check("IOAPICARB reads the ID written to IOAPICID",
          arbitration == 0x0f00_0000 && arbitrationFive == 0x0500_0000) {
        put("read "); putHex(UInt64(arbitration), digits: 8); put(", then "); putHex(UInt64(arbitrationFive), digits: 8)
    }
}

func systemControlPortAChecks() {
    let value = gk_inb(0x92)
    check("port 0x92: the A20 gate (bit 1) reads open, fast INIT (bit 0) clear", value & 3 == 2) {
        put("read "); putHex(UInt64(value), digits: 2)
    }
    gk_outb(0x92, value & ~1)  // writing back what was read, INIT clear: no reset
    check("port 0x92 reads back a write of what it read", gk_inb(0x92) == value & ~1) {
        put("read "); putHex(UInt64(gk_inb(0x92)), digits: 2)
    }
}

/// The CPL0 part, run before anything else that needs the APIC.
func apicKernelChecks() {
    putLine("systest: NMI, APIC, I/O APIC and port 0x92 checks")
    guard let idt = UnsafeMutablePointer<UInt64>(bitPattern: UInt(st_idt_base())) else { return }
    APIC.write(apicSVR, 0x1ff)  // software-enabled (sending needs no more; receiving fixed IPIs does)
    // Only the IPIs sent here may interrupt: the 8259s masked (firmware leaves the PIT's IRQ 0
    // on vector 8 under QEMU) and cut off at LINT0, the APIC's timer and error entries masked.
    PIC.maskAll()
    APIC.write(APIC.Register.lvtLINT0, APIC.lvtMasked | 0x700)
    APIC.write(APIC.Register.lvtTimer, APIC.lvtMasked)
    APIC.write(APIC.Register.lvtError, APIC.lvtMasked)
    nmiChecks(idt: idt)
    fixedIPIChecks(idt: idt)
    apicDisableChecks()
    ioapicChecks()
    systemControlPortAChecks()
}
