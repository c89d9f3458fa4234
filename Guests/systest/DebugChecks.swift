// systest's checks of the debug registers and single-stepping (issue 15 item 4; Intel SDM Vol. 3B
// ch. 17): MOV to and from DR0-DR7 (fixed bits of DR6 and DR7, DR4/DR5 aliasing, #UD with
// CR4.DE, #GP for bits 63:32 and at CPL3, DR7.GD), TF single-stepping (POPF setting and clearing
// TF, INT3 clearing it for its handler), data breakpoints (write and read/write, lengths and
// alignment), instruction breakpoints with RF, RF in a fault's frame, and DR6's sticky bits.
// The #DB and #UD handlers are debug.S's: they record what the CPU pushed. At CPL0 the checks
// set the breakpoints up themselves; at CPL3 they use breakpoints armed before leaving CPL0.

let dr7Fixed: UInt64 = 0x400
/// DR6's bits that read as 1 whatever is written: 4-11 and 16-31, except bit 16 (RTM) on a
/// processor that offers RTM (CPUID.(EAX=7,ECX=0):EBX[11]), where software may clear it (SDM
/// Vol. 3B 17.2.3). `kvm` passes the host's RTM on; the software CPU offers none.
var dr6Fixed: UInt64 {
    let rtm = maxBasicLeaf() >= 7 && CPU.cpuid(7).ebx & (1 << 11) != 0
    return rtm ? 0xfffe_0ff0 : 0xffff_0ff0
}
let dr6BD: UInt64 = 1 << 13, dr6BS: UInt64 = 1 << 14, dr7GD: UInt64 = 1 << 13
let flagTF: UInt64 = 1 << 8, flagRF: UInt64 = 1 << 16

/// DR7 bits enabling breakpoint `n` (local) with R/W `rw` and LEN `len` (the encodings).
func breakpointEnable(_ n: UInt64, rw: UInt64, len: UInt64) -> UInt64 {
    (1 << (2 * n)) | (rw << (16 + 4 * n)) | (len << (18 + 4 * n))
}

/// `check`, except that a failure that is a named departure of the host (`departs`) is a SKIP
/// line saying why, with the evidence.
func hostCheck(_ name: StaticString, _ ok: Bool, departs: Bool, _ why: StaticString, _ detail: () -> Void) {
    if !ok && departs {
        put("SKIP "); put(name); put(": "); put(why); put(" ("); detail(); putLine(")")
    } else {
        check(name, ok, detail)
    }
}

func resetDebugRecord() {
    db_count = 0; db_first_rip = 0; db_first_rflags = 0; db_last_rip = 0; db_last_rflags = 0
    db_dr6 = 0; db_dr7 = 0; db_handler_rflags = 0
}

/// What the #DB handler saw, for a failing check's detail.
func putDebugRecord() {
    put("#DB count "); put(db_count); put(" first rip "); putHex(db_first_rip, digits: 8)
    put(" rflags "); putHex(db_first_rflags, digits: 8); put(" last rip "); putHex(db_last_rip, digits: 8)
    put(" dr6 "); putHex(db_dr6, digits: 8); put(" dr7 "); putHex(db_dr7, digits: 8)
    put(" handler rflags "); putHex(db_handler_rflags, digits: 8)
}

func setDebugRegister(_ n: Int32, _ value: UInt64) { _ = debug_write_dr(n, value) }

func debugIDT() -> UnsafeMutablePointer<UInt64> {
    UnsafeMutablePointer<UInt64>(bitPattern: UInt(debug_idt_base()))!
}

