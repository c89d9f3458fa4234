// systest's checks of compatibility mode (32-bit code under long mode, issue 15 item 7) and of
// the task-switch instructions in IA-32e mode: far transfers between 64-bit and 32-bit code,
// SYSCALL from compatibility mode (to IA32_CSTAR on AMD, #UD on Intel), SYSRET with a 32-bit
// operand back to compatibility mode, SYSENTER from compatibility mode with SYSEXIT or SYSRET
// back (Intel; #UD on AMD), INT n from compatibility mode with IRETQ back to a 32-bit CS; and
// #GP for a far JMP to a TSS, a far CALL to a task gate and IRETQ with NT = 1, which have no
// meaning in IA-32e mode; a far CALL through a 64-bit call gate from compatibility mode at CPL3
// into 64-bit code at CPL0, and RETQ back. The CPU vendor (CPUID leaf 0) decides which behaviour is expected.

/// Slots of compat_obs (compat.S).
enum CompatSlot {
    static let eaxAfterDec: Int32 = 0, modeCS: Int32 = 1
    static let cstarCS: Int32 = 4, cstarRCX: Int32 = 5, cstarR11: Int32 = 6
    static let syscallBackCS: Int32 = 7, syscallBackSS: Int32 = 8, syscallBack: Int32 = 9
    static let sysenterCS: Int32 = 10, sysenterUserESP: Int32 = 11
    static let sysenterBackCS: Int32 = 12, sysenterBackSS: Int32 = 13, sysenterBackESP: Int32 = 14, sysenterBack: Int32 = 15
    static let intBackCS: Int32 = 16, intBack: Int32 = 17
    static let gateCS: Int32 = 18, gateSS: Int32 = 19, gatePushedCS: Int32 = 20, gatePushedSS: Int32 = 21
    static let gateBackCS: Int32 = 22, gateBack: Int32 = 23
}

/// compat.S's labels (compat_label).
enum CompatLabel {
    static let fixup: Int32 = 0, modeProbe: Int32 = 1, syscallProbe: Int32 = 2, syscallInstruction: Int32 = 3
    static let afterSyscall: Int32 = 4, sysenterProbe: Int32 = 5, sysenterInstruction: Int32 = 6
    static let afterSysenter: Int32 = 7, intProbe: Int32 = 8, intInstruction: Int32 = 9
    static let cstarEntry: Int32 = 10, sysenterEntry: Int32 = 11
    static let callGateProbe: Int32 = 12, callGateInstruction: Int32 = 13, callGateEntry: Int32 = 14
}

let compatCS: UInt64 = 0x5b, compatSS: UInt64 = 0x63, sysenterCSValue: UInt64 = 0x48

/// AMD's rules (SYSCALL from compatibility mode, no SYSENTER in long mode) or Intel's.
let cpuIsAMD: Bool = CPU.cpuid(0).ebx == 0x6874_7541  // "Auth"enticAMD

func compatObserved(_ slot: Int32) -> UInt64 { compat_observed(slot) }

/// Runs a compat.S probe in compatibility mode at CPL3; a fault resumes at the 32-bit fixup.
func runCompat(_ label: Int32) {
    lastFault = nil
    compat_clear()
    compat_run(compat_label(label), compat_label(CompatLabel.fixup))
}

