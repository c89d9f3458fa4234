// sensitive: executes each instruction Robin and Irvine (USENIX Security 2000) list as sensitive
// but unprivileged on x86 — SGDT, SIDT, SLDT, SMSW, STR, PUSHF, POPF, LAR, LSL, VERR, VERW,
// PUSH/POP of segment registers, far CALL/JMP/RET, INT n, INT3, INTO, MOV to/from segment
// registers — once at CPL0 and once at CPL3 (the same code, probes.S), and prints what the guest
// observes. At CPL3 none of them traps: a monitor that runs its guest kernel at ring 3 and
// emulates what traps (trap-and-emulate) never sees them, so the guest reads the real
// descriptor-table registers, CR0's low bits, its own ring in CS, and has IF and IOPL changes
// dropped silently. `visor run sensitive --stats` on a software engine counts them.
// Output is one line per instruction and CPL, `sensitive: done`, then power off (status 0).

let none: UInt64 = 0xffff
let slots = 40

/// Records the vector, error code and interrupted CS; a fault resumes at `sn_fixup`, the
/// traps (INT3, INTO's #OF, INT 0x80, INT 0x82) after themselves.
func recordInterrupt(_ raw: UnsafeMutablePointer<UInt64>) {
    let frame = InterruptFrame(raw)
    sn_vector = frame.vector
    sn_error = frame.errorCode
    sn_cs = frame.cs
    switch frame.vector {
    case 3, 4, 0x80, 0x82:
        return
    default:
        if sn_fixup == 0 {
            put("sensitive: unexpected exception "); put(frame.vector)
            put(" error "); putHex(frame.errorCode, digits: 4)
            put(" rip "); putHex(frame.rip, digits: 16); putLine()
            GuestKit.exit(unexpectedExceptionStatus)
        }
        frame.rip = sn_fixup
    }
}

/// `sensitive: NAME cplN ` — the start of every observation line.
func begin(_ name: StaticString, _ cpl: Int) {
    put("sensitive: "); put(name); put(" cpl"); put(cpl); put(" ")
}

/// "no fault", "#GP(0x0010)" or "vector N".
func putOutcome(_ vector: UInt64, _ error: UInt64) {
    switch vector {
    case none: put("no fault")
    case 13: put("#GP("); putHex(error, digits: 4); put(")")
    default: put("vector "); put(vector)
    }
}

func putFlags(_ flags: UInt64) {
    put("IF="); put(flags >> 9 & 1); put(" IOPL="); put(flags >> 12 & 3)
}