func debugKernelChecks() {
    putLine("systest: debug registers at CPL0")
    let idt = debugIDT()
    setGate(idt, 1, handler: dbg_db_handler(), typeAndDPL: interruptGateDPL0)

    var held = true
    for n in Int32(0)..<4 {
        let value = 0x1000_0000 &* UInt64(n + 1) &+ UInt64(n)
        setDebugRegister(n, value)
        if debug_read_dr(n) != value { held = false }
    }
    check("DR0-DR3 read back what MOV wrote", held)
    setDebugRegister(6, 0)
    let dr6 = debug_read_dr(6)
    check("DR6 written 0 reads FFFF0FF0 (bits 4-11 and 16-31 read as 1; bit 16 0 with RTM)", dr6 == dr6Fixed) {
        putHex(dr6, digits: 8)
    }
    setDebugRegister(7, 0)
    let dr7 = debug_read_dr(7)
    check("DR7 written 0 reads 400 (bit 10 reads as 1)", dr7 == dr7Fixed) { putHex(dr7, digits: 8) }
    setDebugRegister(4, 1)
    let viaDR4 = debug_read_dr(6), viaDR5 = debug_read_dr(5)
    check("CR4.DE=0: DR4 is DR6 and DR5 is DR7", viaDR4 == dr6Fixed | 1 && viaDR5 == dr7Fixed) {
        put("DR6 "); putHex(viaDR4, digits: 8); put(" DR5 "); putHex(viaDR5, digits: 8)
    }
    setDebugRegister(6, 0)
    let cr4 = st_read_cr4()
    st_write_cr4(cr4 | 8)
    _ = debug_read_dr(4)
    expectFault("CR4.DE=1: MOV from DR4 raises #UD", vector: 6, rip: dbg_read_dr4_instruction())
    st_write_cr4(cr4)
    _ = debug_write_dr(7, 1 << 32)
    expectFault("MOV to DR7 with a bit of 63:32 set raises #GP(0)", vector: 13, error: 0)
    _ = debug_write_dr(6, 1 << 32)
    expectFault("MOV to DR6 with a bit of 63:32 set raises #GP(0)", vector: 13, error: 0)

    // General detect: the MOV faults with BD; the CPU clears GD for the handler, so the MOV
    // runs when the handler returns to it.
    resetDebugRecord()
    setDebugRegister(7, dr7Fixed | dr7GD)
    _ = debug_general_detect()
    setDebugRegister(7, dr7Fixed)
    if db_count == 0 && runningOnTCG {
        putLine("SKIP DR7.GD makes MOV DR a #DB fault: QEMU's TCG does not implement general detect (no #DB)")
    } else {
        check("DR7.GD: MOV DR is a #DB fault at the MOV with DR6.BD, GD clear in the handler",
              db_count == 1 && db_first_rip == dbg_gd_instruction() && db_dr6 & dr6BD != 0 && db_dr7 & dr7GD == 0) {
            putDebugRecord()
        }
        hostCheck("the general-detect #DB (a fault) pushes RF=1", db_count == 1 && db_first_rflags & flagRF != 0,
                  departs: db_count == 1 && !runningOnTCG, "this host's KVM pushes RF=0 for it") { putDebugRecord() }
    }

    // A fault's frame: RF=1 (SDM 17.3.1.1), so the instruction it returns to is not broken on again.
    setGate(idt, 6, handler: dbg_ud_handler(), typeAndDPL: interruptGateDPL0)
    ud_rflags = 0
    debug_ud2()
    setGate(idt, 6, handler: exception_stubs_address(6), typeAndDPL: interruptGateDPL0)
    hostCheck("a fault (#UD) pushes RFLAGS with RF=1", ud_rflags & flagRF != 0, departs: runningOnTCG,
              "QEMU's TCG pushes RF=0") { put("RFLAGS "); putHex(ud_rflags, digits: 8) }

    singleStepChecks(cpl: 0)

    // Instruction breakpoint: a fault before the instruction, RF as it was (0) in the frame; the
    // handler sets RF in the image, so the instruction runs once, and RF clears after it, so the
    // breakpoint fires again on the next call. DR6 still holds BS from the single steps above.
    resetDebugRecord()
    bp_counter = 0
    setDebugRegister(0, dbg_bp_target())
    setDebugRegister(7, dr7Fixed | breakpointEnable(0, rw: 0, len: 0))
    debug_bp_target()
    debug_bp_target()
    setDebugRegister(7, dr7Fixed)
    check("instruction breakpoint: #DB before the instruction each time it runs, DR6.B0",
          db_count == 2 && bp_counter == 2 && db_first_rip == dbg_bp_target() && db_last_rip == dbg_bp_target()
          && db_dr6 & 1 != 0) {
        put("ran "); put(bp_counter); put(", "); putDebugRecord()
    }
    check("instruction breakpoint pushes RF as it was (0)", db_count >= 1 && db_first_rflags & flagRF == 0) {
        putDebugRecord()
    }
    check("DR6.BS stays set through a later #DB (software clears DR6)", db_count >= 1 && db_dr6 & dr6BS != 0) {
        putDebugRecord()
    }

    // Data breakpoints: traps after the access.
    resetDebugRecord()
    setDebugRegister(6, 0)
    setDebugRegister(1, dbg_watched())
    setDebugRegister(7, dr7Fixed | breakpointEnable(1, rw: 1, len: 3))  // write, 4 bytes
    _ = debug_read_watched()
    let afterRead = db_count
    debug_write_watched()
    setDebugRegister(7, dr7Fixed)
    check("a write breakpoint ignores a read of its bytes", afterRead == 0) { putDebugRecord() }
    // KVM's PVM backend emulates guest CPL0 code, and its emulator checks no data breakpoints.
    let noDataBreakpoints = db_count == 0 && !runningOnTCG
    hostCheck("write breakpoint (LEN 4): #DB trap after a 2-byte write inside it, RIP after the write, DR6.B1",
              db_count == 1 && db_first_rip == dbg_after_write() && db_dr6 & 2 != 0 && watched == 0x1234_0000,
              departs: noDataBreakpoints, "data breakpoints at CPL0: this host's KVM raises no #DB") { putDebugRecord() }
    resetDebugRecord()
    setDebugRegister(6, 0)
    setDebugRegister(2, dbg_watched())
    setDebugRegister(7, dr7Fixed | breakpointEnable(2, rw: 3, len: 2))  // read/write, 8 bytes
    debug_write_beside()
    let beside = db_count
    _ = debug_read_watched_high()
    setDebugRegister(7, dr7Fixed)
    hostCheck("read/write breakpoint (LEN 8): a read of its high half traps, a write just past it does not; DR6.B2",
              beside == 0 && db_count == 1 && db_first_rip == dbg_after_read_high() && db_dr6 & 4 != 0,
              departs: noDataBreakpoints && db_count == 0, "data breakpoints at CPL0: this host's KVM raises no #DB") {
        put("beside "); put(beside); put(", "); putDebugRecord()
    }

    // For the CPL3 checks (MOV DR needs CPL0): an instruction breakpoint on debug_bp_target and
    // a write breakpoint on the watched quadword, left enabled for the drop to CPL3 (nothing on
    // the way there runs the one or writes the other).
    setDebugRegister(6, 0)
    setDebugRegister(0, dbg_bp_target())
    setDebugRegister(1, dbg_watched())
    setDebugRegister(7, dr7Fixed | breakpointEnable(0, rw: 0, len: 0) | breakpointEnable(1, rw: 1, len: 3))
}