/// CPL0 set-up: GuestKit's GDT plus the compatibility-mode segments compat.S names, IA32_CSTAR
/// and the SYSENTER MSRs (SYSENTER_CS 0x48: SYSEXIT's selectors are 0x5b/0x63 and 0x6b/0x73).
func compatKernelSetup() {
    let old = UnsafePointer<UInt64>(bitPattern: UInt(compat_gdt_base()))!
    let gdt = UnsafeMutablePointer<UInt64>.allocate(capacity: 18)
    for i in 0..<8 { gdt[i] = old[i] }
    gdt[9] = 0x00af_9a00_0000_ffff   // 0x48 kernel code, 64-bit
    gdt[10] = 0x00cf_9200_0000_ffff  // 0x50 kernel data
    gdt[11] = 0x00cf_fa00_0000_ffff  // 0x58 user code, 32-bit (compatibility mode)
    gdt[12] = 0x00cf_f200_0000_ffff  // 0x60 user data
    gdt[13] = 0x00af_fa00_0000_ffff  // 0x68 user code, 64-bit
    gdt[14] = 0x0000_e500_0028_0000  // 0x70 task gate (DPL 3) to the TSS at 0x28
    // 0x78: a 64-bit call gate (DPL 3, 16 bytes) to compat_callgate_entry in kernel code 0x08.
    let entry = compat_label(CompatLabel.callGateEntry)
    gdt[15] = (entry & 0xffff) | (0x08 << 16) | (0xec << 40) | ((entry & 0xffff_0000) << 32)
    gdt[16] = entry >> 32
    gdt[17] = 0
    compat_lgdt(18 * 8 - 1, UInt64(UInt(bitPattern: gdt)))
    let stack = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    st_wrmsr(0xC000_0083, compat_label(CompatLabel.cstarEntry))      // IA32_CSTAR
    st_wrmsr(0x174, sysenterCSValue)                                // IA32_SYSENTER_CS
    st_wrmsr(0x175, UInt64(UInt(bitPattern: stack)) + 4096)         // IA32_SYSENTER_ESP
    st_wrmsr(0x176, compat_label(CompatLabel.sysenterEntry))        // IA32_SYSENTER_EIP
}

func compatUserChecks() {
    putLine(cpuIsAMD ? "systest: compatibility-mode checks (AMD rules)" : "systest: compatibility-mode checks (Intel rules)")
    // KVM's PVM backend runs CPL3 natively on its own GDT: a far JMP or CALL through memory to a
    // system descriptor comes back as #UD there (seen at the ljmpl/lcalll), not #GP(selector).
    _ = compat_far_jump_to_tss()
    if hostLacksINTnAndSYSRET && lastFault?.vector == 6 {
        putLine("SKIP far JMP to a TSS in 64-bit mode raises #GP(selector): #UD, this host's KVM departs at CPL3")
        lastFault = nil
    } else {
        expectFault("far JMP to a TSS in 64-bit mode raises #GP(selector)", vector: 13, error: 0x28)
    }
    _ = compat_far_call_to_task_gate()
    if hostLacksINTnAndSYSRET && lastFault?.vector == 6 {
        putLine("SKIP far CALL to a task gate in 64-bit mode raises #GP(selector): #UD, this host's KVM departs at CPL3")
        lastFault = nil
    } else {
        expectFault("far CALL to a task gate in 64-bit mode raises #GP(selector)", vector: 13, error: 0x70)
    }
    _ = compat_iretq_with_nt()
    expectFault("IRETQ with EFLAGS.NT = 1 in IA-32e mode raises #GP(0)", vector: 13, error: 0)

    runCompat(CompatLabel.modeProbe)
    check("far return to a 32-bit CS runs compatibility-mode code (48h is DEC EAX), far JMP back",
          lastFault == nil && compatObserved(CompatSlot.eaxAfterDec) == 0 && compatObserved(CompatSlot.modeCS) == compatCS) {
        put("eax "); put(compatObserved(CompatSlot.eaxAfterDec)); put(" cs "); putHex(compatObserved(CompatSlot.modeCS), digits: 4)
    }

    compatSyscallChecks()
    compatSysenterChecks()

    compatCallGateCheck()

    runCompat(CompatLabel.intProbe)
    if let f = lastFault, f.vector == 6, f.rip == compat_label(CompatLabel.intInstruction) {
        putLine("SKIP int 0x40 from compatibility mode: #UD, this host's KVM does not virtualize INT n at CPL3")
    } else {
        let f = lastFault
        check("INT n from compatibility mode pushes the 32-bit CS; IRETQ returns to it",
              f?.vector == 0x40 && f?.pushedCS == compatCS && compatObserved(CompatSlot.intBack) == 1
                && compatObserved(CompatSlot.intBackCS) == compatCS) {
            if let f { put("vector "); put(f.vector); put(" pushed cs "); putHex(f.pushedCS, digits: 4) }
            put(" back "); put(compatObserved(CompatSlot.intBack)); put(" cs "); putHex(compatObserved(CompatSlot.intBackCS), digits: 4)
        }
    }
    lastFault = nil
}