/// The observation lines of one run of the probes at `cpl`.
func report(_ o: UnsafeMutablePointer<UInt64>, cpl: Int) {
    let user = cpl == 3

    begin("sgdt", cpl)
    put("limit="); putHex(o[0] & 0xffff, digits: 4); put(" base="); putHex(o[0] >> 16 | o[1] << 48, digits: 16)
    putLine(user ? " (no trap: a trap-and-emulate monitor would show the guest the host's GDT)" : "")
    begin("sidt", cpl)
    put("limit="); putHex(o[2] & 0xffff, digits: 4); put(" base="); putHex(o[2] >> 16 | o[3] << 48, digits: 16)
    putLine(user ? " (no trap: the host's IDT under trap-and-emulate)" : "")
    begin("sldt", cpl); put("ldtr="); putHex(o[4] & 0xffff, digits: 4)
    putLine(user ? " (no trap: the host's LDTR under trap-and-emulate)" : "")
    begin("str", cpl); put("tr="); putHex(o[5] & 0xffff, digits: 4)
    putLine(user ? " (no trap: the host's task register under trap-and-emulate)" : "")
    begin("smsw", cpl); put("msw="); putHex(o[6] & 0xffff, digits: 4); put(" PE="); put(o[6] & 1)
    put(" TS="); put(o[6] >> 3 & 1)
    putLine(user ? " (no trap: the real CR0 bits, not the guest's virtual CR0)" : "")

    begin("pushf", cpl); putFlags(o[7])
    putLine(user ? " (no trap: the real IF and IOPL, not the guest kernel's virtual ones)" : "")
    begin("popf", cpl); put("asked IF=1 IOPL=3, got "); putFlags(o[8])
    let ignored = o[8] & 0x3200 == o[7] & 0x3200
    if user {
        putLine(ignored ? " (IF and IOPL unchanged: silently dropped, no trap)" : " (taken)")
    } else {
        putLine(ignored ? " (unchanged)" : " (taken)")
    }

    begin("lar", cpl); put("0x0008 ZF="); put(o[10])
    // The access byte without the accessed bit (set by a CS load on some CPUs, not on others)
    // and the G, D, L, AVL flags; bits 19:16 are undefined.
    if o[10] != 0 { put(" access="); putHex(o[9] >> 8 & 0xfe, digits: 2); put(" flags="); putHex(o[9] >> 20 & 0xf) }
    putLine(user ? " (no trap: reads descriptors of the real GDT; the DPL shows the real rings)" : "")
    begin("lsl", cpl); put("0x0008 ZF="); put(o[12])
    if o[12] != 0 { put(" limit="); putHex(o[11], digits: 8) }
    putLine(user ? " (no trap: the real descriptor's limit)" : "")
    begin("verr", cpl); put("0x0008 ZF="); put(o[13])
    putLine(user ? " (no trap: a ring-0 segment is not readable from ring 3, so a deprivileged kernel finds its own code unreadable)" : "")
    begin("verw", cpl); put("0x001b ZF="); put(o[14]); putLine(user ? " (no trap)" : "")

    begin("push sreg", cpl)
    put("fs="); putHex(o[15], digits: 4); put(", in 32-bit code cs="); putHex(o[31], digits: 4)
    put(" ds="); putHex(o[32], digits: 4)
    putLine(user ? " (no trap: CS's RPL tells the guest kernel it runs at ring 3)" : "")
    begin("pop sreg", cpl); put("fs, ds, es, ss reloaded")
    putLine(user ? " (no trap: the monitor never sees the descriptors the guest loads)" : "")
    begin("mov from sreg", cpl); put("cs="); putHex(o[16], digits: 4); put(" (RPL "); put(o[16] & 3)
    putLine(user ? ": the real ring, no trap)" : ")")
    begin("mov to sreg", cpl); put("ds=0x0010 (DPL 0): "); putOutcome(o[17], o[18])
    putLine(user ? " (traps only when the check fails: a kernel at ring 3 cannot load its own ring-0 data segment)" : "")

    begin("call far", cpl); put("to own cs: "); put(o[19] == 1 && o[20] == 1 ? "reached and back" : "FAILED")
    put("; to 0x0008: ")
    if o[23] == 1 && o[21] == none { put("reached and back") } else { putOutcome(o[21], o[22]) }
    putLine(user ? " (the privilege checks use the real CPL: a deprivileged kernel's call to its ring-0 code faults)" : "")
    begin("ret far", cpl); put("to own cs: "); put(o[20] == 1 ? "back" : "FAILED")
    put("; into 32-bit code at cpl"); put(o[31] & 3)
    putLine(user ? " (no trap: the return's privilege checks use the real CPL)" : "")
    begin("jmp far", cpl); put("to own cs: "); put(o[24] == 1 ? "reached" : "FAILED")
    putLine(user ? "; out of 32-bit code back to 64-bit (no trap)" : "; out of 32-bit code back to 64-bit")

    begin("int n", cpl); put("int 0x80 (gate DPL 3): ")
    if o[25] == 0x80 { put("delivered from cs="); putHex(o[26], digits: 4) } else { putOutcome(o[25], 0) }
    put("; int 0x82 (gate DPL 0): ")
    if o[29] == 0x82 { put("delivered") } else { putOutcome(o[29], o[30]) }
    putLine(user ? " (the gate's DPL is checked against the real CPL)" : "")
    begin("int3", cpl); put(o[27] == 3 ? "#BP delivered from cs=" : "FAILED cs="); putHex(o[28], digits: 4)
    putLine(user ? " (goes straight to the guest's IDT through the real CPL's checks)" : "")
    begin("into", cpl); put("OF=1: "); put(o[33] == 4 ? "#OF delivered from cs=" : "FAILED cs="); putHex(o[34], digits: 4)
    put("; OF=0: "); put(o[35] == none ? "nothing" : "FAILED")
    putLine(user ? " (no trap)" : "")
}

func guestMain() {
    Interrupts.setUp()
    for v: UInt32 in [3, 4, 6, 10, 11, 12, 13, 14, 0x80, 0x82] {
        Interrupts.register(vector: v) { recordInterrupt($0) }
    }
    // INT3, INTO and INT 0x80 may be raised from CPL3; INT 0x82's gate stays DPL 0.
    for v: UInt32 in [3, 4, 0x80] { Interrupts.setGate(vector: v, entry: gk_isr_stub_address(v), dpl: 3) }
    Interrupts.setGate(vector: 0x81, entry: sn_user_return_address(), dpl: 3)
    GuestKit.installTaskState(kernelStackTop: sn_kernel_stack_top_address())

    // GuestKit's eight descriptors plus a 32-bit DPL 3 code segment at 0x40 (selector 0x43).
    var limit: UInt16 = 0
    var base: UInt64 = 0
    sn_read_gdtr(&limit, &base)
    guard limit == 8 * 8 - 1, let old = UnsafePointer<UInt64>(bitPattern: UInt(base)) else {
        putLine("sensitive: unexpected GDT layout")
        GuestKit.exit(1)
    }
    let gdt = UnsafeMutablePointer<UInt64>.allocate(capacity: 9)
    for i in 0..<8 { gdt[i] = old[i] }
    gdt[8] = 0x00cf_fa00_0000_ffff
    sn_load_gdtr(9 * 8 - 1, UInt64(UInt(bitPattern: gdt)))

    let kernel = UnsafeMutablePointer<UInt64>.allocate(capacity: slots)
    kernel.initialize(repeating: 0, count: slots)
    let user = UnsafeMutablePointer<UInt64>.allocate(capacity: slots)
    user.initialize(repeating: 0, count: slots)

    sn_probes(kernel)
    sn_user_obs = UInt64(UInt(bitPattern: user))
    sn_run_user()

    report(kernel, cpl: 0)
    report(user, cpl: 3)
    putLine("sensitive: done")
    GuestKit.exit(0)
}