/// TF checks, the same at CPL0 and CPL3.
func singleStepChecks(cpl: Int) {
    resetDebugRecord()
    debug_single_step()
    let stepped = db_count == 5 && db_first_rip == dbg_ss_second() && db_last_rip == dbg_ss_end()
    let bits = db_dr6 & dr6BS != 0 && db_first_rflags & flagTF != 0 && db_handler_rflags & flagTF == 0
    if cpl == 0 {
        check("TF: a #DB trap after each instruction; none after the POPF that sets TF, one after the POPF that clears it",
              stepped) { putDebugRecord() }
        check("single-step #DB: DR6.BS, TF set in the frame, the handler runs with TF clear", bits) { putDebugRecord() }
    } else {
        check("CPL3 TF: a #DB trap after each instruction; none after the POPF that sets TF, one after the POPF that clears it",
              stepped) { putDebugRecord() }
        check("CPL3 single-step #DB: DR6.BS, TF set in the frame, the handler runs with TF clear", bits) { putDebugRecord() }
    }
}

func debugUserChecks() {
    putLine("systest: debug at CPL3")
    _ = debug_read_dr(7)
    expectFault("MOV from DR7 at CPL3 raises #GP(0)", vector: 13, error: 0)
    singleStepChecks(cpl: 3)
    resetDebugRecord()
    lastFault = nil
    debug_int3_step()
    let sawBreakpoint = lastFault?.vector == 3
    lastFault = nil
    check("TF over INT3: no trap after INT3, its handler runs with TF clear; the first trap follows the next instruction",
          sawBreakpoint && db_count >= 1 && db_first_rip == dbg_int3_step_trap()) {
        put(sawBreakpoint ? "#BP seen, " : "no #BP, "); putDebugRecord()
    }

    // The breakpoints debugKernelChecks left enabled.
    resetDebugRecord()
    bp_counter = 0
    debug_bp_target()
    debug_bp_target()
    // KVM's PVM backend runs CPL3 natively and holds the guest's DR7 (KVMDebugRegisterTests), yet
    // no #DB reaches the guest from these breakpoints.
    hostCheck("CPL3 instruction breakpoint: #DB before the instruction each time it runs",
              db_count == 2 && bp_counter == 2 && db_first_rip == dbg_bp_target() && db_last_rip == dbg_bp_target(),
              departs: db_count == 0 && !runningOnTCG, "breakpoints at CPL3: this host's KVM delivers no #DB") {
        put("ran "); put(bp_counter); put(", "); putDebugRecord()
    }
    resetDebugRecord()
    debug_write_watched()
    hostCheck("CPL3 write breakpoint: #DB trap after the write", db_count == 1 && db_first_rip == dbg_after_write(),
              departs: db_count == 0 && !runningOnTCG, "breakpoints at CPL3: this host's KVM delivers no #DB") {
        putDebugRecord()
    }
}