func compatSyscallChecks() {
    guard cpuIsAMD else {
        runCompat(CompatLabel.syscallProbe)
        expectFault("SYSCALL in compatibility mode raises #UD (Intel)", vector: 6,
                    rip: compat_label(CompatLabel.syscallInstruction))
        return
    }
    // KVM's PVM backend cannot emulate SYSRET at CPL0: the handler returns by IRETQ there.
    compat_return_with_iret = hostLacksINTnAndSYSRET ? 1 : 0
    runCompat(CompatLabel.syscallProbe)
    // R11 holds RFLAGS with IOPL 3 (as the user runs), except on KVM's PVM backend, whose
    // user mode runs with the hardware's IOPL 0 (seen: R11 = 0x46); systest skips that already.
    let flagsOK = hostLacksINTnAndSYSRET || compatObserved(CompatSlot.cstarR11) & 0x3000 == 0x3000
    let entered = lastFault == nil && compatObserved(CompatSlot.cstarCS) == 0x08
        && compatObserved(CompatSlot.cstarRCX) == compat_label(CompatLabel.afterSyscall) && flagsOK
    check("SYSCALL in compatibility mode enters at IA32_CSTAR (CS from STAR, RCX = next EIP, R11 = RFLAGS) (AMD)",
          entered) {
        if let f = lastFault { put("fault "); put(f.vector); put(" ") }
        put("cs "); putHex(compatObserved(CompatSlot.cstarCS), digits: 4)
        put(" rcx "); putHex(compatObserved(CompatSlot.cstarRCX), digits: 8)
        put(" r11 "); putHex(compatObserved(CompatSlot.cstarR11), digits: 8)
    }
    if hostLacksINTnAndSYSRET {
        putLine("SKIP sysretl to compatibility mode: this host's KVM cannot emulate SYSRET at CPL0")
        check("IRETQ returns to the 32-bit CS after SYSCALL from compatibility mode",
              compatObserved(CompatSlot.syscallBack) == 1 && compatObserved(CompatSlot.syscallBackCS) == compatCS)
    } else {
        check("SYSRET with a 32-bit operand returns to compatibility mode (CS = STAR[63:48] | 3, SS = + 8)",
              compatObserved(CompatSlot.syscallBack) == 1 && compatObserved(CompatSlot.syscallBackCS) == 0x13
                && compatObserved(CompatSlot.syscallBackSS) == 0x1b) {
            put("cs "); putHex(compatObserved(CompatSlot.syscallBackCS), digits: 4)
            put(" ss "); putHex(compatObserved(CompatSlot.syscallBackSS), digits: 4)
        }
    }
    compat_return_with_iret = 0
    lastFault = nil
}

func compatSysenterChecks() {
    guard !cpuIsAMD else {
        compat_sysenter_return = 2  // IRETQ, should SYSENTER enter after all
        runCompat(CompatLabel.sysenterProbe)
        compat_sysenter_return = 0
        if runningOnTCG && compatObserved(CompatSlot.sysenterCS) == sysenterCSValue {
            putLine("SKIP SYSENTER in compatibility mode raises #UD (AMD): QEMU's TCG enters IA32_SYSENTER_EIP")
            lastFault = nil
            return
        }
        expectFault("SYSENTER in compatibility mode raises #UD (AMD)", vector: 6,
                    rip: compat_label(CompatLabel.sysenterInstruction))
        return
    }
    compat_sysenter_return = 0
    runCompat(CompatLabel.sysenterProbe)
    check("SYSENTER from compatibility mode enters 64-bit code (CS = SYSENTER_CS) (Intel)",
          lastFault == nil && compatObserved(CompatSlot.sysenterCS) == sysenterCSValue) {
        if let f = lastFault { put("fault "); put(f.vector); put(" ") }
        put("cs "); putHex(compatObserved(CompatSlot.sysenterCS), digits: 4)
    }
    check("SYSEXIT with a 32-bit operand returns to compatibility mode (CS = SYSENTER_CS + 16, SS + 24, ESP = ECX)",
          compatObserved(CompatSlot.sysenterBack) == 1 && compatObserved(CompatSlot.sysenterBackCS) == compatCS
            && compatObserved(CompatSlot.sysenterBackSS) == compatSS
            && compatObserved(CompatSlot.sysenterBackESP) == compatObserved(CompatSlot.sysenterUserESP)) {
        put("cs "); putHex(compatObserved(CompatSlot.sysenterBackCS), digits: 4)
        put(" ss "); putHex(compatObserved(CompatSlot.sysenterBackSS), digits: 4)
    }
    if hostLacksINTnAndSYSRET {
        // KVM's PVM backend cannot emulate SYSRET at CPL0: the SYSRETL would not reach
        // compatibility mode (seen: its far JMP back raised #UD, run as 64-bit code).
        putLine("SKIP sysretl to compatibility mode after SYSENTER: this host's KVM cannot emulate SYSRET at CPL0")
    } else {
        compat_sysenter_return = 1
        runCompat(CompatLabel.sysenterProbe)
        check("SYSRET with a 32-bit operand returns to compatibility mode (CS = STAR[63:48] | 3, SS = + 8)",
              lastFault == nil && compatObserved(CompatSlot.sysenterBack) == 1
                && compatObserved(CompatSlot.sysenterBackCS) == 0x13 && compatObserved(CompatSlot.sysenterBackSS) == 0x1b) {
            put("cs "); putHex(compatObserved(CompatSlot.sysenterBackCS), digits: 4)
            put(" ss "); putHex(compatObserved(CompatSlot.sysenterBackSS), digits: 4)
        }
    }
    compat_sysenter_return = 0
    lastFault = nil
}

func compatCallGateCheck() {
    runCompat(CompatLabel.callGateProbe)
    // KVM's PVM backend: a far CALL through memory to a system descriptor at CPL3 is #UD (as for
    // the task gate above).
    if hostLacksINTnAndSYSRET, let f = lastFault, f.vector == 6, f.rip == compat_label(CompatLabel.callGateInstruction) {
        putLine("SKIP far CALL through a 64-bit call gate from compatibility mode: #UD, this host's KVM departs at CPL3")
        lastFault = nil
        return
    }
    check("far CALL through a 64-bit call gate from compatibility mode enters 64-bit CPL0 on RSP0 with a null SS",
          lastFault == nil && compatObserved(CompatSlot.gateCS) == 0x08 && compatObserved(CompatSlot.gateSS) == 0
            && compatObserved(CompatSlot.gatePushedCS) == compatCS && compatObserved(CompatSlot.gatePushedSS) == 0x1b) {
        if let f = lastFault { put("fault "); put(f.vector); put(" error "); putHex(f.errorCode, digits: 4); put(" ") }
        put("cs "); putHex(compatObserved(CompatSlot.gateCS), digits: 4)
        put(" ss "); putHex(compatObserved(CompatSlot.gateSS), digits: 4)
        put(" pushed cs "); putHex(compatObserved(CompatSlot.gatePushedCS), digits: 4)
        put(" pushed ss "); putHex(compatObserved(CompatSlot.gatePushedSS), digits: 4)
    }
    check("RETQ from the call gate's handler returns to compatibility mode at CPL3",
          compatObserved(CompatSlot.gateBack) == 1 && compatObserved(CompatSlot.gateBackCS) == compatCS)
    lastFault = nil
}
